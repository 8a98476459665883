"""CloudWatch on loopback for the rollout judge: moto's server, fed the runtime's own EMF lines.

Two stand-ins, each doing what CloudWatch does and nothing of our code:

- ``put_emf``: CloudWatch Logs extracts the metrics of an embedded-metric-format
  line into CloudWatch; here each EMF line the runtime printed is sent with
  PutMetricData (its namespace, dimensions, every value, its timestamp).
- ``moto_percentiles``: moto's GetMetricData answers Sum, Average, Minimum,
  Maximum and SampleCount but not percentiles (``p95`` comes back empty). The
  judge compares p95s, so the in-process moto server gets them: nearest rank
  over the values it holds, which is what CloudWatch computes for values sent
  one by one (its own sketches are within 1%).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from helpers.aws import ACCESS_KEY, REGION, SECRET_KEY

_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")


def moto_percentiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Teach the moto server running in this process ``pNN`` statistics."""
    from moto.cloudwatch.models import Statistics

    original = Statistics.get_statistics_for_type

    def get_statistics_for_type(self: Statistics, stat: str) -> Any:
        match = _PERCENTILE.fullmatch(stat)
        if match is None:
            return original(self, stat)
        values = sorted(self.metric_single_values_list)
        if not values:
            return None
        rank = max(1, math.ceil(float(match[1]) / 100 * len(values)))
        return values[rank - 1]

    monkeypatch.setattr(Statistics, "get_statistics_for_type", get_statistics_for_type)


def cloudwatch_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("cloudwatch", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


def emf_lines(text: str) -> list[dict[str, Any]]:
    """The EMF records among a process's output lines."""
    records = []
    for line in text.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            records.append(json.loads(line))
    return records


def put_emf(cloudwatch: Any, records: Iterable[dict[str, Any]]) -> int:
    """Send EMF records' metrics to CloudWatch as CloudWatch Logs would; returns how many values."""
    sent = 0
    for record in records:
        timestamp = datetime.fromtimestamp(record["_aws"]["Timestamp"] / 1000, UTC)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dimensions = [{"Name": name, "Value": str(record[name])} for name in dimension_set]
                data = []
                for metric in directive["Metrics"]:
                    value = record[metric["Name"]]
                    values = value if isinstance(value, list) else [value]
                    data.append({"MetricName": metric["Name"], "Dimensions": dimensions, "Values": values,
                                 "Unit": metric.get("Unit", "None"), "Timestamp": timestamp})
                    sent += len(values)
                cloudwatch.put_metric_data(Namespace=directive["Namespace"], MetricData=data)
    return sent
