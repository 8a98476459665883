"""Request body limits over a real HTTP server: exact limits, declared lengths, streamed bodies, batches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers.lambda_events import multipart
from helpers.photos import jpeg
from helpers.processes import LiveServer, live_server
from helpers.stores import copy_store, stored_records

LIMIT = 100_000
# The message of each check (classifier.api.middleware): the declared length, or the bytes counted so far.
DECLARED_OVER = f"the request body ({LIMIT + 1} bytes) is over the {LIMIT}-byte limit"
STREAMED_OVER = f"the request body is over the {LIMIT}-byte limit"


def sized_jpeg(size: int) -> bytes:
    """A real photo's JPEG padded to exactly ``size`` bytes: decoders stop at the end-of-image marker."""
    data = jpeg("chelsea")
    assert len(data) < size
    return data + b"\0" * (size - len(data))


def chunks(data: bytes, size: int = 16_384) -> Iterator[bytes]:
    """The body as a generator: httpx then sends it chunked, with no Content-Length."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


def assert_too_large(status: int, body: Any, message: str) -> None:
    assert status == 413
    assert body == {"error": {"code": "payload_too_large", "message": message}}


@pytest.fixture(scope="module")
def capped_server(published_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    base = tmp_path_factory.mktemp("capped-server")
    store = copy_store(published_store, base / "store")
    with live_server(store, base, env={"MAX_REQUEST_BYTES": str(LIMIT)}) as server:
        yield server


# --- over HTTP -----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_of_exactly_the_limit_is_classified(capped_server: LiveServer, chunked: bool) -> None:
    data = sized_jpeg(LIMIT)
    response = httpx.post(capped_server.url + "/classify", content=chunks(data) if chunked else data,
                          headers={"content-type": "image/jpeg"}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["id"] in stored_records(capped_server.store)


def test_a_declared_length_over_the_limit_is_refused_before_reading(capped_server: LiveServer) -> None:
    before = stored_records(capped_server.store)
    # GIVEN a body one byte over the limit, with its Content-Length
    response = httpx.post(capped_server.url + "/classify", content=sized_jpeg(LIMIT + 1),
                          headers={"content-type": "image/jpeg"}, timeout=60)
    # THEN the length check refuses it: 413 JSON, and nothing is stored
    assert_too_large(response.status_code, response.json(), DECLARED_OVER)
    assert response.headers["content-type"] == "application/json"
    assert stored_records(capped_server.store) == before


def test_a_streamed_body_over_the_limit_is_cut_off(capped_server: LiveServer) -> None:
    before = stored_records(capped_server.store)
    # GIVEN a chunked upload (no Content-Length to check) one byte over the limit
    response = httpx.post(capped_server.url + "/classify", content=chunks(sized_jpeg(LIMIT + 1)),
                          headers={"content-type": "image/jpeg"}, timeout=60)
    assert "content-length" not in response.request.headers
    # THEN the count of bytes received refuses it: 413 JSON, nothing stored
    assert_too_large(response.status_code, response.json(), STREAMED_OVER)
    assert stored_records(capped_server.store) == before


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_batch_of_small_images_over_the_limit_is_refused(capped_server: LiveServer, chunked: bool) -> None:
    before = stored_records(capped_server.store)
    # GIVEN three photos, each well under both limits, together over MAX_REQUEST_BYTES
    body, content_type = multipart([("file", jpeg("chelsea"))] * 3)
    assert len(body) > LIMIT and len(jpeg("chelsea")) < LIMIT
    response = httpx.post(capped_server.url + "/classify", content=chunks(body) if chunked else body,
                          headers={"content-type": content_type}, timeout=60)
    # THEN the whole request is refused (while the form streams in, when it is chunked)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"
    assert response.json()["error"]["message"] == (STREAMED_OVER if chunked else
                                                   f"the request body ({len(body)} bytes) is over the "
                                                   f"{LIMIT}-byte limit")
    assert stored_records(capped_server.store) == before


