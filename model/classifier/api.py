"""The HTTP API (ASGI): routes, input parsing and the one place errors become JSON.

The same app runs under uvicorn locally and under Mangum in Lambda.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
import uuid
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from classifier import __version__, schemas
from classifier.config import Settings
from classifier.errors import (
    ApiError,
    InvalidParameter,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from classifier.records import RecordStore, is_record_id
from classifier.runtime import ModelManager
from classifier.service import Classifier
from classifier.uploads import Uploads, check_upload_key, parse_upload_request

log = logging.getLogger("classifier.api")

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


def create_app(
    settings: Settings | None = None,
    *,
    manager: ModelManager | None = None,
    records: RecordStore | None = None,
    load_model: bool = True,
) -> FastAPI:
    """Build the API. With ``load_model`` the model is loaded now, at start-up
    (in Lambda: during the init phase, which runs before the first request)."""
    settings = settings or Settings.from_env()
    manager = manager or ModelManager(settings)
    records = records or RecordStore(settings.model_store)
    classifier = Classifier(settings, manager, records)
    uploads = Uploads(settings)  # boto3 is imported on first use, not here
    if load_model:
        manager.refresh()

    app = FastAPI(
        title="ResNet-50 image classifier",
        version=__version__,
        description="Classifies images with ResNet-50 served from a versioned model store.",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.manager = manager
    app.state.records = records
    app.state.classifier = classifier
    app.state.uploads = uploads
    app.add_middleware(RequestContext, max_body=settings.max_request_bytes)

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ())[1:]) or 'body'}: {err.get('msg')}"
            for err in exc.errors()
        )
        in_body = any(err.get("loc", ("",))[0] == "body" for err in exc.errors())
        if in_body:
            return error_response(400, "invalid_request", problems)
        return error_response(422, "invalid_parameter", problems)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        return error_response(exc.status_code, code, message)

    @app.post(
        "/classify",
        summary="Classify one image or a batch",
        response_model=None,
        responses={200: {"model": schemas.Classification | schemas.Batch},
                   **schemas.errors(400, 404, 413, 415, 422, 501, 503)},
        openapi_extra=schemas.CLASSIFY_REQUEST_BODY,
    )
    async def classify(
        request: Request, top_k: int = Query(5, ge=1, le=20, description="predictions per image")
    ) -> JSONResponse:
        images, names, s3_key = await read_images(request, settings, uploads)
        request.state.images = len(images)
        options: dict[str, Any] = {}
        if s3_key is not None:
            options = {"max_bytes": settings.max_s3_image_bytes, "extra": {"s3_key": s3_key}}
        results = await run_in_threadpool(classifier.classify, images, k=top_k, names=names, **options)
        request.state.model_version = results[0]["model"]["version"]
        return JSONResponse(results[0] if len(results) == 1 else {"results": results})

    @app.post(
        "/uploads",
        summary="Presign an S3 upload for an image too large to send inline",
        response_model=None,
        responses={200: {"model": schemas.Upload}, **schemas.errors(400, 413, 415, 422, 501, 503)},
        openapi_extra=schemas.UPLOAD_REQUEST_BODY,
    )
    async def create_upload(request: Request) -> JSONResponse:
        uploads.require_enabled()
        upload = parse_upload_request(await request.body(), max_bytes=settings.max_s3_image_bytes)
        return JSONResponse(await run_in_threadpool(uploads.presign, upload))

    @app.get(
        "/classifications",
        summary="Stored classifications, newest first",
        response_model=None,
        responses={200: {"model": schemas.ClassificationPage}, **schemas.errors(422)},
    )
    async def list_classifications(
        limit: int = Query(20, ge=1, le=100),
        cursor: str | None = Query(None, description="next_cursor from the previous page"),
    ) -> JSONResponse:
        if cursor is not None and not is_record_id(cursor):
            raise InvalidParameter("cursor: not a cursor returned by this API")
        page = await run_in_threadpool(records.list, limit, cursor)
        return JSONResponse({"items": page.items, "next_cursor": page.next_cursor})

    @app.get(
        "/classifications/{record_id}",
        summary="One stored classification",
        response_model=None,
        responses={200: {"model": schemas.Classification}, **schemas.errors(404)},
    )
    async def get_classification(record_id: str) -> JSONResponse:
        record = await run_in_threadpool(records.get, record_id)
        if record is None:
            raise NotFound(f"no classification with id {record_id!r}")
        return JSONResponse(record)

    @app.get("/model", summary="The serving model's manifest and load state", response_model=None,
             responses={200: {"model": schemas.ModelState}})
    async def model_state() -> JSONResponse:
        await run_in_threadpool(manager.refresh)
        return JSONResponse(manager.describe())

    @app.get("/health", summary="200 when a model is loaded, else 503", response_model=None,
             responses={200: {"model": schemas.Health}, **schemas.errors(503)})
    async def health() -> JSONResponse:
        await run_in_threadpool(manager.refresh)
        loaded = manager.loaded
        if loaded is None:
            return JSONResponse(
                {"status": "unavailable",
                 "error": {"code": "model_unavailable", "message": manager.last_error or "no model is loaded"}},
                status_code=503,
            )
        return JSONResponse({"status": "ok", "version": loaded.version, "backend": loaded.backend.name})

    return app


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
        payload = _json_object(await request.body())
        if "s3_key" in payload:
            uploads.require_enabled()
            if "image" in payload:
                raise InvalidRequest("send either 'image' or 's3_key', not both")
            key = check_upload_key(payload["s3_key"])
            return [await run_in_threadpool(uploads.read, key)], [None], key
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


def _json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidRequest("the request body is empty: send {\"image\": \"<base64>\"}")
    try:
        payload: Any = json.loads(body)
    except ValueError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("the JSON body must be an object")
    return payload


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
