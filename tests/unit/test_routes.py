"""Routes' rollout plumbing: what a request is routed by, and the shadow run after the answer."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from starlette.background import BackgroundTask
from starlette.requests import Request

from classifier.api.routes import AnswerThenShadow, routing_key


def request(headers: dict[str, str], request_id: str) -> Request:
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/classify",
                             "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
                             "state": {"request_id": request_id}}
    return Request(scope)


def test_a_client_request_id_routes_its_retries_the_same_way() -> None:
    # In Lambda the request id is the invocation's, new on every retry: the client's X-Request-Id wins.
    assert routing_key(request({"x-request-id": "client-1"}, "lambda-abc")) == "client-1"
    assert routing_key(request({}, "lambda-abc")) == "lambda-abc"


def answer(send_fails: bool) -> list[str]:
    events: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        events.append(message["type"])
        if send_fails and message["type"] == "http.response.body":
            raise OSError("the client went away")

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    response = AnswerThenShadow({"id": "x"}, background=BackgroundTask(lambda: events.append("shadow")))
    with pytest.raises(OSError) if send_fails else contextlib.nullcontext():
        asyncio.run(response({"type": "http"}, receive, send))  # type: ignore[arg-type]
    return events


def test_the_shadow_runs_after_the_answer() -> None:
    assert answer(send_fails=False) == ["http.response.start", "http.response.body", "shadow"]


def test_the_shadow_runs_and_stores_even_when_the_answer_could_not_be_sent() -> None:
    assert answer(send_fails=True) == ["http.response.start", "http.response.body", "shadow"]
