"""Build API Gateway REST (v1) and HTTP API / Function URL (v2) events from the
real sample events in tests/events, and read Lambda proxy responses."""

from __future__ import annotations

import base64
import copy
import importlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from helpers import EVENTS

KINDS = ("v1", "v2")


@dataclass
class FakeContext:
    """The attributes of the Lambda context object that Mangum and our code read."""

    function_name: str = "demo-classifier"
    memory_limit_in_mb: int = 3008
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:demo-classifier"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 25_000


def make_event(
    kind: str,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    content_type: str | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An event as API Gateway delivers it; binary bodies arrive base64-encoded."""
    base = "rest_v1.json" if kind == "v1" else "http_v2.json"
    event: dict[str, Any] = copy.deepcopy(json.loads((EVENTS / base).read_text()))
    extra = dict(headers or {})
    if content_type is not None:
        extra["content-type"] = content_type
    encoded = base64.b64encode(body).decode() if body is not None else None
    if kind == "v1":
        event["path"] = path
        event["httpMethod"] = method
        event["requestContext"]["httpMethod"] = method
        event["requestContext"]["path"] = f"/prod{path}"
        event["requestContext"]["requestId"] = str(uuid.uuid4())
        for name in ("Content-Type",):
            event["headers"].pop(name, None)
            event["multiValueHeaders"].pop(name, None)
        for key, value in extra.items():
            event["headers"][key] = value
            event["multiValueHeaders"][key] = [value]
        event["queryStringParameters"] = dict(query) if query else None
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    else:
        event["rawPath"] = path
        event["requestContext"]["http"]["method"] = method
        event["requestContext"]["http"]["path"] = path
        event["requestContext"]["requestId"] = str(uuid.uuid4())
        event["headers"].pop("content-type", None)
        event["headers"].update({k.lower(): v for k, v in extra.items()})
        event["rawQueryString"] = urlencode(query or {})
        if query:
            event["queryStringParameters"] = dict(query)
    event["body"] = encoded
    event["isBase64Encoded"] = encoded is not None
    return event


@dataclass
class LambdaResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def read_response(raw: dict[str, Any]) -> LambdaResponse:
    body = raw.get("body") or ""
    data = base64.b64decode(body) if raw.get("isBase64Encoded") else body.encode()
    headers = {k.lower(): v for k, v in (raw.get("headers") or {}).items()}
    for key, values in (raw.get("multiValueHeaders") or {}).items():
        headers.setdefault(key.lower(), values[-1])
    return LambdaResponse(int(raw["statusCode"]), headers, data)


def multipart(files: list[tuple[str, bytes]], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body exactly as an HTTP client would send it."""
    request = httpx.Request("POST", "http://x/classify",
                            files=[(name, ("img", data, "application/octet-stream")) for name, data in files],
                            data=fields or {})
    return request.read(), request.headers["content-type"]


def load_handler(monkeypatch: pytest.MonkeyPatch, store: Path, **env: str) -> Callable[..., dict[str, Any]]:
    """Import ``classifier.handler`` afresh with this environment, as a new Lambda instance would."""
    monkeypatch.setenv("MODEL_STORE", str(store))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    module: ModuleType = importlib.import_module("classifier.handler")
    module = importlib.reload(module)
    handler: Callable[..., dict[str, Any]] = module.handler
    return handler
