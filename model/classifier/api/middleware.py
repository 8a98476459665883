"""The ASGI middleware every request goes through: request id, body-size limit, one access-log line,
and a last-resort 500 that never shows a stack trace.

Pure ASGI (no ``BaseHTTPMiddleware``) so it adds no per-request task.
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from classifier.errors import PayloadTooLarge
from classifier.observability import logs, metrics

log = logging.getLogger("classifier.api.app")

# The user agent of the Lambda handler's init warm-up request (classifier.handler.warm_up).
WARM_UP_AGENT = "init-warm-up"


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The API's one error shape: ``{"error": {"code": ..., "message": ...}}``."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class RequestContext:
    """Request id (Lambda's, a client's ``x-request-id``, or a new one), echoed in the response;
    the ``MAX_REQUEST_BYTES`` cap (Content-Length first, then while the body streams in);
    the request's keys on every log line, one access-log line and its metrics; a JSON 500
    for anything unhandled."""

    def __init__(self, app: ASGIApp, *, max_body: int) -> None:
        self.app = app
        self.max_body = max_body
        self.cold = True  # until the first real request (the init warm-up does not count)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        context = scope.get("aws.context")
        request_id = getattr(context, "aws_request_id", None) or headers.get("x-request-id") or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        warm_up = headers.get("user-agent") == WARM_UP_AGENT
        cold, self.cold = self.cold and not warm_up, self.cold and warm_up
        logs.bind(request_id=request_id, correlation_id=correlation_id(scope, headers), cold_start=cold,
                  function_request_id=getattr(context, "aws_request_id", None))
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
                state["error_code"] = "payload_too_large"
                response = error_response(413, "payload_too_large",
                                          f"the request body ({length} bytes) is over the {max_body}-byte limit")
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, limited_receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id})
            state["error_code"] = "internal_error"
            if not response_started:
                await error_response(500, "internal_error", "internal error")(scope, receive, send_with_id)
        finally:
            log.info("request", extra={
                "request_id": request_id,
                "method": scope.get("method"),
                "path": scope.get("path"),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "model_name": state.get("model_name"),
                "model_version": state.get("model_version"),
                "images": state.get("images"),
                "error_code": state.get("error_code"),
            })
            if not warm_up:
                metrics.record_request(timing=state.get("timing"), images=state.get("images"),
                                       model_version=state.get("model_version"),
                                       error_code=state.get("error_code"), cold_start=cold)
            logs.unbind()


def correlation_id(scope: Scope, headers: dict[str, str]) -> str | None:
    """What ties this request to others: the caller's ``x-correlation-id``, else API Gateway's request id."""
    if headers.get("x-correlation-id"):
        return headers["x-correlation-id"]
    event = scope.get("aws.event")
    request_context = event.get("requestContext") if isinstance(event, dict) else None
    found = request_context.get("requestId") if isinstance(request_context, dict) else None
    return str(found) if found else None
