"""A live rollout in the model store: a candidate version earning its traffic beside the current one.

::

    <root>/models/<name>/ROLLOUT          the running rollout (JSON), if any: one per model
    <root>/models/<name>/rollouts.jsonl   every rollout that ended: promoted or aborted, why, the evidence

``ROLLOUT`` is written as ``CURRENT`` is (write-temp + fsync + rename), so a
server reading it never sees half of one. Its fields: ``id``, ``name``,
``candidate`` (the version on trial), ``current`` (the version current when it
started: what the candidate is compared with), ``mode`` (``canary``: PCT% of
requests are answered by the candidate; ``shadow``: PCT% also run on it, the
answer stays the current one's), ``percent`` (1..100), ``started_at``,
``guards`` (``Guards``) and ``auto_promote``.

Starting, promoting and aborting take a POSIX lock on the model's
``.rollout.lock`` (NFS, and so EFS, honours it), so a server's judge, the CLI
and the installer never end one rollout twice or start two. A rollout ends in
this order: CURRENT (on a promotion), then the outcome line, then ``ROLLOUT``
is removed; ``reconcile`` finishes the job of a process that died in between,
and ends a rollout whose ``current`` was replaced by someone else (a publish,
a promote or a rollback while it ran).

Which requests go to the candidate is ``routes_to_candidate``: a stable hash
of the rollout id and the request id, so a retry (the same ``X-Request-Id``)
goes the same way.

Standard library only: the installer's zip holds this module.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import secrets
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from classifier.store.fsio import fsync_dir, write_atomic
from classifier.store.layout import ModelStore
from classifier.store.manifest import IntegrityError, ModelNotFound, StoreError, check_name, check_version

ROLLOUT = "ROLLOUT"
ROLLOUTS_LOG = "rollouts.jsonl"
MODES = ("canary", "shadow")
# The role a version plays in a request: the current model answering, the candidate answering
# (canary), or the candidate running beside the current model's answer (shadow).
CURRENT_ROLE, CANARY_ROLE, SHADOW_ROLE = "current", "canary", "shadow"
ROLES = (CURRENT_ROLE, CANARY_ROLE, SHADOW_ROLE)
PROMOTED, ABORTED = "promoted", "aborted"
_LOCK = ".rollout.lock"
# POSIX locks exclude other processes, not other threads of this one.
_THREAD_LOCK = threading.Lock()


class RolloutError(StoreError):
    """A rollout request the store refuses; the message says why and what to do."""


@dataclass(frozen=True)
class Guards:
    """The rules a candidate must hold once ``min_requests`` of its requests are in.

    ``max_error_rate``: its share of requests that failed (5xx, model errors);
    ``max_latency_ratio``: its p95 inference latency over the current version's;
    ``min_agreement``: (shadow) the share of images whose top-1 it agrees on with the current version.
    """

    min_requests: int = 100
    max_error_rate: float = 0.01
    max_latency_ratio: float = 1.5
    min_agreement: float = 0.9

    def __post_init__(self) -> None:
        checks = (
            ("min_requests", isinstance(self.min_requests, int) and 1 <= self.min_requests <= 10**9, "1..10^9"),
            ("max_error_rate", _number_in(self.max_error_rate, 0.0, 1.0), "0..1"),
            ("max_latency_ratio", _number_in(self.max_latency_ratio, 0.1, 100.0), "0.1..100"),
            ("min_agreement", _number_in(self.min_agreement, 0.0, 1.0), "0..1"),
        )
        for guard, ok, bounds in checks:
            if not ok:
                raise RolloutError(f"guard {guard} must be in {bounds}, got {getattr(self, guard)!r}")

    @classmethod
    def from_dict(cls, raw: object) -> Guards:
        if not isinstance(raw, Mapping):
            raise RolloutError(f"guards must be an object, got {raw!r}")
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise RolloutError(f"unknown guards: {', '.join(sorted(unknown))}")
        return cls(**raw)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number_in(value: object, lo: float, hi: float) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            and lo <= value <= hi)


@dataclass(frozen=True)
class Rollout:
    """The running rollout of one model, as ``ROLLOUT`` holds it."""

    name: str
    candidate: str
    current: str
    mode: str
    percent: int
    started_at: str
    guards: Guards = field(default_factory=Guards)
    auto_promote: bool = False
    id: str = field(default_factory=lambda: secrets.token_hex(8))

    def __post_init__(self) -> None:
        check_name(self.name)
        check_version(self.candidate)
        check_version(self.current)
        if self.mode not in MODES:
            raise RolloutError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not isinstance(self.percent, int) or isinstance(self.percent, bool) or not 1 <= self.percent <= 100:
            raise RolloutError(f"percent must be an integer in 1..100, got {self.percent!r}")
        if not isinstance(self.auto_promote, bool):
            raise RolloutError(f"auto_promote must be true or false, got {self.auto_promote!r}")
        if not isinstance(self.id, str) or not 1 <= len(self.id) <= 64 or not self.id.isalnum():
            raise RolloutError(f"invalid rollout id {self.id!r}")
        parse_time(self.started_at)

    @property
    def candidate_role(self) -> str:
        """The role the candidate's requests carry: ``canary`` or ``shadow``."""
        return CANARY_ROLE if self.mode == "canary" else SHADOW_ROLE

    @classmethod
    def from_dict(cls, raw: object) -> Rollout:
        """A rollout from its JSON form; ``RolloutError`` for anything malformed."""
        if not isinstance(raw, Mapping):
            raise RolloutError("a rollout must be a JSON object")
        fields = set(cls.__dataclass_fields__)
        unknown = set(raw) - fields
        if unknown:
            raise RolloutError(f"unknown rollout fields: {', '.join(sorted(unknown))}")
        missing = {"name", "candidate", "current", "mode", "percent", "started_at"} - set(raw)
        if missing:
            raise RolloutError(f"a rollout needs {', '.join(sorted(missing))}")
        values = dict(raw)
        values["guards"] = Guards.from_dict(values.get("guards", {}))
        try:
            return cls(**values)
        except StoreError as exc:
            raise RolloutError(str(exc)) from None
        except TypeError as exc:
            raise RolloutError(f"invalid rollout: {exc}") from None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "candidate": self.candidate, "current": self.current,
                "mode": self.mode, "percent": self.percent, "started_at": self.started_at,
                "guards": self.guards.as_dict(), "auto_promote": self.auto_promote}


def routes_to_candidate(rollout: Rollout, request_id: str) -> bool:
    """Whether this request goes to the candidate: ``percent``% of request ids, always the same ones.

    The hash covers the rollout's id too, so each rollout draws its own slice of
    traffic rather than the same unlucky clients every time.
    """
    digest = hashlib.sha256(f"{rollout.id}\0{request_id}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    return draw * 100 < rollout.percent


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: object) -> datetime:
    """``yyyy-mm-ddThh:mm:ssZ`` (what ``started_at`` holds) as an aware UTC datetime."""
    if not isinstance(text, str):
        raise RolloutError(f"expected a UTC time yyyy-mm-ddThh:mm:ssZ, got {text!r}")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise RolloutError(f"expected a UTC time yyyy-mm-ddThh:mm:ssZ, got {text!r}") from None


class RolloutStore:
    """The rollouts of a ``ModelStore``: the running one of each model, and the log of those that ended."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store

    def path(self, name: str) -> Path:
        return self.store.model_dir(name) / ROLLOUT

    def log_path(self, name: str) -> Path:
        return self.store.model_dir(name) / ROLLOUTS_LOG

    # -- reading -----------------------------------------------------------
    def get(self, name: str) -> Rollout | None:
        """The running rollout of ``name``, or None."""
        try:
            raw = self.path(name).read_bytes()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise IntegrityError(f"{name}/{ROLLOUT} is not valid JSON ({exc})") from None
        try:
            return Rollout.from_dict(data)
        except RolloutError as exc:
            raise IntegrityError(f"{name}/{ROLLOUT}: {exc}") from None

    def outcomes(self, name: str) -> list[dict[str, Any]]:
        """Every ended rollout of ``name``, oldest first."""
        try:
            text = self.log_path(name).read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    # -- writing -----------------------------------------------------------
    def start(self, name: str, candidate: str, *, mode: str, percent: int, guards: Guards | None = None,
              auto_promote: bool = False, started_at: str | None = None, rollout_id: str | None = None) -> Rollout:
        """Start a rollout of ``candidate``; ``RolloutError`` (nothing written) when it cannot run.

        Refused: another rollout of ``name`` running, no current version, a candidate that is
        not installed, not intact (sizes and sha256 against its manifest), already current, or
        whose labels differ from the current version's (shadow agreement would be meaningless,
        and canary answers would change shape). ``rollout_id`` names it (default: a new random id).
        """
        check_version(candidate)
        with self._locked(name):
            running = self.get(name)
            if running is not None:
                raise RolloutError(f"a rollout of {name} {running.candidate} is running (since "
                                   f"{running.started_at}): promote or abort it first")
            current = self.store.current(name)
            if current is None:
                raise RolloutError(f"model {name} has no current version to roll out beside: publish one first")
            if candidate not in self.store.versions(name):
                raise RolloutError(f"{name} {candidate} is not installed: publish it with --no-activate first")
            if candidate == current:
                raise RolloutError(f"{name} {candidate} is already current: nothing to roll out")
            try:
                self.store.verify(name, candidate)
            except StoreError as exc:
                raise RolloutError(f"{name} {candidate} cannot be rolled out: {exc}") from None
            if _labels(self.store, name, candidate) != _labels(self.store, name, current):
                raise RolloutError(f"{name} {candidate} has another label set than the current version {current}: "
                                   "a rollout compares the same classes (promote it instead)")
            rollout = Rollout(name=name, candidate=candidate, current=current, mode=mode, percent=percent,
                              started_at=started_at or utc_now(), guards=guards or Guards(),
                              auto_promote=auto_promote, **({"id": rollout_id} if rollout_id else {}))
            write_atomic(self.path(name), json.dumps(rollout.as_dict(), indent=1).encode() + b"\n")
            return rollout

    def promote(self, name: str, *, reason: str, evidence: Mapping[str, Any] | None = None,
                expect_id: str | None = None, actor: str | None = None) -> dict[str, Any]:
        """Make the candidate current and end the rollout; return the outcome written to the log."""
        with self._locked(name):
            rollout = self._running(name, expect_id)
            try:
                self.store.set_current(name, rollout.candidate, reason="rollout", actor=actor)
            except StoreError as exc:
                raise RolloutError(f"{name} {rollout.candidate} cannot become current: {exc}; "
                                   "abort the rollout") from None
            return self._end(rollout, PROMOTED, reason, evidence, actor)

    def abort(self, name: str, *, reason: str, evidence: Mapping[str, Any] | None = None,
              expect_id: str | None = None, actor: str | None = None) -> dict[str, Any]:
        """End the rollout, CURRENT unchanged; return the outcome written to the log."""
        with self._locked(name):
            return self._end(self._running(name, expect_id), ABORTED, reason, evidence, actor)

    def reconcile(self, name: str) -> dict[str, Any] | None:
        """End a rollout whose baseline is no longer current; return its outcome, or None if none ended.

        CURRENT naming the candidate means it was promoted (by a promotion that died before
        the rollout ended, or by ``promote``); any other version means the rollout was overtaken
        (``publish``, ``rollback``) and its comparison no longer holds: it is aborted.
        """
        rollout = self.get(name)
        if rollout is None:
            return None
        with self._locked(name):
            rollout = self.get(name)
            if rollout is None:
                return None
            current = self.store.current(name)
            if current == rollout.current:
                return None
            if current == rollout.candidate:
                return self._end(rollout, PROMOTED, "CURRENT was switched to the candidate", None, None)
            return self._end(rollout, ABORTED, f"superseded: CURRENT was switched to {current} while it ran",
                             None, None)

    def apply(self, name: str, request: Mapping[str, Any], *, actor: str | None = None) -> dict[str, Any]:
        """Carry out a rollout request from the S3 inbox (``classifier.store.inbox``); return what happened.

        ``{"action": "start", "id", "candidate", "mode", "percent", "guards", "auto_promote"}``,
        ``{"action": "promote"|"abort", "id", "reason", "evidence"}`` (``id``: the rollout meant, so
        a late or repeated request never ends the next one) or ``{"action": "sync"}`` (nothing to do:
        the caller rewrites the state mirror). Events may arrive twice: a start whose id is running,
        or an end whose id already ended, is done already, not refused. ``RolloutError`` otherwise.
        """
        action = request.get("action")
        rollout_id = request.get("id")
        if action == "sync":
            return {"status": "synced", "name": name}
        if action not in ("start", "promote", "abort"):
            raise RolloutError(f"unknown rollout action {action!r}: start, promote, abort or sync")
        if rollout_id is not None and (not isinstance(rollout_id, str) or not rollout_id.isalnum()):
            raise RolloutError(f"invalid rollout id {rollout_id!r}")
        if action == "start":
            running = self.get(name)
            if running is not None and rollout_id is not None and running.id == rollout_id:
                return {"status": "already-started", "name": name, "rollout": running.as_dict()}
            unknown = set(request) - {"action", "id", "candidate", "mode", "percent", "guards", "auto_promote"}
            if unknown:
                raise RolloutError(f"unknown fields in a start request: {', '.join(sorted(unknown))}")
            candidate = request.get("candidate")
            if not isinstance(candidate, str):
                raise RolloutError("a start request names its candidate version")
            guards = Guards.from_dict(request.get("guards", {}))
            percent: int = request.get("percent", 0)
            started = self.start(name, candidate, mode=str(request.get("mode")), percent=percent, guards=guards,
                                 auto_promote=request.get("auto_promote", False), rollout_id=rollout_id)
            return {"status": "started", "name": name, "rollout": started.as_dict()}
        if rollout_id is not None and any(e.get("id") == rollout_id for e in self.outcomes(name)):
            return {"status": "already-ended", "name": name, "id": rollout_id}
        reason = request.get("reason") or f"{action} requested"
        evidence = request.get("evidence")
        if not isinstance(reason, str) or (evidence is not None and not isinstance(evidence, Mapping)):
            raise RolloutError("a promote or abort request's reason is text and its evidence an object")
        end = self.promote if action == "promote" else self.abort
        outcome = end(name, reason=reason, evidence=evidence, expect_id=rollout_id, actor=actor)
        return {"status": outcome["outcome"], "name": name, "outcome": outcome}

    def state(self, name: str) -> dict[str, Any]:
        """The model's rollout state as the S3 mirror holds it: the running rollout and the last outcome."""
        rollout = self.get(name)
        ended = self.outcomes(name)
        return {"name": name, "current": self.store.current(name),
                "rollout": rollout.as_dict() if rollout else None,
                "last_outcome": ended[-1] if ended else None, "updated_at": utc_now()}

    # -- internals ---------------------------------------------------------
    def _running(self, name: str, expect_id: str | None) -> Rollout:
        rollout = self.get(name)
        if rollout is None:
            raise RolloutError(f"no rollout of {name} is running")
        if expect_id is not None and rollout.id != expect_id:
            raise RolloutError(f"the rollout of {name} is now {rollout.id} ({rollout.candidate}), "
                               f"not {expect_id}: nothing done")
        return rollout

    def _end(self, rollout: Rollout, outcome: str, reason: str, evidence: Mapping[str, Any] | None,
             actor: str | None) -> dict[str, Any]:
        entry = {**rollout.as_dict(), "ended_at": utc_now(), "outcome": outcome, "reason": reason,
                 "evidence": dict(evidence) if evidence is not None else None, "actor": actor or _default_actor()}
        log_path = self.log_path(rollout.name)
        ended = self.outcomes(rollout.name)
        # A process that died after the line and before the removal: write the line once.
        if not any(e.get("id") == rollout.id for e in ended):
            lines = [json.dumps(e, separators=(",", ":")) for e in [*ended, entry]]
            write_atomic(log_path, "\n".join(lines).encode() + b"\n")
        with suppress(FileNotFoundError):
            os.unlink(self.path(rollout.name))
        fsync_dir(log_path.parent)
        return entry

    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        model_dir = self.store.model_dir(name)
        if not model_dir.is_dir():
            raise ModelNotFound(f"model {name} is not in the store")
        with _THREAD_LOCK, open(model_dir / _LOCK, "a") as lock:
            fcntl.lockf(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(lock, fcntl.LOCK_UN)


def _labels(store: ModelStore, name: str, version: str) -> list[str]:
    path = store.version_dir(name, version) / "labels.json"
    try:
        labels = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise RolloutError(f"{name} {version}: labels.json cannot be read ({exc})") from None
    if not isinstance(labels, list):
        raise RolloutError(f"{name} {version}: labels.json is not a list")
    return labels


def _default_actor() -> str:
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"
