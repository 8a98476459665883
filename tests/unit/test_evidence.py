"""A local server's rollout evidence in SQLite: tallies per role, latency histograms, bounded in size."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from classifier.records.evidence import RolloutLedger, bucket_of, bucket_value, percentile
from classifier.store.rollout import Rollout

CURRENT = "20261122T100000Z-0123456789ab"
CANDIDATE = "20261123T100000Z-ba9876543210"


def rollout(mode: str = "shadow", rollout_id: str = "r1") -> Rollout:
    return Rollout(name="resnet50", candidate=CANDIDATE, current=CURRENT, mode=mode, percent=50,
                   started_at="2026-11-23T10:00:00Z", id=rollout_id)


def test_percentiles_from_the_histogram_are_within_half_a_percent_of_the_exact_ones() -> None:
    # GIVEN 20,000 latencies spread as real ones are (log-normal around 25 ms, a long tail)
    latencies = np.random.default_rng(7).lognormal(mean=np.log(25), sigma=0.6, size=20_000)
    counts: dict[int, int] = {}
    for value in latencies:
        counts[bucket_of(float(value))] = counts.get(bucket_of(float(value)), 0) + 1
    # THEN p50 and p95 read from the buckets are within 0.5% of the nearest-rank ones
    for fraction in (0.5, 0.95):
        exact = float(np.sort(latencies)[int(np.ceil(fraction * len(latencies))) - 1])
        estimate = percentile(counts.items(), fraction)
        assert estimate is not None and abs(estimate - exact) / exact <= 0.005, (fraction, estimate, exact)
    assert percentile([], 0.5) is None


def test_bucket_edges() -> None:
    # Every value lands in the bucket whose range holds it, and a bucket's value is within 0.5% of it
    for value in (0.01, 0.5, 1.0, 24.9, 25.0, 1234.5, 60_000.0):
        assert abs(bucket_value(bucket_of(value)) - value) / value <= 0.005
    assert bucket_of(0.001) == -1 and bucket_value(-1) < 0.01


def test_tallies_and_agreement_per_role(tmp_path: Path) -> None:
    # GIVEN a shadow rollout: 30 requests on the current version (one failed), 20 shadow runs of the
    # candidate (two failed, the others compared two images each, 31 of 36 agreeing)
    ledger = RolloutLedger(tmp_path / "records.sqlite3")
    r = rollout()
    for i in range(30):
        ledger.record(r.id, role="current", version=CURRENT, ok=i != 0, latency_ms=None if i == 0 else 20.0 + i)
    agreed_left = 31
    for i in range(20):
        if i < 2:
            ledger.record(r.id, role="shadow", version=CANDIDATE, ok=False, latency_ms=None)
            continue
        agreed = min(2, agreed_left)
        agreed_left -= agreed
        ledger.record(r.id, role="shadow", version=CANDIDATE, ok=True, latency_ms=40.0, compared=2, agreed=agreed)
    # WHEN the evidence is read
    found = ledger.evidence(r)
    # THEN each side has its own counts and latencies, and the agreement is exact
    assert (found.current.requests, found.current.errors) == (30, 1)
    assert (found.candidate.version, found.candidate.role) == (CANDIDATE, "shadow")
    assert (found.candidate.requests, found.candidate.errors) == (20, 2)
    assert (found.compared, found.agreed) == (36, 31)
    assert found.candidate.p95_ms == pytest.approx(40.0, rel=0.005)
    assert found.current.p50_ms == pytest.approx(35.0, rel=0.005)  # the 15th of 21..49 ms


def test_rollouts_do_not_share_evidence(tmp_path: Path) -> None:
    ledger = RolloutLedger(tmp_path / "records.sqlite3")
    ledger.record("r1", role="canary", version=CANDIDATE, ok=True, latency_ms=10.0)
    second = ledger.evidence(rollout("canary", "r2"))
    assert (second.candidate.requests, second.candidate.p95_ms) == (0, None)
    assert ledger.evidence(rollout("canary", "r1")).candidate.requests == 1


def test_the_ledger_stays_small_however_many_requests(tmp_path: Path) -> None:
    # GIVEN 5,000 requests with latencies anywhere from 1 ms to 10 s
    path = tmp_path / "records.sqlite3"
    ledger = RolloutLedger(path)
    for value in np.random.default_rng(1).uniform(0, 4, size=5_000):
        ledger.record("r1", role="canary", version=CANDIDATE, ok=True, latency_ms=float(10**value))
    # THEN the evidence is one tally row and at most one row per 1% latency bucket (926 over 4 decades)
    with sqlite3.connect(path) as db:
        (tallies,) = db.execute("SELECT COUNT(*) FROM rollout_tallies").fetchone()
        (buckets,) = db.execute("SELECT COUNT(*) FROM rollout_latency").fetchone()
    assert tallies == 1 and buckets <= 926
    assert ledger.evidence(rollout("canary")).candidate.requests == 5_000


def test_the_ledger_refuses_a_network_file_system(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(f"fs-1.efs:/ {tmp_path} nfs4 rw 0 0\n")
    with pytest.raises(RuntimeError, match="network file system"):
        RolloutLedger(tmp_path / "records.sqlite3", mounts=mounts)
