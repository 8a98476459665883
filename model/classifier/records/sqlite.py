"""Records in one SQLite file (the laptop, ``make serve``): WAL, a busy timeout, refused on NFS.

Opening is serialised across processes by a lock file beside the database: switching a fresh
file to WAL takes an exclusive lock that SQLite's busy timeout does not wait for, so processes
opening one new file at once could fail with ``database is locked``.
"""

from __future__ import annotations

import fcntl
import json
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from classifier.errors import InvalidParameter
from classifier.records import RECORDS_DB_NAME, Page, top_label
from classifier.records.cursors import Cursors, Filters
from classifier.records.ids import id_bound, is_record_id
from classifier.store.fsio import filesystem_type

__all__ = ["RECORDS_DB_NAME", "SqliteRecordStore"]
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    model_version TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    body TEXT NOT NULL,
    owner TEXT,
    model TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (digest TEXT PRIMARY KEY, record_id TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
# Columns added since the first schema, with how an older file fills them in.
_MIGRATIONS = (
    ("owner", "ALTER TABLE records ADD COLUMN owner TEXT", "UPDATE records SET owner = json_extract(body, '$.owner')"),
    ("model", "ALTER TABLE records ADD COLUMN model TEXT NOT NULL DEFAULT ''",
     "UPDATE records SET model = coalesce(json_extract(body, '$.model.name'), '')"),
)
# One index per question, each ending in id: a page is a seek and a walk in id order.
_INDEXES = """
CREATE INDEX IF NOT EXISTS records_by_label ON records (label, id);
CREATE INDEX IF NOT EXISTS records_by_model_version ON records (model_version, id);
CREATE INDEX IF NOT EXISTS records_by_label_version ON records (label, model_version, id);
CREATE INDEX IF NOT EXISTS records_by_model ON records (model, id);
CREATE INDEX IF NOT EXISTS records_by_owner ON records (owner, id);
CREATE INDEX IF NOT EXISTS records_by_owner_label ON records (owner, label, id);
DROP INDEX IF EXISTS records_by_image;
CREATE INDEX IF NOT EXISTS records_by_image_version ON records (image_sha256, model_version);
"""


class LocalSqlite:
    """One SQLite file on a local file system (refused on a network one), in WAL mode, a connection per thread."""

    def __init__(self, path: Path | str, *, mounts: Path, instead: str) -> None:
        """``instead``: what to use on a network file system, said in the refusal."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kind = filesystem_type(self.path.parent, mounts)
        if kind in NETWORK_FILESYSTEMS:
            raise RuntimeError(f"{self.path} is on a network file system ({kind}): SQLite's locking is not safe "
                               f"there. {instead}")
        self._local = threading.local()

    @contextmanager
    def _setting_up(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, in WAL mode, under the file's lock file: switching a new file to WAL
        takes a lock SQLite's busy timeout does not wait for, so processes set a file up one at a time."""
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            db = self._connection()
            db.execute("PRAGMA journal_mode=WAL")  # persistent: later connections find the file in WAL
            yield db

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at each checkpoint, never corrupt
            self._local.db = db
        return db


class SqliteRecordStore(LocalSqlite):
    """Records in one SQLite file; a connection per thread."""

    def __init__(self, path: Path | str, *, secret: bytes | None = None,
                 mounts: Path = Path("/proc/self/mounts")) -> None:
        super().__init__(path, mounts=mounts, instead="Set RECORDS_TABLE to keep records in DynamoDB (what the CDK "
                                                      "app deploys)")
        with self._setting_up() as db:
            db.executescript(_SCHEMA)
            self._migrate(db)
            db.executescript(_INDEXES)
            self.cursors = Cursors(secret or self._stored_secret())

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        """Add the columns a file made by an earlier version lacks, filled from each record's body."""
        columns = {row[1] for row in db.execute("PRAGMA table_info(records)")}
        for column, add, fill in _MIGRATIONS:
            if column not in columns:
                with _transaction(db):
                    db.execute(add)
                    db.execute(fill)

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
                 json.dumps(r, separators=(",", ":")), r.get("owner"), str(r["model"].get("name", "")))
                for r in records]
        db = self._connection()
        with _transaction(db):
            db.executemany("INSERT OR REPLACE INTO records (id, label, model_version, image_sha256, body, owner, "
                           "model) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def get(self, record_id: str, *, owner: str | None = None) -> dict[str, Any] | None:
        """The record, or None when there is none, or it is not ``owner``'s (None: anyone's)."""
        row = self._connection().execute("SELECT body, owner FROM records WHERE id = ?", (record_id,)).fetchone()
        if row is None or (owner is not None and row[1] != owner):
            return None
        record: dict[str, Any] = json.loads(row[0])
        return record

    def list(self, limit: int = 20, cursor: str | None = None, label: str | None = None,
             model_version: str | None = None, since: datetime | None = None,
             until: datetime | None = None, *, model: str | None = None, owner: str | None = None) -> Page:
        filters = Filters(label, model_version, since, until, model, owner)
        sql, params = self.page_query(limit, cursor, filters)
        rows = self._connection().execute(sql, params).fetchall()
        items = [json.loads(body) for _, body in rows[:limit]]
        next_cursor = self.cursors.make(rows[limit - 1][0], filters) if len(rows) > limit else None
        return Page(items, next_cursor)

    def page_query(self, limit: int, cursor: str | None, filters: Filters) -> tuple[str, Sequence[Any]]:
        """The SQL of one page (limit + 1 rows, to know whether there is a next), and its parameters."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in filters.equalities().items():  # column names from Filters, never from input
            where.append(f"{column} = ?")
            params.append(value)
        if filters.since is not None:
            where.append("id >= ?")
            params.append(id_bound(filters.since))
        if filters.until is not None:
            where.append("id < ?")
            params.append(id_bound(filters.until))
        if cursor is not None:
            last = self.cursors.read(cursor, filters)
            if not (isinstance(last, str) and is_record_id(last)):
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

    def done_record(self, sha256: str, model_version: str) -> str | None:
        """The newest record of this image by this model version (``batch --skip-done``)."""
        sql = "SELECT id FROM records WHERE image_sha256 = ? AND model_version = ? ORDER BY id DESC LIMIT 1"
        row = self._connection().execute(sql, (sha256, model_version)).fetchone()
        return str(row[0]) if row else None


class _transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
