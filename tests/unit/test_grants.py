"""The routes each IAM policy of the API covers (classifier.api.grants): read-all only in its own."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from starlette.routing import Route

from classifier.api.app import create_app
from classifier.api.grants import invoke_grants, read_all_grants, resource_path
from classifier.config import Settings


def allowed(grants: list[tuple[str, str]], method: str, path: str) -> bool:
    return any(method == m and fnmatch.fnmatchcase(path, pattern) for m, pattern in grants)


def test_parameters_become_wildcards() -> None:
    assert resource_path("/classifications/{record_id}") == "/classifications/*"
    assert resource_path("/model/versions/{version}/evaluation") == "/model/versions/*/evaluation"
    assert resource_path("/health") == "/health"


def test_every_route_of_the_app_is_in_exactly_one_policy(tmp_path: Path) -> None:
    # GIVEN every (method, path) the app serves, with a value for each path parameter
    app = create_app(Settings(model_store=tmp_path, uploads_bucket="uploads-bucket"), load_model=False)
    values = {"record_id": "20261122T100000123456Z-3f9a0c1b2d4e", "version": "20261122T095500Z-e9c879a52177",
              "name": "resnet50"}
    routes = {(method, re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], route.path))
              for route in app.routes if isinstance(route, Route) for method in (route.methods or ()) - {"HEAD"}}
    assert ("POST", "/models/resnet50/classify") in routes
    invoke, read_all = invoke_grants(), read_all_grants()
    for method, path in routes:
        # THEN the read-all routes are the read-all policy's alone, and every other route the invoke policy's
        reads_all = path.startswith("/all/")
        assert allowed(read_all, method, path) is reads_all, (method, path)
        assert allowed(invoke, method, path) is not reads_all, (method, path)


def test_the_invoke_policy_grants_no_path_under_all() -> None:
    # A wildcard that reached /all/... (say "GET /*") would hand every caller the read-all grant.
    for method in ("GET", "POST"):
        assert not allowed(invoke_grants(), method, "/all/classifications")
        assert not allowed(invoke_grants(), method, "/all/classifications/x")
    assert read_all_grants() == [("GET", "/all/classifications"), ("GET", "/all/classifications/*")]
