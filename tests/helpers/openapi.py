"""Real answers against the API document's schemas."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from classifier.api.document import full_document


def matches_the_document(body: Any, path: str, method: str, status: int = 200) -> None:
    """``body`` is valid against the API document's schema of that response."""
    spec = full_document()
    schema = spec["paths"][path][method]["responses"][str(status)]["content"]["application/json"]["schema"]
    errors = list(Draft202012Validator({**schema, "components": spec["components"]}).iter_errors(body))
    assert not errors, f"{method.upper()} {path} {status}: {errors[0].message}"
