"""A model name's rollout as one process serves it: the candidate loaded beside the current version,
which requests it answers (canary) or shadows, the evidence they leave, and the periodic judge.

The model's slot (``classifier.serving.manager.ModelManager``) owns one ``RolloutSlot``
and calls it under its own lock each time it re-reads ``CURRENT``
(``MODEL_REFRESH_SECONDS``):

- ``judge_if_due``: every ``ROLLOUT_JUDGE_SECONDS`` (0: never), the local judge
  (``classifier.serving.local_judge``) weighs the evidence and aborts or promotes;
- ``refresh``: reads ``ROLLOUT``; a rollout beside the version this process serves gets
  its candidate loaded (verified as any version is), while requests go on being served;
  a rollout that ended, or whose baseline is not what this process serves, drops it.

A candidate that cannot be loaded never fails a request: every request stays on the
current version. The slot says why in ``GET /model``, in its log and in the
``CandidateLoadFailures`` metric, and, where it may write the store (a local server,
``ROLLOUT_JUDGE_SECONDS`` > 0), aborts the rollout with that reason. In Lambda the
store is read-only to the function: the AWS judge sees the metric and aborts it
through the installer.

Routing is ``classifier.store.rollout.routes_to_candidate`` on the request's routing
key (the client's ``X-Request-Id`` when it sends one), so a retry goes the same way.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from classifier.config import Settings
from classifier.observability import metrics
from classifier.store.layout import ModelStore
from classifier.store.manifest import StoreError
from classifier.store.rollout import CURRENT_ROLE, Rollout, RolloutStore, routes_to_candidate

if TYPE_CHECKING:
    from classifier.records.evidence import RolloutLedger
    from classifier.serving.manager import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """Where one request goes: the model that answers it, in which role, and (shadow) the candidate
    that runs after the answer."""

    model: LoadedModel
    role: str = CURRENT_ROLE
    rollout: Rollout | None = None
    shadow: LoadedModel | None = None
    # The rollout's slot, which keeps the request's evidence.
    slot: RolloutSlot | None = None

    def summary(self) -> dict[str, Any]:
        """The response's ``model``: the version that answered, and its role while a rollout runs."""
        summary = self.model.summary()
        if self.rollout is not None:
            summary["role"] = self.role
        return summary


class RolloutSlot:
    """The running rollout of one model name, in this process."""

    def __init__(self, name: str, store: ModelStore, settings: Settings, load: Callable[[str], LoadedModel]) -> None:
        self.name = name
        self.settings = settings
        self.rollouts = RolloutStore(store)
        self._load = load
        # What requests see, replaced whole (one assignment) so a request reads a consistent pair.
        self._serving: tuple[Rollout, LoadedModel] | None = None
        self.rollout: Rollout | None = None  # the rollout seen at the last refresh
        self.problem: str | None = None  # why its candidate is not serving
        self._failed_id: str | None = None
        self._next_judge = 0.0
        self._ledger: RolloutLedger | None = None
        self._ledger_opened = False

    # -- per request -------------------------------------------------------
    def route(self, current: LoadedModel, routing_key: str | None) -> Route:
        """Where a request with this routing key goes (no key: the current version, outside the rollout)."""
        serving = self._serving
        if serving is None or routing_key is None:
            return Route(current)
        rollout, candidate = serving
        if rollout.current != current.version:
            return Route(current)
        chosen = routes_to_candidate(rollout, routing_key)
        if rollout.mode == "canary":
            if chosen:
                return Route(candidate, rollout.candidate_role, rollout, slot=self)
            return Route(current, rollout=rollout, slot=self)
        return Route(current, rollout=rollout, shadow=candidate if chosen else None, slot=self)

    def record(self, route: Route, *, role: str, version: str, ok: bool, latency_ms: float | None,
               compared: int = 0, agreed: int = 0) -> None:
        """One request's evidence in the ledger, if this process keeps one; never fails the request."""
        ledger = self.ledger()
        if route.rollout is None or ledger is None:
            return
        try:
            ledger.record(route.rollout.id, role=role, version=version, ok=ok, latency_ms=latency_ms,
                          compared=compared, agreed=agreed)
        except Exception:  # the answer matters more than its evidence
            log.exception("rollout evidence not recorded", extra={"rollout_id": route.rollout.id})

    # -- per refresh (under the slot's lock) -------------------------------
    @property
    def judging(self) -> bool:
        return self.settings.rollout_judge_seconds > 0

    def judge_if_due(self, now: float) -> None:
        """Judge the rollout every ``ROLLOUT_JUDGE_SECONDS``: abort on a breach, promote if ready and asked to."""
        if not self.judging or now < self._next_judge:
            return
        self._next_judge = now + self.settings.rollout_judge_seconds
        from classifier.serving.local_judge import judge_locally

        try:
            if self.rollouts.store.model_dir(self.name).is_dir():
                judge_locally(self.rollouts, self.ledger(), self.name, actor=_actor())
        except (StoreError, OSError) as exc:
            log.error("the rollout of %s could not be judged: %s", self.name, exc)

    def refresh(self, current: LoadedModel | None) -> None:
        """Follow ``ROLLOUT``: load a new rollout's candidate, drop an ended one's."""
        try:
            rollout = self.rollouts.get(self.name)
        except (StoreError, OSError) as exc:
            log.error("cannot read the rollout of %s: %s", self.name, exc)
            rollout = None
        self.rollout = rollout
        serving = self._serving
        if rollout is None or current is None or rollout.current != current.version:
            if serving is not None:
                log.info("rollout candidate dropped", extra={"model_name": self.name,
                                                             "model_version": serving[1].version})
            self._serving = None
            self.problem = None if rollout is None else (
                f"the rollout compares with {rollout.current}; this process serves "
                f"{current.version if current else 'nothing'}")
            return
        if serving is not None and serving[0].id == rollout.id:
            return
        if self._failed_id == rollout.id:
            return  # reported and (where this process may) aborted: the next rollout gets a new try
        try:
            candidate = self._load(rollout.candidate)
        except Exception as exc:  # a broken candidate must never take the service down
            self._candidate_failed(rollout, exc)
            return
        self._serving = (rollout, candidate)
        self.problem = None
        log.info("rollout candidate loaded", extra={
            "model_name": self.name, "model_version": rollout.candidate, "rollout_id": rollout.id,
            "mode": rollout.mode, "percent": rollout.percent, "load_ms": round(candidate.load_ms, 1)})

    def adopt(self, version: str) -> LoadedModel | None:
        """The loaded candidate, if ``version`` is it (a promotion): the slot serves it without a reload."""
        serving = self._serving
        if serving is not None and serving[1].version == version:
            self._serving = None
            return serving[1]
        return None

    def unload(self) -> None:
        """Let go of the candidate (the memory bound unloads the slot): the next refresh loads it again."""
        if self._serving is not None:
            log.info("rollout candidate unloaded", extra={"model_name": self.name, "reason": "memory bound",
                                                          "model_version": self._serving[1].version})
        self._serving = None

    @property
    def candidate(self) -> LoadedModel | None:
        serving = self._serving
        return serving[1] if serving else None

    def ledger(self) -> RolloutLedger | None:
        """This process's evidence ledger (the records' SQLite file); None where records are in DynamoDB."""
        if not self._ledger_opened:
            self._ledger_opened = True
            from classifier.serving.local_judge import open_ledger

            try:
                self._ledger = open_ledger(self.settings)
            except (OSError, RuntimeError) as exc:
                log.warning("no rollout evidence kept in this process: %s", exc)
        return self._ledger

    def describe(self) -> dict[str, Any] | None:
        """``GET /model``'s ``rollout``: the running rollout, its candidate's state, and (where this process
        keeps evidence) the evidence and the verdict so far."""
        rollout = self.rollout
        if rollout is None:
            return None
        candidate = self.candidate
        state: dict[str, Any] = {
            **rollout.as_dict(),
            "candidate_state": "loaded" if candidate is not None else "not loaded",
            "problem": self.problem,
        }
        ledger = self.ledger()
        if ledger is not None:
            try:
                evidence = ledger.evidence(rollout)
            except Exception as exc:
                log.warning("rollout evidence unreadable: %s", exc)
            else:
                from classifier.store.judge import judge  # imported where used: off the cold start's path

                verdict = judge(rollout, evidence)
                state.update(evidence=evidence.as_dict(), verdict=str(verdict), reason=verdict.reason)
        return state

    def _candidate_failed(self, rollout: Rollout, exc: Exception) -> None:
        reason = f"the candidate {rollout.candidate} could not be loaded: {exc}"
        self._failed_id = rollout.id
        self._serving = None
        self.problem = reason
        log.error(reason, extra={"model_name": self.name, "model_version": rollout.candidate,
                                 "rollout_id": rollout.id})
        metrics.record_candidate_load_failure(rollout.candidate)
        if not self.judging:
            return  # read-only here (Lambda): the AWS judge aborts it on the metric
        from classifier.store.judge import Evidence  # imported where used: off the cold start's path

        evidence = replace(Evidence.empty(rollout, "this server"), load_failures=1, load_error=str(exc))
        try:
            self.rollouts.abort(self.name, reason=reason, evidence=evidence.as_dict(), expect_id=rollout.id,
                                actor=_actor())
        except (StoreError, OSError) as abort_error:
            log.error("the rollout could not be aborted: %s", abort_error, extra={"rollout_id": rollout.id})


def _actor() -> str:
    return f"server {socket.gethostname()} pid {os.getpid()}"

