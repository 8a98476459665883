"""A local server's rollout evidence: tallies and latency histograms in SQLite, beside the records.

The judge needs, for each version in its role since a rollout started, the
requests, the errors, p50/p95 latency and (shadow) top-1 agreement. Records
alone cannot say it: a request that failed is not a record. So every request
that reaches a model during a rollout adds to two small tables of the records
database (``RECORDS_DB``), keyed by the rollout's id:

- ``rollout_tallies``: one row per (rollout, role, version): requests, errors,
  images compared with the current version's answer, and those whose top-1 agreed;
- ``rollout_latency``: a histogram of inference latency per (rollout, role,
  version), in buckets 1% wide, so p50 and p95 are read within 0.5% from at
  most a couple of thousand rows, however long the rollout ran.

A request costs one small transaction; reading the evidence costs the same
whatever the traffic. In AWS the metrics are the evidence
(``classifier.store.cloudwatch_evidence``), and nothing is written here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from classifier.records.sqlite import LocalSqlite
from classifier.store.judge import Evidence, RoleEvidence
from classifier.store.rollout import Rollout

# Latency buckets: bucket b holds [LOW * RATIO**b, LOW * RATIO**(b+1)) ms; b < 0 is below LOW.
LOW_MS = 0.01
RATIO = 1.01

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollout_tallies (
    rollout TEXT NOT NULL,
    role TEXT NOT NULL,
    version TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    compared INTEGER NOT NULL DEFAULT 0,
    agreed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (rollout, role, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollout_latency (
    rollout TEXT NOT NULL,
    role TEXT NOT NULL,
    version TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (rollout, role, version, bucket)
) WITHOUT ROWID;
"""


def bucket_of(latency_ms: float) -> int:
    """The histogram bucket of a latency."""
    if latency_ms < LOW_MS:
        return -1
    return math.floor(math.log(latency_ms / LOW_MS) / math.log(RATIO))


def bucket_value(bucket: int) -> float:
    """The value a bucket stands for: its geometric middle (within 0.5% of anything in it)."""
    if bucket < 0:
        return LOW_MS / 2
    return float(LOW_MS * RATIO ** (bucket + 0.5))


def percentile(histogram: Iterable[tuple[int, int]], fraction: float) -> float | None:
    """The nearest-rank percentile of ``(bucket, count)`` pairs (any order), or None when empty."""
    pairs = sorted(histogram)
    total = sum(count for _, count in pairs)
    if total == 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for bucket, count in pairs:
        seen += count
        if seen >= rank:
            return bucket_value(bucket)
    raise AssertionError("unreachable: the ranks add up to the total")


class RolloutLedger(LocalSqlite):
    """Rollout evidence in the records' SQLite file; a connection per thread."""

    def __init__(self, path: Path | str, *, mounts: Path = Path("/proc/self/mounts")) -> None:
        super().__init__(path, mounts=mounts, instead="In AWS the rollout evidence is the CloudWatch metrics")
        with self._setting_up() as db:
            db.executescript(_SCHEMA)

    def record(self, rollout_id: str, *, role: str, version: str, ok: bool, latency_ms: float | None,
               compared: int = 0, agreed: int = 0) -> None:
        """One request of ``version`` in ``role``: whether it succeeded, its inference latency, and
        (shadow) how many of its images were compared with the current version's answer and agreed."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO rollout_tallies (rollout, role, version, requests, errors, compared, agreed) "
                "VALUES (?, ?, ?, 1, ?, ?, ?) ON CONFLICT (rollout, role, version) DO UPDATE SET "
                "requests = requests + 1, errors = errors + excluded.errors, "
                "compared = compared + excluded.compared, agreed = agreed + excluded.agreed",
                (rollout_id, role, version, 0 if ok else 1, compared, agreed))
            if latency_ms is not None:
                db.execute(
                    "INSERT INTO rollout_latency (rollout, role, version, bucket, count) VALUES (?, ?, ?, ?, 1) "
                    "ON CONFLICT (rollout, role, version, bucket) DO UPDATE SET count = count + 1",
                    (rollout_id, role, version, bucket_of(latency_ms)))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def role_evidence(self, rollout_id: str, role: str, version: str) -> RoleEvidence:
        db = self._connection()
        row = db.execute("SELECT requests, errors FROM rollout_tallies WHERE rollout = ? AND role = ? "
                         "AND version = ?", (rollout_id, role, version)).fetchone()
        histogram = db.execute("SELECT bucket, count FROM rollout_latency WHERE rollout = ? AND role = ? "
                               "AND version = ?", (rollout_id, role, version)).fetchall()
        requests, errors = row if row else (0, 0)
        return RoleEvidence(version, role, requests, errors, percentile(histogram, 0.5),
                            percentile(histogram, 0.95))

    def evidence(self, rollout: Rollout) -> Evidence:
        """The evidence of ``rollout`` so far: the current version and the candidate in their roles."""
        row = self._connection().execute(
            "SELECT compared, agreed FROM rollout_tallies WHERE rollout = ? AND role = ? AND version = ?",
            (rollout.id, rollout.candidate_role, rollout.candidate)).fetchone()
        compared, agreed = row if row else (0, 0)
        return Evidence(
            current=self.role_evidence(rollout.id, "current", rollout.current),
            candidate=self.role_evidence(rollout.id, rollout.candidate_role, rollout.candidate),
            compared=compared, agreed=agreed, source=f"sqlite:{self.path}",
        )
