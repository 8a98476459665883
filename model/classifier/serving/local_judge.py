"""Rollouts on a local store: the evidence from the records database, the judge, and its action.

``rollout status`` and ``rollout judge`` call ``assess_locally``/``judge_locally``, and so does a
running server every ``ROLLOUT_JUDGE_SECONDS``: the same verdicts as the AWS judge
(``classifier.store.rollout_judge``) from the SQLite ledger (``classifier.records.evidence``)
instead of CloudWatch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifier.config import Settings
from classifier.records.evidence import RolloutLedger
from classifier.store.judge import Evidence, Verdict, judge
from classifier.store.rollout import Rollout, RolloutError, RolloutStore

log = logging.getLogger(__name__)


def ledger_path(settings: Settings) -> Path | None:
    """Where a local process keeps rollout evidence: the records' SQLite file; None with DynamoDB
    records (in AWS the CloudWatch metrics are the evidence)."""
    if settings.records_table:
        return None
    from classifier.records import RECORDS_DB_NAME

    return settings.records_db or settings.model_store / RECORDS_DB_NAME


def open_ledger(settings: Settings) -> RolloutLedger | None:
    path = ledger_path(settings)
    return RolloutLedger(path) if path is not None else None


@dataclass(frozen=True)
class Assessment:
    """A rollout, its evidence and the verdict on it (or, with no rollout running, the last outcome)."""

    name: str
    rollout: Rollout | None
    evidence: Evidence | None
    verdict: Verdict | None
    last_outcome: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rollout": self.rollout.as_dict() if self.rollout else None,
            "evidence": self.evidence.as_dict() if self.evidence else None,
            **(self.verdict.as_dict() if self.verdict else {"verdict": None}),
            "last_outcome": self.last_outcome,
        }


def assess_locally(rollouts: RolloutStore, ledger: RolloutLedger | None, name: str) -> Assessment:
    """The running rollout of ``name`` judged on the ledger's evidence, after ``reconcile``."""
    rollouts.reconcile(name)
    rollout = rollouts.get(name)
    ended = rollouts.outcomes(name)
    if rollout is None:
        return Assessment(name, None, None, None, ended[-1] if ended else None)
    evidence = ledger.evidence(rollout) if ledger is not None else Evidence.empty(rollout, "none kept locally")
    return Assessment(name, rollout, evidence, judge(rollout, evidence), ended[-1] if ended else None)


def judge_locally(rollouts: RolloutStore, ledger: RolloutLedger | None, name: str, *,
                  actor: str | None = None) -> tuple[Assessment, dict[str, Any] | None]:
    """Assess the rollout of ``name`` and act on the verdict: abort on a breach, promote when ready
    and ``auto_promote``. Returns the assessment and the outcome, if the rollout ended."""
    assessment = assess_locally(rollouts, ledger, name)
    rollout, verdict, evidence = assessment.rollout, assessment.verdict, assessment.evidence
    if rollout is None or verdict is None or evidence is None:
        return assessment, None
    action = verdict.action(rollout)
    outcome = None
    if action is not None:
        reason = f"judge: {verdict}: {verdict.reason}"
        try:
            if action == "promote":
                try:
                    outcome = rollouts.promote(name, reason=reason, evidence=evidence.as_dict(),
                                               expect_id=rollout.id, actor=actor)
                except RolloutError as exc:  # the candidate broke on disk since it started
                    reason = f"judge: ready, but the promotion failed: {exc}"
                    action = "abort"
            if action == "abort":
                outcome = rollouts.abort(name, reason=reason, evidence=evidence.as_dict(), expect_id=rollout.id,
                                         actor=actor)
        except RolloutError as exc:  # ended meanwhile by someone else
            log.warning("rollout of %s not ended by the judge: %s", name, exc)
    log.info("rollout of %s %s judged %s: %s", name, rollout.candidate, verdict, verdict.reason,
             extra={"rollout_id": rollout.id, "action": action if outcome else None,
                    "evidence": evidence.as_dict()})
    return assessment, outcome
