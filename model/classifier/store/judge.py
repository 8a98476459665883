"""The rollout judge: a pure function from a rollout and its evidence to a verdict.

The evidence is the same wherever it comes from: a local server's SQLite
ledger (``classifier.records.evidence``) or CloudWatch's metrics in AWS
(``classifier.store.cloudwatch_evidence``). For the current version and the
candidate, each in its role since the rollout started: requests, errors (5xx
and model errors), p50/p95 inference latency; in shadow mode, how many images
both answered and on how many their top-1 agreed.

The verdict is one of:

- ``running``: fewer than ``min_requests`` candidate requests so far, or nothing yet to compare;
- ``breached: <guard>``: a guard failed (``load``: the candidate could not be loaded at all;
  ``max_error_rate``, ``max_latency_ratio``, ``min_agreement``): the rollout is aborted;
- ``ready``: every guard holds: the rollout is promoted if it says ``auto_promote``.

Standard library only: the installer's zip (which also holds the AWS judge) includes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from classifier.store.rollout import CURRENT_ROLE, Rollout

RUNNING, READY, BREACHED = "running", "ready", "breached"
PROMOTE, ABORT = "promote", "abort"


@dataclass(frozen=True)
class RoleEvidence:
    """One version in one role since the rollout started."""

    version: str
    role: str
    requests: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def as_dict(self) -> dict[str, Any]:
        rate = self.error_rate
        return {"version": self.version, "role": self.role, "requests": self.requests, "errors": self.errors,
                "error_rate": None if rate is None else round(rate, 6),
                "p50_ms": _rounded(self.p50_ms), "p95_ms": _rounded(self.p95_ms)}


@dataclass(frozen=True)
class Evidence:
    """What the judge weighs: the current version and the candidate, side by side."""

    current: RoleEvidence
    candidate: RoleEvidence
    # Shadow mode: images both versions answered, and those whose top-1 agreed.
    compared: int = 0
    agreed: int = 0
    # The candidate failed to load (locally: why; in AWS: how many times, the log says why).
    load_failures: int = 0
    load_error: str | None = None
    source: str = ""

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    def as_dict(self) -> dict[str, Any]:
        agreement = self.agreement
        return {"current": self.current.as_dict(), "candidate": self.candidate.as_dict(),
                "agreement": None if agreement is None else round(agreement, 6),
                "compared": self.compared, "agreed": self.agreed,
                "load_failures": self.load_failures, "load_error": self.load_error, "source": self.source}

    @classmethod
    def empty(cls, rollout: Rollout, source: str = "") -> Evidence:
        return cls(RoleEvidence(rollout.current, CURRENT_ROLE), RoleEvidence(rollout.candidate, rollout.candidate_role),
                   source=source)


@dataclass(frozen=True)
class Verdict:
    state: str  # RUNNING, READY or BREACHED
    reason: str
    guard: str | None = None  # the guard breached

    def __str__(self) -> str:
        return f"{BREACHED}: {self.guard}" if self.state == BREACHED else self.state

    def action(self, rollout: Rollout) -> str | None:
        """What to do now: ``abort`` on a breach, ``promote`` when ready and auto-promoting, else nothing."""
        if self.state == BREACHED:
            return ABORT
        if self.state == READY and rollout.auto_promote:
            return PROMOTE
        return None

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": str(self), "state": self.state, "guard": self.guard, "reason": self.reason}


def judge(rollout: Rollout, evidence: Evidence) -> Verdict:
    """The verdict on ``rollout`` given ``evidence``: a pure function, the same locally and in AWS."""
    guards = rollout.guards
    candidate, current = evidence.candidate, evidence.current
    if evidence.load_failures or evidence.load_error:
        why = evidence.load_error or f"{evidence.load_failures} failed loads (see the function's log)"
        return Verdict(BREACHED, f"the candidate {candidate.version} could not be loaded: {why}", "load")
    if candidate.requests < guards.min_requests:
        return Verdict(RUNNING, f"{candidate.requests} of the {guards.min_requests} candidate requests "
                                "the guards need")
    error_rate = candidate.error_rate or 0.0
    if error_rate > guards.max_error_rate:
        return Verdict(BREACHED, f"the candidate's error rate {error_rate:.4f} ({candidate.errors} of "
                                 f"{candidate.requests}) is over {guards.max_error_rate}", "max_error_rate")
    notes = [f"error rate {error_rate:.4f} <= {guards.max_error_rate}"]
    if candidate.p95_ms is None:
        return Verdict(RUNNING, "no candidate latency yet")
    if current.p95_ms is None:
        # A 100% canary leaves the current version no traffic to compare with.
        notes.append("latency not compared: the current version served no request")
    else:
        limit = guards.max_latency_ratio * current.p95_ms
        if candidate.p95_ms > limit:
            return Verdict(BREACHED, f"the candidate's p95 {candidate.p95_ms:.1f} ms is over "
                                     f"{guards.max_latency_ratio} x the current version's {current.p95_ms:.1f} ms",
                           "max_latency_ratio")
        notes.append(f"p95 {candidate.p95_ms:.1f} ms <= {guards.max_latency_ratio} x {current.p95_ms:.1f} ms")
    if rollout.mode == "shadow":
        agreement = evidence.agreement
        if agreement is None:
            return Verdict(RUNNING, "no image answered by both versions yet")
        if agreement < guards.min_agreement:
            return Verdict(BREACHED, f"top-1 agreement {agreement:.4f} ({evidence.agreed} of {evidence.compared} "
                                     f"images) is under {guards.min_agreement}", "min_agreement")
        notes.append(f"agreement {agreement:.4f} >= {guards.min_agreement}")
    return Verdict(READY, f"every guard holds over {candidate.requests} candidate requests: {'; '.join(notes)}")


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
