"""``GET /docs`` loads Swagger UI from a CDN, pinned: each file carries the Subresource Integrity hash of
that exact version, as npm installs it (package.json pins the same version), and the page's
Content-Security-Policy admits those files and its one inline script, by hash, and nothing else."""

from __future__ import annotations

import base64
import hashlib
import json
import re

from classifier.api import routes

from helpers import ROOT

NPM_PACKAGE = ROOT / "node_modules" / "swagger-ui-dist"


def sri(data: bytes, algorithm: str) -> str:
    return f"{algorithm}-{base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def test_the_pinned_version_is_the_one_npm_installs() -> None:
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["swagger-ui-dist"]
    installed = json.loads((NPM_PACKAGE / "package.json").read_text())["version"]
    assert pinned == installed == routes.SWAGGER_UI_VERSION


def test_each_file_carries_the_hash_of_its_bytes() -> None:
    for name, integrity in routes.SWAGGER_UI_INTEGRITY.items():
        algorithm = integrity.split("-", 1)[0]
        assert integrity == sri((NPM_PACKAGE / name).read_bytes(), algorithm), name
        # and the page asks for that file, with that hash, from that version
        tag = re.search(rf'[^<]*/{re.escape(name)}"\s+integrity="([^"]+)" crossorigin="anonymous"', routes.SWAGGER_UI)
        assert tag is not None and tag.group(1) == integrity
    assert f"swagger-ui-dist@{routes.SWAGGER_UI_VERSION}/" in routes.SWAGGER_UI
    assert "swagger-ui-dist@5/" not in routes.SWAGGER_UI  # no floating version


def test_the_policy_admits_only_the_pinned_script_and_the_inline_one() -> None:
    directives = dict(d.split(" ", 1) for d in routes.DOCS_CSP.split("; ") if " " in d)
    inline = re.findall(r"<script>(.*?)</script>", routes.SWAGGER_UI, re.S)
    assert inline == [routes.SWAGGER_UI_INIT]
    assert directives["script-src"].split() == [
        f"{routes.SWAGGER_UI_BASE}/swagger-ui-bundle.js", f"'{sri(routes.SWAGGER_UI_INIT.encode(), 'sha256')}'"]
    assert "default-src 'none'" in routes.DOCS_CSP and "frame-ancestors 'none'" in routes.DOCS_CSP
