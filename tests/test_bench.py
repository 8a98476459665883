"""``make bench`` in quick mode: proves the harness runs end to end and writes well-formed results.

No timing is asserted anywhere: the numbers of a quick run on a shared machine
mean nothing. Only their presence, types and the report's shape are checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import ROOT
from helpers.stores import copy_store

CONTENDERS = ("baseline", "onnx", "torch")


@pytest.fixture(scope="module")
def quick_run(published_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One quick bench run against a private copy of the published store."""
    base = tmp_path_factory.mktemp("bench")
    store = copy_store(published_store, base / "store")
    out = base / "out"
    # GIVEN a published store WHEN the bench runs in quick mode
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(out),
         "--work", str(base / "work"), "--store", str(store)],
        capture_output=True, text=True, timeout=1200, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, json.loads((out / "results.json").read_text())


def is_positive_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def test_every_contender_has_every_figure(quick_run: tuple[Path, dict[str, Any]]) -> None:
    # THEN each contender reports cold start, warm latency for both photos, the forward floor, batch-8 and RSS
    _, report = quick_run
    for contender in CONTENDERS:
        fig = report["figures"][contender]
        assert is_positive_number(fig["cold_ms"]["p50"]), contender
        for photo in ("1mp", "12mp", "forward"):
            warm = fig["warm_ms"][photo]
            assert warm["n"] >= 1 and is_positive_number(warm["p50"]) and is_positive_number(warm["p95"])
        assert is_positive_number(fig["batch"]["images_per_s"])
        assert is_positive_number(fig["batch"]["forward_images_per_s"])
        assert fig["batch"]["size"] == 8
        assert is_positive_number(fig["peak_rss_mb"]["after_warm"])


def test_our_handler_answered_with_its_own_timings(quick_run: tuple[Path, dict[str, Any]]) -> None:
    # THEN our handler's responses carried timing_ms (so the events reached the real app and got a 200)
    _, report = quick_run
    for backend in ("onnx", "torch"):
        timing = report["figures"][backend]["server_timing_ms"]["1mp"]
        assert set(timing) >= {"decode", "inference", "total"}


def test_every_target_of_the_issue_is_evaluated(quick_run: tuple[Path, dict[str, Any]]) -> None:
    # THEN the report lists the issue's targets, each a ratio with a limit and a verdict (or n/a when unmeasured)
    _, report = quick_run
    targets = report["targets"]
    assert {t["figure"] for t in targets} == {"cold start", "warm 1 MP p50", "warm 12 MP p50", "peak RSS",
                                              "install size"}
    for t in targets:
        assert t["limit"] > 0
        assert (t["ratio"] is None and t["pass"] is None) or (is_positive_number(t["ratio"])
                                                              and isinstance(t["pass"], bool))


def test_the_photos_are_the_sizes_the_issue_asks_for(quick_run: tuple[Path, dict[str, Any]]) -> None:
    # THEN the photos are about 1 MP and 12 MP JPEGs, under the API's 4 MiB body limit
    _, report = quick_run
    photos = report["photos"]
    assert 0.8 <= photos["1mp"]["megapixels"] <= 1.3
    assert photos["12mp"]["megapixels"] == 12.0 and photos["12mp"]["format"] == "JPEG"
    assert photos["12mp"]["bytes"] < 4 * 1024 * 1024


def test_markdown_report_shows_the_table(quick_run: tuple[Path, dict[str, Any]]) -> None:
    # THEN results.md holds the comparison table and the targets with a verdict each
    out, report = quick_run
    markdown = (out / "results.md").read_text()
    assert "| figure | baseline | ours, onnx | ours, torch |" in markdown
    assert markdown.count("| PASS |") + markdown.count("| FAIL |") + markdown.count("| n/a |") == len(report["targets"])
