"""The classification API's happy paths: in process (the app's own behaviour), over real HTTP (each way
in, through uvicorn) and through the Lambda handler."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from helpers.lambda_events import FakeContext, make_event, multipart, read_response
from helpers.photos import encode, jpeg, photo
from helpers.processes import LiveServer
from helpers.stores import stored_records

PHOTOS = ["chelsea", "coffee", "rocket"]


def same_predictions(a: dict[str, Any], b: dict[str, Any], tol: float = 1e-5) -> None:
    assert [p["index"] for p in a["predictions"]] == [p["index"] for p in b["predictions"]]
    assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
    for pa, pb in zip(a["predictions"], b["predictions"], strict=True):
        assert abs(pa["score"] - pb["score"]) <= tol


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
    assert raw.headers.get("x-request-id")


def test_each_classification_is_stored_and_listed_newest_first(app_client: TestClient) -> None:
    client = app_client
    ids = [client.post("/classify", content=jpeg(name), headers={"content-type": "image/jpeg"}).json()["id"]
           for name in PHOTOS]
    page = client.get("/classifications", params={"limit": 3}).json()
    assert [item["id"] for item in page["items"]] == ids[::-1]
    one = client.get(f"/classifications/{ids[0]}")
    assert one.status_code == 200
    assert one.json()["id"] == ids[0] and one.json()["predictions"]


def test_batch_equals_one_by_one(app_client: TestClient) -> None:
    # GIVEN three different photos
    images = [jpeg(name) for name in PHOTOS]
    body, content_type = multipart([("file", data) for data in images])
    # WHEN sent as one multipart batch
    batch = app_client.post("/classify", content=body, headers={"content-type": content_type})
    singles = [app_client.post("/classify", content=data, headers={"content-type": "image/jpeg"}).json()
               for data in images]
    # THEN three results come back, in order, equal to the one-by-one results
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert len(results) == 3
    assert len({r["id"] for r in results}) == 3
    for result, single, data in zip(results, singles, images, strict=True):
        same_predictions(result, single)
        assert result["image"]["sha256"] == single["image"]["sha256"]
    # and they differ from each other (the order is meaningful)
    assert len({r["image"]["sha256"] for r in results}) == 3


def test_accepted_formats(app_client: TestClient) -> None:
    img = photo("coffee")
    for fmt in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"):
        data = encode(img.convert("P") if fmt == "GIF" else img, fmt)
        response = app_client.post("/classify", content=data, headers={"content-type": "application/octet-stream"})
        assert response.status_code == 200, (fmt, response.text)
        assert response.json()["image"]["format"] == fmt


def test_model_health_and_openapi(app_client: TestClient) -> None:
    model = app_client.get("/model").json()
    health = app_client.get("/health")
    spec = app_client.get("/openapi.json").json()
    assert model["state"] == "loaded" and model["backend"] == "onnx"
    assert model["manifest"]["version"] == model["version"]
    assert model["manifest"]["artifacts"]["model.onnx"]["sha256"]
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert {"/classify", "/classifications", "/classifications/{record_id}", "/model", "/health"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/classify"]["post"]["requestBody"]["content"]


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


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_lambda_handler_batch_and_json(handler_and_store: tuple[Any, Path], kind: str) -> None:
    handler, _ = handler_and_store
    body, content_type = multipart([("file", jpeg(name)) for name in PHOTOS])
    batch = read_response(handler(make_event(kind, "POST", "/classify", body=body, content_type=content_type),
                                  FakeContext()))
    assert batch.status == 200 and len(batch.json()["results"]) == 3
    payload = json.dumps({"image": base64.b64encode(jpeg("chelsea")).decode()}).encode()
    single = read_response(handler(make_event(kind, "POST", "/classify", body=payload,
                                              content_type="application/json"), FakeContext()))
    assert single.status == 200
    same_predictions(single.json(), batch.json()["results"][0])
