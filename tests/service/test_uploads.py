"""Large images through S3 (docs/ways-in.md): POST /uploads, the presigned POST, and
POST /classify {"s3_key"}, against moto's S3 server on loopback, over a real
HTTP server and through the Lambda handler.

moto accepts any presigned POST without checking its policy, so what S3 would
enforce is checked on the policy document itself, and that document is shown
to be the one the signature covers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from classifier.aws.uploads import UPLOAD_EXPIRES_SECONDS, check_upload_key

from helpers.aws import SECRET_KEY, aws_env, new_bucket, post_upload, s3_client
from helpers.lambda_events import FakeContext, load_handler, make_event, read_response
from helpers.photos import encode, jpeg, photo
from helpers.processes import LiveServer, free_port, live_server
from helpers.proxies import short_read_s3
from helpers.stores import copy_store, stored_records

MiB = 1024 * 1024
MAX_S3 = 8 * MiB  # the servers here: small enough to test 413 without a 20 MiB upload


def count_records(store: Path) -> int:
    return len(stored_records(store))


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert "Traceback" not in response.text and 'File "' not in response.text


def large_bmp() -> bytes:
    """A real photo as an uncompressed BMP of ~4.7 MB: over MAX_IMAGE_BYTES, under MAX_S3."""
    data = encode(photo("astronaut").resize((1536, 1024), Image.Resampling.BICUBIC), "BMP")
    assert 4 * MiB < len(data) < MAX_S3
    return data


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str) -> str:
    return new_bucket(s3_endpoint)


@pytest.fixture(scope="module")
def uploads_server(published_store: Path, tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str,
                   bucket: str) -> Iterator[LiveServer]:
    """A real API server with the uploads bucket configured."""
    store = copy_store(published_store, tmp_path_factory.mktemp("uploads") / "store")
    env = aws_env(s3_endpoint, bucket, MAX_S3_IMAGE_BYTES=str(MAX_S3))
    with live_server(store, store.parent, env=env) as live:
        yield live


def presign(url: str, content_type: str = "image/jpeg", size: int = 1000) -> dict[str, Any]:
    response = httpx.post(f"{url}/uploads", json={"content_type": content_type, "bytes": size}, timeout=60)
    assert response.status_code == 200, response.text
    return dict(response.json())


def policy_of(presigned: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(presigned["fields"]["policy"])))


# -- the happy path ------------------------------------------------------------------

def test_presign_upload_then_classify_by_key_matches_inline(uploads_server: LiveServer, bucket: str,
                                                            s3_endpoint: str) -> None:
    # GIVEN a photo
    image = jpeg("chelsea")
    # WHEN the client asks for an upload, posts the image to S3 with the returned form, and classifies the key
    presigned = presign(uploads_server.url, "image/jpeg", len(image))
    assert presigned["key"].startswith("uploads/") and presigned["expires_in"] == UPLOAD_EXPIRES_SECONDS
    assert presigned["url"] == f"{s3_endpoint}/{bucket}"
    uploaded = post_upload(presigned, image, "image/jpeg")
    assert uploaded.status_code == 204, uploaded.text
    stored = s3_client(s3_endpoint).get_object(Bucket=bucket, Key=presigned["key"])
    assert stored["Body"].read() == image
    by_key = httpx.post(f"{uploads_server.url}/classify", json={"s3_key": presigned["key"]}, timeout=60)
    inline = httpx.post(f"{uploads_server.url}/classify", content=image,
                        headers={"content-type": "image/jpeg"}, timeout=60)
    # THEN both answer the same predictions for the same image, and the record carries the key
    assert by_key.status_code == 200, by_key.text
    assert inline.status_code == 200
    result = by_key.json()
    assert result["predictions"] == inline.json()["predictions"]
    assert result["image"] == inline.json()["image"]
    assert result["s3_key"] == presigned["key"]
    assert "s3_key" not in inline.json()
    record = httpx.get(f"{uploads_server.url}/classifications/{result['id']}").json()
    assert record["s3_key"] == presigned["key"]


def test_an_image_too_large_to_send_inline_goes_through_s3(uploads_server: LiveServer) -> None:
    # GIVEN a 4.7 MB image: over MAX_IMAGE_BYTES
    image = large_bmp()
    inline = httpx.post(f"{uploads_server.url}/classify", content=image,
                        headers={"content-type": "image/bmp"}, timeout=60)
    assert_error(inline, 413, "payload_too_large")
    assert "POST /uploads" in inline.json()["error"]["message"]
    # WHEN it goes through S3 instead
    presigned = presign(uploads_server.url, "image/bmp", len(image))
    assert post_upload(presigned, image, "image/bmp").status_code == 204
    response = httpx.post(f"{uploads_server.url}/classify?top_k=3", json={"s3_key": presigned["key"]},
                          timeout=60)
    # THEN it is classified
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["image"]["format"] == "BMP" and (result["image"]["width"], result["image"]["height"]) == (1536, 1024)
    assert result["image"]["sha256"] == hashlib.sha256(image).hexdigest()
    assert len(result["predictions"]) == 3


def test_upload_keys_are_new_and_typed(uploads_server: LiveServer) -> None:
    keys = [presign(uploads_server.url, ct)["key"] for ct in ("image/jpeg", "image/png", "image/png")]
    assert len(set(keys)) == 3
    assert keys[0].endswith(".jpg") and keys[1].endswith(".png")
    for key in keys:
        assert check_upload_key(key) == key
        _, yyyy, mm, dd, name = key.split("/")
        assert len(yyyy) == 4 and len(mm) == 2 and len(dd) == 2 and len(name.split(".")[0]) == 32


# -- what the presigned policy lets S3 accept --------------------------------------

def test_presigned_policy_pins_key_type_and_size(uploads_server: LiveServer, bucket: str) -> None:
    presigned = presign(uploads_server.url, "image/png", 12345)
    fields = presigned["fields"]
    policy = policy_of(presigned)
    conditions = policy["conditions"]
    # The key, the content type and the bucket are exact matches; the size is a range up to MAX_S3_IMAGE_BYTES.
    assert {"key": presigned["key"]} in conditions and fields["key"] == presigned["key"]
    assert {"Content-Type": "image/png"} in conditions and fields["Content-Type"] == "image/png"
    assert {"bucket": bucket} in conditions
    assert ["content-length-range", 1, MAX_S3] in conditions
    # No starts-with condition: nothing but the exact key and type can pass.
    assert not any(isinstance(c, list) and c[0] == "starts-with" for c in conditions)
    # The policy expires after expires_in seconds (to within the second it was signed in).
    signed_at = datetime.strptime(fields["x-amz-date"], "%Y%m%dT%H%M%SZ")
    expires = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%SZ")
    assert abs((expires - signed_at).total_seconds() - UPLOAD_EXPIRES_SECONDS) <= 1


def test_presigned_signature_covers_exactly_that_policy(uploads_server: LiveServer) -> None:
    # S3 checks x-amz-signature = HMAC(signing key, policy as sent); recompute it from the
    # SigV4 key derivation (not botocore) with the server's credentials.
    fields = presign(uploads_server.url, "image/jpeg", 10)["fields"]
    _, date, region, service, _ = fields["x-amz-credential"].split("/")

    def sign(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    signing_key = sign(sign(sign(sign(f"AWS4{SECRET_KEY}".encode(), date), region), service), "aws4_request")
    expected = hmac.new(signing_key, fields["policy"].encode(), hashlib.sha256).hexdigest()
    assert (service, fields["x-amz-algorithm"]) == ("s3", "AWS4-HMAC-SHA256")
    assert fields["x-amz-signature"] == expected
    # (That S3 refuses a widened policy is S3's check, which moto does not make: a test of it here
    # would only test hmac against itself.)


# -- bad inputs: a clear 4xx JSON error, and nothing stored ---------------------------

UPLOAD_ERRORS = [
    ("empty body", b"", 400, "invalid_request"),
    ("malformed JSON", b'{"content_type": ', 400, "invalid_request"),
    ("not an object", b"[1, 2]", 400, "invalid_request"),
    ("no content_type", b'{"bytes": 10}', 400, "invalid_request"),
    ("bytes not a number", b'{"content_type": "image/jpeg", "bytes": "10"}', 400, "invalid_request"),
    ("bytes is a boolean", b'{"content_type": "image/jpeg", "bytes": true}', 400, "invalid_request"),
    ("bytes zero", b'{"content_type": "image/jpeg", "bytes": 0}', 422, "invalid_parameter"),
    ("bytes over MAX_S3_IMAGE_BYTES", json.dumps({"content_type": "image/jpeg", "bytes": MAX_S3 + 1}).encode(),
     413, "payload_too_large"),
    ("not an image type", b'{"content_type": "text/html", "bytes": 10}', 415, "unsupported_media_type"),
    ("svg is not decodable", b'{"content_type": "image/svg+xml", "bytes": 10}', 415, "unsupported_media_type"),
]


@pytest.mark.parametrize(("name", "body", "status", "code"), UPLOAD_ERRORS, ids=[c[0] for c in UPLOAD_ERRORS])
def test_bad_upload_requests(uploads_server: LiveServer, name: str, body: bytes, status: int, code: str) -> None:
    response = httpx.post(f"{uploads_server.url}/uploads", content=body,
                          headers={"content-type": "application/json"}, timeout=60)
    assert_error(response, status, code)


def classify_key_errors(s3_endpoint: str, bucket: str) -> list[tuple[str, Any, int, str]]:
    s3 = s3_client(s3_endpoint)
    s3.put_object(Bucket=bucket, Key="uploads/too-big.jpg", Body=b"\xff\xd8\xff" + b"\0" * MAX_S3)
    s3.put_object(Bucket=bucket, Key="uploads/notes.txt", Body=b"hello, world")
    s3.put_object(Bucket=bucket, Key="uploads/truncated.jpg", Body=jpeg("coffee")[:5000])
    s3.put_object(Bucket=bucket, Key="models/resnet50/CURRENT", Body=b"x")
    return [
        ("missing key", "uploads/2026/11/22/" + "0" * 32 + ".jpg", 404, "not_found"),
        ("outside uploads/", "models/resnet50/CURRENT", 422, "invalid_parameter"),
        ("dot-dot escape", "uploads/../models/resnet50/CURRENT", 422, "invalid_parameter"),
        ("the prefix itself", "uploads/", 422, "invalid_parameter"),
        ("leading slash", "/uploads/x.jpg", 422, "invalid_parameter"),
        ("empty segment", "uploads//x.jpg", 422, "invalid_parameter"),
        ("control character", "uploads/x\n.jpg", 422, "invalid_parameter"),
        ("backslash", "uploads/2026\\x.jpg", 422, "invalid_parameter"),
        ("dot segment", "uploads/./x.jpg", 422, "invalid_parameter"),
        ("over S3's 1024-byte key limit", "uploads/" + "k" * 1013 + ".jpg", 422, "invalid_parameter"),
        ("empty string", "", 422, "invalid_parameter"),
        ("not a string", 42, 400, "invalid_request"),
        ("object over MAX_S3_IMAGE_BYTES", "uploads/too-big.jpg", 413, "payload_too_large"),
        ("object not an image", "uploads/notes.txt", 415, "unsupported_media_type"),
        ("object truncated", "uploads/truncated.jpg", 422, "invalid_image"),
    ]






def test_bad_classify_by_key_requests(uploads_server: LiveServer, s3_endpoint: str, bucket: str) -> None:
    before = count_records(uploads_server.store)
    for name, key, status, code in classify_key_errors(s3_endpoint, bucket):
        response = httpx.post(f"{uploads_server.url}/classify", json={"s3_key": key}, timeout=60)
        assert response.status_code == status, (name, response.text)
        assert_error(response, status, code)
    both = httpx.post(f"{uploads_server.url}/classify",
                      json={"s3_key": "uploads/x.jpg", "image": base64.b64encode(jpeg("coffee")).decode()})
    assert_error(both, 400, "invalid_request")
    assert count_records(uploads_server.store) == before


def test_without_uploads_bucket_neither_way_is_served(server: LiveServer) -> None:
    # The shared server has no UPLOADS_BUCKET: POST /uploads is an unknown route, and an s3_key is not a body
    # it takes (its document lists neither).
    before = count_records(server.store)
    assert_error(httpx.post(f"{server.url}/uploads", json={"content_type": "image/jpeg", "bytes": 10}),
                 404, "not_found")
    assert_error(httpx.post(f"{server.url}/classify", json={"s3_key": "uploads/x.jpg"}), 400, "invalid_request")
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/uploads" not in spec["paths"] and "S3KeyJson" not in spec["components"]["schemas"]
    # Inline classification is unaffected.
    assert httpx.post(f"{server.url}/classify", content=jpeg("rocket"),
                      headers={"content-type": "image/jpeg"}, timeout=60).status_code == 200
    assert count_records(server.store) == before + 1


def test_openapi_documents_uploads(uploads_server: LiveServer) -> None:
    spec = httpx.get(f"{uploads_server.url}/openapi.json").json()
    upload = spec["paths"]["/uploads"]["post"]
    body = upload["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["content_type", "bytes"] and "image/jpeg" in body["properties"]["content_type"]["enum"]
    assert {"200", "400", "413", "415"} <= set(upload["responses"])
    for path in ("/classify", "/models/{name}/classify"):
        json_body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert {"$ref": "#/components/schemas/S3KeyJson"} in json_body["oneOf"]
    assert spec["components"]["schemas"]["S3KeyJson"]["required"] == ["s3_key"]


# -- through the Lambda handler ---------------------------------------------------------

def invoke(handler: Callable[..., dict[str, Any]], kind: str, method: str, path: str, payload: Any) -> Any:
    event = make_event(kind, method, path, body=json.dumps(payload).encode(), content_type="application/json")
    return read_response(handler(event, FakeContext()))


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_s3_path_through_the_lambda_handler(monkeypatch: pytest.MonkeyPatch, store: Path, s3_endpoint: str,
                                            bucket: str, kind: str) -> None:
    # GIVEN a fresh Lambda instance configured with the uploads bucket
    handler = load_handler(monkeypatch, store, **aws_env(s3_endpoint, bucket, MAX_S3_IMAGE_BYTES=str(MAX_S3)))
    image = large_bmp()
    # WHEN the client presigns through API Gateway, uploads to S3, and classifies the key
    presigned = invoke(handler, kind, "POST", "/uploads", {"content_type": "image/bmp", "bytes": len(image)})
    assert presigned.status == 200, presigned.body
    assert post_upload(presigned.json(), image, "image/bmp").status_code == 204
    result = invoke(handler, kind, "POST", "/classify", {"s3_key": presigned.json()["key"]})
    # THEN the image is classified and stored with its key
    assert result.status == 200, result.body
    assert result.json()["s3_key"] == presigned.json()["key"]
    assert result.json()["image"]["sha256"] == hashlib.sha256(image).hexdigest()
    assert count_records(store) == 1
    # AND the error cases answer the same through API Gateway events
    for name, key, status, code in classify_key_errors(s3_endpoint, bucket):
        response = invoke(handler, kind, "POST", "/classify", {"s3_key": key})
        assert response.status == status, (name, response.body)
        assert response.json()["error"]["code"] == code
    bad = invoke(handler, kind, "POST", "/uploads", {"content_type": "image/jpeg", "bytes": MAX_S3 + 1})
    assert (bad.status, bad.json()["error"]["code"]) == (413, "payload_too_large")
    assert count_records(store) == 1


def test_unreachable_s3_is_a_503_without_details(monkeypatch: pytest.MonkeyPatch, store: Path) -> None:
    # GIVEN an S3 endpoint where nothing listens
    handler = load_handler(monkeypatch, store, **aws_env(f"http://127.0.0.1:{free_port()}", "nowhere"))
    response = invoke(handler, "v2", "POST", "/classify", {"s3_key": "uploads/x.jpg"})
    # THEN the client gets a retryable JSON 503, not a stack trace
    assert response.status == 503 and response.json()["error"]["code"] == "storage_unavailable"
    assert b"Traceback" not in response.body and b"127.0.0.1" not in response.body
    assert count_records(store) == 0


def test_a_presign_failure_is_a_503_without_details(monkeypatch: pytest.MonkeyPatch, store: Path, s3_endpoint: str,
                                                    bucket: str, tmp_path: Path) -> None:
    # GIVEN a Lambda instance with an uploads bucket but no credentials to sign a POST with
    handler = load_handler(monkeypatch, store, **aws_env(s3_endpoint, bucket),
                           AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    import boto3

    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # a new instance has no session, nor its credentials
    # WHEN a client asks for an upload
    response = invoke(handler, "v2", "POST", "/uploads", {"content_type": "image/jpeg", "bytes": 1000})
    # THEN it gets a retryable JSON 503 that says nothing of credentials or botocore
    assert (response.status, response.json()["error"]["code"]) == (503, "storage_unavailable")
    assert response.json()["error"]["message"] == "the uploads bucket cannot be used right now; try again later"
    assert b"Traceback" not in response.body and b"redentials" not in response.body


def test_a_short_read_from_s3_is_a_503_and_stores_nothing(monkeypatch: pytest.MonkeyPatch, store: Path,
                                                          s3_endpoint: str, bucket: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN an uploaded photo, and an S3 whose download stops after 1000 of its bytes
    image = jpeg("chelsea")
    s3_client(s3_endpoint).put_object(Bucket=bucket, Key="uploads/short.jpg", Body=image)
    with short_read_s3(s3_endpoint, keep_bytes=1000) as s3:
        handler = load_handler(monkeypatch, store, **aws_env(s3.url, bucket))
        # WHEN the API classifies it by key
        with caplog.at_level(logging.ERROR):
            response = invoke(handler, "v2", "POST", "/classify", {"s3_key": "uploads/short.jpg"})
    # THEN it is a retryable 503 (not a 422 for a truncated image: the object itself is whole),
    # the cut is logged for the operator, and no record is stored
    assert any(r.startswith("GET /" + bucket + "/uploads/short.jpg") for r in s3.received)
    assert (response.status, response.json()["error"]["code"]) == (503, "storage_unavailable"), response.body
    assert b"Traceback" not in response.body
    assert [r.getMessage().split(":")[0] for r in caplog.records if r.name == "classifier.aws.uploads"] == [
        "reading an upload failed midway"]
    assert count_records(store) == 0


def test_the_serving_path_does_not_import_boto3(published_store: Path) -> None:
    # boto3 costs cold start; only a request that uses S3 may load it. Powertools probes for the
    # bare botocore package (its __init__, about a millisecond) to tag a user agent: that one is
    # allowed, botocore's sessions, clients and loaders are not.
    code = "import sys, classifier.handler; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
           "('boto3', 'botocore', 's3transfer') and m != 'botocore'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"MODEL_STORE": str(published_store), "PATH": "/usr/bin:/bin"})
    listing = [line for line in out.stdout.splitlines() if line.startswith("[")]  # the rest are log lines
    assert listing == ["[]"], out.stdout
