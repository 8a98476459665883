"""Request-body parsing shared by the routes: JSON objects, and the ``POST /uploads`` request."""

from __future__ import annotations

import json
from typing import Any

from classifier.aws.uploads import UPLOAD_CONTENT_TYPES, UploadRequest
from classifier.errors import InvalidParameter, InvalidRequest, PayloadTooLarge, UnsupportedMediaType


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


def parse_upload_request(body: bytes, *, max_bytes: int) -> UploadRequest:
    """Validate a ``POST /uploads`` body: ``{"content_type": "image/jpeg", "bytes": 12345}``.

    Malformed JSON or a missing/mistyped field is 400 ``invalid_request``; a
    type we cannot classify is 415; a size over ``max_bytes`` is 413; a size
    below 1 is 422.
    """
    payload = json_object(body, '{"content_type": "image/jpeg", "bytes": <size>}')
    content_type, size = payload.get("content_type"), payload.get("bytes")
    if not isinstance(content_type, str) or not content_type:
        raise InvalidRequest("'content_type' must be a string such as \"image/jpeg\"")
    # bool is an int in Python; true is not a size.
    if isinstance(size, bool) or not isinstance(size, int):
        raise InvalidRequest("'bytes' must be an integer: the size of the image in bytes")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in UPLOAD_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"content_type {content_type!r} is not accepted: use one of {', '.join(UPLOAD_CONTENT_TYPES)}"
        )
    if size < 1:
        raise InvalidParameter(f"bytes: must be at least 1, got {size}")
    if size > max_bytes:
        raise PayloadTooLarge(f"the image is {size} bytes; the limit for uploads is {max_bytes}")
    return UploadRequest(media_type, size)
