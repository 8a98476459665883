"""A Python client for the classifier API: the engine of ``python -m classifier classify``.

For each image it picks the way in by size: up to ``inline_max_bytes`` (the
server's ``MAX_IMAGE_BYTES``, 4 MiB by default) the bytes go in the body of
``POST /classify``; larger images go through S3 (``POST /uploads``, the
presigned POST straight to the bucket, then ``POST /classify {"s3_key"}``).
An inline request the server answers with 413 ``payload_too_large`` (its limit
is lower than ours) is retried through S3.

Requests to the API can be signed with SigV4 (botocore's signer, service
``lambda``) for a Function URL with IAM auth, and carry ``x-api-key`` for an
API Gateway usage plan. 429 and 5xx answers (but 501, which is permanent) and
connection errors are retried a bounded number of times with exponential
backoff and full jitter (a random wait in ``[0, min(cap, base * 2**n)]``, so
many clients that failed together do not retry together), honouring a
``Retry-After`` in seconds.

HTTP is urllib3, which botocore already depends on; botocore is imported only
for ``sigv4``.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree

import urllib3

from classifier import __version__

MiB = 1024 * 1024
DEFAULT_INLINE_MAX_BYTES = 4 * MiB
# 501 not_configured means the server has no uploads bucket: asking again will not help.
_NOT_RETRIED_5XX = (501,)
_LAMBDA_URL_RE = re.compile(r"^[a-z0-9]+\.lambda-url\.([a-z0-9-]+)\.on\.aws$")


class RequestFailed(Exception):
    """A request that failed for good: the API's (or S3's) status, error code and message."""

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


@dataclass
class FileResult:
    """The outcome for one file: ``result`` (the API's classification) or ``error``."""

    path: str
    via: str  # "inline" or "s3"
    latency_ms: float
    result: dict[str, Any] | None = None
    error: RequestFailed | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.path, "via": self.via, "latency_ms": round(self.latency_ms, 1)}
        if self.error is not None:
            out["error"] = self.error.as_dict()
        else:
            out["result"] = self.result
        return out


def sniff_content_type(data: bytes, name: str = "") -> str | None:
    """The image type from the magic bytes (the file name only as a last resort)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:2] == b"BM":
        return "image/bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    guessed, _ = mimetypes.guess_type(name)
    return guessed if guessed and guessed.startswith("image/") else None


def region_from_url(url: str) -> str | None:
    """``eu-west-1`` from ``https://<id>.lambda-url.eu-west-1.on.aws/``."""
    match = _LAMBDA_URL_RE.fullmatch(urlsplit(url).hostname or "")
    return match.group(1) if match else None


class ClassifierClient:
    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        sigv4: bool = False,
        region: str | None = None,
        service: str = "lambda",
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        inline_max_bytes: int = DEFAULT_INLINE_MAX_BYTES,
        on_retry: Callable[[RetryEvent], None] | None = None,
        max_connections: int = 8,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"--url must be an http(s) URL, got {url!r}")
        self.base_url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = urllib3.Timeout(connect=10.0, read=timeout)
        self.retry = retry or RetryPolicy()
        self.inline_max_bytes = inline_max_bytes
        self.on_retry = on_retry
        self._http = urllib3.PoolManager(maxsize=max_connections, retries=False)
        self._signer: Callable[[str, str, bytes, dict[str, str]], dict[str, str]] | None = None
        if sigv4:
            self._signer = sigv4_signer(service, region or region_from_url(url))

    # -- the API -----------------------------------------------------------------
    def classify_file(self, path: str | Path, *, top_k: int = 5) -> FileResult:
        """Classify one file, inline or through S3 by its size; never raises for a bad file or answer."""
        started = time.perf_counter()
        via = "inline"
        try:
            data = Path(path).read_bytes()
            content_type = sniff_content_type(data, str(path))
            if len(data) <= self.inline_max_bytes:
                try:
                    result = self.classify_bytes(data, content_type, top_k=top_k)
                except RequestFailed as exc:
                    if exc.status != 413 or exc.code == "image_too_large":
                        raise
                    via = "s3"  # the server's inline limit is below ours
                    result = self.classify_via_s3(data, content_type, top_k=top_k)
            else:
                via = "s3"
                result = self.classify_via_s3(data, content_type, top_k=top_k)
        except OSError as exc:
            error = RequestFailed(None, "file_error", f"cannot read {path}: {exc.strerror or exc}")
            return FileResult(str(path), via, _ms_since(started), error=error)
        except RequestFailed as exc:
            return FileResult(str(path), via, _ms_since(started), error=exc)
        return FileResult(str(path), via, _ms_since(started), result=result)

    def classify_bytes(self, data: bytes, content_type: str | None = None, *, top_k: int = 5) -> dict[str, Any]:
        """``POST /classify`` with the image as the body."""
        response = self.request("POST", "/classify", data, {"content-type": content_type or "application/octet-stream"},
                                query={"top_k": str(top_k)})
        return _json_or_raise(response)

    def classify_via_s3(self, data: bytes, content_type: str | None, *, top_k: int = 5) -> dict[str, Any]:
        """``POST /uploads``, the presigned POST to S3, then ``POST /classify {"s3_key"}``."""
        if content_type is None:
            raise RequestFailed(None, "unsupported_media_type",
                              "not a JPEG, PNG, WebP, GIF, BMP or TIFF file; only images can be uploaded")
        upload = self.create_upload(content_type, len(data))
        self.upload(upload, data)
        return self.classify_key(upload["key"], top_k=top_k)

    def create_upload(self, content_type: str, size: int) -> dict[str, Any]:
        body = json.dumps({"content_type": content_type, "bytes": size}).encode()
        upload: dict[str, Any] = _json_or_raise(
            self.request("POST", "/uploads", body, {"content-type": "application/json"}))
        return upload

    def upload(self, upload: Mapping[str, Any], data: bytes) -> None:
        """Send ``data`` to S3 with a presigned POST: its fields in order, the file last (S3 requires it)."""
        form: list[tuple[str, Any]] = [(name, str(value)) for name, value in upload["fields"].items()]
        content_type = str(upload["fields"].get("Content-Type", "application/octet-stream"))
        form.append(("file", ("image", data, content_type)))
        body, form_type = urllib3.encode_multipart_formdata(form)
        response = self._send("POST", str(upload["url"]), body, {"content-type": form_type}, sign=False)
        if not 200 <= response.status < 300:
            raise _s3_error(response)

    def classify_key(self, key: str, *, top_k: int = 5) -> dict[str, Any]:
        body = json.dumps({"s3_key": key}).encode()
        return _json_or_raise(self.request("POST", "/classify", body, {"content-type": "application/json"},
                                           query={"top_k": str(top_k)}))

    def request(self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None,
                query: Mapping[str, str] | None = None) -> Response:
        """One API call (signed, with the API key), retried on 429/5xx and connection errors."""
        url = self.base_url + path + (f"?{urlencode(query)}" if query else "")
        all_headers = {"user-agent": f"classifier-client/{__version__}", "accept": "application/json",
                       **(headers or {})}
        if self.api_key:
            all_headers["x-api-key"] = self.api_key
        return self._send(method, url, body, all_headers, sign=True)

    # -- internals ---------------------------------------------------------------
    def _send(self, method: str, url: str, body: bytes, headers: dict[str, str], *, sign: bool) -> Response:
        retry = 0
        while True:
            # Signed afresh on every attempt: the signature covers X-Amz-Date.
            sent = self._signer(method, url, body, headers) if sign and self._signer else headers
            reason: str
            retry_after: float | None = None
            try:
                raw = self._http.request(method, url, body=body, headers=sent, timeout=self.timeout,
                                         redirect=False, preload_content=True)
            except urllib3.exceptions.HTTPError as exc:
                reason = f"connection error: {exc}"
                if retry + 1 >= self.retry.attempts:
                    raise RequestFailed(None, "connection_error", f"{method} {url}: {exc}") from None
            else:
                response = Response(raw.status, {k.lower(): v for k, v in raw.headers.items()}, raw.data)
                if not _retryable(response.status) or retry + 1 >= self.retry.attempts:
                    return response
                reason = f"HTTP {response.status}"
                retry_after = _retry_after(response.headers.get("retry-after"))
            retry += 1
            delay = self.retry.delay(retry, retry_after)
            if self.on_retry is not None:
                self.on_retry(RetryEvent(method, url, retry, delay, reason))
            time.sleep(delay)


def _retryable(status: int) -> bool:
    return status == 429 or (status >= 500 and status not in _NOT_RETRIED_5XX)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:  # an HTTP date: rare for these APIs; the backoff applies
        return None


def _json_or_raise(response: Response) -> dict[str, Any]:
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
    text = response.body[:300].decode("utf-8", "replace").strip()
    raise RequestFailed(response.status, f"http_{response.status}", text or "no response body")


def _s3_error(response: Response) -> RequestFailed:
    """S3 answers errors as XML: <Error><Code>EntityTooLarge</Code><Message>...</Message></Error>."""
    code, message = f"s3_{response.status}", response.body[:300].decode("utf-8", "replace")
    try:
        root = ElementTree.fromstring(response.body)  # noqa: S314 - S3's own answer, not user input
        code = f"s3_{root.findtext('Code') or response.status}"
        message = root.findtext("Message") or message
    except ElementTree.ParseError:
        pass
    return RequestFailed(response.status, code, f"the upload to S3 was refused: {message}")


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def sigv4_signer(service: str, region: str | None) -> Callable[[str, str, bytes, dict[str, str]], dict[str, str]]:
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


class Progress:
    """A tqdm bar on stderr for several files, when tqdm is installed and stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.bar: Any = None
        if total < 2:
            return
        try:
            from tqdm import tqdm
        except ImportError:  # a plain install of the runtime package: no bar, no complaint
            return
        # disable=None: tqdm turns itself off when stderr is not a terminal.
        self.bar = tqdm(total=total, unit="img", disable=None, leave=False)

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def write(self, message: str) -> None:
        """A message on stderr that does not tear the bar."""
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def classify_files(client: ClassifierClient, paths: list[str], *, top_k: int = 5, concurrency: int = 4,
                   progress: Progress | None = None) -> list[FileResult]:
    """Classify ``paths`` with up to ``concurrency`` requests in flight; results in input order."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    results: list[FileResult | None] = [None] * len(paths)
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {pool.submit(client.classify_file, path, top_k=top_k): i for i, path in enumerate(paths)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if progress is not None:
                progress.update()
    return [r for r in results if r is not None]


def format_table(results: list[FileResult]) -> str:
    """FILE, LABEL, SCORE, LATENCY, MODEL: one row per file (an error fills the rest of its row)."""
    header = ("FILE", "LABEL", "SCORE", "LATENCY", "MODEL")
    rows: list[tuple[str, ...]] = []
    for r in results:
        if r.error is not None or r.result is None:
            err = r.error or RequestFailed(None, "error", "no result")
            rows.append((r.path, f"ERROR {err.status or '-'} {err.code}: {err.message}"))
            continue
        top: dict[str, Any] = r.result["predictions"][0] if r.result.get("predictions") else {"label": "-", "score": 0}
        model = r.result.get("model", {})
        version = str(model.get("version", "-")) + ("" if model.get("trained", True) else " (untrained)")
        rows.append((r.path, str(top["label"]), f"{float(top['score']):.4f}", f"{r.latency_ms:.0f} ms", version))
    widths = [max([len(header[i])] + [len(row[i]) for row in rows if len(row) == len(header)])
              for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        if len(row) < len(header):  # an error row: the message spans the remaining columns
            lines.append(f"{row[0]:{widths[0]}}  {row[1]}")
        else:
            cells = [f"{cell:{widths[i]}}" if i < len(widths) else cell for i, cell in enumerate(row)]
            cells[2] = f"{row[2]:>{widths[2]}}"
            cells[3] = f"{row[3]:>{widths[3]}}"
            lines.append("  ".join(cells))
    return "\n".join(lines)
