"""Query parameters: a route refuses one it does not take, naming it, and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from classifier.api.app import create_app
from classifier.api.document import REQUIRES, full_document
from classifier.api.parameters import accepted, refuse_unknown
from classifier.config import Settings
from classifier.errors import InvalidParameter

from helpers.photos import jpeg
from helpers.stores import copy_store

VERSION = "20261122T100000Z-0123456789ab"
RECORD = "20261122T100000000000Z-0123456789ab"


def test_a_misspelt_parameter_is_named_with_the_one_meant() -> None:
    with pytest.raises(InvalidParameter) as refused:
        refuse_unknown(["limit", "lable"], "/classifications", "GET")
    assert refused.value.message == ("unknown query parameter 'lable' for GET /classifications: did you mean "
                                     "'label'? it takes limit, cursor, label, model_version, model, since, until")
    with pytest.raises(InvalidParameter) as refused:
        refuse_unknown(["verbose"], "/health", "HEAD")
    assert refused.value.message == "unknown query parameter 'verbose' for HEAD /health: it takes no query parameters"
    refuse_unknown(["top_k"], "/classify", "POST")
    refuse_unknown([], "/model", "GET")
    assert accepted("/classifications", "HEAD") == accepted("/classifications", "GET")


def documented_routes() -> list[tuple[str, str]]:
    return [(path, method) for path, ops in full_document()["paths"].items() for method in ops]


@pytest.fixture(scope="module")
def uploads_client(published_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The API of a deployment with an uploads bucket (it serves POST /uploads); S3 is not asked here."""
    store = copy_store(published_store, tmp_path_factory.mktemp("uploads") / "store")
    with TestClient(create_app(Settings(model_store=store, uploads_bucket="uploads-bucket"))) as client:
        yield client


@pytest.mark.parametrize(("path", "method"), documented_routes(), ids=lambda v: str(v))
def test_every_route_refuses_a_parameter_it_does_not_take(app_client: TestClient, uploads_client: TestClient,
                                                          path: str, method: str) -> None:
    # GIVEN a request that would otherwise be served (a real photo for POST /classify), to a deployment
    # that serves the route (POST /uploads needs an uploads bucket)
    if REQUIRES in full_document()["paths"][path][method]:
        app_client = uploads_client
    url = path.replace("{record_id}", RECORD).replace("{version}", VERSION).replace("{name}", "resnet50")
    before = app_client.get("/classifications", params={"limit": 100}).json()["items"]
    # WHEN it carries a parameter the route does not take
    response = app_client.request(method.upper(), url, params={"lable": "tabby"}, content=jpeg("chelsea"),
                                  headers={"content-type": "image/jpeg"})
    # THEN it is a 422 invalid_parameter naming it, and nothing was classified or stored
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter"
    assert error["message"].startswith(f"unknown query parameter 'lable' for {method.upper()} {path}: ")
    assert app_client.get("/classifications", params={"limit": 100}).json()["items"] == before


def test_the_parameters_a_route_takes_are_still_served(app_client: TestClient) -> None:
    posted = app_client.post("/classify", params={"top_k": 3}, content=jpeg("chelsea"),
                             headers={"content-type": "image/jpeg"})
    assert posted.status_code == 200 and len(posted.json()["predictions"]) == 3
    listed = app_client.get("/classifications", params={"limit": 1, "label": posted.json()["predictions"][0]["label"],
                                                        "since": "2000-01-01T00:00:00Z"})
    assert listed.status_code == 200 and [r["id"] for r in listed.json()["items"]] == [posted.json()["id"]]
    cursor = app_client.get("/classifications", params={"limit": 1, "cursor": "forged"})
    assert cursor.status_code == 422 and "cursor" in cursor.json()["error"]["message"]
