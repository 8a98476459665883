"""Every form of a classify request's body, read into ``ImageInput`` values (classifier.api.inputs),
and each body refused with its reason: raw bytes, multipart batches, JSON base64 (and data URLs),
and JSON ``s3_key`` up to the point where S3 would be read.

Requests are ASGI scopes handed to Starlette's own ``Request`` in this process; the same bodies
over HTTP, and an ``s3_key`` read from S3, are in tests/service/.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Sequence

import httpx
import pytest
from starlette.requests import Request

from classifier.api.inputs import read_images
from classifier.aws.uploads import Uploads
from classifier.config import Settings
from classifier.errors import (
    ClassifierError,
    InvalidParameter,
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
    UploadsDisabled,
)
from classifier.serving.service import ImageInput

from helpers.photos import jpeg

CAT, CUP = jpeg("chelsea"), jpeg("coffee")
LIMIT = max(len(CAT), len(CUP)) + 10
OVER = CAT + b"x" * (LIMIT + 1 - len(CAT))  # one byte over the limit
SETTINGS = Settings(max_image_bytes=LIMIT, max_batch=3)
WITH_UPLOADS = Settings(max_image_bytes=LIMIT, max_batch=3, uploads_bucket="uploads-bucket")


def request(body: bytes, content_type: str | None) -> Request:
    """A POST /classify as the ASGI server hands it over: headers, then the body in one message."""
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type.encode("latin-1")))
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    scope = {"type": "http", "method": "POST", "path": "/classify", "headers": headers, "query_string": b""}
    return Request(scope, receive)


def read(body: bytes, content_type: str | None, settings: Settings = SETTINGS) -> list[ImageInput]:
    return asyncio.run(read_images(request(body, content_type), settings, Uploads(settings)))


def refused(body: bytes, content_type: str | None, settings: Settings = SETTINGS) -> ClassifierError:
    with pytest.raises(ClassifierError) as caught:
        read(body, content_type, settings)
    return caught.value


def form(files: Sequence[tuple[str, str, bytes]], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body as httpx writes it: (field name, file name, bytes) per file part."""
    built = httpx.Request("POST", "http://api/classify", data=fields or {},
                          files=[(name, (filename, data, "image/jpeg")) for name, filename, data in files])
    return built.read(), built.headers["content-type"]


def as_json(payload: object) -> bytes:
    return json.dumps(payload).encode()


# --- what is read --------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["image/jpeg", "IMAGE/JPEG; q=1", "image/x-anything",
                                          "application/octet-stream", None])
def test_raw_bytes_are_one_image(content_type: str | None) -> None:
    (image,) = read(CAT, content_type)
    assert (image.data, image.name, image.max_bytes, dict(image.extra)) == (CAT, None, SETTINGS.max_image_bytes, {})


@pytest.mark.parametrize("encoded", [
    base64.b64encode(CAT).decode(),
    "data:image/jpeg;base64," + base64.b64encode(CAT).decode(),       # a data URL, as browsers make
    "\n".join(base64.encodebytes(CAT).decode().split("\n")),         # MIME line breaks
])
@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "application/vnd.api+json"])
def test_json_base64_is_one_image(encoded: str, content_type: str) -> None:
    (image,) = read(as_json({"image": encoded}), content_type)
    assert (image.data, image.name, image.max_bytes) == (CAT, None, SETTINGS.max_image_bytes)


def test_multipart_file_parts_are_a_batch_in_order() -> None:
    # GIVEN two file parts and a text field beside them
    body, content_type = form([("file", "cat.jpg", CAT), ("file", "cup.jpg", CUP)], {"note": "ignored"})
    # THEN each part is an image, in order, named by its file name
    images = read(body, content_type)
    assert [(i.data, i.name, i.max_bytes) for i in images] == [(CAT, "cat.jpg", SETTINGS.max_image_bytes),
                                                              (CUP, "cup.jpg", SETTINGS.max_image_bytes)]


def test_multipart_up_to_the_batch_limit() -> None:
    body, content_type = form([("file", f"{i}.jpg", CUP) for i in range(SETTINGS.max_batch)])
    assert len(read(body, content_type)) == SETTINGS.max_batch


# --- what is refused, and why ---------------------------------------------------------------------------

REFUSALS = [
    # (body, content type, error, message)
    (b"", "image/jpeg", InvalidRequest, "the request body is empty: send an image"),
    (b"", None, InvalidRequest, "the request body is empty: send an image"),
    (CAT, "text/plain", UnsupportedMediaType, "Content-Type 'text/plain' is not accepted"),
    (CAT, "application/jsonl", UnsupportedMediaType, "Content-Type 'application/jsonl' is not accepted"),
    (b"", "application/json", InvalidRequest, 'the request body is empty: send {"image": "<base64>"}'),
    (b"{not json", "application/json", InvalidRequest, "the body is not valid JSON"),
    (b"[1, 2]", "application/json", InvalidRequest, "the JSON body must be an object"),
    (as_json({"picture": "abc"}), "application/json", InvalidRequest, "the JSON body needs an 'image' field"),
    (as_json({"image": ""}), "application/json", InvalidRequest, "'image' must be a non-empty base64 string"),
    (as_json({"image": 12}), "application/json", InvalidRequest, "'image' must be a non-empty base64 string"),
    (as_json({"image": "not*base64!"}), "application/json", InvalidRequest, "'image' is not valid base64"),
    (as_json({"image": "data:image/jpeg;base64,%%%"}), "application/json", InvalidRequest,
     "'image' is not valid base64"),
    (OVER, "image/jpeg", PayloadTooLarge, f"the image is {LIMIT + 1} bytes; the limit is {LIMIT}"),
    (as_json({"image": base64.b64encode(OVER).decode()}), "application/json", PayloadTooLarge,
     f"the image is {LIMIT + 1} bytes; the limit is {LIMIT}"),
]


@pytest.mark.parametrize(("body", "content_type", "error", "message"), REFUSALS)
def test_bodies_without_an_image_we_can_take_are_refused(body: bytes, content_type: str | None,
                                                         error: type[ClassifierError], message: str) -> None:
    exc = refused(body, content_type)
    assert type(exc) is error and exc.message.startswith(message), exc.message


MULTIPART_REFUSALS = [
    # (file parts, text fields, error, message)
    ([("image", "cat.jpg", CAT)], {"file": "a text field"}, InvalidRequest,
     "part 1 named 'file' is a text field, not a file"),
    ([("image", "cat.jpg", CAT)], {}, InvalidRequest, "the multipart body has no 'file' part"),
    ([("file", "cat.jpg", CAT), ("file", "empty.jpg", b"")], {}, InvalidRequest, "file 2 (empty.jpg) is empty"),
    ([("file", f"{i}.jpg", CUP) for i in range(4)], {}, PayloadTooLarge, "4 files in one request; the limit is 3"),
    ([("file", "cat.jpg", CAT), ("file", "big.jpg", OVER)], {}, PayloadTooLarge,
     f"image 2: big.jpg is {LIMIT + 1} bytes; the limit is {LIMIT}"),
    ([("file", "big.jpg", OVER)], {}, PayloadTooLarge, f"big.jpg is {LIMIT + 1} bytes; the limit is {LIMIT}"),
]


@pytest.mark.parametrize(("files", "fields", "error", "message"), MULTIPART_REFUSALS)
def test_multipart_bodies_are_refused_with_the_part_at_fault(files: list[tuple[str, str, bytes]],
                                                             fields: dict[str, str], error: type[ClassifierError],
                                                             message: str) -> None:
    body, content_type = form(files, fields)
    exc = refused(body, content_type)
    assert type(exc) is error and exc.message.startswith(message), exc.message


def test_a_large_inline_image_is_pointed_to_uploads_when_they_are_on() -> None:
    assert "POST /uploads" not in refused(OVER, "image/jpeg").message
    assert refused(OVER, "image/jpeg", WITH_UPLOADS).message.endswith("(use POST /uploads for larger images)")


# --- s3_key: everything that is decided before S3 is asked -----------------------------------------------


def test_an_s3_key_without_an_uploads_bucket_is_not_configured() -> None:
    exc = refused(as_json({"s3_key": "uploads/2026/11/22/x.jpg"}), "application/json")
    assert type(exc) is UploadsDisabled and exc.status == 501


@pytest.mark.parametrize(("payload", "error", "message"), [
    ({"s3_key": "uploads/2026/11/22/x.jpg", "image": base64.b64encode(CAT).decode()}, InvalidRequest,
     "send either 'image' or 's3_key', not both"),
    ({"s3_key": "models/resnet50/CURRENT"}, InvalidParameter, "s3_key: 'models/resnet50/CURRENT' must name an "
                                                              "object under uploads/ (as returned by POST /uploads)"),
    ({"s3_key": "uploads/../models/x"}, InvalidParameter, "s3_key: 'uploads/../models/x' contains an empty, '.' "
                                                          "or '..' path segment"),
    ({"s3_key": 7}, InvalidRequest, "'s3_key' must be a string"),
])
def test_s3_keys_are_checked_before_s3_is_asked(payload: dict[str, object], error: type[ClassifierError],
                                                message: str) -> None:
    # (the unit tier opens no connection: a key that got as far as S3 would fail this test on the socket)
    exc = refused(as_json(payload), "application/json", WITH_UPLOADS)
    assert type(exc) is error and exc.message == message
