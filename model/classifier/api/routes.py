"""The API's routes, and the one place errors become JSON responses.

Each route is a module-level function that finds what it needs on
``request.app.state`` (set by ``classifier.api.app.create_app``): ``settings``,
``models`` (the served models), ``manager`` (the default model's slot), ``records``,
``classifier``, ``uploads``, ``openapi`` (this deployment's document).
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from classifier.api.document import deployment_document
from classifier.api.inputs import read_images
from classifier.api.middleware import error_response
from classifier.api.offload import blocking
from classifier.api.parameters import CURSOR, LABEL, LIMIT, MODEL, MODEL_VERSION, SINCE, TOP_K, UNTIL
from classifier.api.payloads import parse_upload_request
from classifier.errors import ClassifierError, InvalidParameter, ModelUnavailable, NotFound
from classifier.records.ids import is_record_id, parse_timestamp
from classifier.serving.manager import ModelManager
from classifier.store.layout import ModelStore
from classifier.store.manifest import VERSION_RE, StoreError, architecture, precision

_HTTP_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_parameter",
}

# What GET /model/versions shows of each version's latest evaluation (the whole report is
# GET /model/versions/{version}/evaluation).
EVALUATION_SUMMARY = ("created_at", "images", "top1", "top5", "latency_ms", "data", "agreement")

SWAGGER_UI = """<!doctype html>
<html><head><title>ResNet-50 image classifier</title><meta charset="utf-8">
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "openapi.json", dom_id: "#ui"});</script>
</body></html>"""


async def classify(request: Request) -> JSONResponse:
    """``POST /classify``: the default model (``MODEL_NAME``)."""
    return await _classify(request, request.app.state.models.default)


async def classify_with_model(request: Request) -> JSONResponse:
    """``POST /models/{name}/classify``: any served model, as ``POST /classify`` takes images."""
    return await _classify(request, request.app.state.models.slot(request.path_params["name"]))


async def _classify(request: Request, model: ModelManager) -> JSONResponse:
    state = request.app.state
    top_k = TOP_K.read(request.query_params)
    images = await read_images(request, state.settings, state.uploads)
    request.state.images = len(images)
    results = await blocking(request, state.classifier.classify, images, k=top_k, source=model)
    request.state.model_name = results[0].model["name"]
    request.state.model_version = results[0].model["version"]
    request.state.timing = {"total": results[0].timing_ms["total"], "inference": results[0].timing_ms["inference"],
                            "decode": sum(r.timing_ms["decode"] for r in results)}
    if len(results) == 1:
        return JSONResponse(results[0].as_dict())
    return JSONResponse({"results": [result.as_dict() for result in results]})


async def create_upload(request: Request) -> JSONResponse:
    state = request.app.state
    state.uploads.require_enabled()
    upload = parse_upload_request(await request.body(), max_bytes=state.settings.max_s3_image_bytes)
    return JSONResponse(await blocking(request, state.uploads.presign, upload))


async def list_classifications(request: Request) -> JSONResponse:
    query = request.query_params
    since, until = (parse_timestamp(p.name, raw) if (raw := p.read(query)) else None for p in (SINCE, UNTIL))
    if since is not None and until is not None and since >= until:
        raise InvalidParameter("since must be before until")
    page = await blocking(request, request.app.state.records.list, LIMIT.read(query), CURSOR.read(query),
                          label=LABEL.read(query), model_version=MODEL_VERSION.read(query), since=since, until=until,
                          model=MODEL.read(query))
    return JSONResponse({"items": page.items, "next_cursor": page.next_cursor})


async def get_classification(request: Request) -> JSONResponse:
    record_id = request.path_params["record_id"]
    record = await blocking(request, request.app.state.records.get, record_id) if is_record_id(record_id) else None
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
        infos = store.list(name)
    except StoreError as exc:
        raise ModelUnavailable(f"the model store cannot be read: {exc}") from None
    versions = []
    for info in reversed(infos):
        entry: dict[str, Any] = {"version": info.version, "current": info.current}
        if info.manifest is None:
            entry["problem"] = info.problem
        else:
            manifest = info.manifest
            report = store.latest_evaluation(name, info.version)
            entry.update(
                created_at=manifest["created_at"], source=manifest["source"], architecture=architecture(manifest),
                trained=bool(manifest["trained"]), precision=precision(manifest),
                derived_from=manifest.get("derived_from"),
                labels=manifest["labels"]["count"],
                bytes=sum(a["bytes"] for a in manifest["artifacts"].values()),
                evaluation=None if report is None else {
                    key: report[key] for key in EVALUATION_SUMMARY if key in report},
            )
        versions.append(entry)
    current = next((v["version"] for v in versions if v["current"]), None)
    return {"name": name, "current": current, "versions": versions}


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
    return HTMLResponse(SWAGGER_UI)


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
