"""A rollout in the model store: ROLLOUT and rollouts.jsonl, start's refusals, promote, abort, reconcile,
the inbox's requests, and which requests go to the candidate."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest

from classifier.store.layout import ModelStore
from classifier.store.manifest import IntegrityError, ModelNotFound
from classifier.store.rollout import (
    ROLLOUT,
    ROLLOUTS_LOG,
    Guards,
    Rollout,
    RolloutError,
    RolloutStore,
    routes_to_candidate,
)

from helpers.rollouts import NAME, Versions


@pytest.fixture
def versions(tmp_path: Path) -> Versions:
    return Versions(tmp_path)


def test_start_writes_rollout_atomically_with_its_fields(versions: Versions) -> None:
    # WHEN a shadow rollout starts with its guards
    guards = Guards(min_requests=50, max_error_rate=0.02, max_latency_ratio=1.2, min_agreement=0.95)
    rollout = versions.rollouts.start(NAME, versions.candidate, mode="shadow", percent=100, guards=guards,
                                      auto_promote=True)
    # THEN models/<name>/ROLLOUT holds exactly the documented fields, and reads back the same
    path = versions.store.model_dir(NAME) / ROLLOUT
    raw = json.loads(path.read_text())
    assert raw == {"id": rollout.id, "name": NAME, "candidate": versions.candidate, "current": versions.current,
                   "mode": "shadow", "percent": 100, "started_at": rollout.started_at,
                   "guards": {"min_requests": 50, "max_error_rate": 0.02, "max_latency_ratio": 1.2,
                              "min_agreement": 0.95},
                   "auto_promote": True}
    assert versions.rollouts.get(NAME) == rollout
    # AND no temporary file is left beside it
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("case", ["not installed", "already current", "other labels", "running", "corrupt"])
def test_start_refuses_and_writes_nothing(versions: Versions, case: str) -> None:
    # GIVEN a store, and a reason the rollout cannot start
    candidate = versions.candidate
    expected = {"not installed": "is not installed", "already current": "is already current",
                "other labels": "another label set", "running": "is running", "corrupt": "cannot be rolled out"}
    if case == "not installed":
        candidate = "20991231T000000Z-0123456789ab"
    elif case == "already current":
        candidate = versions.current
    elif case == "other labels":
        candidate = versions.relabelled
    elif case == "running":
        versions.rollouts.start(NAME, versions.candidate, mode="canary", percent=5)
    elif case == "corrupt":
        onnx = versions.store.version_dir(NAME, candidate) / "model.onnx"
        data = onnx.read_bytes()
        onnx.unlink()
        onnx.write_bytes(data[:-1] + b"!")
    before = (versions.store.model_dir(NAME) / ROLLOUT).read_bytes() if case == "running" else None
    # WHEN a rollout of it is asked for
    with pytest.raises(RolloutError, match=expected[case]):
        versions.rollouts.start(NAME, candidate, mode="canary", percent=10)
    # THEN ROLLOUT is as it was (absent, or the running one), CURRENT too
    path = versions.store.model_dir(NAME) / ROLLOUT
    assert (path.read_bytes() if path.exists() else None) == before
    assert versions.store.current(NAME) == versions.current


@pytest.mark.parametrize(("field", "value", "message"), [
    ("mode", "blue-green", "mode must be one of canary, shadow"),
    ("percent", 0, "percent must be an integer in 1..100"),
    ("percent", 101, "percent must be an integer in 1..100"),
    ("percent", 12.5, "percent must be an integer in 1..100"),
])
def test_start_refuses_a_bad_mode_or_percent(versions: Versions, field: str, value: object, message: str) -> None:
    options: dict[str, object] = {"mode": "canary", "percent": 10, field: value}
    with pytest.raises(RolloutError, match=message):
        versions.rollouts.start(NAME, versions.candidate, **options)  # type: ignore[arg-type]
    assert versions.rollouts.get(NAME) is None


@pytest.mark.parametrize(("guard", "value"), [("min_requests", 0), ("max_error_rate", 1.5),
                                              ("max_latency_ratio", 0.0), ("min_agreement", -0.1),
                                              ("max_error_rate", math.nan), ("min_requests", 2.5)])
def test_guards_out_of_range_are_refused(guard: str, value: object) -> None:
    with pytest.raises(RolloutError, match=f"guard {guard} must be in"):
        Guards(**{guard: value})  # type: ignore[arg-type]


def test_promote_switches_current_logs_the_outcome_and_ends_the_rollout(versions: Versions) -> None:
    # GIVEN a running canary
    rollout = versions.rollouts.start(NAME, versions.candidate, mode="canary", percent=20)
    # WHEN it is promoted with its evidence
    outcome = versions.rollouts.promote(NAME, reason="every guard holds", evidence={"candidate": {"requests": 120}},
                                        actor="tester")
    # THEN the candidate is current, ROLLOUT is gone, and rollouts.jsonl has one line saying so
    assert versions.store.current(NAME) == versions.candidate
    assert versions.rollouts.get(NAME) is None
    (line,) = (versions.store.model_dir(NAME) / ROLLOUTS_LOG).read_text().splitlines()
    logged = json.loads(line)
    assert logged == outcome
    assert (logged["id"], logged["outcome"], logged["reason"], logged["actor"]) == (
        rollout.id, "promoted", "every guard holds", "tester")
    assert logged["evidence"] == {"candidate": {"requests": 120}} and logged["ended_at"] >= rollout.started_at
    # and CURRENT's history says the rollout made the switch, and who promoted it (rollback undoes it)
    last = versions.store.history(NAME)[-1]
    assert (last.reason, last.actor, last.previous, last.version) == (
        "rollout", "tester", rollout.current, rollout.candidate)


def test_abort_keeps_current_and_appends_to_the_log(versions: Versions) -> None:
    # GIVEN one rollout promoted before, and a second running
    versions.rollouts.start(NAME, versions.candidate, mode="canary", percent=20)
    versions.rollouts.abort(NAME, reason="first")
    second = versions.rollouts.start(NAME, versions.candidate, mode="shadow", percent=50)
    # WHEN the second is aborted
    versions.rollouts.abort(NAME, reason="breached: max_latency_ratio", expect_id=second.id)
    # THEN CURRENT is unchanged and the log holds both, oldest first
    assert versions.store.current(NAME) == versions.current
    assert [(o["outcome"], o["reason"]) for o in versions.rollouts.outcomes(NAME)] == [
        ("aborted", "first"), ("aborted", "breached: max_latency_ratio")]


def test_an_end_that_names_another_rollout_changes_nothing(versions: Versions) -> None:
    # GIVEN a running rollout
    versions.rollouts.start(NAME, versions.candidate, mode="canary", percent=20)
    # WHEN a late request meant for an earlier rollout arrives
    with pytest.raises(RolloutError, match="not 0123abcd: nothing done"):
        versions.rollouts.promote(NAME, reason="late", expect_id="0123abcd")
    # THEN the rollout runs on, CURRENT unchanged
    assert versions.rollouts.get(NAME) is not None and versions.store.current(NAME) == versions.current
    # AND once it ended, nothing is left to end
    versions.rollouts.abort(NAME, reason="now")
    with pytest.raises(RolloutError, match="no rollout of resnet50 is running"):
        versions.rollouts.abort(NAME, reason="again")


def test_reconcile_ends_a_rollout_overtaken_by_another_switch(versions: Versions) -> None:
    # GIVEN a running rollout, and CURRENT switched under it by hand (a publish, a rollback)
    versions.rollouts.start(NAME, versions.candidate, mode="canary", percent=20)
    versions.store.set_current(NAME, versions.relabelled, reason="promote")
    # WHEN anyone reconciles (a server, status, the installer)
    ended = versions.rollouts.reconcile(NAME)
    # THEN the rollout is aborted as superseded, the new CURRENT stays
    assert ended is not None and ended["outcome"] == "aborted" and "superseded" in ended["reason"]
    assert versions.rollouts.get(NAME) is None and versions.store.current(NAME) == versions.relabelled
    assert versions.rollouts.reconcile(NAME) is None


def test_reconcile_finishes_a_promotion_that_died_halfway(versions: Versions) -> None:
    # GIVEN CURRENT switched to the candidate, and the process gone before it logged the outcome
    versions.rollouts.start(NAME, versions.candidate, mode="canary", percent=20)
    versions.store.set_current(NAME, versions.candidate, reason="rollout")
    # WHEN reconciled
    ended = versions.rollouts.reconcile(NAME)
    # THEN the rollout ended as promoted, once
    assert ended is not None and ended["outcome"] == "promoted"
    assert len(versions.rollouts.outcomes(NAME)) == 1


def test_the_outcome_is_written_once_even_if_the_removal_was_lost(versions: Versions) -> None:
    # GIVEN an aborted rollout whose ROLLOUT file came back (the process died before removing it)
    versions.rollouts.start(NAME, versions.candidate, mode="canary", percent=20)
    saved = (versions.store.model_dir(NAME) / ROLLOUT).read_bytes()
    versions.rollouts.abort(NAME, reason="breach")
    (versions.store.model_dir(NAME) / ROLLOUT).write_bytes(saved)
    # WHEN it is aborted again
    versions.rollouts.abort(NAME, reason="breach")
    # THEN the log still holds it once
    assert len(versions.rollouts.outcomes(NAME)) == 1 and versions.rollouts.get(NAME) is None


def test_a_malformed_rollout_file_is_an_integrity_error(versions: Versions) -> None:
    path = versions.store.model_dir(NAME) / ROLLOUT
    path.write_text("{not json")
    with pytest.raises(IntegrityError, match="not valid JSON"):
        versions.rollouts.get(NAME)
    path.write_text(json.dumps({"candidate": versions.candidate}))
    with pytest.raises(IntegrityError, match="a rollout needs current, mode, name, percent, started_at"):
        versions.rollouts.get(NAME)


def test_concurrent_starts_leave_exactly_one_rollout(versions: Versions) -> None:
    # GIVEN eight threads starting a rollout at once
    results: list[object] = []

    def start(percent: int) -> None:
        try:
            results.append(versions.rollouts.start(NAME, versions.candidate, mode="canary", percent=percent))
        except RolloutError as exc:
            results.append(exc)

    threads = [threading.Thread(target=start, args=(p,)) for p in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN one started, seven were refused, and ROLLOUT names the one that started
    started = [r for r in results if isinstance(r, Rollout)]
    assert len(started) == 1 and len(results) == 8
    assert versions.rollouts.get(NAME) == started[0]


def test_inbox_requests_are_idempotent_by_rollout_id(versions: Versions) -> None:
    # GIVEN a start request as `rollout start --s3` writes it, delivered twice
    request = {"action": "start", "id": "abc123", "candidate": versions.candidate, "mode": "canary",
               "percent": 10, "guards": {"min_requests": 20}, "auto_promote": True}
    first = versions.rollouts.apply(NAME, request)
    again = versions.rollouts.apply(NAME, request)
    # THEN it started once, under the request's id, with its guards (others at their defaults)
    assert (first["status"], again["status"]) == ("started", "already-started")
    rollout = versions.rollouts.get(NAME)
    assert rollout is not None and rollout.id == "abc123" and rollout.guards == Guards(min_requests=20)
    # AND an abort for it, delivered twice, ends it once
    abort = {"action": "abort", "id": "abc123", "reason": "judge: breached: min_agreement",
             "evidence": {"agreement": 0.5}}
    assert versions.rollouts.apply(NAME, abort)["status"] == "aborted"
    assert versions.rollouts.apply(NAME, abort)["status"] == "already-ended"
    (outcome,) = versions.rollouts.outcomes(NAME)
    assert outcome["evidence"] == {"agreement": 0.5} and outcome["reason"] == "judge: breached: min_agreement"


@pytest.mark.parametrize(("request_body", "message"), [
    ({"action": "deploy"}, "unknown rollout action"),
    ({"action": "start", "candidate": 7, "mode": "canary", "percent": 5}, "names its candidate"),
    ({"action": "start", "candidate": "x", "mode": "canary", "percent": 5, "weights": "y"}, "unknown fields"),
    ({"action": "start", "id": "../x", "candidate": "x"}, "invalid rollout id"),
    ({"action": "promote"}, "no rollout of resnet50 is running"),
    ({"action": "start", "candidate": "20261123T100000Z-0123456789ab", "mode": "canary", "percent": 5,
      "guards": {"max_speed": 1}}, "unknown guards"),
])
def test_malformed_inbox_requests_are_refused(versions: Versions, request_body: dict[str, object],
                                              message: str) -> None:
    with pytest.raises(RolloutError, match=message):
        versions.rollouts.apply(NAME, request_body)
    assert versions.rollouts.get(NAME) is None and versions.store.current(NAME) == versions.current


def test_state_is_what_the_s3_mirror_holds(versions: Versions) -> None:
    rollout = versions.rollouts.start(NAME, versions.candidate, mode="canary", percent=20)
    state = versions.rollouts.state(NAME)
    assert (state["name"], state["current"], state["rollout"], state["last_outcome"]) == (
        NAME, versions.current, rollout.as_dict(), None)
    versions.rollouts.abort(NAME, reason="done")
    state = versions.rollouts.state(NAME)
    assert state["rollout"] is None and state["last_outcome"]["reason"] == "done"


def test_routing_is_stable_per_request_id_and_near_the_percentage() -> None:
    # GIVEN a 20% canary
    rollout = Rollout(name=NAME, candidate="20261123T100000Z-0123456789ab", current="20261122T100000Z-0123456789ab",
                      mode="canary", percent=20, started_at="2026-11-23T10:00:00Z", id="r1")
    ids = [f"request-{i}" for i in range(10_000)]
    # WHEN each request id is routed, twice
    first = [routes_to_candidate(rollout, i) for i in ids]
    # THEN every id goes the same way again, and the candidate's share is within the 99.9% binomial interval
    assert [routes_to_candidate(rollout, i) for i in ids] == first
    share, n, p = sum(first), len(ids), 0.2
    half_width = 3.29 * math.sqrt(n * p * (1 - p))
    assert abs(share - n * p) <= half_width, share
    # AND another rollout draws another slice of the same ids
    other = Rollout(**{**rollout.as_dict(), "guards": rollout.guards, "id": "r2"})
    assert [routes_to_candidate(other, i) for i in ids] != first
    # AND 100% sends every request
    everything = Rollout(**{**rollout.as_dict(), "guards": rollout.guards, "percent": 100})
    assert all(routes_to_candidate(everything, i) for i in ids[:500])


def test_a_model_not_in_the_store_has_no_rollout_to_start(tmp_path: Path) -> None:
    rollouts = RolloutStore(ModelStore(tmp_path))
    assert rollouts.get("resnet50") is None and rollouts.outcomes("resnet50") == []
    with pytest.raises(ModelNotFound, match="not in the store"):
        rollouts.start("resnet50", "20261123T100000Z-0123456789ab", mode="canary", percent=5)
