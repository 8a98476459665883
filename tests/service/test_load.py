"""``make load`` (bench/load.py): Locust, headless, against the local server it starts; a short run.

Nothing is timed: the run proves the load generator drives the real server with photos, listings
and bad inputs, counts each bad input's expected 4xx as an answer (not a failure), and reports the
server's memory before and after.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import ROOT
from helpers.stores import copy_store


def test_a_short_load_run_reports_throughput_latency_failures_and_memory(published_store: Path,
                                                                          tmp_path: Path) -> None:
    # GIVEN the bench's work folder holding a published store
    work = tmp_path / "work"
    copy_store(published_store, work / "store")
    # WHEN make load runs 4 users for 8 seconds
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "load.py"), "--users", "4", "--seconds", "8",
                           "--work", str(work), "--summary", str(tmp_path / "load.md")],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((work / "load.json").read_text())
    result = report["result"]
    # THEN requests of every kind reached the server, and none got an answer it should not have
    assert result["requests"] > 0 and result["failures"] == 0
    assert "POST /classify" in result["by_name"] and "GET /classifications" in result["by_name"]
    assert result["by_name"]["POST /classify"]["requests"] > 0
    assert result["requests_per_s"] > 0 and 0 < result["p50_ms"] <= result["p95_ms"] <= result["p99_ms"]
    # AND the server's memory was read before and after
    assert report["rss_before_mb"]["VmRSS"] > 0 and report["rss_after_mb"]["VmHWM"] >= report["rss_after_mb"]["VmRSS"]
    assert "| requests | requests/s | p50 (ms) |" in (tmp_path / "load.md").read_text()
