"""EMF metrics: latencies by version and role, model errors, shadow agreement, candidate load failures."""

from __future__ import annotations

import json
from typing import Any

import pytest

from classifier.observability import metrics

VERSION = "20261123T100000Z-ba9876543210"


@pytest.fixture(autouse=True)
def emf_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Classifier")


def emitted(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def dimensions(record: dict[str, Any]) -> list[str]:
    (directive,) = record["_aws"]["CloudWatchMetrics"]
    (dims,) = directive["Dimensions"]
    return sorted(dims)


def test_a_canary_answer_carries_its_version_and_role(capsys: pytest.CaptureFixture[str]) -> None:
    metrics.record_request(timing={"total": 30.0, "inference": 20.0, "decode": 5.0}, images=1,
                           model_version=VERSION, error_code=None, cold_start=False, role="canary")
    (record,) = emitted(capsys)
    assert dimensions(record) == ["model_version", "role", "service"]
    assert (record["model_version"], record["role"], record["InferenceLatency"]) == (VERSION, "canary", [20.0])


def test_a_5xx_on_a_chosen_version_is_a_model_error(capsys: pytest.CaptureFixture[str]) -> None:
    metrics.record_request(timing=None, images=1, model_version=VERSION, error_code="internal_error",
                           cold_start=False, role="canary", status=500)
    model_error, error = emitted(capsys)
    assert (model_error["ModelErrors"], model_error["model_version"], model_error["role"]) == ([1], VERSION, "canary")
    assert (error["Errors"], error["code"]) == ([1], "internal_error")


def test_a_4xx_is_not_the_model_s_error(capsys: pytest.CaptureFixture[str]) -> None:
    metrics.record_request(timing=None, images=None, model_version=VERSION, error_code="invalid_image",
                           cold_start=False, status=422)
    (error,) = emitted(capsys)
    assert "ModelErrors" not in error and error["code"] == "invalid_image"


def test_a_shadow_run_writes_its_latency_and_one_agreement_per_image(capsys: pytest.CaptureFixture[str]) -> None:
    metrics.record_shadow(model_version=VERSION, inference_ms=42.0, agreements=[True, False, True])
    (record,) = emitted(capsys)
    assert dimensions(record) == ["model_version", "role", "service"] and record["role"] == "shadow"
    assert record["InferenceLatency"] == [42.0] and record["ShadowAgreement"] == [1, 0, 1]
    metrics.record_shadow(model_version=VERSION, inference_ms=None, agreements=[])
    (failed,) = emitted(capsys)
    assert (failed["ModelErrors"], failed["role"]) == ([1], "shadow")


def test_a_candidate_that_cannot_load_is_counted(capsys: pytest.CaptureFixture[str]) -> None:
    metrics.record_candidate_load_failure(VERSION)
    (record,) = emitted(capsys)
    assert (record["CandidateLoadFailures"], record["model_version"]) == ([1], VERSION)


def test_nothing_is_written_outside_lambda_without_a_namespace(capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE")
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    metrics.record_shadow(model_version=VERSION, inference_ms=1.0, agreements=[True])
    metrics.record_candidate_load_failure(VERSION)
    assert emitted(capsys) == []
