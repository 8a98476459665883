"""The API over a real HTTP server on loopback: each way in gives torchvision's answer, request ids are echoed."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from helpers.lambda_events import FakeContext, make_event, multipart, read_response
from helpers.photos import encode, jpeg, photo
from helpers.processes import LiveServer, live_server
from helpers.stores import copy_store, stored_records
from helpers.torchvision_reference import assert_same_top5, reference_labels, reference_model, reference_probs


def same_predictions(a: dict[str, Any], b: dict[str, Any], tol: float = 1e-5) -> None:
    assert [p["index"] for p in a["predictions"]] == [p["index"] for p in b["predictions"]]
    assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
    for pa, pb in zip(a["predictions"], b["predictions"], strict=True):
        assert abs(pa["score"] - pb["score"]) <= tol


CHELSEA = jpeg("chelsea")


COFFEE_PNG = encode(photo("coffee"), "PNG")


B64 = base64.b64encode(CHELSEA).decode()


def as_json(image: str) -> bytes:
    return json.dumps({"image": image}).encode()


INPUTS: dict[str, tuple[bytes, str | None, list[bytes]]] = {
    "raw image/jpeg": (CHELSEA, "image/jpeg", [CHELSEA]),
    "raw octet-stream PNG": (COFFEE_PNG, "application/octet-stream", [COFFEE_PNG]),
    "raw without a Content-Type": (CHELSEA, None, [CHELSEA]),
    "multipart, one file": (*multipart([("file", CHELSEA)]), [CHELSEA]),
    "multipart batch": (*multipart([("file", CHELSEA), ("file", COFFEE_PNG)]), [CHELSEA, COFFEE_PNG]),
    "JSON base64": (as_json(B64), "application/json", [CHELSEA]),
    "JSON with a charset": (as_json(B64), "application/json; charset=utf-8", [CHELSEA]),
    "JSON base64 in 76-column lines": (as_json(base64.encodebytes(CHELSEA).decode()), "application/json", [CHELSEA]),
    "JSON data: URL": (as_json(f"data:image/jpeg;base64,{B64}"), "application/json", [CHELSEA]),
    "+json media type": (as_json(B64), "application/vnd.classifier+json", [CHELSEA]),
    "+json with a data: URL": (as_json(f"data:image/png;base64,{base64.b64encode(COFFEE_PNG).decode()}"),
                               "application/vnd.api+json", [COFFEE_PNG]),
}


@pytest.fixture(scope="module")
def fitted_server(fitted_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server over the fitted model, which gives each test photo its own class."""
    store = copy_store(fitted_store, tmp_path_factory.mktemp("fitted") / "store")
    with live_server(store, store.parent) as live:
        yield live


@pytest.fixture(scope="module")
def torchvision_model(fitted_store: Path) -> torch.nn.Module:
    return reference_model(fitted_store)


@pytest.fixture(scope="module")
def torchvision_answers(torchvision_model: torch.nn.Module) -> Callable[[bytes], np.ndarray]:
    cache: dict[bytes, np.ndarray] = {}

    def answer(data: bytes) -> np.ndarray:
        if data not in cache:
            cache[data] = reference_probs(torchvision_model, data)
        return cache[data]

    return answer


def assert_torchvision_answers(body: dict[str, Any], images: list[bytes], probs: Callable[[bytes], np.ndarray],
                               labels: list[str]) -> None:
    results = body["results"] if len(images) > 1 else [body]
    assert len(results) == len(images)
    for result, data in zip(results, images, strict=True):
        assert_same_top5(result["predictions"], probs(data))
        assert all(p["label"] == labels[p["index"]] for p in result["predictions"])


def test_one_image_three_ways(server: LiveServer) -> None:
    # GIVEN one photo sent raw, as JSON base64, and as a multipart file
    data = jpeg("chelsea")
    with server.client() as client:
        raw = client.post("/classify", content=data, headers={"content-type": "image/jpeg"})
        as_json = client.post("/classify?top_k=3", json={"image": base64.b64encode(data).decode()})
        form = client.post("/classify", files={"file": ("chelsea.jpg", data, "image/jpeg")})
    # THEN each answers the documented shape with the same predictions
    for response in (raw, as_json, form):
        assert response.status_code == 200, response.text
    body = raw.json()
    assert set(body) >= {"id", "created_at", "model", "predictions", "image", "timing_ms"}
    assert body["model"]["name"] == "resnet50" and body["model"]["backend"] == "onnx"
    assert body["model"]["trained"] is False
    assert body["warning"] == "untrained model: predictions are meaningless"
    assert body["image"]["format"] == "JPEG"
    assert (body["image"]["width"], body["image"]["height"]) == (451, 300)
    assert len(body["predictions"]) == 5 and len(as_json.json()["predictions"]) == 3
    scores = [p["score"] for p in body["predictions"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0001
    assert set(body["timing_ms"]) == {"decode", "inference", "total"}
    same_predictions(body, form.json())
    assert as_json.json()["predictions"] == body["predictions"][:3]


def test_a_client_request_id_is_echoed_over_http(server: LiveServer) -> None:
    # GIVEN requests that carry the caller's own x-request-id, on a success and on an error
    with server.client() as client:
        ok = client.post("/classify", content=jpeg("chelsea"),
                         headers={"content-type": "image/jpeg", "x-request-id": "client-7f3a-ok"})
        refused = client.post("/classify", content=b"just text",
                              headers={"content-type": "text/plain", "x-request-id": "client-7f3a-415"})
        # and two without one
        anonymous = [client.get("/health") for _ in range(2)]
    # THEN each response carries back exactly the id it was sent
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "client-7f3a-ok"
    assert refused.status_code == 415 and refused.headers["x-request-id"] == "client-7f3a-415"
    # AND without one, the server makes a fresh id per request
    generated = [response.headers["x-request-id"] for response in anonymous]
    assert all(generated) and generated[0] != generated[1]
    assert not {"client-7f3a-ok", "client-7f3a-415"} & set(generated)


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_lambda_handler_classifies(handler_and_store: tuple[Any, Path], server: LiveServer,
                                   kind: str) -> None:
    # GIVEN the same model behind the Lambda handler and the local server
    handler, store = handler_and_store
    data = jpeg("rocket")
    over_http = httpx.post(server.url + "/classify", content=data, headers={"content-type": "image/jpeg"}).json()
    # WHEN API Gateway delivers the image base64-encoded (binary media type)
    event = make_event(kind, "POST", "/classify", body=data, content_type="image/jpeg", query={"top_k": "5"})
    response = read_response(handler(event, FakeContext()))
    # THEN the handler answers JSON with the same predictions, and stored a record
    assert response.status == 200, response.body[:300]
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    same_predictions(body, over_http)
    assert stored_records(store)[body["id"]]["predictions"] == body["predictions"]
    record_event = make_event(kind, "GET", f"/classifications/{body['id']}")
    assert read_response(handler(record_event, FakeContext())).json()["id"] == body["id"]


@pytest.mark.parametrize("way", list(INPUTS))
def test_each_way_in_over_http_gives_torchvision_answer(
    way: str, fitted_server: LiveServer, fitted_store: Path, torchvision_answers: Callable[[bytes], np.ndarray]
) -> None:
    # GIVEN a known photo sent one way over real HTTP (to the model that tells the photos apart)
    body, content_type, images = INPUTS[way]
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.post(fitted_server.url + "/classify", content=body, headers=headers, timeout=60)
    # THEN the predictions are torchvision's own resnet50 + transforms on the same weights
    assert response.status_code == 200, response.text
    assert_torchvision_answers(response.json(), images, torchvision_answers, reference_labels(fitted_store))


