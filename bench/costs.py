"""What a million classifications cost, from the bench's measured warm latency: the one price table and its arithmetic.

``bench/run.py`` measures our handler's warm p50 (a ~1 MP photo, end to end)
and the bytes it logs per request, for each model version at two Lambda
memory sizes, and hands them to ``cost_rows``; ``render`` writes the table
that docs/deploy.md and the README quote.

Memory sizes. Lambda gives a function CPU in proportion to its memory: one
full vCPU at 1,769 MB, and 3,008 MB / 1,769 MB = 1.70 vCPUs at 3,008 MB. The
1,769 MB rows are measured with one inference thread (the thread plan a
1,769 MB function gets: ``AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1769``). The 3,008 MB
rows are measured with 2 threads on 2 whole cores: that gives the forward
pass 2/1.7 = 1.18x the CPU time a 3,008 MB function has, so where the forward
pass scales perfectly with threads, the 3,008 MB row is up to ~15% optimistic
(it scales less than perfectly on this host, so the error is smaller). The
durations are this host's; Lambda's x86_64 hosts and Graviton (arm64) were
not measured, and the arm64 column prices the x86_64 duration at arm64's
rate (Graviton may be slower or faster per request).

Billing. Lambda bills each invocation's duration rounded up to the next
millisecond, at memory (GB) x seconds x the GB-second rate, plus a request
fee. An HTTP API meters requests in 512 KB steps: a photo up to 512 KB is one
request (the bench's ~1 MP JPEG is well under it). A Function URL adds nothing
to Lambda's price. CloudWatch Logs bills ingested bytes: what the handler
prints per request (measured) plus the lines Lambda itself writes per
invocation (``PLATFORM_LOG_BYTES``, an estimate).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

# -- the price table: US East (N. Virginia) list prices, first usage tier, as of this date ---------------
PRICES_AS_OF = "2026-12-01"
PRICES_REGION = "us-east-1"
LAMBDA_GB_SECOND = {"x86_64": 0.0000166667, "arm64": 0.0000133334}  # USD per GB-second
LAMBDA_REQUEST = 0.20 / 1_000_000  # USD per invocation
FRONT_DOORS = {  # USD per request: the REST API, the HTTP API (per 512 KB), a Function URL
    "rest": 3.50 / 1_000_000,
    "http": 1.00 / 1_000_000,
    "function_url": 0.0,
}
DYNAMODB_WRITE_UNIT = 0.625 / 1_000_000  # USD per on-demand write request unit
LOGS_INGESTED_GB = 0.50  # USD per GB (10^9 bytes) of CloudWatch Logs ingested

# Write units one classification's record costs in DynamoDB by default (the item and its index
# entries; docs/bulk-and-records.md shows the arithmetic and the context key that lowers it).
RECORD_WRITE_UNITS = 3
# Bytes Lambda itself logs per invocation (its START, END and REPORT lines), not measured here:
# their documented text format comes to about this much.
PLATFORM_LOG_BYTES = 350

MB_PER_GB = 1024  # Lambda's GB-seconds are memory in MB / 1024
PER_MILLION = 1_000_000
GOAL_PER_MILLION = 2.00  # the target: at most $2 per million classifications, IAM auth kept
# The documented paths a total is given for: (label, architecture, front door).
DEFAULT_PATH = ("x86_64 + REST API (the defaults)", "x86_64", "rest")
IAM_PATHS = (
    ("arm64 + HTTP API (api_type=http)", "arm64", "http"),
    ("arm64 + Function URL (function_url=true)", "arm64", "function_url"),
)


@dataclass(frozen=True)
class Measurement:
    """One model version at one memory size, as the bench measured it."""

    model: str  # e.g. "resnet50 fp32"
    memory_mb: int
    threads: int  # inference threads it was measured with
    warm_p50_ms: float  # the handler's warm latency, end to end
    log_bytes_per_request: float  # what the handler printed per request


@dataclass(frozen=True)
class CostRow:
    measurement: Measurement
    billed_ms: int
    lambda_usd: Mapping[str, float]  # per million, by architecture
    front_door_usd: Mapping[str, float]  # per million, by front door
    records_usd: float  # per million
    logs_usd: float  # per million
    totals_usd: Mapping[str, float]  # per million, by path label


def lambda_per_million(memory_mb: int, billed_ms: int, architecture: str) -> float:
    """Duration (GB-seconds at the architecture's rate) plus the request fee, for a million invocations."""
    gb_seconds = memory_mb / MB_PER_GB * billed_ms / 1000
    return PER_MILLION * (gb_seconds * LAMBDA_GB_SECOND[architecture] + LAMBDA_REQUEST)


def cost_row(m: Measurement) -> CostRow:
    billed_ms = math.ceil(m.warm_p50_ms)
    lambda_usd = {arch: lambda_per_million(m.memory_mb, billed_ms, arch) for arch in LAMBDA_GB_SECOND}
    doors = {door: PER_MILLION * price for door, price in FRONT_DOORS.items()}
    records = PER_MILLION * RECORD_WRITE_UNITS * DYNAMODB_WRITE_UNIT
    logs = PER_MILLION * (m.log_bytes_per_request + PLATFORM_LOG_BYTES) / 1e9 * LOGS_INGESTED_GB
    totals = {label: lambda_usd[arch] + doors[door] + records + logs
              for label, arch, door in (DEFAULT_PATH, *IAM_PATHS)}
    return CostRow(m, billed_ms, lambda_usd, doors, records, logs, totals)


def cost_rows(measurements: Iterable[Measurement]) -> list[CostRow]:
    return [cost_row(m) for m in measurements]


def report(measurements: Iterable[Measurement]) -> dict[str, Any]:
    """What a bench report holds of the costs: the price table's date, every row, and its markdown."""
    rows = cost_rows(measurements)
    return {"prices_as_of": PRICES_AS_OF, "rows": [asdict(row) for row in rows], "markdown": render(rows)}


def cheapest_iam_path(rows: Iterable[CostRow]) -> tuple[CostRow, str, float]:
    """The row and documented path with the lowest total that keeps IAM auth, and that total."""
    return min(((row, label, row.totals_usd[label]) for row in rows for label, _, _ in IAM_PATHS),
               key=lambda found: found[2])


def render(rows: list[CostRow]) -> list[str]:
    """The cost table in markdown, with the goal's verdict."""
    if not rows:
        return []
    iam_cheapest = IAM_PATHS[-1][0]
    lines = [
        f"Cost per million classifications (USD; {PRICES_REGION} list prices of {PRICES_AS_OF}; warm p50 of a "
        "~1 MP photo through the handler, on this host; records at "
        f"{RECORD_WRITE_UNITS} write units each; logs: what the handler printed per request + "
        f"{PLATFORM_LOG_BYTES} bytes of Lambda's own lines). 3,008 MB is ~1.7 vCPU, measured as 2 threads "
        "(optimistic by up to ~15%); arm64 is priced at the x86_64 duration (Graviton not measured):",
        "",
        "| model | memory (threads) | warm p50 (ms) | Lambda x86_64 | Lambda arm64 | REST API | HTTP API "
        "| Function URL | records | logs | total, x86_64 + REST (defaults) | total, arm64 + HTTP API "
        "| total, arm64 + Function URL |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        m = row.measurement
        lines.append(
            f"| {m.model} | {m.memory_mb:,} MB ({m.threads}) | {m.warm_p50_ms:.1f} | "
            f"{row.lambda_usd['x86_64']:.2f} | {row.lambda_usd['arm64']:.2f} | {row.front_door_usd['rest']:.2f} | "
            f"{row.front_door_usd['http']:.2f} | {row.front_door_usd['function_url']:.2f} | "
            f"{row.records_usd:.2f} | {row.logs_usd:.2f} | {row.totals_usd[DEFAULT_PATH[0]]:.2f} | "
            f"{row.totals_usd[IAM_PATHS[0][0]]:.2f} | {row.totals_usd[iam_cheapest]:.2f} |"
        )
    best, label, total = cheapest_iam_path(rows)
    verdict = (f"meets the goal of at most ${GOAL_PER_MILLION:.2f}" if total <= GOAL_PER_MILLION else
               f"misses the goal of ${GOAL_PER_MILLION:.2f} by ${total - GOAL_PER_MILLION:.2f} (records "
               f"${best.records_usd:.2f}, Lambda ${best.lambda_usd['arm64']:.2f}, logs ${best.logs_usd:.2f})")
    lines += ["", f"Cheapest path with IAM auth kept: {best.measurement.model} at "
                  f"{best.measurement.memory_mb:,} MB, {label}, ${total:.2f} per million, which {verdict}.", ""]
    return lines
