"""The OpenAPI document as a running server serves it (narrowed to what it serves), and real responses against
its schemas."""

from __future__ import annotations

import base64
from typing import Any

import httpx
from jsonschema import Draft202012Validator

from classifier.api.app import create_app
from classifier.api.document import deployment_document, full_document
from classifier.config import Settings

from helpers.lambda_events import multipart
from helpers.photos import jpeg
from helpers.processes import LiveServer

SPEC = full_document()


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    responses = SPEC["paths"][path][method]["responses"]
    entry = responses[str(status)]
    schema = entry["content"]["application/json"]["schema"]
    # Resolve "#/components/..." against the whole document.
    return {**schema, "components": SPEC["components"]}


def check(response: httpx.Response, path: str, method: str) -> None:
    errors = sorted(Draft202012Validator(response_schema(path, method, response.status_code))
                    .iter_errors(response.json()), key=str)
    assert not errors, f"{method.upper()} {path} {response.status_code}: {errors[0].message}"


def test_served_document_is_the_file_narrowed_to_this_deployment(server: LiveServer) -> None:
    # The shared server has no uploads bucket.
    app = create_app(Settings(model_store=server.store), load_model=False)
    served = httpx.get(server.url + "/openapi.json").json()
    assert served == deployment_document(app.routes, uploads=False)
    assert set(served["paths"]) == set(SPEC["paths"]) - {"/uploads"}
    docs = httpx.get(server.url + "/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text


def test_real_responses_match_their_schemas(server: LiveServer) -> None:
    data = jpeg("chelsea")
    with server.client() as client:
        single = client.post("/classify", content=data, headers={"content-type": "image/jpeg"})
        body, content_type = multipart([("file", data), ("file", jpeg("coffee"))])
        batch = client.post("/classify", content=body, headers={"content-type": content_type})
        as_json = client.post("/classify", json={"image": base64.b64encode(data).decode()})
        page = client.get("/classifications", params={"limit": 2})
        record = client.get(f"/classifications/{single.json()['id']}")
        errors = [
            client.post("/classify", content=b"nope", headers={"content-type": "image/png"}),
            client.post("/classify?top_k=0", content=data, headers={"content-type": "image/jpeg"}),
            client.get("/classifications", params={"cursor": "x"}),
            client.get("/classifications/20200101T000000000000Z-000000000000"),
        ]
        model = client.get("/model")
        health = client.get("/health")
        models = client.get("/models")
        named = client.get("/models/resnet50")
        named_classify = client.post("/models/resnet50/classify", content=data, headers={"content-type": "image/jpeg"})
        unknown = client.get("/models/nope")
    for response, path, method in [
        (single, "/classify", "post"), (batch, "/classify", "post"), (as_json, "/classify", "post"),
        (page, "/classifications", "get"), (record, "/classifications/{record_id}", "get"),
        (errors[0], "/classify", "post"), (errors[1], "/classify", "post"),
        (errors[2], "/classifications", "get"), (errors[3], "/classifications/{record_id}", "get"),
        (model, "/model", "get"), (health, "/health", "get"), (models, "/models", "get"),
        (named, "/models/{name}", "get"), (named_classify, "/models/{name}/classify", "post"),
        (unknown, "/models/{name}", "get"),
    ]:
        check(response, path, method)


