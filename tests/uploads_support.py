"""Helpers for the S3 uploads tests: the environment that points a server at moto's
S3 server, buckets, and the presigned POST as a browser or curl would send it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"


def aws_env(endpoint: str, bucket: str | None = None, **extra: str) -> dict[str, str]:
    """Environment for a server (or Lambda) whose boto3 talks to ``endpoint`` with dummy credentials."""
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


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)


def new_bucket(endpoint: str, prefix: str = "uploads") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return name


def post_upload(presigned: dict[str, Any], data: bytes, content_type: str) -> httpx.Response:
    """The presigned POST: every returned field, then the file last (S3 ignores fields after it)."""
    return httpx.post(presigned["url"], data=presigned["fields"],
                      files={"file": ("image", data, content_type)}, timeout=60)
