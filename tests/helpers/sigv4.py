"""AWS front doors on loopback that check SigV4 as AWS does: a Function URL (service ``lambda``)
or API Gateway with ``AWS_IAM`` auth (service ``execute-api``).

``SigV4Gateway`` recomputes each request's signature with botocore from what it received (the
signed headers, path and query, body and X-Amz-Date), refuses what does not verify
with 403, as AWS does, and forwards the rest: ``SigV4Gateway`` to the real API over
HTTP, ``HttpApiGateway`` to a Lambda handler as an API Gateway HTTP API does, as a
payload format 2.0 event carrying the caller's IAM identity.

``IamRestApi`` is API Gateway's REST API with ``AWS_IAM`` on every method, for several
principals at once: it verifies each signature with the signer's own secret, then
authorizes ``execute-api:Invoke`` on ``<METHOD>/<path>`` against that principal's
grants (the resource paths of the policies attached to it, ``*`` matching anything, as
in IAM), and invokes the Lambda handler with a REST (v1) proxy event whose
``requestContext.identity`` names the principal, as API Gateway's does.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import hashlib
import hmac
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import httpx

from helpers.lambda_events import FakeContext, make_event
from helpers.processes import free_port
from helpers.proxies import serving

_AUTH_RE = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
                      r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
                      r"Signature=(?P<signature>[0-9a-f]{64})")
# What each service answers an unsigned or badly signed request.
_REFUSALS = {"lambda": b'{"Message":"Forbidden"}', "execute-api": b'{"message":"Missing Authentication Token"}'}


class SigV4Gateway(ThreadingHTTPServer):
    """Refuses (403) what does not verify; forwards the rest to ``upstream``."""

    daemon_threads = True

    def __init__(self, upstream: str, *, service: str, region: str, access_key: str, secret_key: str) -> None:
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self.upstream = upstream
        self.service, self.region = service, region
        self.secrets = {access_key: secret_key}
        self.verified: list[str] = []
        self.refused: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def problem(self, method: str, path: str, headers: dict[str, str], body: bytes) -> str | None:
        """Why AWS would refuse this request, or None if the signature is valid."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import ReadOnlyCredentials

        match = _AUTH_RE.fullmatch(headers.get("authorization", ""))
        if match is None:
            return "missing or malformed Authorization"
        if match["key"] not in self.secrets or (match["region"], match["service"]) != (self.region, self.service):
            return f"wrong credential scope {match['key']}/{match['region']}/{match['service']}"
        amz_date = headers.get("x-amz-date", "")
        if not amz_date.startswith(match["date"]):
            return "X-Amz-Date does not match the credential scope"
        signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if abs((datetime.now(UTC) - signed_at).total_seconds()) > 300:
            return "signature expired"
        payload_hash = headers.get("x-amz-content-sha256")
        if payload_hash is not None and payload_hash != hashlib.sha256(body).hexdigest():
            return "the body does not match x-amz-content-sha256"
        signed = match["signed"].split(";")
        if "host" not in signed:
            return "host is not signed"
        request = AWSRequest(method=method, url=f"http://{headers['host']}{path}", data=body,
                             headers={name: headers[name] for name in signed if name in headers})
        request.context["timestamp"] = amz_date
        signer = SigV4Auth(ReadOnlyCredentials(match["key"], self.secrets[match["key"]], None), self.service,
                           self.region)
        expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        return None if hmac.compare_digest(expected, match["signature"]) else "signature mismatch"


    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes,
                access_key: str) -> tuple[int, bytes, str]:
        """What a verified request gets: the upstream API's answer."""
        upstream = httpx.request(method, self.upstream + path, content=body, timeout=60,
                                 headers={"content-type": headers.get("content-type", "")})
        return upstream.status_code, upstream.content, upstream.headers.get("content-type", "")



class HttpApiGateway(SigV4Gateway):
    """API Gateway's HTTP API with ``AWS_IAM`` on its ``$default`` route, in front of a Lambda handler.

    A verified request becomes the payload format 2.0 event API Gateway sends (headers in lower case,
    the query string raw, a binary body base64-encoded, the signer's identity under
    ``requestContext.authorizer.iam``); the handler's proxy response becomes the HTTP answer.
    ``events`` keeps every event handed to the handler."""

    ACCOUNT_ID = "123456789012"

    def __init__(self, handler: Callable[[dict[str, Any], Any], dict[str, Any]], *, region: str, access_key: str,
                 secret_key: str) -> None:
        super().__init__("", service="execute-api", region=region, access_key=access_key, secret_key=secret_key)
        self.handler = handler
        self.events: list[dict[str, Any]] = []

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes,
                access_key: str) -> tuple[int, bytes, str]:
        from helpers.lambda_events import read_response

        raw_path, _, raw_query = path.partition("?")
        text = headers.get("content-type", "").startswith(("application/json", "text/"))
        now = datetime.now(UTC)
        event = {
            "version": "2.0", "routeKey": "$default", "rawPath": raw_path, "rawQueryString": raw_query,
            "headers": {k: v for k, v in headers.items() if k != "content-length"},
            "queryStringParameters": {k: ",".join(v) for k, v in parse_qs(raw_query).items()} or None,
            "requestContext": {
                "accountId": self.ACCOUNT_ID, "apiId": "abcdef1234", "domainName": headers.get("host", ""),
                "domainPrefix": "abcdef1234", "requestId": str(uuid.uuid4()), "routeKey": "$default",
                "stage": "$default", "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
                "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                         "userAgent": headers.get("user-agent", "")},
                "authorizer": {"iam": {
                    "accessKey": access_key, "accountId": self.ACCOUNT_ID, "callerId": "AIDACALLER",
                    "principalOrgId": None, "userId": "AIDACALLER",
                    "userArn": f"arn:aws:iam::{self.ACCOUNT_ID}:user/caller", "cognitoIdentity": None,
                }},
            },
            "body": (body.decode() if text else base64.b64encode(body).decode()) if body else None,
            "isBase64Encoded": bool(body) and not text,
        }
        self.events.append(event)
        # Lambda runs the handler on its main thread, which has an event loop for Mangum; this
        # server's request threads have none until given one.
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            response = read_response(self.handler(event, FakeContext()))
        finally:
            loop.close()
        return response.status, response.body, response.headers.get("content-type", "")


@dataclass(frozen=True)
class Principal:
    """An IAM principal calling the API: its credentials, its ARN, and what its policies allow on the API:
    (METHOD, resource path) pairs as in ``execute-api:Invoke`` resources, ``*`` matching anything."""

    access_key: str
    secret_key: str
    arn: str
    grants: Sequence[tuple[str, str]]

    def allows(self, method: str, path: str) -> bool:
        return any(method == granted and fnmatch.fnmatchcase(path, pattern) for granted, pattern in self.grants)


class IamRestApi(SigV4Gateway):
    """API Gateway (REST, ``AWS_IAM`` on every method) for ``principals``, invoking ``invoke(event)``."""

    def __init__(self, invoke: Callable[[dict[str, Any]], Mapping[str, Any]], *, region: str,
                 principals: Sequence[Principal]) -> None:
        first = principals[0]
        super().__init__("", service="execute-api", region=region, access_key=first.access_key,
                         secret_key=first.secret_key)
        self.invoke = invoke
        self.principals = {p.access_key: p for p in principals}
        self.secrets = {p.access_key: p.secret_key for p in principals}
        self.denied: list[str] = []

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes,
                access_key: str) -> tuple[int, bytes, str]:
        principal = self.principals[access_key]
        url = urlsplit(path)
        if not principal.allows(method, url.path):
            # API Gateway's answer when the caller's policies do not allow execute-api:Invoke on the resource.
            self.denied.append(f"{principal.arn} {method} {url.path}")
            message = (f"User: {principal.arn} is not authorized to perform: execute-api:Invoke on resource: "
                       f"arn:aws:execute-api:{self.region}:123456789012:a1b2c3d4e5/prod/{method}{url.path}")
            return 403, json.dumps({"Message": message}).encode(), "application/json"
        forwarded = {k: v for k, v in headers.items() if k not in ("host", "content-type", "content-length")}
        event = make_event("v1", method, url.path, body=body or None, content_type=headers.get("content-type"),
                           query=dict(parse_qsl(url.query)) or None, headers=forwarded)
        identity = event["requestContext"]["identity"]
        identity.update(userArn=principal.arn, accessKey=principal.access_key, caller=principal.arn.split("/")[-1],
                        user=principal.arn.split("/")[-1], accountId="123456789012")
        answer = self.invoke(event)
        data = answer.get("body") or ""
        content = base64.b64decode(data) if answer.get("isBase64Encoded") else data.encode()
        answer_headers = {k.lower(): v for k, v in (answer.get("headers") or {}).items()}
        return int(answer["statusCode"]), content, answer_headers.get("content-type", "")


class _Handler(BaseHTTPRequestHandler):
    server: SigV4Gateway

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        problem = self.server.problem(self.command, self.path, headers, body)
        if problem is not None:
            self.server.refused.append(problem)
            self._reply(403, _REFUSALS[self.server.service], "application/json")
            return
        self.server.verified.append(f"{self.command} {self.path}")
        match = _AUTH_RE.fullmatch(headers["authorization"])
        assert match is not None
        self._reply(*self.server.forward(self.command, self.path, headers, body, match["key"]))

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@contextmanager
def sigv4_gateway(upstream: str, *, service: str, region: str, access_key: str,
                  secret_key: str) -> Iterator[SigV4Gateway]:
    with serving(SigV4Gateway(upstream, service=service, region=region, access_key=access_key,
                              secret_key=secret_key)) as gateway:
        yield gateway


@contextmanager
def http_api_gateway(handler: Callable[[dict[str, Any], Any], dict[str, Any]], *, region: str, access_key: str,
                     secret_key: str) -> Iterator[HttpApiGateway]:
    with serving(HttpApiGateway(handler, region=region, access_key=access_key, secret_key=secret_key)) as gateway:
        yield gateway


@contextmanager
def iam_rest_api(handler: Callable[..., Mapping[str, Any]], *, region: str,
                 principals: Sequence[Principal]) -> Iterator[IamRestApi]:
    """An ``IamRestApi`` on loopback in front of the Lambda ``handler``: one instance, so one invocation at a
    time, each with a fresh context, on a thread with an event loop as Lambda's runtime has (Mangum needs one)."""
    one_at_a_time = threading.Lock()

    def invoke(event: dict[str, Any]) -> Mapping[str, Any]:
        with one_at_a_time:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                return handler(event, FakeContext())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    with serving(IamRestApi(invoke, region=region, principals=principals)) as api:
        yield api
