"""Records in one SQLite file (the laptop, ``make serve``): WAL, a busy timeout, refused on NFS."""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from classifier.errors import InvalidParameter
from classifier.records import Page, top_label
from classifier.records.cursors import Cursors, Filters
from classifier.records.ids import id_bound
from classifier.store.fsio import filesystem_type

RECORDS_DB_NAME = "records.sqlite3"
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    model_version TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_label ON records (label, id);
CREATE INDEX IF NOT EXISTS records_by_model_version ON records (model_version, id);
CREATE INDEX IF NOT EXISTS records_by_label_version ON records (label, model_version, id);
CREATE INDEX IF NOT EXISTS records_by_image ON records (image_sha256);
CREATE TABLE IF NOT EXISTS uploads (digest TEXT PRIMARY KEY, record_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


class SqliteRecordStore:
    """Records in one SQLite file; a connection per thread."""

    def __init__(self, path: Path | str, *, secret: bytes | None = None,
                 mounts: Path = Path("/proc/self/mounts")) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kind = filesystem_type(self.path.parent, mounts)
        if kind in NETWORK_FILESYSTEMS:
            raise RuntimeError(f"{self.path} is on a network file system ({kind}): SQLite's locking is not safe "
                               "there. Set RECORDS_TABLE to keep records in DynamoDB (what the CDK app deploys)")
        self._local = threading.local()
        with self._connection() as db:
            db.executescript(_SCHEMA)
        self.cursors = Cursors(secret or self._stored_secret())

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at each checkpoint, never corrupt
            self._local.db = db
        return db

    def _stored_secret(self) -> bytes:
        """A random signing key kept in the database itself (created once, by whoever comes first)."""
        db = self._connection()
        db.execute("INSERT OR IGNORE INTO settings (name, value) VALUES ('cursor_secret', ?)", (secrets.token_hex(32),))
        (value,) = db.execute("SELECT value FROM settings WHERE name = 'cursor_secret'").fetchone()
        return bytes.fromhex(value)

    def put(self, record: Mapping[str, Any]) -> None:
        self.put_many([record])

    def put_many(self, records: Sequence[Mapping[str, Any]]) -> None:
        rows = [(r["id"], top_label(r), r["model"]["version"], r["image"]["sha256"],
                 json.dumps(r, separators=(",", ":"))) for r in records]
        db = self._connection()
        with _transaction(db):
            db.executemany("INSERT OR REPLACE INTO records (id, label, model_version, image_sha256, body) "
                           "VALUES (?, ?, ?, ?, ?)", rows)

    def get(self, record_id: str) -> dict[str, Any] | None:
        row = self._connection().execute("SELECT body FROM records WHERE id = ?", (record_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def list(self, limit: int = 20, cursor: str | None = None, label: str | None = None,
             model_version: str | None = None, since: datetime | None = None,
             until: datetime | None = None) -> Page:
        filters = Filters(label, model_version, since, until)
        sql, params = self.page_query(limit, cursor, filters)
        rows = self._connection().execute(sql, params).fetchall()
        items = [json.loads(body) for _, body in rows[:limit]]
        next_cursor = self.cursors.make(rows[limit - 1][0], filters) if len(rows) > limit else None
        return Page(items, next_cursor)

    def page_query(self, limit: int, cursor: str | None, filters: Filters) -> tuple[str, Sequence[Any]]:
        """The SQL of one page (limit + 1 rows, to know whether there is a next), and its parameters."""
        where: list[str] = []
        params: list[Any] = []
        if filters.label is not None:
            where.append("label = ?")
            params.append(filters.label)
        if filters.model_version is not None:
            where.append("model_version = ?")
            params.append(filters.model_version)
        if filters.since is not None:
            where.append("id >= ?")
            params.append(id_bound(filters.since))
        if filters.until is not None:
            where.append("id < ?")
            params.append(id_bound(filters.until))
        if cursor is not None:
            last = self.cursors.read(cursor, filters)
            if not isinstance(last, str):
                raise InvalidParameter("cursor: not a cursor returned by this API")
            where.append("id < ?")
            params.append(last)
        # Only the fixed conditions above are joined; every value is a bound parameter.
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return f"SELECT id, body FROM records{clause} ORDER BY id DESC LIMIT ?", [*params, limit + 1]  # noqa: S608

    def claim_upload(self, digest: str, record_id: str) -> str:
        db = self._connection()
        db.execute("INSERT OR IGNORE INTO uploads (digest, record_id) VALUES (?, ?)", (digest, record_id))
        winner = self.upload_record(digest)
        assert winner is not None
        return winner

    def upload_record(self, digest: str) -> str | None:
        row = self._connection().execute("SELECT record_id FROM uploads WHERE digest = ?", (digest,)).fetchone()
        return str(row[0]) if row else None

    def has_image(self, sha256: str) -> bool:
        sql = "SELECT 1 FROM records WHERE image_sha256 = ? LIMIT 1"
        return self._connection().execute(sql, (sha256,)).fetchone() is not None


class _transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
