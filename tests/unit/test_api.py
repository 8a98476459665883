"""The classification API's happy paths: in process (the app's own behaviour), over real HTTP (each way
in, through uvicorn) and through the Lambda handler."""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from starlette.testclient import TestClient

from classifier.api.app import create_app
from classifier.config import Settings

from helpers.fitted_model import PHOTO_LABELS
from helpers.lambda_events import FakeContext, load_handler, make_event, multipart, read_response
from helpers.photos import encode, jpeg, photo
from helpers.stores import add_model, copy_store, stored_records
from helpers.torchvision_reference import assert_same_top5, reference_labels, reference_model, reference_probs

PHOTOS = ["chelsea", "coffee", "rocket"]


def same_predictions(a: dict[str, Any], b: dict[str, Any], tol: float = 1e-5) -> None:
    assert [p["index"] for p in a["predictions"]] == [p["index"] for p in b["predictions"]]
    assert [p["label"] for p in a["predictions"]] == [p["label"] for p in b["predictions"]]
    for pa, pb in zip(a["predictions"], b["predictions"], strict=True):
        assert abs(pa["score"] - pb["score"]) <= tol






def test_each_classification_is_stored_and_listed_newest_first(app_client: TestClient) -> None:
    client = app_client
    ids = [client.post("/classify", content=jpeg(name), headers={"content-type": "image/jpeg"}).json()["id"]
           for name in PHOTOS]
    page = client.get("/classifications", params={"limit": 3}).json()
    assert [item["id"] for item in page["items"]] == ids[::-1]
    one = client.get(f"/classifications/{ids[0]}")
    assert one.status_code == 200
    assert one.json()["id"] == ids[0] and one.json()["predictions"]
    # ?model= filters by the model's name: this store's one model has them all, another none
    named = client.get("/classifications", params={"limit": 100, "model": "resnet50"}).json()["items"]
    assert set(ids) <= {item["id"] for item in named} and all(i["model"]["name"] == "resnet50" for i in named)
    assert client.get("/classifications", params={"model": "mobilenet_v3_large"}).json()["items"] == []


@pytest.fixture(scope="module")
def fitted_client(fitted_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The API in process over the fitted model, which gives each test photo its own class."""
    store = copy_store(fitted_store, tmp_path_factory.mktemp("fitted-app") / "store")
    with TestClient(create_app(Settings(model_store=store))) as client:
        yield client


def test_batch_equals_one_by_one(fitted_client: TestClient) -> None:
    # GIVEN three different photos
    images = [jpeg(name) for name in PHOTOS]
    body, content_type = multipart([("file", data) for data in images])
    # WHEN sent as one multipart batch
    batch = fitted_client.post("/classify", content=body, headers={"content-type": content_type})
    singles = [fitted_client.post("/classify", content=data, headers={"content-type": "image/jpeg"}).json()
               for data in images]
    # THEN three results come back, in order, equal to the one-by-one results
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert len(results) == 3
    assert len({r["id"] for r in results}) == 3
    for result, single in zip(results, singles, strict=True):
        same_predictions(result, single)
        assert result["image"]["sha256"] == single["image"]["sha256"]
    # and each is its own photo's answer, so the order is meaningful
    assert [r["predictions"][0]["label"] for r in results] == [PHOTO_LABELS[name] for name in PHOTOS]


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
def test_lambda_handler_batch_and_json(handler_and_store: tuple[Any, Path], kind: str) -> None:
    handler, _ = handler_and_store
    body, content_type = multipart([("file", jpeg(name)) for name in PHOTOS])
    batch = read_response(handler(make_event(kind, "POST", "/classify", body=body, content_type=content_type),
                                  FakeContext()))
    assert batch.status == 200
    assert [r["predictions"][0]["label"] for r in batch.json()["results"]] == [PHOTO_LABELS[n] for n in PHOTOS]
    payload = json.dumps({"image": base64.b64encode(jpeg("chelsea")).decode()}).encode()
    single = read_response(handler(make_event(kind, "POST", "/classify", body=payload,
                                              content_type="application/json"), FakeContext()))
    assert single.status == 200
    same_predictions(single.json(), batch.json()["results"][0])


# --- every way in gives torchvision's answer -----------------------------------------------------

CHELSEA = jpeg("chelsea")
COFFEE_PNG = encode(photo("coffee"), "PNG")
B64 = base64.b64encode(CHELSEA).decode()


def as_json(image: str) -> bytes:
    return json.dumps({"image": image}).encode()


# Each way a classify body can come in: (body, Content-Type, the images it holds, in order).
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
def handler_and_store(fitted_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """The Lambda handler, freshly imported over a private copy of the fitted model's store: a batch
    answered out of order would give one image another's class."""
    store = copy_store(fitted_store, tmp_path_factory.mktemp("lambda") / "store")
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield load_handler(monkeypatch, store), store


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




@pytest.mark.parametrize("kind", ["v1", "v2"])
@pytest.mark.parametrize("way", list(INPUTS))
def test_each_way_in_through_lambda_gives_torchvision_answer(
    way: str, kind: str, handler_and_store: tuple[Any, Path], fitted_store: Path,
    torchvision_answers: Callable[[bytes], np.ndarray],
) -> None:
    # GIVEN the same body in an API Gateway event (base64, as binary media types arrive)
    handler, _ = handler_and_store
    body, content_type, images = INPUTS[way]
    response = read_response(handler(make_event(kind, "POST", "/classify", body=body, content_type=content_type),
                                     FakeContext()))
    # THEN the handler answers torchvision's predictions too
    assert response.status == 200, response.body[:300]
    assert_torchvision_answers(response.json(), images, torchvision_answers, reference_labels(fitted_store))


@pytest.mark.parametrize(
    ("content_type", "payload", "status", "code"),
    [
        # a data: URL whose payload is not base64
        ("application/json", as_json("data:image/jpeg;base64,not*base64!"), 400, "invalid_request"),
        # a data: URL holding bytes that are no image: decoded, then refused as such
        ("application/json", as_json("data:image/jpeg;base64," + base64.b64encode(b"plain text").decode()),
         415, "unsupported_media_type"),
        # a +json body is parsed as JSON: malformed JSON is a 400, not an unaccepted media type
        ("application/vnd.api+json", b"{not json", 400, "invalid_request"),
        ("application/problem+json", json.dumps({"picture": B64}).encode(), 400, "invalid_request"),
        # a media type that only looks like JSON is not parsed as JSON
        ("application/jsonl", as_json(B64), 415, "unsupported_media_type"),
    ],
)
def test_json_forms_refused_with_their_reason(app_client: TestClient, content_type: str, payload: bytes,
                                              status: int, code: str) -> None:
    response = app_client.post("/classify", content=payload, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


# --- several models: /models, /models/{name}, /models/{name}/classify ----------------------------


@pytest.fixture(scope="module")
def two_models(published_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The API serving resnet50 (the default) and products: the same weights, labels of its own."""
    from classifier.api.app import create_app
    from classifier.config import Settings

    store = copy_store(published_store, tmp_path_factory.mktemp("two-models") / "store")
    add_model(store, "products")
    settings = Settings.from_env({"MODEL_STORE": str(store), "MODELS": "resnet50,products"})
    with TestClient(create_app(settings)) as client:
        yield client


def test_each_served_model_answers_with_its_own_labels(two_models: TestClient) -> None:
    # GIVEN two served models; only the default is loaded at start-up
    listing = two_models.get("/models").json()
    assert listing["default"] == "resnet50"
    assert [(m["name"], m["loaded"], m["labels"]) for m in listing["models"]] == [
        ("resnet50", True, 1000), ("products", False, 1000)]
    # WHEN the same photo goes to POST /classify and to POST /models/products/classify
    default = two_models.post("/classify", content=CHELSEA, headers={"content-type": "image/jpeg"}).json()
    products = two_models.post("/models/products/classify?top_k=3", content=CHELSEA,
                               headers={"content-type": "image/jpeg"}).json()
    # THEN each answered with its own model and labels (the same classes: the weights are the same)
    assert (default["model"]["name"], products["model"]["name"]) == ("resnet50", "products")
    assert [p["label"] for p in products["predictions"]] == [f"products {p['index']}" for p in products["predictions"]]
    assert [p["index"] for p in products["predictions"]] == [p["index"] for p in default["predictions"][:3]]
    assert not any(p["label"].startswith("products") for p in default["predictions"])
    # AND products is now loaded, and its record carries its name
    assert [m["loaded"] for m in two_models.get("/models").json()["models"]] == [True, True]
    assert two_models.get(f"/classifications/{products['id']}").json()["model"]["name"] == "products"


def test_a_served_models_state_is_what_get_model_says_of_the_default(two_models: TestClient) -> None:
    default, named = two_models.get("/model").json(), two_models.get("/models/resnet50").json()
    assert default == named and default["name"] == "resnet50"
    products = two_models.get("/models/products").json()
    assert (products["state"], products["name"]) == ("loaded", "products")
    assert products["manifest"]["name"] == "products" and products["spinning"] is False


def test_a_model_that_is_not_served_is_a_404_and_stores_nothing(two_models: TestClient) -> None:
    before = two_models.get("/classifications", params={"limit": 100}).json()["items"]
    for response in (two_models.post("/models/defects/classify", content=CHELSEA,
                                     headers={"content-type": "image/jpeg"}),
                     two_models.get("/models/defects")):
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        assert "defects" in response.json()["error"]["message"]
    assert two_models.get("/classifications", params={"limit": 100}).json()["items"] == before


def test_without_an_uploads_bucket_neither_the_route_nor_the_document_offers_uploads(app_client: TestClient) -> None:
    # GIVEN the API without UPLOADS_BUCKET
    spec = app_client.get("/openapi.json").json()
    # THEN its document offers no way to upload, and asking anyway is what any unknown route is
    assert "/uploads" not in spec["paths"]
    upload = app_client.post("/uploads", json={"content_type": "image/jpeg", "bytes": 10})
    unknown = app_client.post("/nope", json={"content_type": "image/jpeg", "bytes": 10})
    assert (upload.status_code, upload.json()["error"]["code"]) == (unknown.status_code, "not_found") == (404,
                                                                                                            "not_found")
    # AND an s3_key is not a body this API takes: it says what it does take
    refused = app_client.post("/classify", json={"s3_key": "uploads/x.jpg"})
    assert refused.status_code == 400 and "s3_key" not in refused.json()["error"]["message"]
# --- a record store that fails ------------------------------------------------------------------


def refuse_inserts(database: Path) -> None:
    """Make the records database refuse every new record (a trigger aborting the INSERT, as SQLite
    aborts one on a full or failing disk), through a connection of its own."""
    with sqlite3.connect(database) as db:
        db.execute("CREATE TRIGGER refuse_records BEFORE INSERT ON records "
                   "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")


def test_a_refused_record_write_is_deferred_and_the_answer_still_given(published_store: Path, tmp_path: Path) -> None:
    # GIVEN the API over a records database that refuses every write
    from classifier.records import open_record_store
    from classifier.records.deferral import open_deferral, replay

    store = copy_store(published_store, tmp_path / "store")
    settings = Settings(model_store=store)
    with TestClient(create_app(settings)) as client:
        refuse_inserts(store / "records.sqlite3")
        body, content_type = multipart([("file", jpeg("chelsea")), ("file", jpeg("coffee"))])
        # WHEN one image, then a batch, are classified
        one = client.post("/classify", content=jpeg("rocket"), headers={"content-type": "image/jpeg"})
        batch = client.post("/classify", content=body, headers={"content-type": content_type})
        # THEN each is answered as usual (the write is not the client's failure)
        assert one.status_code == 200, one.text
        assert batch.status_code == 200, batch.text
        ids = [one.json()["id"], *(r["id"] for r in batch.json()["results"])]
        # AND nothing was stored, but every record waits, whole, in the deferral place
        assert stored_records(store) == {}
        deferred = open_deferral(settings)
        assert sorted(deferred.pending()) == sorted(ids)
        # AND once the database takes writes again, a replay stores each exactly once
        with sqlite3.connect(store / "records.sqlite3") as db:
            db.execute("DROP TRIGGER refuse_records")
        counts = replay(open_record_store(settings, defer=False), deferred)
        assert (counts.replayed, counts.failed) == (3, 0) and list(deferred.pending()) == []
        assert set(stored_records(store)) == set(ids)
        assert client.get(f"/classifications/{ids[0]}").json()["predictions"] == one.json()["predictions"]


def test_a_record_write_lost_everywhere_is_logged_and_the_answer_still_given(
    published_store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN the API over a records database that refuses every write, and a deferral place that
    # cannot be written either (a file stands where its directory would be)
    from classifier.records.deferral import DEFERRED_DIR_NAME

    store = copy_store(published_store, tmp_path / "store")
    with TestClient(create_app(Settings(model_store=store))) as client:
        refuse_inserts(store / "records.sqlite3")
        (store / DEFERRED_DIR_NAME).write_text("not a directory")
        body, content_type = multipart([("file", jpeg("chelsea")), ("file", jpeg("coffee"))])
        # WHEN one image, then a batch, are classified
        with caplog.at_level(logging.ERROR):
            one = client.post("/classify", content=jpeg("rocket"), headers={"content-type": "image/jpeg"})
            batch = client.post("/classify", content=body, headers={"content-type": content_type})
        # THEN each is answered as usual (the write is not the client's failure)
        assert one.status_code == 200, one.text
        assert batch.status_code == 200, batch.text
        ids = [one.json()["id"], *(r["id"] for r in batch.json()["results"])]
        assert all(len(r["predictions"]) == 5 for r in [one.json(), *batch.json()["results"]])
        # AND each lost write is logged with its record id, and nothing was stored
        failed = [r for r in caplog.records if r.getMessage() == "record write failed"]
        assert [getattr(r, "record_id", None) for r in failed] == ids
        assert stored_records(store) == {}
        assert all(client.get(f"/classifications/{i}").status_code == 404 for i in ids)
        # AND once the database takes writes again, so does the API
        with sqlite3.connect(store / "records.sqlite3") as db:
            db.execute("DROP TRIGGER refuse_records")
        again = client.post("/classify", content=jpeg("rocket"), headers={"content-type": "image/jpeg"})
        assert again.status_code == 200 and set(stored_records(store)) == {again.json()["id"]}
