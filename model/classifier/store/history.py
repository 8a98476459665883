"""The history of ``CURRENT``: every switch of a model's active version, who made it, when and why.

``models/<name>/history.jsonl`` holds one JSON object a line, oldest first::

    {"n": 7, "at": "2026-12-01T10:00:00Z", "actor": "alice@laptop", "reason": "promote",
     "from": "20261130T...", "to": "20261201T..."}

``from`` is null for a model's first version; a ``rollback`` entry carries
``undoes``, the ``n`` of the switch it reverted. The file is replaced whole
(write-temp + fsync + rename, as ``CURRENT`` is), never appended to in place:
an append is not atomic on NFS (EFS), and a reader must never see half a line.
It keeps the last ``MAX_ENTRIES`` switches.

``rollback`` is undo: it reverts the latest switch that no rollback has reverted
yet (``undo_target``), so a second rollback goes one step further back rather
than forth again. Every switch goes through ``ModelStore.set_current``
(``classifier.store.layout``), which writes this file; this module only reads,
writes and interprets it. Standard library only: the installer's zip holds it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from classifier.store.fsio import write_atomic
from classifier.store.manifest import VERSION_RE, IntegrityError, ModelNotFound

HISTORY = "history.jsonl"
# Switches are rare (a publish, a promotion); a thousand is years of them, and the file stays
# small enough to rewrite whole on each one.
MAX_ENTRIES = 1000
# Why CURRENT moved: publish, promote, rollback, quantize, and whatever later commands add.
REASON_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
ROLLBACK = "rollback"
_MAX_ACTOR = 200


@dataclass(frozen=True)
class Switch:
    """One change of ``CURRENT``: ``previous`` -> ``version``."""

    n: int
    at: str
    actor: str
    reason: str
    previous: str | None
    version: str
    undoes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"n": self.n, "at": self.at, "actor": self.actor, "reason": self.reason,
                                 "from": self.previous, "to": self.version}
        if self.undoes is not None:
            entry["undoes"] = self.undoes
        return entry

    @classmethod
    def from_dict(cls, entry: Any) -> Switch:
        """An entry read back; anything that is not one is an ``IntegrityError``."""
        if not isinstance(entry, dict):
            raise ValueError("not a JSON object")
        n, undoes, previous, version = entry.get("n"), entry.get("undoes"), entry.get("from"), entry.get("to")
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"'n' is {n!r}, not a positive integer")
        if undoes is not None and (not isinstance(undoes, int) or isinstance(undoes, bool)):
            raise ValueError(f"'undoes' is {undoes!r}, not an integer")
        if not (isinstance(version, str) and VERSION_RE.fullmatch(version)):
            raise ValueError(f"'to' is {version!r}, not a version id")
        if previous is not None and not (isinstance(previous, str) and VERSION_RE.fullmatch(previous)):
            raise ValueError(f"'from' is {previous!r}, not a version id")
        at, actor, reason = entry.get("at"), entry.get("actor"), entry.get("reason")
        if not all(isinstance(v, str) for v in (at, actor, reason)):
            raise ValueError("'at', 'actor' and 'reason' must be text")
        return cls(n, str(at), str(actor), str(reason), previous, version, undoes)


def read_history(path: Path) -> list[Switch]:
    """The switches recorded in ``path``, oldest first (none when it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    switches = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            switches.append(Switch.from_dict(json.loads(line)))
        except ValueError as exc:
            raise IntegrityError(f"{path}: line {number} is not a switch of CURRENT ({exc})") from None
    return switches


def write_history(path: Path, switches: Sequence[Switch]) -> None:
    """Replace ``path`` with ``switches`` (the last ``MAX_ENTRIES``), atomically."""
    lines = [json.dumps(s.as_dict(), separators=(",", ":")) for s in switches[-MAX_ENTRIES:]]
    write_atomic(path, ("\n".join(lines) + "\n").encode())


def new_switch(history: Sequence[Switch], *, previous: str | None, version: str, reason: str,
               actor: str | None, undoes: int | None = None, now: datetime | None = None) -> Switch:
    """The entry that records ``previous`` -> ``version``, numbered after ``history``."""
    check_reason(reason)
    who = " ".join((actor or local_actor()).split())[:_MAX_ACTOR] or "unknown"
    when = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Switch(history[-1].n + 1 if history else 1, when, who, reason, previous, version, undoes)


def check_reason(reason: str) -> str:
    """``reason`` if it is a word a switch may be recorded with (a programming error otherwise)."""
    if not REASON_RE.fullmatch(reason):
        raise ValueError(f"invalid reason {reason!r}: 1-32 lowercase letters, digits or '-'")
    return reason


def undo_target(history: Sequence[Switch], current: str, name: str) -> tuple[str, int | None]:
    """Where ``rollback`` goes from ``current``, and the ``n`` of the switch it undoes.

    The switches other than rollbacks, less those a rollback undid, form a stack;
    rollback reverts its top, so repeated rollbacks walk back through what served, one
    switch at a time, and never forth again. When the top did not make ``current``
    current (``rollback --to`` chose another version, or ``CURRENT`` was written by
    hand, or by a switch interrupted between its two writes), the version the top made
    current is what served before: rollback returns to it and undoes no recorded switch.
    """
    stack: list[Switch] = []
    for switch in history:
        if switch.reason == ROLLBACK:  # a rollback is never itself undone; it removes what it undid
            stack = [s for s in stack if s.n != switch.undoes]
        else:
            stack.append(switch)
    if not stack:
        raise ModelNotFound(
            f"model {name}: no switch of CURRENT is recorded that a rollback could undo (the store predates "
            "its history, or every switch was already rolled back): pass --to VERSION (`models` lists them)")
    top = stack[-1]
    if top.version != current:
        return top.version, None
    if top.previous is None:
        raise ModelNotFound(f"model {name}: {current} is the first version that served; nothing served before "
                            "it (pass --to VERSION to choose one)")
    return top.previous, top.n


def local_actor() -> str:
    """Who is switching, as ``user@host``: the person at a laptop, or the account a job runs as."""
    import getpass  # imported where used: off the cold start's path (docs/performance.md)
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"
