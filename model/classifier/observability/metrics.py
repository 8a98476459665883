"""Per-request CloudWatch metrics, as embedded metric format (EMF) lines on stdout.

Powertools for AWS Lambda writes them; CloudWatch Logs turns them into metrics with no
API call and no agent. Namespace ``POWERTOOLS_METRICS_NAMESPACE`` (the CDK app sets
``Classifier``), service ``POWERTOOLS_SERVICE_NAME`` (``classifier``):

- ``TotalLatency``, ``InferenceLatency``, ``DecodeLatency`` (ms) and ``Images``, per
  classification request, with the dimension ``model_version`` (a handful of values:
  the versions that served);
- ``Errors`` (count), with the dimension ``code`` (the API's error codes);
- ``ColdStart`` (count), with ``function_name``, once per Lambda instance;
- ``RecordsDeferred`` (count), with ``service`` alone: records the database would not take,
  kept for ``records replay`` (an alarm watches it), and ``RecordsReplayed`` when they go back.

Written only inside Lambda or when a namespace is configured: a laptop's server
stays quiet.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from classifier.observability.logs import SERVICE


def enabled() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or os.environ.get("POWERTOOLS_METRICS_NAMESPACE"))


def namespace() -> str:
    return os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "Classifier"


def record_request(*, timing: Mapping[str, float] | None, images: int | None, model_version: str | None,
                   error_code: str | None, cold_start: bool) -> None:
    """The metrics of one request: its latencies (a classification), its error, its cold start."""
    if not enabled():
        return
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    if timing is not None and model_version is not None:
        latency = EphemeralMetrics(namespace=namespace(), service=SERVICE)
        latency.add_dimension("model_version", model_version)
        for name, key in (("TotalLatency", "total"), ("InferenceLatency", "inference"), ("DecodeLatency", "decode")):
            latency.add_metric(name=name, unit=MetricUnit.Milliseconds, value=timing[key])
        latency.add_metric(name="Images", unit=MetricUnit.Count, value=images or 1)
        latency.flush_metrics()
    if error_code is not None:
        _single("Errors", {"code": error_code})
    if cold_start:
        _single("ColdStart", {"function_name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")})


def _single(name: str, dimensions: dict[str, Any]) -> None:
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    metric = EphemeralMetrics(namespace=namespace(), service=SERVICE)
    for key, value in dimensions.items():
        metric.add_dimension(key, str(value))
    metric.add_metric(name=name, unit=MetricUnit.Count, value=1)
    metric.flush_metrics()


def records_deferred(count: int) -> None:
    """``RecordsDeferred``: records kept aside for ``records replay`` because the database refused them."""
    _count("RecordsDeferred", count)


def records_replayed(count: int) -> None:
    """``RecordsReplayed``: deferred records written back."""
    _count("RecordsReplayed", count)


def _count(name: str, value: int) -> None:
    if not enabled() or value <= 0:
        return
    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    metric = EphemeralMetrics(namespace=namespace(), service=SERVICE)
    metric.add_metric(name=name, unit=MetricUnit.Count, value=value)
    metric.flush_metrics()
