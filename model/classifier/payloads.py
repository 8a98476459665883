"""Request-body parsing shared by the routes."""

from __future__ import annotations

import json
from typing import Any

from classifier.errors import InvalidRequest


def json_object(body: bytes, example: str) -> dict[str, Any]:
    """``body`` parsed as a JSON object, or a 400 ``invalid_request`` that shows ``example``."""
    if not body:
        raise InvalidRequest(f"the request body is empty: send {example}")
    try:
        payload: Any = json.loads(body)
    except ValueError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("the JSON body must be an object")
    return payload
