"""The API's error table as test cases: each bad request, its documented status and JSON error code.

tests/unit/test_errors.py sends every case through the Lambda handler's events;
tests/service/test_errors_over_http.py sends those marked ``over_http`` to a real server.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from helpers.lambda_events import multipart
from helpers.photos import encode, jpeg

MiB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    status: int
    code: str
    body: bytes | None = None
    content_type: str | None = None
    query: dict[str, str] | None = None
    # False: checked through the Lambda handler's events only (tests/unit/test_errors.py), not also over
    # real HTTP (tests/service/test_errors_over_http.py)
    over_http: bool = True


def build_cases() -> list[Case]:
    photo = jpeg("chelsea")
    no_file_body, no_file_type = multipart([("other", photo)])
    text_file_body, text_file_type = multipart([("attachment", photo)], {"file": "not a file"})
    batch_body, batch_type = multipart([("file", photo)] * 17)
    mixed_body, mixed_type = multipart([("file", photo), ("file", b"GIF89a but not really"), ("file", photo)])
    bomb = encode(Image.new("L", (7000, 6000)), "PNG")  # 42 MP, a few kB
    return [
        Case("empty raw body", "POST", "/classify", 400, "invalid_request", b"", "image/jpeg"),
        Case("empty body, no content type", "POST", "/classify", 400, "invalid_request"),
        Case("malformed JSON", "POST", "/classify", 400, "invalid_request", b'{"image": ', "application/json"),
        Case("JSON without image", "POST", "/classify", 400, "invalid_request", b'{"img": "x"}', "application/json"),
        Case("malformed base64", "POST", "/classify", 400, "invalid_request", b'{"image": "%%%not base64"}',
             "application/json"),
        Case("multipart without a file part", "POST", "/classify", 400, "invalid_request", no_file_body, no_file_type),
        Case("multipart file part is text", "POST", "/classify", 400, "invalid_request", text_file_body,
             text_file_type),
        Case("not an image", "POST", "/classify", 415, "unsupported_media_type", b"hello, world", "image/png"),
        Case("unsupported content type", "POST", "/classify", 415, "unsupported_media_type", photo, "text/plain"),
        Case("batch with one non-image", "POST", "/classify", 415, "unsupported_media_type", mixed_body, mixed_type),
        Case("truncated JPEG", "POST", "/classify", 422, "invalid_image", photo[: len(photo) // 2], "image/jpeg"),
        Case("body over MAX_IMAGE_BYTES", "POST", "/classify", 413, "payload_too_large",
             photo + b"\0" * (4 * MiB), "image/jpeg"),
        Case("batch over 16 files", "POST", "/classify", 413, "payload_too_large", batch_body, batch_type),
        Case("decompression bomb", "POST", "/classify", 413, "image_too_large", bomb, "image/png"),
        Case("top_k too small", "POST", "/classify", 422, "invalid_parameter", photo, "image/jpeg", {"top_k": "0"}),
        Case("top_k too large", "POST", "/classify", 422, "invalid_parameter", photo, "image/jpeg", {"top_k": "21"}),
        Case("top_k not a number", "POST", "/classify", 422, "invalid_parameter", photo, "image/jpeg",
             {"top_k": "five"}),
        Case("limit too small", "GET", "/classifications", 422, "invalid_parameter", query={"limit": "0"}),
        Case("limit too large", "GET", "/classifications", 422, "invalid_parameter", query={"limit": "101"}),
        Case("malformed cursor", "GET", "/classifications", 422, "invalid_parameter", query={"cursor": "../../etc"}),
        Case("non-ASCII cursor", "GET", "/classifications", 422, "invalid_parameter", query={"cursor": "abc.é"},
             over_http=False),
        Case("10 kB cursor", "GET", "/classifications", 422, "invalid_parameter",
             query={"cursor": "a" * 10_000 + ".b"}, over_http=False),
        Case("binary cursor", "GET", "/classifications", 422, "invalid_parameter",
             query={"cursor": "\x00\x01\xfe.\x7f"}, over_http=False),
        Case("model name malformed", "GET", "/classifications", 422, "invalid_parameter",
             query={"model": "Not A Name"}, over_http=False),
        Case("unknown record id", "GET", "/classifications/20261122T100000000000Z-000000000000", 404, "not_found"),
        Case("malformed record id", "GET", "/classifications/..%2F..%2Fmodels", 404, "not_found"),
        Case("empty cursor", "GET", "/classifications", 422, "invalid_parameter", query={"cursor": ""}),
        Case("unknown model", "POST", "/models/nope/classify", 404, "not_found", photo, "image/jpeg"),
        Case("malformed model name", "POST", "/models/..%2Fresnet50/classify", 404, "not_found", photo, "image/jpeg"),
        Case("unknown model's state", "GET", "/models/nope", 404, "not_found"),
        # Without an uploads bucket there is no POST /uploads, and an s3_key is no way in.
        Case("uploads without a bucket", "POST", "/uploads", 404, "not_found",
             b'{"content_type": "image/jpeg", "bytes": 10}', "application/json"),
        Case("s3_key without a bucket", "POST", "/classify", 400, "invalid_request", b'{"s3_key": "uploads/x.jpg"}',
             "application/json"),
        Case("unknown route", "GET", "/nope", 404, "not_found"),
        Case("wrong method", "GET", "/classify", 405, "method_not_allowed"),
    ]
