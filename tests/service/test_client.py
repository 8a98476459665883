"""The Python client and ``python -m classifier classify`` against real servers:
the API under uvicorn with moto's S3 server for uploads, and, for SigV4, a
loopback stand-in for a Function URL with IAM auth that recomputes every
signature with botocore before passing the request on.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image

from classifier.__main__ import main
from classifier.client.api import ClassifierClient, ImageFile, UploadsNotServed
from classifier.client.transport import (
    RequestFailed,
    RetryEvent,
    RetryPolicy,
    region_from_url,
    service_for_url,
    sigv4_signer,
)

from helpers.aws import REGION, aws_env, new_bucket, sign_as
from helpers.photos import big_jpeg, jpeg
from helpers.processes import LiveServer, free_port, live_server
from helpers.proxies import UsagePlanGateway, usage_plan_gateway
from helpers.sigv4 import SigV4Gateway, sigv4_gateway
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
    sign_as(monkeypatch, ACCESS_KEY, SECRET_KEY, REGION)


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


@pytest.fixture
def function_url(api: LiveServer) -> Iterator[SigV4Gateway]:
    with sigv4_gateway(api.url, service="lambda", region=REGION, access_key=ACCESS_KEY, secret_key=SECRET_KEY) as gw:
        yield gw


def test_signed_requests_verify_inline_and_through_s3(caller: None, function_url: SigV4Gateway,
                                                      tmp_path: Path) -> None:
    # GIVEN a small and a large photo, and a client signing for the Function URL
    small, large = tmp_path / "small.jpg", tmp_path / "large.jpg"
    small.write_bytes(jpeg("chelsea"))
    large.write_bytes(big_jpeg("coffee", (1600, 1200)))
    client = ClassifierClient(function_url.url, sigv4=True, service="lambda", inline_max_bytes=INLINE_LIMIT,
                              retry=FAST_RETRY)
    # WHEN it classifies both
    inline, via_s3 = client.classify_file(small), client.classify_file(large)
    # THEN every API call verified (the S3 POST goes to S3 with its own presigned policy)
    assert inline.error is None and inline.via == "inline", inline.error
    assert via_s3.error is None and via_s3.via == "s3", via_s3.error
    assert via_s3.result is not None and via_s3.result["s3_key"].startswith("uploads/")
    assert function_url.refused == []
    assert function_url.verified == ["POST /classify?top_k=5", "POST /uploads", "POST /classify?top_k=5"]


def test_unsigned_and_wrongly_signed_requests_are_refused(caller: None, function_url: SigV4Gateway,
                                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    image = tmp_path / "cat.jpg"
    image.write_bytes(jpeg("chelsea"))
    # An unsigned request
    unsigned = ClassifierClient(function_url.url, retry=FAST_RETRY).classify_file(image)
    # A request signed with the wrong secret
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    wrong = ClassifierClient(function_url.url, sigv4=True, service="lambda", retry=FAST_RETRY).classify_file(image)
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


def test_cli_signs_with_sigv4(caller: None, function_url: SigV4Gateway, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "rocket.jpg"
    image.write_bytes(jpeg("rocket"))
    # (the stand-in is on loopback: its service is named, as it would be read from a Function URL's host)
    assert main(["classify", str(image), "--url", function_url.url, "--sigv4", "--service", "lambda", "--json"]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert item["result"]["image"]["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert function_url.verified == ["POST /classify?top_k=5"]


def test_region_and_service_come_from_the_url() -> None:
    function_url = "https://abcdefghij1234567890.lambda-url.eu-west-1.on.aws/"
    rest_api = "https://a1b2c3d4e5.execute-api.eu-west-2.amazonaws.com/prod"
    assert (region_from_url(function_url), service_for_url(function_url)) == ("eu-west-1", "lambda")
    assert (region_from_url(rest_api), service_for_url(rest_api)) == ("eu-west-2", "execute-api")
    # a custom domain or CloudFront in front of API Gateway: execute-api, region from the environment
    assert (region_from_url("https://api.example.com"), service_for_url("https://api.example.com")) == (
        None, "execute-api")


# -- what importing the client costs ----------------------------------------------------

# Run in a fresh interpreter: which top-level packages importing the client (and making one) adds,
# beyond what the interpreter itself starts with; with "sigv4", a signing client too; with "urllib3-alone",
# urllib3 by itself.
IMPORT_PROBE = """
import json, sys
before = {name.split(".")[0] for name in sys.modules}
if "urllib3-alone" in sys.argv:
    import urllib3
else:
    from classifier.client.api import ClassifierClient
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
    # THEN nothing of the runtime came with it (no numpy, PIL, onnxruntime, starlette, torch), nor botocore:
    # urllib3 and what urllib3 imports by itself when installed (brotli, which the load tester brings)
    urllib3_alone = imported_by_the_client("urllib3-alone")
    assert "urllib3" in urllib3_alone and not urllib3_alone & {"numpy", "PIL", "onnxruntime", "botocore"}
    assert added == {"classifier"} | urllib3_alone
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


def test_a_refused_connection_fails_at_once(tmp_path: Path) -> None:
    # GIVEN a loopback port where nothing listens (the API not started yet, or a wrong port)
    image = tmp_path / "cat.jpg"
    image.write_bytes(jpeg("chelsea"))
    port = free_port()
    retries: list[RetryEvent] = []
    # WHEN the client, allowed many slow retries, classifies
    result = ClassifierClient(f"http://127.0.0.1:{port}", retry=RetryPolicy(attempts=6, base=5, cap=20),
                              on_retry=retries.append).classify_file(image)
    # THEN it reports the refusal after one attempt, saying what to check
    assert result.error is not None and result.error.code == "connection_error"
    assert retries == []
    assert f"connection refused: nothing listens at 127.0.0.1:{port} (is the API running" in result.error.message


@contextmanager
def misbehaving_server(behaviour: str) -> Iterator[str]:
    """A loopback TCP server that accepts each connection, then closes it at once ("hang up") or never
    answers ("silent"); yields its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            if behaviour == "hang up":
                conn.close()
            else:
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


@pytest.mark.parametrize(("behaviour", "code", "reason"), [("hang up", "connection_error", "connection error"),
                                                           ("silent", "timeout", "no answer within 0.3 s")])
def test_lost_connections_and_timeouts_are_retried_then_reported(tmp_path: Path, behaviour: str, code: str,
                                                                 reason: str) -> None:
    image = tmp_path / "cat.jpg"
    image.write_bytes(jpeg("chelsea"))
    retries: list[RetryEvent] = []
    with misbehaving_server(behaviour) as url:
        result = ClassifierClient(url, timeout=0.3, retry=RetryPolicy(attempts=3, base=0.01, cap=0.05),
                                  on_retry=retries.append).classify_file(image)
    assert result.error is not None and result.error.code == code
    assert len(retries) == 2 and all(e.reason.startswith(reason) for e in retries)


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




def test_api_gateway_with_iam_auth_refuses_unsigned_and_accepts_signed(caller: None, api: LiveServer,
                                                                       tmp_path: Path) -> None:
    # GIVEN API Gateway with api_auth=iam (execute-api SigV4) in front of the API, and a photo
    image = tmp_path / "cat.jpg"
    image.write_bytes(jpeg("chelsea"))
    with sigv4_gateway(api.url, service="execute-api", region=REGION, access_key=ACCESS_KEY,
                       secret_key=SECRET_KEY) as gateway:
        # WHEN the client calls it unsigned, then signed (the service is inferred: not a Function URL)
        unsigned = ClassifierClient(gateway.url, retry=FAST_RETRY).classify_file(image)
        signed = ClassifierClient(gateway.url, sigv4=True, retry=FAST_RETRY).classify_file(image)
    # THEN the unsigned call is refused as API Gateway refuses it, and the signed one verifies and answers
    assert unsigned.error is not None and unsigned.error.status == 403
    assert signed.error is None and signed.result is not None and signed.result["predictions"]
    assert gateway.refused == ["missing or malformed Authorization"]
    assert gateway.verified == ["POST /classify?top_k=5"]


# -- API Gateway with a usage plan in front of the API, on loopback ------------------------

API_KEY = "usage-plan-key-0123456789abcdef"


@pytest.fixture
def usage_plan(api: LiveServer) -> Iterator[UsagePlanGateway]:
    with usage_plan_gateway(api.url, api_key=API_KEY) as gateway:
        yield gateway


def test_the_api_key_goes_with_every_api_call(usage_plan: UsagePlanGateway, tmp_path: Path) -> None:
    # GIVEN a gateway that refuses calls without its usage plan's key, a small and a large photo
    small, large = tmp_path / "small.jpg", tmp_path / "large.jpg"
    small.write_bytes(jpeg("chelsea"))
    large.write_bytes(big_jpeg("coffee", (1600, 1200)))
    # WHEN a client without the key, then one with it, classify them
    keyless = ClassifierClient(usage_plan.url, retry=FAST_RETRY).classify_file(small)
    client = ClassifierClient(usage_plan.url, api_key=API_KEY, inline_max_bytes=INLINE_LIMIT, retry=FAST_RETRY)
    inline, via_s3 = client.classify_file(small), client.classify_file(large)
    # THEN the keyless call gets the gateway's 403, and every call of the other carried the key
    assert keyless.error is not None
    assert (keyless.error.status, keyless.error.code, keyless.error.message) == (403, "http_403", "Forbidden")
    assert inline.error is None and via_s3.error is None and via_s3.via == "s3", (inline.error, via_s3.error)
    assert usage_plan.received == ["POST /classify?top_k=5"] * 2 + ["POST /uploads", "POST /classify?top_k=5"]
    assert [h.get("x-api-key") for h in usage_plan.headers_received] == [None, API_KEY, API_KEY, API_KEY]


def test_a_429_waits_as_long_as_its_retry_after_says(api: LiveServer) -> None:
    # GIVEN a gateway that throttles the first two calls with "Retry-After: 1", and a client whose
    # own backoff is a few milliseconds
    with usage_plan_gateway(api.url, api_key=API_KEY, throttled=2, retry_after="1") as gateway:
        retries: list[RetryEvent] = []
        client = ClassifierClient(gateway.url, api_key=API_KEY, retry=RetryPolicy(attempts=4, base=0.001, cap=5.0),
                                  on_retry=retries.append)
        # WHEN it asks for the model
        state = client.model()
    # THEN it waited the second the gateway asked for before each retry, then got its answer
    assert state["name"] == "resnet50"
    assert [(e.reason, e.delay) for e in retries] == [("HTTP 429", 1.0), ("HTTP 429", 1.0)]
    assert gateway.received == ["GET /model"] * 3
    first, second, third = gateway.arrivals
    assert second - first >= 1.0 and third - second >= 1.0


def test_without_an_uploads_bucket_the_client_says_so_without_retrying(tmp_path: Path) -> None:
    # GIVEN a server without an uploads bucket (no POST /uploads, for good)
    store = tmp_path / "store"
    store.mkdir()
    with live_server(store, tmp_path, wait_for_model=False) as live:
        retries: list[RetryEvent] = []
        client = ClassifierClient(live.url, retry=FAST_RETRY, on_retry=retries.append)
        # WHEN the client asks whether uploads work (its document says), then asks for an upload
        enabled = client.uploads_enabled()
        with pytest.raises(UploadsNotServed) as refused:
            client.create_upload("image/jpeg", 10)
    # THEN each was one request: no retry of an unknown route, which another attempt cannot change
    assert enabled is False
    assert (refused.value.status, refused.value.code) == (404, "not_found")
    assert retries == []


def bomb_png() -> bytes:
    """A small PNG file of 8000 x 5001 pixels: over the server's MAX_IMAGE_PIXELS (40 M), under its byte limits."""
    out = io.BytesIO()
    Image.new("1", (8000, 5001)).save(out, "PNG")
    assert len(out.getvalue()) < INLINE_LIMIT
    return out.getvalue()


def test_an_image_too_large_413_is_not_rerouted_through_s3(usage_plan: UsagePlanGateway) -> None:
    # GIVEN an image with too many pixels: a 413 image_too_large that an upload cannot change
    # (unlike 413 payload_too_large, which the client reroutes through S3)
    client = ClassifierClient(usage_plan.url, api_key=API_KEY, retry=FAST_RETRY)
    # WHEN the client classifies it
    outcome = client.classify_image(ImageFile("bomb.png", bomb_png()))
    # THEN the refusal is reported as it came, after the one inline request
    assert outcome.via == "inline" and outcome.error is not None
    assert (outcome.error.status, outcome.error.code) == (413, "image_too_large")
    assert "40000000" in outcome.error.message
    assert usage_plan.received == ["POST /classify?top_k=5"]


def test_s3_refusals_are_read_from_its_xml(api: LiveServer, s3_endpoint: str) -> None:
    # GIVEN a presigned POST whose bucket has gone (moto's S3 server answers as S3 does, in XML)
    client = ClassifierClient(api.url, retry=FAST_RETRY)
    upload = client.create_upload("image/jpeg", len(jpeg("chelsea")))
    upload["url"] = f"{s3_endpoint}/no-such-bucket-{free_port()}"
    # WHEN the client uploads to it
    with pytest.raises(RequestFailed) as refused:
        client.upload(upload, jpeg("chelsea"))
    # THEN the failure carries S3's own code and message, not the XML
    assert (refused.value.status, refused.value.code) == (404, "s3_NoSuchBucket")
    assert refused.value.message == "the upload to S3 was refused: The specified bucket does not exist"
