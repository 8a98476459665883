"""The hand-maintained OpenAPI document is valid, lists exactly the app's
routes, and real responses match the schemas it declares."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from starlette.routing import Route

from classifier.api.app import create_app
from classifier.api.parameters import CHECKED_ELSEWHERE, QUERY_PARAMETERS, IntParameter, accepted
from classifier.api.routes import openapi_document
from classifier.config import Settings

SPEC = openapi_document()
UNDOCUMENTED = {"/openapi.json", "/docs"}


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


def test_document_is_valid_openapi() -> None:
    validate(SPEC)
    assert SPEC["openapi"].startswith("3.")


def test_document_lists_exactly_the_routes(tmp_path: Any) -> None:
    app = create_app(Settings(model_store=tmp_path), load_model=False)
    routes = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route) and route.path not in UNDOCUMENTED
        for method in (route.methods or ()) - {"HEAD"}
    }
    documented = {(path, method) for path, ops in SPEC["paths"].items() for method in ops}
    assert routes == documented


def test_document_states_the_bounds_and_defaults_the_code_enforces() -> None:
    # The parameter table the routes read (classifier.api.parameters) is what the document says.
    for (path, method), parameters in QUERY_PARAMETERS.items():
        documented = {p["name"]: p["schema"] for p in SPEC["paths"][path][method]["parameters"] if p["in"] == "query"}
        for parameter in parameters:
            schema = documented[parameter.name]
            if isinstance(parameter, IntParameter):
                assert (schema["type"], schema["minimum"], schema["maximum"], schema["default"]) == (
                    "integer", parameter.minimum, parameter.maximum, parameter.default), parameter.name
            else:
                assert (schema["type"], schema["maxLength"]) == ("string", parameter.max_length), parameter.name
                assert schema.get("pattern") == (f"^{parameter.pattern}$" if parameter.pattern else None)



def test_document_lists_exactly_the_query_parameters_each_route_takes() -> None:
    # A route refuses every other query parameter (api.parameters.accepted): the document says which.
    for path, ops in SPEC["paths"].items():
        for method, op in ops.items():
            documented = sorted(p["name"] for p in op.get("parameters", []) if p["in"] == "query")
            assert documented == sorted(accepted(path, method)), f"{method.upper()} {path}"
            # and that an unknown one is a 422 with the error shape
            assert op["responses"]["422"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorResponse"}, f"{method.upper()} {path}"
    assert {key for key in QUERY_PARAMETERS} | {key for key in CHECKED_ELSEWHERE} <= {
        (path, method) for path, ops in SPEC["paths"].items() for method in ops}




def test_schemas_would_catch_a_wrong_shape() -> None:
    # The check above is only meaningful if the schemas are strict enough to fail.
    validator = Draft202012Validator(response_schema("/classify", "post", 200))
    assert list(validator.iter_errors({"predictions": "cat"}))
    error = Draft202012Validator(response_schema("/classify", "post", 415))
    assert list(error.iter_errors({"detail": "Not Found"}))


@pytest.mark.parametrize("path", ["/classify", "/uploads"])
def test_request_bodies_are_documented(path: str) -> None:
    content = SPEC["paths"][path]["post"]["requestBody"]["content"]
    assert "application/json" in content
    if path == "/classify":
        assert {"image/*", "application/octet-stream", "multipart/form-data"} <= set(content)
