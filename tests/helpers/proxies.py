"""Front doors on loopback that forward to a real server and misbehave as real ones do.

- ``usage_plan_gateway``: API Gateway with a usage plan in front of the API: a request without
  the plan's ``x-api-key`` is refused (403 ``{"message": "Forbidden"}``), and the first requests
  are throttled (429 with ``Retry-After``), as a plan's rate limit answers;
- ``short_read_s3``: S3 (moto's server) whose object downloads stop early: the headers promise
  the whole object (its ``Content-Length``), the connection closes after part of it;
- ``s3_outage``: S3 whose object reads fail with 503 ``ServiceUnavailable`` (as S3 answers during
  an outage, or when it asks a caller to slow down) until ``outage_over`` is set; other requests
  (and DynamoDB's, on the same endpoint) go through;
- ``throttling_dynamodb``: DynamoDB (moto's server) that throttles the writes of a share of the
  record ids, every time, as a hot partition does: ``PutItem`` answers
  ``ProvisionedThroughputExceededException``, ``BatchWriteItem`` writes the others and returns
  those as ``UnprocessedItems``.

Each records what it received, so a test can say which requests reached it.
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx

from helpers.processes import free_port

# Hop-by-hop, or recomputed by http.server and httpx: never copied from one side to the other.
_NOT_FORWARDED = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"}


class ForwardingProxy(ThreadingHTTPServer):
    """Forwards every request to ``upstream``; ``refusal`` and ``cut_short`` say where to misbehave."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self.upstream = upstream.rstrip("/")
        self.received: list[str] = []  # "METHOD /path?query", in order
        self.headers_received: list[dict[str, str]] = []
        self.arrivals: list[float] = []  # time.monotonic() of each request
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def refusal(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes] | None:
        """The answer this front door gives instead of forwarding, or None to forward."""
        return None

    def cut_short(self, method: str, path: str) -> int | None:
        """How many bytes of the upstream's body to send before closing, or None for all of it."""
        return None

    def answer(self, method: str, path: str, headers: dict[str, str],
               body: bytes) -> tuple[int, dict[str, str], bytes] | None:
        """The answer to a request whose body matters, or None to forward it as it is."""
        return None

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        forwarded = {k: v for k, v in headers.items() if k not in _NOT_FORWARDED}
        return httpx.request(method, self.upstream + path, content=body, headers=forwarded, timeout=120)


class UsagePlanGateway(ForwardingProxy):
    def __init__(self, upstream: str, *, api_key: str, throttled: int, retry_after: str) -> None:
        super().__init__(upstream)
        self.api_key, self.retry_after = api_key, retry_after
        self.throttle_left = throttled

    def refusal(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes] | None:
        if headers.get("x-api-key") != self.api_key:
            return 403, {"content-type": "application/json"}, b'{"message":"Forbidden"}'
        with self.lock:
            if self.throttle_left > 0:
                self.throttle_left -= 1
                return (429, {"content-type": "application/json", "retry-after": self.retry_after},
                        b'{"message":"Too Many Requests"}')
        return None


class ShortReadS3(ForwardingProxy):
    def __init__(self, upstream: str, *, keep_bytes: int) -> None:
        super().__init__(upstream)
        self.keep_bytes = keep_bytes

    def cut_short(self, method: str, path: str) -> int | None:
        return self.keep_bytes if method == "GET" else None


class S3Outage(ForwardingProxy):
    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.outage_over = threading.Event()
        self.refused = 0

    def refusal(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes] | None:
        # An object read is a GET of /<bucket>/<key> (path style, as boto3 addresses an IP endpoint).
        if method != "GET" or self.outage_over.is_set() or path.strip("/").count("/") < 1:
            return None
        with self.lock:
            self.refused += 1
        return 503, {"content-type": "application/xml"}, (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ServiceUnavailable</Code>'
            b"<Message>Service is unable to handle request.</Message></Error>")


_THROTTLED = json.dumps({
    "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    "message": "The level of configured provisioned throughput for the table was exceeded.",
}).encode()


class ThrottlingDynamoDB(ForwardingProxy):
    def __init__(self, upstream: str, *, percent: int) -> None:
        super().__init__(upstream)
        self.percent = percent
        self.throttled: set[str] = set()  # the record ids whose writes were refused at least once
        self.writes = 0

    def unlucky(self, item: dict[str, Any]) -> bool:
        record_id = str(item.get("id", {}).get("S", ""))
        hit = not record_id.startswith("upload#") and zlib.crc32(record_id.encode()) % 100 < self.percent
        if hit:
            with self.lock:
                self.throttled.add(record_id)
        return hit

    def answer(self, method: str, path: str, headers: dict[str, str],
               body: bytes) -> tuple[int, dict[str, str], bytes] | None:
        target = headers.get("x-amz-target", "")
        json_type = {"content-type": "application/x-amz-json-1.0"}
        if target.endswith(".PutItem"):
            with self.lock:
                self.writes += 1
            return (400, json_type, _THROTTLED) if self.unlucky(json.loads(body)["Item"]) else None
        if not target.endswith(".BatchWriteItem"):
            return None
        with self.lock:
            self.writes += 1
        request = json.loads(body)
        kept: dict[str, list[Any]] = {}
        refused: dict[str, list[Any]] = {}
        for table, writes in request["RequestItems"].items():
            for write in writes:
                unlucky = "PutRequest" in write and self.unlucky(write["PutRequest"]["Item"])
                (refused if unlucky else kept).setdefault(table, []).append(write)
        if not refused:
            return None
        if not kept:  # every item throttled: DynamoDB answers with the exception itself
            return 400, json_type, _THROTTLED
        upstream = self.forward(method, path, headers, json.dumps({**request, "RequestItems": kept}).encode())
        result = upstream.json()
        unprocessed = result.setdefault("UnprocessedItems", {})
        for table, writes in refused.items():
            unprocessed.setdefault(table, []).extend(writes)
        return upstream.status_code, json_type, json.dumps(result).encode()


class _Handler(BaseHTTPRequestHandler):
    server: ForwardingProxy
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def _handle(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = self.rfile.read(int(headers.get("content-length", "0") or 0))
        with self.server.lock:
            self.server.received.append(f"{self.command} {self.path}")
            self.server.headers_received.append(headers)
            self.server.arrivals.append(time.monotonic())
        refused = self.server.refusal(self.command, self.path, headers)
        if refused is None:
            refused = self.server.answer(self.command, self.path, headers, body)
        if refused is not None:
            self._reply(*refused)
            return
        answer = self.server.forward(self.command, self.path, headers, body)
        self._reply(answer.status_code, {k: v for k, v in answer.headers.items() if k not in _NOT_FORWARDED},
                    answer.content, keep=self.server.cut_short(self.command, self.path))

    def _reply(self, status: int, headers: dict[str, str], body: bytes, keep: int | None = None) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name != "content-encoding":  # httpx has decoded the body
                self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        if keep is not None:
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body if keep is None else body[:keep])
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


Server = TypeVar("Server", bound=ThreadingHTTPServer)


@contextmanager
def serving(server: Server) -> Iterator[Server]:
    """``server`` answering on its own thread until the block ends."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def usage_plan_gateway(upstream: str, *, api_key: str, throttled: int = 0,
                       retry_after: str = "1") -> Iterator[UsagePlanGateway]:
    with serving(UsagePlanGateway(upstream, api_key=api_key, throttled=throttled, retry_after=retry_after)) as gw:
        yield gw


@contextmanager
def short_read_s3(upstream: str, *, keep_bytes: int) -> Iterator[ShortReadS3]:
    with serving(ShortReadS3(upstream, keep_bytes=keep_bytes)) as proxy:
        yield proxy


@contextmanager
def s3_outage(upstream: str) -> Iterator[S3Outage]:
    with serving(S3Outage(upstream)) as proxy:
        yield proxy


@contextmanager
def throttling_dynamodb(upstream: str, *, percent: int) -> Iterator[ThrottlingDynamoDB]:
    with serving(ThrottlingDynamoDB(upstream, percent=percent)) as proxy:
        yield proxy
