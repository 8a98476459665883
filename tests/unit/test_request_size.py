"""``MAX_REQUEST_BYTES`` caps the whole request body, checked twice: on the Content-Length a client
declares (refused before the body is read), and while the body streams in (a chunked upload, or a
Lambda event without the header). Both answer 413 ``payload_too_large`` as JSON and store nothing;
a body of exactly the limit is served. ``MAX_IMAGE_BYTES`` stays at its 4 MiB default here, so the
request cap is the only limit these bodies meet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.lambda_events import FakeContext, LambdaResponse, load_handler, make_event, read_response
from helpers.photos import jpeg
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


def assert_too_large(status: int, body: Any, message: str) -> None:
    assert status == 413
    assert body == {"error": {"code": "payload_too_large", "message": message}}


@pytest.fixture(scope="module")
def capped_handler(published_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    store = copy_store(published_store, tmp_path_factory.mktemp("capped-lambda") / "store")
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield load_handler(monkeypatch, store, MAX_REQUEST_BYTES=str(LIMIT)), store


# --- over HTTP -----------------------------------------------------------------------------------


# --- through a Lambda event ----------------------------------------------------------------------


def invoke(handler: Any, kind: str, body: bytes, *, declare_length: bool) -> LambdaResponse:
    # API Gateway passes on the client's Content-Length header; an event built by hand may lack it
    headers = {"content-length": str(len(body))} if declare_length else {}
    event = make_event(kind, "POST", "/classify", body=body, content_type="image/jpeg", headers=headers)
    return read_response(handler(event, FakeContext()))


@pytest.mark.parametrize("kind", ["v1", "v2"])
@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "no-content-length"])
def test_lambda_events_are_capped_too(capped_handler: tuple[Any, Path], kind: str, declare_length: bool) -> None:
    handler, store = capped_handler
    # GIVEN a body of exactly the limit: classified and stored
    at_limit = invoke(handler, kind, sized_jpeg(LIMIT), declare_length=declare_length)
    assert at_limit.status == 200, at_limit.body[:300]
    before = stored_records(store)
    assert at_limit.json()["id"] in before
    # WHEN one byte more arrives, with or without its length declared
    over = invoke(handler, kind, sized_jpeg(LIMIT + 1), declare_length=declare_length)
    # THEN the matching check refuses it as a JSON 413 proxy response, and nothing is stored
    assert over.headers["content-type"] == "application/json"
    assert_too_large(over.status, over.json(), DECLARED_OVER if declare_length else STREAMED_OVER)
    assert stored_records(store) == before
