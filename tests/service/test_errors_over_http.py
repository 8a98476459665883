"""Error responses over a real HTTP server: JSON, the documented status and code, no stack trace."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from helpers.error_cases import Case, build_cases
from helpers.photos import jpeg
from helpers.processes import LiveServer, live_server
from helpers.stores import stored_records

CASES = [case for case in build_cases() if case.over_http]
NO_MODEL = Case("no model published", "POST", "/classify", 503, "model_unavailable", jpeg("coffee"), "image/jpeg")


def count_records(store: Path) -> int:
    return len(stored_records(store))


def assert_error(status: int, body: bytes, case: Case) -> None:
    assert status == case.status, f"{case.name}: {status} {body[:300]!r}"
    payload = json.loads(body)
    assert payload["error"]["code"] == case.code, case.name
    assert isinstance(payload["error"]["message"], str) and payload["error"]["message"]
    assert b"Traceback" not in body and b'File "' not in body


# -- over HTTP ----------------------------------------------------------------------

def send_http(server_url: str, case: Case) -> httpx.Response:
    headers = {"content-type": case.content_type} if case.content_type else {}
    return httpx.request(case.method, server_url + case.path, content=case.body, headers=headers,
                         params=case.query, timeout=60)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_error_over_http(server: LiveServer, case: Case) -> None:
    before = count_records(server.store)
    response = send_http(server.url, case)
    assert_error(response.status_code, response.content, case)
    assert response.headers["content-type"] == "application/json"
    assert count_records(server.store) == before


def test_no_model_over_http(tmp_path: Path) -> None:
    with live_server(tmp_path / "empty-store", tmp_path, wait_for_model=False) as live:
        response = send_http(live.url, NO_MODEL)
        assert_error(response.status_code, response.content, NO_MODEL)
        health = httpx.get(live.url + "/health")
        assert health.status_code == 503 and health.json()["status"] != "ok"
        assert count_records(live.store) == 0


