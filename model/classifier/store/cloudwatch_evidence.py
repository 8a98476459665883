"""A rollout's evidence in AWS: the runtime's EMF metrics, read with one GetMetricData call.

The inference function writes, per request, in namespace ``Classifier`` with
the dimensions ``service``, ``model_version`` and ``role`` (``current``,
``canary``, ``shadow``; ``classifier.observability.metrics``):

- ``InferenceLatency`` (ms): one value per request a version answered (or ran in the shadow of);
- ``ModelErrors`` (count): a request that failed on that version (5xx, model errors);
- ``ShadowAgreement`` (role ``shadow``): 1 or 0 per image, whether its top-1 agreed with the current version;
- ``CandidateLoadFailures`` (dimensions ``service``, ``model_version``): an instance could not load the candidate.

One query per statistic, over one period spanning the whole rollout (from its
``started_at`` to now), so each comes back as one value: p50 and p95 of every
latency since the start, not an average of per-minute percentiles. Nine
metrics a call (eleven for a shadow): at $0.01 per 1,000 metrics, a judge calling
every minute costs $0.13 to $0.16 per day a rollout runs (docs/rollouts.md).

Standard library only (boto3's client is passed in): the installer's zip holds it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from classifier.store.judge import Evidence, RoleEvidence
from classifier.store.rollout import CURRENT_ROLE, Rollout, parse_time

LATENCY = "InferenceLatency"
MODEL_ERRORS = "ModelErrors"
SHADOW_AGREEMENT = "ShadowAgreement"
LOAD_FAILURES = "CandidateLoadFailures"

# CloudWatch keeps 1-minute data 15 days, 5-minute data 63 days, then hourly: a period must be a
# multiple of the coarsest resolution its start time still has.
_RESOLUTIONS = ((timedelta(days=15), 60), (timedelta(days=63), 300))


def metric_queries(rollout: Rollout, *, namespace: str, service: str, period: int) -> list[dict[str, Any]]:
    """The GetMetricData queries of a rollout's evidence (their ids say what each is)."""

    def query(query_id: str, metric: str, stat: str, dimensions: dict[str, str]) -> dict[str, Any]:
        return {"Id": query_id, "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": metric,
                       "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(
                           {"service": service, **dimensions}.items())]},
            "Period": period, "Stat": stat}}

    queries = []
    for side, version, role in (("current", rollout.current, CURRENT_ROLE),
                                ("candidate", rollout.candidate, rollout.candidate_role)):
        dims = {"model_version": version, "role": role}
        queries += [query(f"{side}_requests", LATENCY, "SampleCount", dims),
                    query(f"{side}_p50", LATENCY, "p50", dims),
                    query(f"{side}_p95", LATENCY, "p95", dims),
                    query(f"{side}_errors", MODEL_ERRORS, "Sum", dims)]
    if rollout.mode == "shadow":
        dims = {"model_version": rollout.candidate, "role": rollout.candidate_role}
        queries += [query("agreed", SHADOW_AGREEMENT, "Sum", dims),
                    query("compared", SHADOW_AGREEMENT, "SampleCount", dims)]
    queries.append(query("load_failures", LOAD_FAILURES, "Sum", {"model_version": rollout.candidate}))
    return queries


def window(rollout: Rollout, now: datetime) -> tuple[datetime, datetime, int]:
    """``(start, end, period)``: one period from the rollout's start (to the minute) past ``now``."""
    start = parse_time(rollout.started_at).replace(second=0)
    resolution = next((seconds for age, seconds in _RESOLUTIONS if now - start <= age), 3600)
    start = datetime.fromtimestamp(start.timestamp() // resolution * resolution, UTC)
    span = max((now - start).total_seconds(), 1)
    period = math.ceil(span / resolution) * resolution + resolution  # the current minute is still filling
    return start, start + timedelta(seconds=period), period


def cloudwatch_evidence(cloudwatch: Any, rollout: Rollout, *, namespace: str, service: str,
                        now: datetime | None = None) -> Evidence:
    """The evidence of ``rollout`` from CloudWatch (``cloudwatch`` is a boto3 CloudWatch client)."""
    start, end, period = window(rollout, now or datetime.now(UTC))
    queries = metric_queries(rollout, namespace=namespace, service=service, period=period)
    values: dict[str, float] = {}
    kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end}
    while True:
        page = cloudwatch.get_metric_data(**kwargs)
        for result in page["MetricDataResults"]:
            found = [v for v in result.get("Values", []) if v is not None]
            if found:
                # One period spans the rollout; should CloudWatch split it, counts add up and the
                # worst percentile stands.
                add = _worst if result["Id"].endswith(("_p50", "_p95")) else _sum
                values[result["Id"]] = add(values.get(result["Id"]), found)
        if not page.get("NextToken"):
            break
        kwargs["NextToken"] = page["NextToken"]

    def side(name: str, version: str, role: str) -> RoleEvidence:
        errors = int(values.get(f"{name}_errors", 0))
        return RoleEvidence(version, role, int(values.get(f"{name}_requests", 0)) + errors, errors,
                            values.get(f"{name}_p50"), values.get(f"{name}_p95"))

    return Evidence(
        current=side("current", rollout.current, CURRENT_ROLE),
        candidate=side("candidate", rollout.candidate, rollout.candidate_role),
        compared=int(values.get("compared", 0)), agreed=int(values.get("agreed", 0)),
        load_failures=int(values.get("load_failures", 0)),
        source=f"cloudwatch:{namespace} {start:%Y-%m-%dT%H:%M:%SZ}..{end:%Y-%m-%dT%H:%M:%SZ}",
    )


def _sum(previous: float | None, values: list[float]) -> float:
    return (previous or 0.0) + sum(values)


def _worst(previous: float | None, values: list[float]) -> float:
    return max(values if previous is None else [previous, *values])
