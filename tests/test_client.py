"""The Python client and ``python -m classifier classify`` against real servers:
the API under uvicorn with moto's S3 server for uploads, and, for SigV4, a
loopback stand-in for a Function URL with IAM auth that recomputes every
signature with botocore before passing the request on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from classifier.__main__ import main
from classifier.client import ClassifierClient
from classifier.client_http import RetryEvent, RetryPolicy, region_from_url, sigv4_signer

from helpers.aws import REGION, aws_env, new_bucket
from helpers.photos import big_jpeg, jpeg
from helpers.processes import LiveServer, free_port, live_server
from helpers.stores import copy_store, link_large

INLINE_LIMIT = 100_000  # the module's server: MAX_IMAGE_BYTES, so a few test photos need S3
FAST_RETRY = RetryPolicy(attempts=6, base=0.05, cap=0.5)
ACCESS_KEY, SECRET_KEY = "AKIDEXAMPLECALLER", "caller-secret-key"


@pytest.fixture(scope="module")
def api(published_store: Path, tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[LiveServer]:
    store = copy_store(published_store, tmp_path_factory.mktemp("client") / "store")
    env = aws_env(s3_endpoint, new_bucket(s3_endpoint), MAX_IMAGE_BYTES=str(INLINE_LIMIT))
    with live_server(store, store.parent, env=env) as live:
        yield live


@pytest.fixture
def caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """The calling service's AWS identity, as botocore finds it in the environment."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def write_images(folder: Path) -> list[Path]:
    """20 real photos: 16 small JPEGs and 4 larger ones (over INLINE_LIMIT)."""
    folder.mkdir()
    paths = []
    for quality in (60, 70, 80, 90):
        for name in ("chelsea", "coffee", "astronaut", "rocket"):
            paths.append(folder / f"{name}-q{quality}.jpg")
            paths[-1].write_bytes(jpeg(name, quality))
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        paths.append(folder / f"{name}-large.jpg")
        paths[-1].write_bytes(big_jpeg(name, (1600, 1200)))
    assert sum(p.stat().st_size > INLINE_LIMIT for p in paths) == 4
    return paths


# -- a Function URL with IAM auth, on loopback -------------------------------------------

_AUTH_RE = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
                      r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
                      r"Signature=(?P<signature>[0-9a-f]{64})")


def verify_sigv4(method: str, path: str, headers: dict[str, str], body: bytes) -> str | None:
    """Why AWS would refuse this request, or None if the signature is valid.

    The signature is recomputed with botocore's SigV4Auth from what was
    received: the signed headers, the path and query, the body and X-Amz-Date.
    """
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import ReadOnlyCredentials

    match = _AUTH_RE.fullmatch(headers.get("authorization", ""))
    if match is None:
        return "missing or malformed Authorization"
    if (match["key"], match["region"], match["service"]) != (ACCESS_KEY, REGION, "lambda"):
        return f"wrong credential scope {match['key']}/{match['region']}/{match['service']}"
    amz_date = headers.get("x-amz-date", "")
    if not amz_date.startswith(match["date"]):
        return "X-Amz-Date does not match the credential scope"
    signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    age = abs((datetime.now(UTC) - signed_at).total_seconds())
    if age > 300:
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
    signer = SigV4Auth(ReadOnlyCredentials(ACCESS_KEY, SECRET_KEY, None), "lambda", REGION)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    return None if hmac.compare_digest(expected, match["signature"]) else "signature mismatch"


class FunctionUrl(ThreadingHTTPServer):
    """Refuses (403, as a Function URL does) what does not verify; forwards the rest to the API."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", free_port()), _FunctionUrlHandler)
        self.upstream = upstream
        self.verified: list[str] = []
        self.refused: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FunctionUrlHandler(BaseHTTPRequestHandler):
    server: FunctionUrl

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        problem = verify_sigv4(self.command, self.path, headers, body)
        if problem is not None:
            self.server.refused.append(problem)
            self._reply(403, b'{"Message":"Forbidden"}', "application/json")
            return
        self.server.verified.append(f"{self.command} {self.path}")
        upstream = httpx.request(self.command, self.server.upstream + self.path, content=body, timeout=60,
                                 headers={"content-type": headers.get("content-type", "")})
        self._reply(upstream.status_code, upstream.content, upstream.headers.get("content-type", ""))

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def function_url(api: LiveServer) -> Iterator[FunctionUrl]:
    proxy = FunctionUrl(api.url)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_signed_requests_verify_inline_and_through_s3(caller: None, function_url: FunctionUrl,
                                                      tmp_path: Path) -> None:
    # GIVEN a small and a large photo, and a client signing for the Function URL
    small, large = tmp_path / "small.jpg", tmp_path / "large.jpg"
    small.write_bytes(jpeg("chelsea"))
    large.write_bytes(big_jpeg("coffee", (1600, 1200)))
    client = ClassifierClient(function_url.url, sigv4=True, inline_max_bytes=INLINE_LIMIT, retry=FAST_RETRY)
    # WHEN it classifies both
    inline, via_s3 = client.classify_file(small), client.classify_file(large)
    # THEN every API call verified (the S3 POST goes to S3 with its own presigned policy)
    assert inline.error is None and inline.via == "inline", inline.error
    assert via_s3.error is None and via_s3.via == "s3", via_s3.error
    assert via_s3.result is not None and via_s3.result["s3_key"].startswith("uploads/")
    assert function_url.refused == []
    assert function_url.verified == ["POST /classify?top_k=5", "POST /uploads", "POST /classify?top_k=5"]


def test_unsigned_and_wrongly_signed_requests_are_refused(caller: None, function_url: FunctionUrl,
                                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    image = tmp_path / "cat.jpg"
    image.write_bytes(jpeg("chelsea"))
    # An unsigned request
    unsigned = ClassifierClient(function_url.url, retry=FAST_RETRY).classify_file(image)
    # A request signed with the wrong secret
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    wrong = ClassifierClient(function_url.url, sigv4=True, retry=FAST_RETRY).classify_file(image)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    # A correctly signed request whose body is swapped on the way
    sign = sigv4_signer("lambda", REGION)
    headers = sign("POST", f"{function_url.url}/classify", jpeg("chelsea"), {"content-type": "image/jpeg"})
    swapped = httpx.post(f"{function_url.url}/classify", content=jpeg("coffee"), headers=headers)
    headers["x-amz-content-sha256"] = hashlib.sha256(jpeg("coffee")).hexdigest()  # and its hash with it
    rehashed = httpx.post(f"{function_url.url}/classify", content=jpeg("coffee"), headers=headers)
    for result in (unsigned, wrong):
        assert result.error is not None and result.error.status == 403, result
    assert swapped.status_code == rehashed.status_code == 403
    assert function_url.verified == []
    assert function_url.refused == ["missing or malformed Authorization", "signature mismatch",
                                    "the body does not match x-amz-content-sha256", "signature mismatch"]


def test_cli_signs_with_sigv4(caller: None, function_url: FunctionUrl, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "rocket.jpg"
    image.write_bytes(jpeg("rocket"))
    assert main(["classify", str(image), "--url", function_url.url, "--sigv4", "--json"]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert item["result"]["image"]["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert function_url.verified == ["POST /classify?top_k=5"]


def test_region_comes_from_a_function_url() -> None:
    assert region_from_url("https://abcdefghij1234567890.lambda-url.eu-west-1.on.aws/") == "eu-west-1"
    assert region_from_url("https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/prod") is None


# -- what importing the client costs ----------------------------------------------------

# Run in a fresh interpreter: which top-level packages importing the client (and making one) adds,
# beyond what the interpreter itself starts with; with "sigv4", a signing client too.
IMPORT_PROBE = """
import json, sys
before = {name.split(".")[0] for name in sys.modules}
from classifier.client import ClassifierClient
ClassifierClient("http://127.0.0.1:9", sigv4="sigv4" in sys.argv)
added = {name.split(".")[0] for name in sys.modules} - before
print(json.dumps(sorted(added - set(sys.stdlib_module_names))))
"""


def imported_by_the_client(*args: str) -> set[str]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}
    done = subprocess.run([sys.executable, "-c", IMPORT_PROBE, *args], capture_output=True, text=True, env=env,
                          timeout=120, check=True)
    return set(json.loads(done.stdout))


def test_the_client_imports_the_standard_library_and_urllib3_alone() -> None:
    # GIVEN a fresh interpreter that imports the client and makes an unsigned one
    added = imported_by_the_client()
    # THEN nothing of the runtime came with it (no numpy, PIL, onnxruntime, starlette, torch), nor botocore
    assert added == {"classifier", "urllib3"}
    # and botocore (with what it needs) comes only with SigV4, still without the runtime
    signed = imported_by_the_client("sigv4")
    assert "botocore" in signed
    assert not signed & {"numpy", "PIL", "onnxruntime", "starlette", "torch"}


# -- retries -------------------------------------------------------------------------

def test_retries_a_503_then_succeeds(published_store: Path, tmp_path: Path) -> None:
    # GIVEN a server whose store has no model yet: /classify answers 503 model_unavailable
    store = tmp_path / "store"
    store.mkdir()
    image = tmp_path / "cat.jpg"
    image.write_bytes(jpeg("chelsea"))
    with live_server(store, tmp_path, wait_for_model=False) as live:
        retries: list[RetryEvent] = []

        def publish_on_first_retry(event: RetryEvent) -> None:
            # The operator publishes the model while the client backs off (atomically, by rename).
            retries.append(event)
            if len(retries) == 1:
                shutil.copytree(published_store / "models", store / ".models.tmp", copy_function=link_large)
                os.rename(store / ".models.tmp", store / "models")

        client = ClassifierClient(live.url, retry=FAST_RETRY, on_retry=publish_on_first_retry)
        # WHEN the client classifies
        result = client.classify_file(image)
    # THEN it retried the 503 and then got the classification
    assert result.error is None, result.error
    assert result.result is not None and result.result["model"]["name"] == "resnet50"
    assert [e.reason for e in retries] == ["HTTP 503"]
    assert retries[0].method == "POST" and retries[0].url.endswith("/classify?top_k=5")


def test_retries_are_bounded(tmp_path: Path) -> None:
    # A server that never gets a model: the client gives up after its attempts and reports the 503.
    store = tmp_path / "store"
    store.mkdir()
    image = tmp_path / "cat.jpg"
    image.write_bytes(jpeg("chelsea"))
    with live_server(store, tmp_path, wait_for_model=False) as live:
        retries: list[RetryEvent] = []
        result = ClassifierClient(live.url, retry=RetryPolicy(attempts=3, base=0.01, cap=0.05),
                                  on_retry=retries.append).classify_file(image)
    assert result.error is not None and (result.error.status, result.error.code) == (503, "model_unavailable")
    assert [e.retry for e in retries] == [1, 2]


def test_connection_errors_are_retried_then_reported(tmp_path: Path) -> None:
    image = tmp_path / "cat.jpg"
    image.write_bytes(jpeg("chelsea"))
    retries: list[RetryEvent] = []
    result = ClassifierClient(f"http://127.0.0.1:{free_port()}", retry=RetryPolicy(attempts=3, base=0.01, cap=0.05),
                              on_retry=retries.append).classify_file(image)
    assert result.error is not None and result.error.code == "connection_error"
    assert len(retries) == 2 and all(e.reason.startswith("connection error") for e in retries)


def test_backoff_is_full_jitter_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(attempts=10, base=0.5, cap=4.0)
    for retry in range(1, 8):
        ceiling = min(4.0, 0.5 * 2**retry)
        delays = [policy.delay(retry) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2 and min(delays) < ceiling / 2  # spread over the range, not fixed
    assert all(policy.delay(1, retry_after=3.0) >= 3.0 for _ in range(50))
    assert all(policy.delay(1, retry_after=60.0) <= 4.0 for _ in range(50))  # capped


# -- the CLI, many files ------------------------------------------------------------------

def test_cli_prints_a_row_per_file(api: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_images(tmp_path / "images")
    code = main(["classify", *map(str, paths), "--url", api.url, "--inline-max-bytes", str(INLINE_LIMIT)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    header, rows = out[0].split(), out[1:]
    assert header == ["FILE", "LABEL", "SCORE", "LATENCY", "MODEL"]
    assert len(rows) == 20
    version = httpx.get(f"{api.url}/model").json()["version"]
    for path, row in zip(paths, rows, strict=True):
        assert row.startswith(str(path) + " ")
        assert re.search(r" [01]\.\d{4} +\d+ ms +" + re.escape(version) + r" \(untrained\)$", row), row


def test_cli_json_gives_20_results_inline_and_through_s3(api: LiveServer, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_images(tmp_path / "images")
    code = main(["classify", *map(str, paths), "--url", api.url, "--json", "--top-k", "3"])
    items = json.loads(capsys.readouterr().out)
    assert code == 0 and len(items) == 20
    for path, item in zip(paths, items, strict=True):
        assert item["file"] == str(path) and "error" not in item
        assert item["result"]["image"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert len(item["result"]["predictions"]) == 3
        large = path.stat().st_size > INLINE_LIMIT
        # The client's default inline limit (4 MiB) is above this server's: its 413 sends them through S3.
        assert item["via"] == ("s3" if large else "inline")
        assert ("s3_key" in item["result"]) == large


def test_cli_reports_bad_files_and_exits_1(api: LiveServer, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    good, text, missing = tmp_path / "cat.jpg", tmp_path / "notes.jpg", tmp_path / "missing.jpg"
    good.write_bytes(jpeg("chelsea"))
    text.write_bytes(b"not an image, despite the name")
    code = main(["classify", str(good), str(text), str(missing), "--url", api.url, "--json"])
    items = json.loads(capsys.readouterr().out)
    assert code == 1
    assert "result" in items[0]
    assert (items[1]["error"]["status"], items[1]["error"]["code"]) == (415, "unsupported_media_type")
    assert items[2]["error"]["code"] == "file_error"
    code = main(["classify", str(good), str(text), "--url", api.url])
    rows = capsys.readouterr().out.splitlines()
    assert code == 1 and len(rows) == 3 and "ERROR 415 unsupported_media_type" in rows[2]


def test_cli_without_url_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CLASSIFIER_URL", raising=False)
    assert main(["classify", str(tmp_path / "x.jpg")]) == 2
    assert "--url" in capsys.readouterr().err
