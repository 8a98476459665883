"""The HTTP API front door (``api_type=http``), end to end on loopback.

A real HTTP server checks SigV4 as API Gateway's HTTP API does with ``AWS_IAM`` on its
``$default`` route (tests/helpers/sigv4.py), turns each verified request into the payload
format 2.0 event API Gateway sends, and hands it to ``classifier.handler.handler``,
imported afresh over a private store as a new Lambda instance. The client signs as a
user would (``ClassifierClient(url, sigv4=True)``, botocore, the environment's credentials).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from classifier.client.api import ClassifierClient, RetryPolicy

from helpers.aws import REGION, sign_as
from helpers.photos import jpeg
from helpers.sigv4 import HttpApiGateway, http_api_gateway
from helpers.stores import stored_records

ACCESS_KEY, SECRET_KEY = "AKIDEXAMPLEHTTPAPI", "http-api-caller-secret"
FAST_RETRY = RetryPolicy(attempts=2, base=0.01, cap=0.05)


@pytest.fixture
def caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's AWS identity, as botocore finds it in the environment."""
    sign_as(monkeypatch, ACCESS_KEY, SECRET_KEY, REGION)


@pytest.fixture
def http_api(handler_and_store: tuple[Any, Path]) -> Iterator[HttpApiGateway]:
    handler, _ = handler_and_store
    with http_api_gateway(handler, region=REGION, access_key=ACCESS_KEY, secret_key=SECRET_KEY) as gateway:
        yield gateway


def test_a_signed_request_reaches_the_handler_as_a_v2_event_and_is_answered(
        caller: None, http_api: HttpApiGateway, handler_and_store: tuple[Any, Path], tmp_path: Path) -> None:
    # GIVEN a real photo and a client that signs with the caller's credentials
    _, store = handler_and_store
    image = tmp_path / "chelsea.jpg"
    image.write_bytes(jpeg("chelsea"))
    before = len(stored_records(store))
    # WHEN it classifies the photo through the HTTP API front door
    outcome = ClassifierClient(http_api.url, sigv4=True, retry=FAST_RETRY).classify_file(image, top_k=3)
    # THEN the signature verified, and the handler got a payload format 2.0 event with the binary body
    assert outcome.error is None, outcome.error
    assert http_api.verified == ["POST /classify?top_k=3"]
    (event,) = http_api.events
    assert (event["version"], event["routeKey"], event["rawPath"]) == ("2.0", "$default", "/classify")
    assert event["isBase64Encoded"] is True and event["queryStringParameters"] == {"top_k": "3"}
    assert event["requestContext"]["authorizer"]["iam"]["accessKey"] == ACCESS_KEY
    # AND its answer is the classification, stored as a record like any other
    assert outcome.result is not None
    assert len(outcome.result["predictions"]) == 3
    assert outcome.result["image"]["format"] == "JPEG"
    assert len(stored_records(store)) == before + 1


def test_signed_reads_are_answered_and_unsigned_requests_never_reach_the_handler(
        caller: None, http_api: HttpApiGateway) -> None:
    # GIVEN a signed client and an unsigned one
    signed = ClassifierClient(http_api.url, sigv4=True, retry=FAST_RETRY)
    # WHEN the signed one reads the model over GET
    model = signed.model()
    # THEN the handler answered it through a v2 GET event
    assert model["state"] == "loaded"
    assert [e["requestContext"]["http"]["method"] for e in http_api.events] == ["GET"]
    # AND an unsigned request is refused by the front door itself, as API Gateway does, and the handler never sees it
    unsigned = httpx.post(f"{http_api.url}/classify", content=jpeg("coffee"), headers={"content-type": "image/jpeg"})
    assert unsigned.status_code == 403
    assert unsigned.json() == {"message": "Missing Authentication Token"}
    assert http_api.refused == ["missing or malformed Authorization"]
    assert len(http_api.events) == 1
