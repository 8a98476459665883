"""The Lambda Runtime API (2018-06-01) on loopback, as Lambda serves it to awslambdaric.

The Lambda image's entrypoint runs awslambdaric on the handler named by CMD; tests start
awslambdaric against this server to drive invocations and read what it posts back.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RUNTIME_API_PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:demo-classifier"


@dataclass(frozen=True)
class Post:
    """What the runtime client POSTed: a result, an invocation error or an init error (header names lower case)."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RuntimeApi:
    """The 2018-06-01 Runtime API as Lambda serves it to the runtime client:
    ``GET /invocation/next`` blocks until an event is queued, then hands it out with
    the invocation headers; ``POST /invocation/{id}/response|error`` and
    ``POST /init/error`` are recorded and answered 202."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.posts: queue.Queue[Post] = queue.Queue()
        self.issued: list[str] = []
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    def invoke(self, event: dict[str, Any]) -> str:
        """Queue one invocation; return its request id."""
        request_id = str(uuid.uuid4())
        self.events.put((request_id, event))
        return request_id

    def __enter__(self) -> RuntimeApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
                pass

            def _reply(self, status: int, payload: dict[str, str]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != f"{RUNTIME_API_PREFIX}/invocation/next":
                    self._reply(404, {"errorType": "NotFound", "errorMessage": self.path})
                    return
                while not api._stop.is_set():  # long poll, as Lambda does between invocations
                    try:
                        request_id, event = api.events.get(timeout=0.1)
                    except queue.Empty:
                        continue
                    api.issued.append(request_id)
                    body = json.dumps(event).encode()
                    now_ms = int(time.time() * 1000)
                    self.send_response(200)
                    self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                    self.send_header("Lambda-Runtime-Deadline-Ms", str(now_ms + 900_000))
                    self.send_header("Lambda-Runtime-Invoked-Function-Arn", FUNCTION_ARN)
                    self.send_header("Lambda-Runtime-Trace-Id",
                                     f"Root=1-{now_ms // 1000:08x}-{uuid.uuid4().hex[:24]};"
                                     f"Parent={uuid.uuid4().hex[:16]};Sampled=0")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                api.posts.put(Post(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                match = re.fullmatch(rf"{RUNTIME_API_PREFIX}/invocation/([^/]+)/(?:response|error)", self.path)
                if (match and match[1] in api.issued) or self.path == f"{RUNTIME_API_PREFIX}/init/error":
                    self._reply(202, {"status": "OK"})
                elif match:
                    self._reply(400, {"errorType": "InvalidRequestID", "errorMessage": match[1]})
                else:
                    self._reply(404, {"errorType": "NotFound", "errorMessage": self.path})

        return Handler
