"""The local judge: evidence from the SQLite ledger, the verdict, and its action on the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifier.config import Settings
from classifier.records.evidence import RolloutLedger
from classifier.serving.local_judge import assess_locally, judge_locally, ledger_path
from classifier.store.rollout import Guards

from helpers.rollouts import NAME, Versions


@pytest.fixture
def versions(tmp_path: Path) -> Versions:
    return Versions(tmp_path)


def feed(ledger: RolloutLedger, rollout_id: str, role: str, version: str, n: int, latency_ms: float,
         errors: int = 0, compared: int = 0, agreed: int = 0) -> None:
    """``n`` requests as a server records them: the first ``errors`` failed."""
    for i in range(n):
        ok = i >= errors
        ledger.record(rollout_id, role=role, version=version, ok=ok, latency_ms=latency_ms if ok else None,
                      compared=compared if ok else 0, agreed=agreed if ok else 0)


def test_a_slow_candidate_is_aborted_and_current_stays(versions: Versions, tmp_path: Path) -> None:
    # GIVEN a canary whose candidate answers twice as slowly as the current version
    rollout = versions.rollouts.start(NAME, versions.candidate, mode="canary", percent=20,
                                      guards=Guards(min_requests=20), auto_promote=True)
    ledger = RolloutLedger(tmp_path / "records.sqlite3")
    feed(ledger, rollout.id, "current", versions.current, 80, latency_ms=20.0)
    feed(ledger, rollout.id, "canary", versions.candidate, 20, latency_ms=40.0)
    # WHEN the judge runs
    assessment, outcome = judge_locally(versions.rollouts, ledger, NAME)
    # THEN it is aborted for its latency, with the evidence in the log, and CURRENT is unchanged
    assert str(assessment.verdict) == "breached: max_latency_ratio"
    assert outcome is not None and outcome["outcome"] == "aborted"
    assert versions.store.current(NAME) == versions.current and versions.rollouts.get(NAME) is None
    (logged,) = versions.rollouts.outcomes(NAME)
    assert logged["reason"].startswith("judge: breached: max_latency_ratio")
    assert logged["evidence"]["candidate"]["requests"] == 20 and logged["evidence"]["current"]["requests"] == 80


def test_a_candidate_holding_every_guard_is_promoted_with_auto_promote(versions: Versions, tmp_path: Path) -> None:
    # GIVEN a full shadow whose candidate agrees on 19 of every 20 images, as fast as the current one
    rollout = versions.rollouts.start(NAME, versions.candidate, mode="shadow", percent=100,
                                      guards=Guards(min_requests=40, min_agreement=0.9), auto_promote=True)
    ledger = RolloutLedger(tmp_path / "records.sqlite3")
    feed(ledger, rollout.id, "current", versions.current, 40, latency_ms=20.0)
    feed(ledger, rollout.id, "shadow", versions.candidate, 20, latency_ms=21.0, compared=1, agreed=1)
    # WHEN the judge runs before enough requests are in
    early, none = judge_locally(versions.rollouts, ledger, NAME)
    assert (str(early.verdict), none) == ("running", None)
    feed(ledger, rollout.id, "shadow", versions.candidate, 19, latency_ms=21.0, compared=1, agreed=1)
    feed(ledger, rollout.id, "shadow", versions.candidate, 1, latency_ms=21.0, compared=1, agreed=0)
    # AND again once they are
    assessment, outcome = judge_locally(versions.rollouts, ledger, NAME)
    # THEN it is promoted: the candidate is current
    assert str(assessment.verdict) == "ready" and assessment.evidence is not None
    assert assessment.evidence.agreement == pytest.approx(39 / 40)
    assert outcome is not None and outcome["outcome"] == "promoted"
    assert versions.store.current(NAME) == versions.candidate


def test_ready_without_auto_promote_waits_for_a_human(versions: Versions, tmp_path: Path) -> None:
    rollout = versions.rollouts.start(NAME, versions.candidate, mode="canary", percent=50,
                                      guards=Guards(min_requests=5))
    ledger = RolloutLedger(tmp_path / "records.sqlite3")
    feed(ledger, rollout.id, "current", versions.current, 5, latency_ms=20.0)
    feed(ledger, rollout.id, "canary", versions.candidate, 5, latency_ms=20.0)
    assessment, outcome = judge_locally(versions.rollouts, ledger, NAME)
    assert (str(assessment.verdict), outcome) == ("ready", None)
    assert versions.rollouts.get(NAME) == rollout


def test_a_ready_candidate_that_broke_on_disk_is_aborted_not_promoted(versions: Versions, tmp_path: Path) -> None:
    rollout = versions.rollouts.start(NAME, versions.candidate, mode="canary", percent=50,
                                      guards=Guards(min_requests=5), auto_promote=True)
    ledger = RolloutLedger(tmp_path / "records.sqlite3")
    feed(ledger, rollout.id, "current", versions.current, 5, latency_ms=20.0)
    feed(ledger, rollout.id, "canary", versions.candidate, 5, latency_ms=20.0)
    labels = versions.store.version_dir(NAME, versions.candidate) / "labels.json"
    labels.unlink()
    _, outcome = judge_locally(versions.rollouts, ledger, NAME)
    assert outcome is not None and outcome["outcome"] == "aborted" and "promotion failed" in outcome["reason"]
    assert versions.store.current(NAME) == versions.current


def test_no_rollout_reports_the_last_outcome(versions: Versions) -> None:
    versions.rollouts.start(NAME, versions.candidate, mode="canary", percent=50)
    versions.rollouts.abort(NAME, reason="changed my mind")
    assessment = assess_locally(versions.rollouts, None, NAME)
    assert assessment.rollout is None and assessment.verdict is None
    assert assessment.last_outcome is not None and assessment.last_outcome["reason"] == "changed my mind"


def test_the_ledger_is_the_records_database_unless_records_live_in_dynamodb(tmp_path: Path) -> None:
    assert ledger_path(Settings(model_store=tmp_path)) == tmp_path / "records.sqlite3"
    assert ledger_path(Settings(model_store=tmp_path, records_db=tmp_path / "r.db")) == tmp_path / "r.db"
    assert ledger_path(Settings(model_store=tmp_path, records_table="records")) is None
