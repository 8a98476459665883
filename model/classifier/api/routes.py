"""The API's routes, and the one place errors become JSON responses.

Each route is a module-level function that finds what it needs on
``request.app.state`` (set by ``classifier.api.app.create_app``): ``settings``,
``models`` (the served models), ``manager`` (the default model's slot), ``records``,
``classifier``, ``uploads``, ``openapi`` (this deployment's document); and the caller
on ``request.state.caller`` (set by the middleware). A caller's records are its own:
``/classifications`` lists and reads only them (another caller's id is a 404, as
if it did not exist), and ``/all/classifications`` reads everyone's, for callers
granted that (``classifier.api.identity``).
"""

from __future__ import annotations

from typing import Any

from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

from classifier.api.document import deployment_document
from classifier.api.identity import Caller
from classifier.api.inputs import read_images
from classifier.api.middleware import error_response
from classifier.api.offload import blocking
from classifier.api.parameters import CURSOR, LABEL, LIMIT, MODEL, MODEL_VERSION, SINCE, TOP_K, UNTIL
from classifier.api.payloads import parse_upload_request
from classifier.errors import ClassifierError, InvalidParameter, ModelUnavailable, NotFound
from classifier.records.ids import is_record_id, parse_timestamp
from classifier.serving.manager import ModelManager
from classifier.store import listing
from classifier.store.layout import ModelStore
from classifier.store.manifest import VERSION_RE, StoreError

_HTTP_CODES = {
    400: "invalid_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_parameter",
}

# /docs: Swagger UI from jsDelivr, pinned to one version, each file with its Subresource Integrity
# hash, so a browser runs nothing but these exact bytes (tests/repo/test_docs_page.py checks the
# hashes against the same version installed from npm: package.json). The Content-Security-Policy
# allows those two files, the page's one inline script (by its hash) and this API, nothing else.
SWAGGER_UI_VERSION = "5.36.0"
SWAGGER_UI_BASE = f"https://cdn.jsdelivr.net/npm/swagger-ui-dist@{SWAGGER_UI_VERSION}"
SWAGGER_UI_INTEGRITY = {
    "swagger-ui.css": "sha384-z/AtSaOHGn5MJ5auAHXUypohywlIWLBZo1jeGmhdpVIbCnFhxAH92cwdV41oyINc",
    "swagger-ui-bundle.js": "sha384-fUpRgC19yPykTqzdrUbdAg8NTiu16NEKf9U12J+IJWCg8/1mEI8f2+PEIz60Wyd+",
}
SWAGGER_UI_INIT = 'SwaggerUIBundle({url: "openapi.json", dom_id: "#ui"});'
SWAGGER_UI = f"""<!doctype html>
<html><head><title>ResNet-50 image classifier</title><meta charset="utf-8">
<link rel="stylesheet" href="{SWAGGER_UI_BASE}/swagger-ui.css"
 integrity="{SWAGGER_UI_INTEGRITY['swagger-ui.css']}" crossorigin="anonymous"></head>
<body><div id="ui"></div>
<script src="{SWAGGER_UI_BASE}/swagger-ui-bundle.js"
 integrity="{SWAGGER_UI_INTEGRITY['swagger-ui-bundle.js']}" crossorigin="anonymous"></script>
<script>{SWAGGER_UI_INIT}</script>
</body></html>"""
DOCS_CSP = "; ".join([
    "default-src 'none'",
    f"script-src {SWAGGER_UI_BASE}/swagger-ui-bundle.js 'sha256-suw86eCsICu/XXW4WywzmrycRYtaZQ3Kh8kScHAVOhk='",
    f"style-src {SWAGGER_UI_BASE}/swagger-ui.css 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])


class AnswerThenShadow(JSONResponse):
    """The answer, then a rollout's shadow run (which stores the records): the run happens even if
    sending the answer failed (a client gone), so no record is lost with it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        shadow, self.background = self.background, None
        try:
            await super().__call__(scope, receive, send)
        finally:
            if shadow is not None:
                await shadow()


def routing_key(request: Request) -> str:
    """What a rollout routes a request by: the client's ``X-Request-Id`` (so its retry goes the same way),
    else the request's own id."""
    return request.headers.get("x-request-id") or str(request.state.request_id)


async def classify(request: Request) -> JSONResponse:
    """``POST /classify``: the default model (``MODEL_NAME``)."""
    return await _classify(request, request.app.state.models.default)


async def classify_with_model(request: Request) -> JSONResponse:
    """``POST /models/{name}/classify``: any served model, as ``POST /classify`` takes images."""
    return await _classify(request, request.app.state.models.slot(request.path_params["name"]))


async def _classify(request: Request, model: ModelManager) -> JSONResponse:
    state = request.app.state
    caller: Caller = request.state.caller
    top_k = TOP_K.read(request.query_params)
    images = await read_images(request, state.settings, state.uploads, owner=caller.owner)
    request.state.images = len(images)
    route = await blocking(request, state.classifier.route, routing_key(request), model)
    # Known before the model runs: a failure counts against the version and role it was meant for.
    request.state.model_name = route.model.name
    request.state.model_version, request.state.role = route.model.version, route.role
    results, shadow = await blocking(request, state.classifier.classify_routed, images, route, k=top_k,
                                     owner=caller.owner)
    request.state.timing = {"total": results[0].timing_ms["total"], "inference": results[0].timing_ms["inference"],
                            "decode": sum(r.timing_ms["decode"] for r in results)}
    body = results[0].as_dict() if len(results) == 1 else {"results": [result.as_dict() for result in results]}
    if shadow is None:
        return JSONResponse(body)
    if "aws.event" in request.scope:
        # Lambda returns the answer only when the invocation ends: the shadow runs inside it either way,
        # and inline it costs no thread hop (docs/rollouts.md).
        await blocking(request, shadow)
        return JSONResponse(body)
    return AnswerThenShadow(body, background=BackgroundTask(shadow))


async def create_upload(request: Request) -> JSONResponse:
    state = request.app.state
    state.uploads.require_enabled()
    upload = parse_upload_request(await request.body(), max_bytes=state.settings.max_s3_image_bytes)
    return JSONResponse(await blocking(request, state.uploads.presign, upload, owner=request.state.caller.owner))


async def list_classifications(request: Request) -> JSONResponse:
    """The caller's own records (every record under a local server, where there is no caller)."""
    return await _list(request, owner=request.state.caller.owner)


async def get_classification(request: Request) -> JSONResponse:
    """One of the caller's own records; another caller's is a 404, as if it did not exist."""
    return await _get(request, owner=request.state.caller.owner)


async def list_all_classifications(request: Request) -> JSONResponse:
    """Every caller's records, for a caller granted that (403 otherwise)."""
    request.state.caller.require_read_all()
    return await _list(request, owner=None)


async def get_any_classification(request: Request) -> JSONResponse:
    """Any caller's record by id, for a caller granted that (403 otherwise)."""
    request.state.caller.require_read_all()
    return await _get(request, owner=None)


async def _list(request: Request, *, owner: str | None) -> JSONResponse:
    query = request.query_params
    since, until = (parse_timestamp(p.name, raw) if (raw := p.read(query)) else None for p in (SINCE, UNTIL))
    if since is not None and until is not None and since >= until:
        raise InvalidParameter("since must be before until")
    page = await blocking(request, request.app.state.records.list, LIMIT.read(query), CURSOR.read(query),
                          label=LABEL.read(query), model_version=MODEL_VERSION.read(query), since=since, until=until,
                          model=MODEL.read(query), owner=owner)
    return JSONResponse({"items": page.items, "next_cursor": page.next_cursor})


async def _get(request: Request, *, owner: str | None) -> JSONResponse:
    record_id = request.path_params["record_id"]
    record = await blocking(request, request.app.state.records.get, record_id, owner=owner) \
        if is_record_id(record_id) else None
    if record is None:
        raise NotFound(f"no classification with id {record_id!r}")
    return JSONResponse(record)


async def model_state(request: Request) -> JSONResponse:
    """``GET /model``: the default model's load state and manifest."""
    return await _model_state(request, request.app.state.models.default)


async def named_model_state(request: Request) -> JSONResponse:
    """``GET /models/{name}``: what ``GET /model`` says, for any served model."""
    return await _model_state(request, request.app.state.models.slot(request.path_params["name"]))


async def _model_state(request: Request, model: ModelManager) -> JSONResponse:
    await blocking(request, model.refresh)
    return JSONResponse(model.describe())


async def list_models(request: Request) -> JSONResponse:
    """``GET /models``: every served model; the default one is ``POST /classify``'s."""
    models = request.app.state.models
    return JSONResponse({"default": models.default.name, "models": await blocking(request, models.summaries)})


async def model_versions(request: Request) -> JSONResponse:
    """Every installed version of the served model, newest first, with its latest evaluation's figures."""
    state = request.app.state
    return JSONResponse(await blocking(request, version_summaries, state.manager.store, state.settings.model_name))


async def version_evaluation(request: Request) -> JSONResponse:
    """The latest ``evaluate`` report of one version, whole (per class, confusion)."""
    state = request.app.state
    version = request.path_params["version"]
    if not VERSION_RE.fullmatch(version):
        raise NotFound(f"no version {version!r}")
    report = await blocking(request, state.manager.store.latest_evaluation, state.settings.model_name, version)
    if report is None:
        raise NotFound(f"version {version} has no evaluation (python -m classifier evaluate --version {version})")
    return JSONResponse(report)


def version_summaries(store: ModelStore, name: str) -> dict[str, Any]:
    try:
        return listing.version_summaries(store, name)
    except StoreError as exc:
        raise ModelUnavailable(f"the model store cannot be read: {exc}") from None


async def health(request: Request) -> JSONResponse:
    manager = request.app.state.manager
    loaded = await blocking(request, manager.refresh)
    if loaded is None:
        return JSONResponse(
            {"status": "unavailable",
             "error": {"code": "model_unavailable", "message": manager.last_error or "no model is loaded"}},
            status_code=503,
        )
    return JSONResponse({"status": "ok", "version": loaded.version, "backend": loaded.backend.name})


async def openapi(request: Request) -> JSONResponse:
    """This deployment's document: the routes it serves, and no other."""
    state = request.app.state
    if state.openapi is None:  # read on first use: no cold-start cost
        state.openapi = deployment_document(request.app.routes, uploads=state.uploads.enabled)
    return JSONResponse(state.openapi)


async def docs(request: Request) -> Response:
    return HTMLResponse(SWAGGER_UI, headers={"content-security-policy": DOCS_CSP})


async def on_classifier_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClassifierError)
    request.state.error_code = exc.code
    return error_response(exc.status, exc.code, exc.message)


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (unknown route, wrong method) in the API's error shape."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    request.state.error_code = code
    message = exc.detail
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    response = error_response(exc.status_code, code, message)
    if exc.headers:
        response.headers.update(exc.headers)
    return response
