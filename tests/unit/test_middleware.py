"""What a caller may put on every log line and into the metrics (classifier.api.middleware): ids it sends
are bounded, and the init warm-up is known by its event, never by a header a caller can send."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from classifier.api.middleware import MAX_CLIENT_ID_LENGTH, client_id, correlation_id

from helpers.lambda_events import FakeContext, make_event, read_response

TEN_KB = 10 * 1024


def test_a_10_kb_request_id_is_cut_to_the_limit(app_client: TestClient) -> None:
    response = app_client.get("/health", headers={"x-request-id": "r" * TEN_KB})
    assert response.headers["x-request-id"] == "r" * MAX_CLIENT_ID_LENGTH


def test_a_10_kb_correlation_id_is_cut_and_a_strange_one_replaced() -> None:
    event = make_event("v1", "GET", "/health")
    scope = {"type": "http", "aws.event": event}
    # Cut to the limit when it is made of id characters...
    assert correlation_id(scope, {"x-correlation-id": "c" * TEN_KB}) == "c" * MAX_CLIENT_ID_LENGTH
    # ...and replaced by API Gateway's request id when it holds anything else (a log line or header breaker)
    for strange in ('{"level": "ERROR"}', "a b", "caf\u00e9", "x" * TEN_KB + "<"):
        assert correlation_id(scope, {"x-correlation-id": strange}) == event["requestContext"]["requestId"]
    assert client_id("trace-01HX:abc/def+g=h@i.j") == "trace-01HX:abc/def+g=h@i.j"
    assert client_id("") is None and client_id(None) is None


def emf_metrics(output: str) -> list[dict[str, Any]]:
    """The embedded-metric-format lines among stdout's lines: each metric's names and dimensions."""
    found = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            document = json.loads(line)
            for directive in document["_aws"]["CloudWatchMetrics"]:
                found.append({"names": [m["Name"] for m in directive["Metrics"]],
                              **{d: document[d] for group in directive["Dimensions"] for d in group}})
    return found


def test_a_request_that_says_it_is_the_warm_up_is_counted(handler_and_store: tuple[Any, Path],
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    handler, _ = handler_and_store
    assert read_response(handler(make_event("v2", "GET", "/health"), FakeContext())).status == 200  # model loaded
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ClassifierTest")
    capsys.readouterr()
    # WHEN a caller sends the warm-up's old user agent (and its request id, as a header)
    spoof = make_event("v2", "GET", "/classifications/warm-up",
                       headers={"user-agent": "init-warm-up", "x-request-id": "init-warm-up"})
    response = read_response(handler(spoof, FakeContext()))
    # THEN its request is an ordinary one: answered, and in the metrics
    assert response.status == 404
    assert {"names": ["Errors"], "service": "classifier", "code": "not_found"} in emf_metrics(capsys.readouterr().out)


def test_the_handlers_own_warm_up_is_not_counted(handler_and_store: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    handler, _ = handler_and_store
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ClassifierTest")
    capsys.readouterr()
    sys.modules["classifier.handler"].warm_up(handler)
    assert emf_metrics(capsys.readouterr().out) == []
