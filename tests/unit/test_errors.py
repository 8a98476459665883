"""Every row of the API's error table, over real HTTP and through the Lambda
handler with REST (v1) and HTTP API / Function URL (v2) events.

Each bad request must get its documented status and JSON error code, no stack
trace, and must change nothing (no record is written).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers.error_cases import Case, build_cases
from helpers.lambda_events import FakeContext, load_handler, make_event, read_response
from helpers.photos import jpeg
from helpers.stores import stored_records

CASES = build_cases()
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


# -- through the Lambda handler -----------------------------------------------------

def invoke(handler: Callable[..., dict[str, Any]], kind: str, case: Case) -> tuple[int, bytes]:
    event = make_event(kind, case.method, case.path, body=case.body, content_type=case.content_type,
                       query=case.query)
    response = read_response(handler(event, FakeContext()))
    return response.status, response.body


@pytest.mark.parametrize("kind", ["v1", "v2"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_error_through_lambda_handler(handler_and_store: tuple[Any, Path], kind: str, case: Case) -> None:
    handler, store = handler_and_store
    before = count_records(store)
    status, body = invoke(handler, kind, case)
    assert_error(status, body, case)
    assert count_records(store) == before


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_no_model_through_lambda_handler(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kind: str) -> None:
    handler = load_handler(monkeypatch, tmp_path / "empty")
    status, body = invoke(handler, kind, NO_MODEL)
    assert_error(status, body, NO_MODEL)


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_unexpected_failure_is_a_json_500_without_trace(
    handler_and_store: tuple[Any, Path], monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # GIVEN a backend that crashes (a bug, not a bad input)
    handler, _ = handler_and_store
    loaded = handler.app.state.manager.current()

    def explode(batch: Any) -> Any:
        raise RuntimeError("secret internal detail at /opt/code/thing.py line 42")

    monkeypatch.setattr(loaded.backend, "run", explode)
    case = Case("crash", "POST", "/classify", 500, "internal_error", jpeg("rocket"), "image/jpeg")
    status, body = invoke(handler, kind, case)
    # THEN the client sees a generic JSON 500, nothing of the exception
    assert_error(status, body, case)
    assert b"secret" not in body
