"""AWS on loopback: moto's server, the environment that points boto3 at it, buckets, presigned POSTs.

boto3 honours ``AWS_ENDPOINT_URL``, so the code under test needs no hooks: the
environment of ``aws_env`` (dummy credentials, the local endpoint, no profile
or instance role) is all it takes, in this process or a child.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from helpers.processes import free_port

REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
# Variables that would make boto3 look past the dummy credentials.
_CREDENTIAL_SOURCES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONFIG_FILE",
                       "AWS_SHARED_CREDENTIALS_FILE")


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's threaded server (every service on one port) on a free loopback port; yields its URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def aws_env(endpoint: str, bucket: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for code (a server, a Lambda handler) whose boto3 talks to ``endpoint``
    with dummy credentials; ``bucket`` becomes ``UPLOADS_BUCKET``."""
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        **extra,
    }
    if bucket is not None:
        env["UPLOADS_BUCKET"] = bucket
    return env


def point_boto3_at(monkeypatch: pytest.MonkeyPatch, endpoint: str, **extra: str) -> None:
    """``aws_env`` applied to this process, with every other credential source removed."""
    for key in _CREDENTIAL_SOURCES:
        monkeypatch.delenv(key, raising=False)
    for key, value in aws_env(endpoint, **extra).items():
        monkeypatch.setenv(key, value)


def sign_as(monkeypatch: pytest.MonkeyPatch, access_key: str, secret_key: str, region: str) -> None:
    """A caller's AWS identity, as botocore finds it in the environment (no profile, token or instance role)."""
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_key)
    monkeypatch.setenv("AWS_REGION", region)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


def new_bucket(endpoint: str, prefix: str = "bucket") -> str:
    """A fresh bucket with a unique name; returns the name."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return name


def post_upload(presigned: dict[str, Any], data: bytes, content_type: str) -> httpx.Response:
    """The presigned POST: every returned field, then the file last (S3 ignores fields after it)."""
    return httpx.post(presigned["url"], data=presigned["fields"],
                      files={"file": ("image", data, content_type)}, timeout=60)
