"""Per-request metrics (classifier.observability.metrics) as CloudWatch's embedded metric format:
one JSON document per line on stdout, read here as CloudWatch Logs reads it (the ``_aws`` directive
names the namespace, the dimension sets and each metric's unit; the values are top-level keys).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest

from classifier.observability import metrics

TIMING = {"total": 12.5, "inference": 8.0, "decode": 3.25}
VERSION = "20261122T100000Z-0123456789ab"


@dataclass(frozen=True)
class Emf:
    namespace: str
    dimensions: dict[str, str]
    values: dict[str, tuple[str, list[float]]]  # metric name: (unit, values)
    timestamp_ms: int


def emitted(capsys: pytest.CaptureFixture[str]) -> list[Emf]:
    """Each stdout line as CloudWatch reads an EMF document; a line that is not one fails the test."""
    found = []
    for line in capsys.readouterr().out.splitlines():
        doc: dict[str, Any] = json.loads(line)
        (directive,) = doc["_aws"]["CloudWatchMetrics"]
        (dimension_set,) = directive["Dimensions"]
        found.append(Emf(
            namespace=directive["Namespace"],
            dimensions={name: doc[name] for name in dimension_set},
            values={m["Name"]: (m["Unit"], list(doc[m["Name"]])) for m in directive["Metrics"]},
            timestamp_ms=doc["_aws"]["Timestamp"],
        ))
    return found


@pytest.fixture
def in_lambda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "demo-classifier")
    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE", raising=False)


def test_a_classification_writes_its_latencies_by_model_version(in_lambda: None,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    before = time.time() * 1000
    metrics.record_request(timing=TIMING, images=3, model_version=VERSION, error_code=None, cold_start=False)
    (doc,) = emitted(capsys)
    assert doc.namespace == "Classifier"
    assert doc.dimensions == {"model_version": VERSION, "service": "classifier"}
    assert doc.values == {"TotalLatency": ("Milliseconds", [12.5]), "InferenceLatency": ("Milliseconds", [8.0]),
                          "DecodeLatency": ("Milliseconds", [3.25]), "Images": ("Count", [3.0])}
    assert before - 1000 <= doc.timestamp_ms <= time.time() * 1000 + 1000


def test_an_error_is_counted_by_its_code_and_a_cold_start_by_function(in_lambda: None,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a request refused before any classification, on a new instance
    metrics.record_request(timing=None, images=None, model_version=None, error_code="invalid_image", cold_start=True)
    errors, cold = emitted(capsys)
    # THEN no latency is written, one error with its code, and one cold start with the function's name
    assert (errors.dimensions, errors.values) == ({"code": "invalid_image", "service": "classifier"},
                                                  {"Errors": ("Count", [1.0])})
    assert (cold.dimensions, cold.values) == ({"function_name": "demo-classifier", "service": "classifier"},
                                              {"ColdStart": ("Count", [1.0])})


def test_a_namespace_turns_metrics_on_outside_lambda(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Acme/Images")
    metrics.record_request(timing=TIMING, images=None, model_version=VERSION, error_code=None, cold_start=True)
    latencies, cold = emitted(capsys)
    assert latencies.namespace == cold.namespace == "Acme/Images"
    assert latencies.values["Images"] == ("Count", [1.0])  # a single image when the count is not known
    assert cold.dimensions["function_name"] == "local"


def test_a_laptop_server_writes_no_metrics(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE", raising=False)
    metrics.record_request(timing=TIMING, images=1, model_version=VERSION, error_code="internal_error",
                           cold_start=True)
    assert capsys.readouterr().out == ""
