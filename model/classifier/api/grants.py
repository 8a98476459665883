"""Which routes each IAM grant covers: the paths of ``execute-api:Invoke`` in the API's two policies.

API Gateway authorizes a SigV4 request on the resource
``arn:aws:execute-api:<region>:<account>:<api>/<stage>/<METHOD>/<path>``, the
path as requested. So a policy can allow some paths and not others, and the
stack makes two (``lambda_docker/auth.py``):

- ``ApiInvokePolicyArn``: every route of the API except ``/all/...``;
- ``ApiReadAllPolicyArn``: the ``/all/...`` routes, every caller's records.

Both lists come from the OpenAPI document (which the tests hold to the app's
routes), a ``{parameter}`` segment becoming ``*``, so a new route is granted
by the invoke policy as soon as it is documented, and never by accident by
the read-all one.
"""

from __future__ import annotations

import json
from importlib import resources

from classifier.api.identity import READ_ALL_PREFIX

# Routes the app serves but the OpenAPI document leaves out (the document itself, and its UI).
UNDOCUMENTED_ROUTES = (("GET", "/openapi.json"), ("GET", "/docs"))


def documented_routes() -> list[tuple[str, str]]:
    """Every (METHOD, path template) of the OpenAPI document, and the undocumented routes."""
    spec = json.loads(resources.files("classifier.api").joinpath("openapi.json").read_bytes())
    routes = [(method.upper(), path) for path, operations in spec["paths"].items() for method in operations]
    return sorted({*routes, *UNDOCUMENTED_ROUTES})


def resource_path(template: str) -> str:
    """A path template as an IAM resource path: each ``{parameter}`` segment becomes ``*``."""
    return "/".join("*" if part.startswith("{") else part for part in template.split("/"))


def is_read_all(template: str) -> bool:
    return template == READ_ALL_PREFIX or template.startswith(READ_ALL_PREFIX + "/")


def invoke_grants() -> list[tuple[str, str]]:
    """(METHOD, resource path) of every route a caller of the API may call: all but the read-all ones."""
    return sorted({(method, resource_path(path)) for method, path in documented_routes() if not is_read_all(path)})


def read_all_grants() -> list[tuple[str, str]]:
    """(METHOD, resource path) of the routes that read every caller's records."""
    return sorted({(method, resource_path(path)) for method, path in documented_routes() if is_read_all(path)})
