"""The OpenAPI document a deployment serves: ``openapi.json`` narrowed to what this deployment serves.

``openapi.json`` (beside this module, kept by hand) describes every route the API
has. A deployment serves fewer: without an uploads bucket there is no
``POST /uploads``, and ``POST /classify`` takes no ``{"s3_key"}``. The parts of the
file that only an uploads bucket serves carry ``"x-requires": "uploads"``. So a
client that reads ``GET /openapi.json`` learns exactly what this deployment
answers, and a route missing from it answers 404 ``not_found``, as any unknown
route does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

from starlette.routing import BaseRoute, Route

from classifier import __version__

# Served, but not described: the document itself and its UI.
UNDOCUMENTED = frozenset({"/openapi.json", "/docs"})
# The mark of what a deployment serves only with an uploads bucket (UPLOADS_BUCKET).
REQUIRES = "x-requires"
UPLOADS = "uploads"
_SCHEMA_REF = "#/components/schemas/"


@cache
def _file() -> str:
    from importlib import resources  # imported where used: off the cold start's path (docs/performance.md)

    return resources.files("classifier.api").joinpath("openapi.json").read_text()


def full_document() -> dict[str, Any]:
    """``openapi.json`` as kept: every route the API has, whatever a deployment serves."""
    spec: dict[str, Any] = json.loads(_file())
    spec["info"]["version"] = __version__
    return spec


def served_operations(routes: Iterable[BaseRoute]) -> set[tuple[str, str]]:
    """(path, method) of every documented operation an app's ``routes`` serve."""
    return {
        (route.path, method.lower())
        for route in routes
        if isinstance(route, Route) and route.path not in UNDOCUMENTED
        for method in (route.methods or set()) - {"HEAD"}
    }


def deployment_document(routes: Iterable[BaseRoute], *, uploads: bool) -> dict[str, Any]:
    """The document of an app serving ``routes``, with or without an uploads bucket."""
    spec = full_document()
    served = served_operations(routes)
    for path in list(spec["paths"]):
        operations = spec["paths"][path]
        for method in [m for m in operations if (path, m) not in served]:
            del operations[method]
        if not operations:
            del spec["paths"][path]
    spec["paths"] = _features(spec["paths"], {UPLOADS} if uploads else set())
    _drop_unused_schemas(spec)
    return spec


def _features(node: Any, enabled: set[str]) -> Any:
    """``node`` without the parts that require a feature not ``enabled``, and without the marks."""
    if isinstance(node, dict):
        return {key: _features(value, enabled) for key, value in node.items()
                if key != REQUIRES and _kept(value, enabled)}
    if isinstance(node, list):
        return [_features(item, enabled) for item in node if _kept(item, enabled)]
    return node


def _kept(node: Any, enabled: set[str]) -> bool:
    return not (isinstance(node, dict) and REQUIRES in node and node[REQUIRES] not in enabled)


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMA_REF):
            yield ref.removeprefix(_SCHEMA_REF)
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _drop_unused_schemas(spec: dict[str, Any]) -> None:
    """Remove the component schemas no path reaches (``Upload`` without ``POST /uploads``, say)."""
    schemas = spec["components"]["schemas"]
    reached: set[str] = set()
    todo = list(_refs(spec["paths"]))
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(_refs(schemas[name]))
    spec["components"]["schemas"] = {name: schema for name, schema in schemas.items() if name in reached}
