"""A rollout as one process serves it: the candidate loaded beside the current version, routing, the
candidate that cannot load, the promotion served without a reload, and GET /model's account of it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from classifier.config import Settings
from classifier.records.evidence import RolloutLedger
from classifier.serving.manager import ModelManager
from classifier.store.layout import ModelStore
from classifier.store.rollout import Guards, RolloutStore

from helpers.inbox import tiny_version
from helpers.stores import derive_version

NAME = "resnet50"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Serving:
    """A store with a current version and a same-label candidate, and a manager serving it on a clock."""

    def __init__(self, store: Path, tmp_path: Path, **settings: Any) -> None:
        self.root = store
        self.store = ModelStore(store)
        current = self.store.current(NAME)
        assert current is not None
        self.current = current
        self.candidate = self.store.install_dir(
            derive_version(self.store.version_dir(NAME, current), tmp_path / "candidate",
                           created="2031-06-01T00:00:00Z"), make_current=False)
        self.rollouts = RolloutStore(self.store)
        self.clock = Clock()
        # No sha256 on load (VERIFY_ON_LOAD=0): the candidate shares the current version's artifacts, and the
        # store checked both when they were installed.
        self.manager = ModelManager(Settings(model_store=store, refresh_seconds=10.0, verify_on_load=False,
                                             **settings), clock=self.clock)
        assert self.manager.current().version == current

    def tick(self) -> None:
        """Let a refresh (and a judge) fall due, and one request run it."""
        self.clock.now += 60
        self.manager.current()


@pytest.fixture
def serving(store: Path, tmp_path: Path) -> Serving:
    return Serving(store, tmp_path, rollout_judge_seconds=0.0)


def test_the_candidate_loads_at_the_next_refresh_and_drops_when_the_rollout_ends(serving: Serving) -> None:
    # GIVEN a canary started on disk
    rollout = serving.rollouts.start(NAME, serving.candidate, mode="canary", percent=30)
    # THEN nothing changes before the next refresh; after it, the candidate is loaded beside the current version
    assert serving.manager.rollout.candidate is None
    serving.tick()
    loaded = serving.manager.rollout.candidate
    assert loaded is not None and loaded.version == serving.candidate
    assert serving.manager.current().version == serving.current
    # AND GET /model says so
    described = serving.manager.describe()["rollout"]
    assert (described["id"], described["candidate_state"]) == (rollout.id, "loaded")
    # WHEN the rollout is aborted, the next refresh drops the candidate
    serving.rollouts.abort(NAME, reason="done")
    serving.tick()
    assert serving.manager.rollout.candidate is None and "rollout" not in serving.manager.describe()


def test_canary_and_shadow_routes(serving: Serving) -> None:
    serving.rollouts.start(NAME, serving.candidate, mode="canary", percent=50)
    serving.tick()
    routes = {key: serving.manager.route(key) for key in (f"request-{i}" for i in range(200))}
    # A canary answers about half the requests, each key always the same way, in role "canary"
    to_candidate = [key for key, route in routes.items() if route.model.version == serving.candidate]
    assert 60 <= len(to_candidate) <= 140
    assert all(routes[key].role == "canary" and routes[key].shadow is None for key in to_candidate)
    assert all(serving.manager.route(key).model.version == serving.candidate for key in to_candidate)
    assert routes[to_candidate[0]].summary()["role"] == "canary"
    # Without a key (the S3 trigger, batch) a request stays outside the rollout
    assert serving.manager.route(None).rollout is None
    # A shadow answers every request with the current version, the candidate in the shadow of some
    serving.rollouts.abort(NAME, reason="switch to a shadow")
    serving.rollouts.start(NAME, serving.candidate, mode="shadow", percent=100)
    serving.tick()
    route = serving.manager.route("any")
    assert (route.model.version, route.role, route.shadow and route.shadow.version) == (
        serving.current, "current", serving.candidate)
    assert route.summary() == {**route.model.summary(), "role": "current"}


def test_a_rollout_beside_another_version_is_not_served(serving: Serving, tmp_path: Path) -> None:
    # GIVEN a rollout, then CURRENT switched under it (its comparison no longer holds)
    serving.rollouts.start(NAME, serving.candidate, mode="canary", percent=100)
    serving.tick()
    other = serving.store.install_dir(derive_version(serving.store.version_dir(NAME, serving.current),
                                                     tmp_path / "other", created="2031-07-01T00:00:00Z"))
    serving.tick()
    # THEN every request goes to the new current version, outside the rollout
    assert serving.manager.route("key").model.version == other and serving.manager.route("key").rollout is None
    assert serving.manager.rollout.candidate is None and "compares with" in str(serving.manager.rollout.problem)


def test_a_candidate_that_cannot_load_is_aborted_where_this_process_judges(
    store: Path, tmp_path: Path, published_store: Path,
) -> None:
    serving = Serving(store, tmp_path, rollout_judge_seconds=30.0)
    tiny_version(published_store, tmp_path / "broken", seed="not a model")
    broken = serving.store.install_dir(tmp_path / "broken", make_current=False)
    serving.rollouts.start(NAME, broken, mode="canary", percent=100)
    # WHEN the next refresh tries to load it
    serving.tick()
    # THEN it is aborted with the reason, and every request stays on the current version
    assert serving.rollouts.get(NAME) is None
    (outcome,) = serving.rollouts.outcomes(NAME)
    assert f"the candidate {broken} could not be loaded" in outcome["reason"]
    assert outcome["evidence"]["load_failures"] == 1 and outcome["evidence"]["load_error"]
    assert serving.manager.route("key").model.version == serving.current


def test_where_this_process_may_not_write_a_broken_candidate_is_only_reported(
    serving: Serving, tmp_path: Path, published_store: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a process that does not judge (Lambda: ROLLOUT_JUDGE_SECONDS=0), writing EMF metrics
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Classifier")
    tiny_version(published_store, tmp_path / "broken", seed="not a model")
    broken = serving.store.install_dir(tmp_path / "broken", make_current=False)
    serving.rollouts.start(NAME, broken, mode="shadow", percent=100)
    serving.tick()
    # THEN the rollout stays for the AWS judge to end, the failure is a metric and in GET /model
    assert serving.rollouts.get(NAME) is not None
    assert '"CandidateLoadFailures"' in capsys.readouterr().out
    described = serving.manager.describe()["rollout"]
    assert described["candidate_state"] == "not loaded" and "could not be loaded" in described["problem"]
    # AND it is not loaded again at every refresh
    serving.tick()
    assert '"CandidateLoadFailures"' not in capsys.readouterr().out
    assert serving.manager.route("key").shadow is None


def test_a_promoted_candidate_serves_without_a_second_load(store: Path, tmp_path: Path) -> None:
    # GIVEN a server that judges, a canary ready after 3 requests, promoting itself
    serving = Serving(store, tmp_path, rollout_judge_seconds=1.0)
    rollout = serving.rollouts.start(NAME, serving.candidate, mode="canary", percent=50,
                                     guards=Guards(min_requests=3, max_latency_ratio=100.0), auto_promote=True)
    serving.tick()
    loaded = serving.manager.rollout.candidate
    assert loaded is not None
    ledger = RolloutLedger(store / "records.sqlite3")
    for role, version in (("current", serving.current), ("canary", serving.candidate)):
        for _ in range(3):
            ledger.record(rollout.id, role=role, version=version, ok=True, latency_ms=20.0)
    # WHEN its judge runs
    serving.tick()
    # THEN the candidate is current, and the very model object loaded for the rollout serves it
    assert serving.store.current(NAME) == serving.candidate
    assert serving.manager.current() is loaded
    assert serving.rollouts.outcomes(NAME)[0]["outcome"] == "promoted"


def test_get_model_shows_the_evidence_and_the_verdict(serving: Serving) -> None:
    rollout = serving.rollouts.start(NAME, serving.candidate, mode="shadow", percent=100,
                                     guards=Guards(min_requests=2))
    serving.tick()
    ledger = RolloutLedger(serving.root / "records.sqlite3")
    ledger.record(rollout.id, role="current", version=serving.current, ok=True, latency_ms=20.0)
    for agreed in (1, 0):
        ledger.record(rollout.id, role="shadow", version=serving.candidate, ok=True, latency_ms=21.0, compared=1,
                      agreed=agreed)
    described = serving.manager.describe()["rollout"]
    assert described["evidence"]["agreement"] == 0.5 and described["evidence"]["candidate"]["requests"] == 2
    assert described["verdict"] == "breached: min_agreement"
