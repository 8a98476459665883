"""HTTP for the classifier's clients: one API call, retried, signed, and its failure as ``RequestFailed``.

429 and 5xx answers (but 501 Not Implemented, which is permanent), connection errors and
timeouts are retried a bounded number of times with exponential backoff and
full jitter (a random wait in ``[0, min(cap, base * 2**n)]``, so many clients
that failed together do not retry together), honouring a ``Retry-After`` in
seconds. Requests to the API can be signed with SigV4 (botocore's signer,
service ``lambda``) for a Function URL with IAM auth, and carry ``x-api-key``
for an API Gateway usage plan.

Standard library and urllib3 only (urllib3 is what botocore itself uses);
botocore is imported only to sign, so the dashboard image and a plain script
can use the client without the runtime's dependencies.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree

import urllib3

from classifier import __version__

# 501 Not Implemented says the server cannot do this at all: asking again will not help.
_NOT_RETRIED_5XX = (501,)
_LAMBDA_URL_RE = re.compile(r"^[a-z0-9]+\.lambda-url\.([a-z0-9-]+)\.on\.aws$")
_API_GATEWAY_RE = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")
_ERROR_TEXT_CHARS = 300

Signer = Callable[[str, str, bytes, dict[str, str]], dict[str, str]]


class RequestFailed(Exception):
    """A request that failed for good: the API's (or S3's) status, error code and message.

    ``status`` is None when no HTTP answer came back (code ``connection_error``
    or ``timeout``) or the request was never sent (``file_error``).
    """

    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(f"{status or '-'} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; waits drawn from [0, min(cap, base * 2**retry)] seconds."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 20.0

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        wait = random.uniform(0, min(self.cap, self.base * 2**retry))
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.cap))
        return wait


@dataclass(frozen=True)
class RetryEvent:
    """Passed to ``on_retry`` before each wait."""

    method: str
    url: str
    retry: int  # 1 for the first retry
    delay: float
    reason: str


@dataclass
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def retryable(status: int) -> bool:
    """An answer the same request may not get again: throttling, or a server failure but "not configured"."""
    return status == 429 or (status >= 500 and status not in _NOT_RETRIED_5XX)


def region_from_url(url: str) -> str | None:
    """``eu-west-1`` from a Function URL (``<id>.lambda-url.eu-west-1.on.aws``) or an API Gateway
    URL (``<id>.execute-api.eu-west-1.amazonaws.com``)."""
    host = urlsplit(url).hostname or ""
    match = _LAMBDA_URL_RE.fullmatch(host) or _API_GATEWAY_RE.fullmatch(host)
    return match.group(1) if match else None


def service_for_url(url: str) -> str:
    """What a SigV4 signature must name: ``lambda`` for a Function URL; ``execute-api`` for API
    Gateway (its own URL, a custom domain, CloudFront in front of it)."""
    return "lambda" if _LAMBDA_URL_RE.fullmatch(urlsplit(url).hostname or "") else "execute-api"


class ApiHttp:
    """Calls to one API at ``base_url`` (an API Gateway stage URL keeps its path) over a connection pool."""

    def __init__(self, base_url: str, *, api_key: str | None, signer: Signer | None, timeout: urllib3.Timeout,
                 retry: RetryPolicy, on_retry: Callable[[RetryEvent], None] | None, max_connections: int) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.timeout = timeout
        self.retry = retry
        self.on_retry = on_retry
        self._pool = urllib3.PoolManager(maxsize=max_connections, retries=False)
        self._signer = signer

    def request(self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None,
                query: Mapping[str, str] | None = None) -> Response:
        """One API call (signed, with the API key), retried on 429/5xx, connection errors and timeouts."""
        url = self.base_url + path + (f"?{urlencode(query)}" if query else "")
        all_headers = {"user-agent": f"classifier-client/{__version__}", "accept": "application/json",
                       **(headers or {})}
        if self.api_key:
            all_headers["x-api-key"] = self.api_key
        return self.send(method, url, body, all_headers, sign=True)

    def send(self, method: str, url: str, body: bytes, headers: dict[str, str], *, sign: bool) -> Response:
        """``url`` as it is (the API's, or S3's for a presigned POST), retried like ``request``."""
        retry = 0
        while True:
            # Signed afresh on every attempt: the signature covers X-Amz-Date.
            sent = self._signer(method, url, body, headers) if sign and self._signer else headers
            reason: str
            retry_after: float | None = None
            try:
                raw = self._pool.request(method, url, body=body, headers=sent, timeout=self.timeout,
                                         redirect=False, preload_content=True)
            except urllib3.exceptions.ReadTimeoutError:
                reason = f"no answer within {self.timeout.read_timeout:g} s"
                if retry + 1 >= self.retry.attempts:
                    raise RequestFailed(None, "timeout", f"{method} {url}: {reason}") from None
            except urllib3.exceptions.HTTPError as exc:
                reason = f"connection error: {exc}"
                if retry + 1 >= self.retry.attempts:
                    raise RequestFailed(None, "connection_error", f"{method} {url}: {exc}") from None
            else:
                response = Response(raw.status, {k.lower(): v for k, v in raw.headers.items()}, raw.data)
                if not retryable(response.status) or retry + 1 >= self.retry.attempts:
                    return response
                reason = f"HTTP {response.status}"
                retry_after = _retry_after(response.headers.get("retry-after"))
            retry += 1
            delay = self.retry.delay(retry, retry_after)
            if self.on_retry is not None:
                self.on_retry(RetryEvent(method, url, retry, delay, reason))
            time.sleep(delay)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: rare for these APIs; the backoff applies
        return None


def json_or_raise(response: Response) -> dict[str, Any]:
    """A 2xx answer's JSON object, else ``RequestFailed`` with whatever the error body says."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if 200 <= response.status < 300 and isinstance(payload, dict):
        return payload
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = payload["error"]
        raise RequestFailed(response.status, str(error.get("code", "error")), str(error.get("message", "")))
    if isinstance(payload, dict) and ("message" in payload or "Message" in payload):
        # API Gateway's own errors ({"message": ...}) and a Function URL's ({"Message": "Forbidden"})
        message = payload.get("message", payload.get("Message"))
        raise RequestFailed(response.status, f"http_{response.status}", str(message))
    raise RequestFailed(response.status, f"http_{response.status}", _body_text(response) or "no response body")


def _body_text(response: Response) -> str:
    """The start of a body as text; a proxy's HTML error page (an ALB's, a gateway's) without its markup."""
    text = response.body[:4096].decode("utf-8", "replace")
    if "html" in response.headers.get("content-type", "") or text.lstrip().startswith("<"):
        text = re.sub(r"<(script|style)\b.*?</\1>|<[^>]+>", " ", text, flags=re.S | re.I)
    return " ".join(text.split())[:_ERROR_TEXT_CHARS]


def s3_error(response: Response) -> RequestFailed:
    """S3 answers errors as XML: <Error><Code>EntityTooLarge</Code><Message>...</Message></Error>."""
    code, message = f"s3_{response.status}", response.body[:_ERROR_TEXT_CHARS].decode("utf-8", "replace")
    try:
        root = ElementTree.fromstring(response.body)  # noqa: S314 - S3's own answer, not user input
        code = f"s3_{root.findtext('Code') or response.status}"
        message = root.findtext("Message") or message
    except ElementTree.ParseError:
        pass
    return RequestFailed(response.status, code, f"the upload to S3 was refused: {message}")


def sigv4_signer(service: str, region: str | None) -> Signer:
    """A function that returns the headers of a request signed with botocore's SigV4Auth."""
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = botocore.session.get_session()
    # AWS_REGION is what Lambda and most SDKs set; botocore itself reads AWS_DEFAULT_REGION and the profile.
    region = region or os.environ.get("AWS_REGION") or session.get_config_variable("region")
    if not region:
        raise ValueError("--sigv4 needs a region: set AWS_REGION (or pass --region); "
                         "it is read from a Function URL's host name when it has one")
    credentials = session.get_credentials()
    if credentials is None:
        raise ValueError("--sigv4 needs AWS credentials (environment, profile or SSO); none were found")
    lock = threading.Lock()

    def sign(method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        with lock:  # refreshable credentials refresh under one caller at a time
            frozen = credentials.get_frozen_credentials()
        # The payload hash as a header too: CloudFront origin access control
        # for a Function URL requires it, and SigV4 then signs that value.
        request = AWSRequest(method=method, url=url, data=body,
                             headers={**headers, "x-amz-content-sha256": hashlib.sha256(body).hexdigest()})
        SigV4Auth(frozen, service, region).add_auth(request)
        return dict(request.headers.items())

    return sign
