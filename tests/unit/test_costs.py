"""The cost table's arithmetic (bench/costs.py), checked against a calculation done by hand for one row."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

from helpers import ROOT


def load_costs() -> ModuleType:
    """bench/costs.py (bench/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_costs", ROOT / "bench" / "costs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


costs = load_costs()


def test_one_row_matches_a_hand_calculation() -> None:
    # GIVEN int8 at 1,769 MB measured at 40.2 ms warm p50, printing 900 bytes of logs per request
    row = costs.cost_row(costs.Measurement("resnet50 int8", 1769, 1, 40.2, 900.0))
    # THEN Lambda bills 41 ms (rounded up to the millisecond)
    assert row.billed_ms == 41
    # AND x86_64: 1769/1024 GB x 0.041 s = 0.0708291 GB-s; x $16.6667 per million GB-s = $1.18049; + $0.20
    assert row.lambda_usd["x86_64"] == pytest.approx(1.38049, abs=1e-4)
    # AND arm64: 0.0708291 GB-s x $13.3334 per million = $0.94439; + $0.20 of requests
    assert row.lambda_usd["arm64"] == pytest.approx(1.14439, abs=1e-4)
    # AND the front doors per million: REST $3.50, HTTP API $1.00, Function URL nothing
    assert row.front_door_usd == {"rest": pytest.approx(3.50), "http": pytest.approx(1.00), "function_url": 0.0}
    # AND records: 3 write units x $0.625 per million units
    assert row.records_usd == pytest.approx(1.875)
    # AND logs: (900 + 350) bytes x 10^6 = 1.25 GB x $0.50
    assert row.logs_usd == pytest.approx(0.625)
    # AND the totals add those up per path
    assert row.totals_usd["x86_64 + REST API (the defaults)"] == pytest.approx(1.38049 + 3.50 + 1.875 + 0.625, abs=1e-4)
    assert row.totals_usd["arm64 + HTTP API (api_type=http)"] == pytest.approx(1.14439 + 1.00 + 1.875 + 0.625, abs=1e-4)
    assert row.totals_usd["arm64 + Function URL (function_url=true)"] == pytest.approx(1.14439 + 1.875 + 0.625,
                                                                                       abs=1e-4)


def test_more_memory_costs_more_for_the_same_duration() -> None:
    # 3,008 MB at the same 41 ms: 3008/1024 GB x 0.041 s x $16.6667 + $0.20 = $2.20729
    assert costs.lambda_per_million(3008, 41, "x86_64") == pytest.approx(2.20729, abs=1e-4)


def test_the_verdict_names_the_cheapest_iam_path_and_what_it_misses_by() -> None:
    rows = costs.cost_rows([costs.Measurement("resnet50 fp32", 3008, 2, 60.0, 900.0),
                            costs.Measurement("resnet50 int8", 1769, 1, 40.2, 900.0)])
    best, label, total = costs.cheapest_iam_path(rows)
    assert (best.measurement.model, label) == ("resnet50 int8", "arm64 + Function URL (function_url=true)")
    assert total == pytest.approx(1.14439 + 1.875 + 0.625, abs=1e-4)
    text = "\n".join(costs.render(rows))
    assert "misses the goal of $2.00 by $1.64" in text
