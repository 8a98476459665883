"""Classification records: one JSON file each, under ``<root>/records``.

``<root>/records/<yyyy>/<mm>/<dd>/<id>.json``. Every record is written by
write-temp + fsync + rename, so any number of concurrent writers (Lambda
instances sharing EFS) never lose or corrupt one: there is no shared file to
append to and no database file on NFS. Ids sort by creation time, which makes
"newest first" a reverse walk of the directory tree.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from classifier.fsio import write_atomic

log = logging.getLogger(__name__)

RECORD_ID_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})T\d{12}Z-[0-9a-f]{12}$")
_DIGITS = re.compile(r"^\d+$")


def record_id(at: datetime, suffix: str) -> str:
    """``<yyyymmddThhmmss><microseconds>Z-<12 hex>``: ids sort by time; ``suffix`` makes them unique."""
    return f"{at.astimezone(UTC):%Y%m%dT%H%M%S%f}Z-{suffix[:12]}"


def new_record_id(now: datetime | None = None) -> str:
    """A new, unique, time-ordered record id."""
    return record_id(now or datetime.now(UTC), secrets.token_hex(6))


def is_record_id(value: str) -> bool:
    return RECORD_ID_RE.fullmatch(value) is not None


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


class RecordStore:
    def __init__(self, root: Path | str) -> None:
        self.dir = Path(root) / "records"

    def path_for(self, record_id: str) -> Path:
        match = RECORD_ID_RE.fullmatch(record_id)
        if match is None:
            raise ValueError(f"invalid record id {record_id!r}")
        yyyy, mm, dd = match.groups()
        return self.dir / yyyy / mm / dd / f"{record_id}.json"

    def put(self, record: dict[str, Any]) -> None:
        path = self.path_for(record["id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(record, separators=(",", ":")).encode())

    def get(self, record_id: str) -> dict[str, Any] | None:
        if not is_record_id(record_id):
            return None
        try:
            record: dict[str, Any] = json.loads(self.path_for(record_id).read_bytes())
            return record
        except FileNotFoundError:
            return None

    def exists(self, record_id: str) -> bool:
        return is_record_id(record_id) and self.path_for(record_id).exists()

    def list(self, limit: int = 20, cursor: str | None = None) -> Page:
        """Records newest first; ``cursor`` is the id of the last record already seen."""
        items: list[dict[str, Any]] = []
        for record_id in self._ids_newest_first(cursor):
            try:
                items.append(json.loads(self.path_for(record_id).read_bytes()))
            except (FileNotFoundError, ValueError):  # deleted by an operator meanwhile
                log.warning("skipping unreadable record %s", record_id)
                continue
            if len(items) == limit + 1:
                break
        if len(items) > limit:
            return Page(items[:limit], items[limit - 1]["id"])
        return Page(items, None)

    def _ids_newest_first(self, cursor: str | None) -> Iterator[str]:
        bound = None
        if cursor is not None:
            match = RECORD_ID_RE.fullmatch(cursor)
            if match is None:
                raise ValueError(f"invalid cursor {cursor!r}")
            bound = match.groups()  # (yyyy, mm, dd) of the cursor
        for yyyy in _subdirs(self.dir):
            if bound and yyyy > bound[0]:
                continue
            for mm in _subdirs(self.dir / yyyy):
                if bound and (yyyy, mm) > bound[:2]:
                    continue
                for dd in _subdirs(self.dir / yyyy / mm):
                    if bound and (yyyy, mm, dd) > bound:
                        continue
                    day = self.dir / yyyy / mm / dd
                    ids = sorted(
                        (n[:-5] for n in _listdir(day) if n.endswith(".json") and not n.startswith(".")),
                        reverse=True,
                    )
                    for record_id in ids:
                        if cursor is not None and record_id >= cursor:
                            continue
                        if is_record_id(record_id):
                            yield record_id


def _listdir(path: Path) -> list[str]:
    try:
        return [p.name for p in path.iterdir()]
    except FileNotFoundError:
        return []


def _subdirs(path: Path) -> list[str]:
    """Numeric subdirectory names, newest first."""
    return sorted((n for n in _listdir(path) if _DIGITS.fullmatch(n)), reverse=True)
