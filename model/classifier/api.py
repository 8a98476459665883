"""The HTTP API (ASGI): routes, input parsing and the one place errors become JSON.

The same app runs under uvicorn locally and under Mangum in Lambda. It is a
plain Starlette app: FastAPI (with pydantic) took ~300 ms of every cold start
to import, for validating three query parameters and generating a document.
The OpenAPI document is ``openapi.json`` beside this module, maintained by
hand; the tests check it is valid, lists exactly the app's routes, and that
real responses match its schemas.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
import uuid
from collections.abc import Callable
from importlib import resources
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from classifier import __version__
from classifier.config import Settings
from classifier.errors import (
    ClassifierError,
    InvalidParameter,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from classifier.payloads import json_object
from classifier.records import RecordStore, is_record_id
from classifier.runtime import ModelManager
from classifier.service import Classifier
from classifier.uploads import Uploads, check_upload_key, parse_upload_request

log = logging.getLogger("classifier.api")
T = TypeVar("T")

_HTTP_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_parameter",
}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class RequestContext:
    """Request id, body-size limit, one access-log line, and a last-resort 500.

    Pure ASGI (no BaseHTTPMiddleware) so it adds no per-request task.
    """

    def __init__(self, app: ASGIApp, *, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        context = scope.get("aws.context")
        request_id = getattr(context, "aws_request_id", None) or headers.get("x-request-id") or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False
        received = 0
        max_body = self.max_body

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body:
                    raise PayloadTooLarge(f"the request body is over the {max_body}-byte limit")
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            length = 0
        try:
            if length > max_body:
                response = error_response(413, "payload_too_large",
                                          f"the request body ({length} bytes) is over the {max_body}-byte limit")
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, limited_receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            if not response_started:
                await error_response(500, "internal_error", "internal error")(scope, receive, send_with_id)
        finally:
            log.info("request", extra={
                "request_id": request_id,
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "model_version": state.get("model_version"),
                "images": state.get("images"),
            })


async def blocking(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking work (inference, file and S3 I/O) for a request.

    Under Lambda (Mangum puts the event in the scope) an instance serves one
    request at a time, so the work runs inline: a hop to a worker thread only
    costs, and Mangum's per-invocation event loop would start a fresh worker
    thread each time (torch then rebuilds its per-thread state: ~30 ms).
    Under uvicorn it goes to the thread pool to keep the event loop free.
    """
    if "aws.event" in request.scope:
        return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter in [lo, hi]; anything else is a 422 ``invalid_parameter``."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise InvalidParameter(f"{name} must be an integer from {lo} to {hi}, got {raw!r}")
    return value


def openapi_document() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(resources.files("classifier").joinpath("openapi.json").read_bytes())
    spec["info"]["version"] = __version__
    return spec


SWAGGER_UI = """<!doctype html>
<html><head><title>ResNet-50 image classifier</title><meta charset="utf-8">
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "openapi.json", dom_id: "#ui"});</script>
</body></html>"""


def create_app(
    settings: Settings | None = None,
    *,
    manager: ModelManager | None = None,
    records: RecordStore | None = None,
    load_model: bool = True,
) -> Starlette:
    """Build the API. With ``load_model`` the model is loaded now, before the
    app is returned (the Lambda handler instead starts the load on a thread)."""
    settings = settings or Settings.from_env()
    manager = manager or ModelManager(settings)
    records = records or RecordStore(settings.model_store)
    classifier = Classifier(settings, manager, records)
    uploads = Uploads(settings)  # boto3 is imported on first use, not here
    if load_model:
        manager.refresh()
    spec: dict[str, Any] = {}

    async def classify(request: Request) -> JSONResponse:
        top_k = int_param(request, "top_k", 5, 1, 20)
        images, names, s3_key = await read_images(request, settings, uploads)
        request.state.images = len(images)
        options: dict[str, Any] = {}
        if s3_key is not None:
            options = {"max_bytes": settings.max_s3_image_bytes, "extra": {"s3_key": s3_key}}
        results = await blocking(request, classifier.classify, images, k=top_k, names=names, **options)
        request.state.model_version = results[0]["model"]["version"]
        return JSONResponse(results[0] if len(results) == 1 else {"results": results})

    async def create_upload(request: Request) -> JSONResponse:
        uploads.require_enabled()
        upload = parse_upload_request(await request.body(), max_bytes=settings.max_s3_image_bytes)
        return JSONResponse(await blocking(request, uploads.presign, upload))

    async def list_classifications(request: Request) -> JSONResponse:
        limit = int_param(request, "limit", 20, 1, 100)
        cursor = request.query_params.get("cursor")
        if cursor is not None and not is_record_id(cursor):
            raise InvalidParameter("cursor: not a cursor returned by this API")
        page = await blocking(request, records.list, limit, cursor)
        return JSONResponse({"items": page.items, "next_cursor": page.next_cursor})

    async def get_classification(request: Request) -> JSONResponse:
        record_id = request.path_params["record_id"]
        record = await blocking(request, records.get, record_id)
        if record is None:
            raise NotFound(f"no classification with id {record_id!r}")
        return JSONResponse(record)

    async def model_state(request: Request) -> JSONResponse:
        await blocking(request, manager.refresh)
        return JSONResponse(manager.describe())

    async def health(request: Request) -> JSONResponse:
        await blocking(request, manager.refresh)
        loaded = manager.loaded
        if loaded is None:
            return JSONResponse(
                {"status": "unavailable",
                 "error": {"code": "model_unavailable", "message": manager.last_error or "no model is loaded"}},
                status_code=503,
            )
        return JSONResponse({"status": "ok", "version": loaded.version, "backend": loaded.backend.name})

    async def openapi(request: Request) -> JSONResponse:
        if not spec:  # read on first use: no cold-start cost
            spec.update(openapi_document())
        return JSONResponse(spec)

    async def docs(request: Request) -> Response:
        return HTMLResponse(SWAGGER_UI)

    async def on_api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ClassifierError)
        return error_response(exc.status, exc.code, exc.message)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        response = error_response(exc.status_code, code, message)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    app = Starlette(
        routes=[
            Route("/classify", classify, methods=["POST"]),
            Route("/uploads", create_upload, methods=["POST"]),
            Route("/classifications", list_classifications, methods=["GET"]),
            Route("/classifications/{record_id}", get_classification, methods=["GET"]),
            Route("/model", model_state, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"], include_in_schema=False),
            Route("/docs", docs, methods=["GET"], include_in_schema=False),
        ],
        middleware=[Middleware(RequestContext, max_body=settings.max_request_bytes)],
        exception_handlers={ClassifierError: on_api_error, HTTPException: on_http_error},
    )
    app.state.settings = settings
    app.state.manager = manager
    app.state.records = records
    app.state.classifier = classifier
    app.state.uploads = uploads
    return app


def warm_up(handler: Any) -> None:
    """Send one cheap request (a 404) through the Lambda handler during init.

    Routing, middleware, error mapping, Mangum's adapter and the thread pool
    set themselves up lazily; doing it here, while the model loads on its
    thread, takes ~25 ms off the first real request.
    """
    path = "/classifications/warm-up"
    event = {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"user-agent": "init-warm-up", "x-request-id": "init-warm-up"}, "isBase64Encoded": False,
        "requestContext": {
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": "init-warm-up"},
            "requestId": "init-warm-up", "routeKey": "$default", "stage": "$default", "accountId": "-",
            "apiId": "-", "domainName": "localhost", "domainPrefix": "localhost", "time": "", "timeEpoch": 0,
        },
    }
    handler(event, None)


async def read_images(
    request: Request, settings: Settings, uploads: Uploads
) -> tuple[list[bytes], list[str | None], str | None]:
    """The image(s) of a classify request, whatever the content type, and the
    S3 key they were read from (JSON ``{"s3_key": ...}``), if any."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        return *await _read_multipart(request, settings), None
    if media_type == "application/json" or media_type.endswith("+json"):
        payload = json_object(await request.body(), '{"image": "<base64>"}')
        if "s3_key" in payload:
            uploads.require_enabled()
            if "image" in payload:
                raise InvalidRequest("send either 'image' or 's3_key', not both")
            key = check_upload_key(payload["s3_key"])
            return [await blocking(request, uploads.read, key)], [None], key
        return [_decode_json_image(payload)], [None], None
    if media_type.startswith("image/") or media_type in ("application/octet-stream", ""):
        body = await request.body()
        if not body:
            raise InvalidRequest("the request body is empty: send an image")
        return [body], [None], None
    raise UnsupportedMediaType(
        f"Content-Type {media_type!r} is not accepted: send image/*, application/octet-stream, "
        "multipart/form-data or application/json"
    )


async def _read_multipart(request: Request, settings: Settings) -> tuple[list[bytes], list[str | None]]:
    async with request.form(max_files=1000, max_fields=1000) as form:
        parts = form.getlist("file")
        if not parts:
            raise InvalidRequest("the multipart body has no 'file' part")
        if len(parts) > settings.max_batch:
            raise PayloadTooLarge(f"{len(parts)} files in one request; the limit is {settings.max_batch}")
        images: list[bytes] = []
        names: list[str | None] = []
        for i, part in enumerate(parts):
            if not isinstance(part, UploadFile):
                raise InvalidRequest(f"part {i + 1} named 'file' is a text field, not a file")
            data = await part.read()
            if not data:
                raise InvalidRequest(f"file {i + 1} ({part.filename or 'unnamed'}) is empty")
            images.append(data)
            names.append(part.filename)
    return images, names


def _decode_json_image(payload: dict[str, Any]) -> bytes:
    if "image" not in payload:
        raise InvalidRequest("the JSON body needs an 'image' field holding base64 image bytes (or an 's3_key')")
    encoded = payload["image"]
    if not isinstance(encoded, str) or not encoded:
        raise InvalidRequest("'image' must be a non-empty base64 string")
    if encoded.startswith("data:") and "," in encoded:  # a data URL, as browsers produce
        encoded = encoded.split(",", 1)[1]
    try:
        return base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("'image' is not valid base64") from None
