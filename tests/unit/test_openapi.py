"""The hand-maintained OpenAPI document is valid, each deployment's document lists exactly the routes it
serves, its parameters are the parameter table's, and a parameter value the document allows is one the
server takes (and the other way round)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.testclient import TestClient

from classifier.api.app import create_app
from classifier.api.document import deployment_document, full_document, served_operations
from classifier.api.parameters import CURSOR, PATH_PARAMETERS, QUERY_PARAMETERS, IntParameter, TextParameter
from classifier.config import MODEL_NAME_RE, Settings
from classifier.records.cursors import Cursors, Filters
from classifier.store.manifest import NAME_RE

from helpers.photos import jpeg

SPEC = full_document()


def app_for(tmp_path: Path, *, uploads: bool) -> Starlette:
    settings = Settings(model_store=tmp_path, uploads_bucket="bucket" if uploads else None)
    return create_app(settings, load_model=False)


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    responses = SPEC["paths"][path][method]["responses"]
    entry = responses[str(status)]
    schema = entry["content"]["application/json"]["schema"]
    # Resolve "#/components/..." against the whole document.
    return {**schema, "components": SPEC["components"]}


def operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, ops in spec["paths"].items() for method in ops}


def test_document_is_valid_openapi(tmp_path: Path) -> None:
    validate(SPEC)
    assert SPEC["openapi"].startswith("3.")
    # as every deployment serves it, too
    for uploads in (True, False):
        app = app_for(tmp_path, uploads=uploads)
        validate(deployment_document(app.routes, uploads=uploads))


@pytest.mark.parametrize("uploads", [True, False], ids=["with uploads", "without uploads"])
def test_each_deployment_documents_exactly_its_routes(tmp_path: Path, uploads: bool) -> None:
    app = app_for(tmp_path, uploads=uploads)
    assert operations(deployment_document(app.routes, uploads=uploads)) == served_operations(app.routes)


def test_the_file_documents_every_route_the_api_has(tmp_path: Path) -> None:
    assert operations(SPEC) == served_operations(app_for(tmp_path, uploads=True).routes)


def test_without_an_uploads_bucket_the_document_names_no_upload(tmp_path: Path) -> None:
    # GIVEN a deployment without UPLOADS_BUCKET, and one with it
    without = deployment_document(app_for(tmp_path, uploads=False).routes, uploads=False)
    with_uploads = deployment_document(app_for(tmp_path, uploads=True).routes, uploads=True)
    # THEN the first has no POST /uploads, no s3_key body and no schema only they use ...
    assert "/uploads" not in without["paths"] and "s3_key" not in json.dumps(without["paths"])
    assert {"Upload", "S3KeyJson"}.isdisjoint(without["components"]["schemas"])
    assert without["paths"]["/classify"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "oneOf": [{"$ref": "#/components/schemas/ImageJson"}]}
    # ... and the second has both, and neither carries the file's marks
    assert "/uploads" in with_uploads["paths"] and "S3KeyJson" in with_uploads["components"]["schemas"]
    assert "x-requires" not in json.dumps(without) and "x-requires" not in json.dumps(with_uploads)


def test_document_states_the_bounds_and_defaults_the_code_enforces() -> None:
    # The parameter table the routes read (classifier.api.parameters) is what the document says.
    tables = [("query", QUERY_PARAMETERS), ("path", PATH_PARAMETERS)]
    for where, table in tables:
        for (path, method), parameters in table.items():
            documented = {p["name"]: p["schema"] for p in SPEC["paths"][path][method]["parameters"]
                          if p["in"] == where}
            for parameter in parameters:
                schema = documented[parameter.name]
                if isinstance(parameter, IntParameter):
                    assert (schema["type"], schema["minimum"], schema["maximum"], schema["default"]) == (
                        "integer", parameter.minimum, parameter.maximum, parameter.default), parameter.name
                else:
                    assert (schema["type"], schema["minLength"], schema["maxLength"]) == (
                        "string", 1, parameter.max_length), parameter.name
                    assert schema.get("pattern") == (f"^{parameter.pattern}$" if parameter.pattern else None)
    # Every query parameter is in the table, and every path parameter of the /models routes (a record id
    # or a version in a path is checked where it is read).
    for where, table in tables:
        documented_all = {(path, method, p["name"]) for path, ops in SPEC["paths"].items()
                          for method, op in ops.items() for p in op.get("parameters", [])
                          if p["in"] == where and (where == "query" or "/models/" in path)}
        assert documented_all == {(path, method, p.name) for (path, method), ps in table.items() for p in ps}


def test_model_names_follow_the_stores_rule() -> None:
    # The settings, the API's path parameter and the store refuse the same names.
    from classifier.api.parameters import MODEL_NAME

    assert MODEL_NAME_RE.pattern == NAME_RE.pattern == f"^{MODEL_NAME.pattern}$"


def test_the_cursor_bound_holds_the_longest_cursor_the_store_signs() -> None:
    # a page of a 256-character label of 4-byte characters and a model version, within a time range
    label = "\U0001f600" * 256
    version = "20261122T095500Z-e9c879a52177"
    now = datetime.now(UTC)
    key = {"id": "20261122T095500123456Z-e9c879a52177", "label_version": f"{label}\x1f{version}"}
    assert len(Cursors(b"secret").make(key, Filters(label, version, now, now))) <= CURSOR.max_length


# -- a value the document allows is a value the server takes -------------------------------------


def documented_value(raw: str, schema: dict[str, Any]) -> Any:
    """A query string's value as the document types it (style form: an integer is its digits)."""
    if schema.get("type") == "integer" and re.fullmatch(r"-?[0-9]+", raw):
        return int(raw)
    return raw


def documented_ok(raw: str, schema: dict[str, Any]) -> bool:
    return Draft202012Validator(schema, format_checker=FormatChecker()).is_valid(documented_value(raw, schema))


def candidates(parameter: IntParameter | TextParameter) -> list[str]:
    """Values at and around every bound the document states, and ones of the wrong kind."""
    if isinstance(parameter, IntParameter):
        lo, hi = parameter.minimum, parameter.maximum
        return ["", str(lo - 1), str(lo), str(hi), str(hi + 1), f"0{lo}", "000000000007", "-1", "1.5", "abc",
                " 5", "+5", "1_0", "\u0665", "99999999999999999999"]
    longest = parameter.example or "a"
    values = ["", "a", "a" * parameter.max_length, "a" * (parameter.max_length + 1), longest, longest + "x",
              " " + longest, longest.replace("2", "\u0662"), "\u00e9t\u00e9"]
    if parameter.name in ("since", "until"):
        values += ["2026-11-22T10:00:00.123456Z", "2026-11-22T10:00:00-00:00", "2026-11-22T10:00:00+02:00",
                   "2026-11-22T10:00Z", "2026-13-22T10:00:00Z", "2026-02-30T10:00:00Z", "2026-11-22T23:59:60Z",
                   "2026-11-22t10:00:00z", "2026-11-22"]
    return values


def query_cases() -> list[Any]:
    return [pytest.param(path, method, parameter, raw, id=f"{method} {path} {parameter.name}={raw[:24]!r}")
            for (path, method), parameters in QUERY_PARAMETERS.items() if "{" not in path
            for parameter in parameters if parameter is not CURSOR
            for raw in candidates(parameter)]


def ask(client: TestClient, path: str, method: str, query: dict[str, str]) -> int:
    """The status of a request whose only possible fault is ``query``: a POST has no body (a 400 once the query
    is taken), which spares an inference per value."""
    if method == "post":
        return client.post(path, params=query, content=b"", headers={"content-type": "image/jpeg"}).status_code
    return client.get(path, params=query).status_code


SMALL_JPEG = jpeg("chelsea")


@pytest.mark.parametrize(("path", "method", "parameter", "raw"), query_cases())
def test_the_server_takes_exactly_the_values_the_document_allows(
        app_client: TestClient, path: str, method: str, parameter: IntParameter | TextParameter, raw: str) -> None:
    schema = next(p["schema"] for p in SPEC["paths"][path][method]["parameters"] if p["name"] == parameter.name)
    status = ask(app_client, path, method, {parameter.name: raw})
    assert (status != 422) == documented_ok(raw, schema), f"{parameter.name}={raw!r}: the server said {status}"
    assert status in ((400, 422) if method == "post" else (200, 422))


def test_an_empty_or_oversized_cursor_is_refused_by_both(app_client: TestClient) -> None:
    # An opaque cursor: the document states its length, the server also that it signed it.
    schema = next(p["schema"] for p in SPEC["paths"]["/classifications"]["get"]["parameters"]
                  if p["name"] == "cursor")
    for _ in range(3):
        app_client.post("/classify", content=SMALL_JPEG, headers={"content-type": "image/jpeg"})
    cursor = app_client.get("/classifications", params={"limit": 1}).json()["next_cursor"]
    assert cursor is not None
    for raw, accepted in [("", False), ("x" * (CURSOR.max_length + 1), False), (cursor, True)]:
        assert documented_ok(raw, schema) is accepted
        assert (app_client.get("/classifications", params={"limit": 1, "cursor": raw}).status_code == 200) is accepted


def test_schemas_would_catch_a_wrong_shape() -> None:
    # The check above is only meaningful if the schemas are strict enough to fail.
    validator = Draft202012Validator(response_schema("/classify", "post", 200))
    assert list(validator.iter_errors({"predictions": "cat"}))
    error = Draft202012Validator(response_schema("/classify", "post", 415))
    assert list(error.iter_errors({"detail": "Not Found"}))
    models = Draft202012Validator(response_schema("/models", "get", 200))
    assert list(models.iter_errors({"models": [{"name": "resnet50"}]}))


@pytest.mark.parametrize("path", ["/classify", "/models/{name}/classify", "/uploads"])
def test_request_bodies_are_documented(path: str) -> None:
    content = SPEC["paths"][path]["post"]["requestBody"]["content"]
    assert "application/json" in content
    if path != "/uploads":
        assert {"image/*", "application/octet-stream", "multipart/form-data"} <= set(content)
