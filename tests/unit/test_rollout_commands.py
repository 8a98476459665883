"""``python -m classifier rollout ...`` on a local store: start, status, judge, promote, abort."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classifier.cli import main
from classifier.records.evidence import RolloutLedger

from helpers.rollouts import NAME, Versions


@pytest.fixture
def versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Versions:
    for key in ("RECORDS_DB", "RECORDS_TABLE", "MODEL_STORE"):
        monkeypatch.delenv(key, raising=False)
    return Versions(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_start_status_and_judge(versions: Versions, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(versions.store.root)
    # WHEN a canary starts with its guards
    status, out, _ = run(capsys, "rollout", "start", versions.candidate, "--store", store, "--canary", "10",
                         "--min-requests", "3", "--max-latency-ratio", "1.2", "--auto-promote")
    assert status == 0 and "canary rollout" in out and versions.candidate in out
    rollout = versions.rollouts.get(NAME)
    assert rollout is not None and (rollout.percent, rollout.guards.min_requests, rollout.auto_promote) == (10, 3, True)
    assert rollout.guards.max_latency_ratio == 1.2 and rollout.guards.max_error_rate == 0.01  # the default
    # AND a server records three candidate requests, one of them slow
    ledger = RolloutLedger(versions.store.root / "records.sqlite3")
    for latency in (10.0, 10.0, 10.0, 10.0):
        ledger.record(rollout.id, role="current", version=versions.current, ok=True, latency_ms=latency)
    for latency in (10.0, 10.0, 30.0):
        ledger.record(rollout.id, role="canary", version=versions.candidate, ok=True, latency_ms=latency)
    # THEN status shows both sides and the breach, and changes nothing
    status, out, _ = run(capsys, "rollout", "status", "--store", store, "--json")
    report = json.loads(out)
    assert status == 0 and report["verdict"] == "breached: max_latency_ratio"
    assert report["evidence"]["candidate"]["requests"] == 3 and report["evidence"]["current"]["requests"] == 4
    assert versions.rollouts.get(NAME) == rollout
    status, out, _ = run(capsys, "rollout", "status", "--store", store)
    assert "verdict: breached: max_latency_ratio" in out and "candidate" in out
    # AND judge aborts it
    status, out, _ = run(capsys, "rollout", "judge", "--store", store)
    assert status == 0 and "judge: rollout aborted" in out
    assert versions.rollouts.get(NAME) is None and versions.store.current(NAME) == versions.current
    status, out, _ = run(capsys, "rollout", "status", "--store", store)
    assert "no rollout running" in out and "aborted" in out


def test_promote_and_abort_by_hand(versions: Versions, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(versions.store.root)
    assert run(capsys, "rollout", "start", versions.candidate, "--store", store, "--shadow", "100")[0] == 0
    status, out, _ = run(capsys, "rollout", "promote", "--store", store, "--reason", "looks good")
    assert status == 0 and f"{versions.candidate} is current" in out
    assert versions.store.current(NAME) == versions.candidate
    (outcome,) = versions.rollouts.outcomes(NAME)
    assert outcome["reason"] == "looks good" and outcome["evidence"]["candidate"]["role"] == "shadow"
    # An abort with nothing running is refused
    status, _, err = run(capsys, "rollout", "abort", "--store", store)
    assert status == 2 and "no rollout of resnet50 is running" in err


@pytest.mark.parametrize(("extra", "message"), [
    (["--canary", "0"], "percent must be an integer in 1..100"),
    (["--shadow", "50", "--min-agreement", "1.5"], "guard min_agreement must be in 0..1"),
])
def test_start_refusals_exit_2(versions: Versions, capsys: pytest.CaptureFixture[str], extra: list[str],
                               message: str) -> None:
    status, _, err = run(capsys, "rollout", "start", versions.candidate, "--store", str(versions.store.root), *extra)
    assert status == 2 and message in err and versions.rollouts.get(NAME) is None


def test_start_needs_exactly_one_mode(versions: Versions, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["rollout", "start", versions.candidate, "--canary", "5", "--shadow", "5"])
    assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["rollout", "start", versions.candidate])
