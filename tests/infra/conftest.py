"""Fixtures for the infrastructure suite: each configuration is synthesized once per session.

Synthesis runs in-process (the same ``lambda_docker.build`` that ``app.py``
calls), with cdk-nag's AwsSolutions checks attached, into a temporary cloud
assembly. Building an app costs seconds of jsii round trips, so the suite
builds five: the defaults from cdk.json, every option changed, every switch
on with the other defaults, existing resources given by id (a file system, a
user pool; bulk off), and the least protected deployment synth allows.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The jsii runtime prints a banner on every start under an end-of-life Node.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION", "1")

# The account and region a CLI would find in the caller's credentials.
DEFAULT_ENV = {"CDK_DEFAULT_ACCOUNT": "123456789012", "CDK_DEFAULT_REGION": "us-east-1"}

# Every option set away from its default (the imported file system is separate:
# it replaces the file system the other options configure).
OPTIONS: dict[str, Any] = {
    "aws-account": "111122223333",
    "aws-region": "eu-west-1",
    "name": "acme",
    "model_name": "resnet50-ft",
    "models": ["defects", "resnet50-ft"],
    "backend": "torch",
    "architecture": "arm64",
    "memory_mb": 4096,
    "timeout_seconds": 20,
    "reserved_concurrency": 5,
    "provisioned_concurrency": 2,
    "model_refresh_seconds": 120,
    "inference_threads": 2,
    "log_retention_days": 7,
    "efs_removal_policy": "destroy",
    "inbox_expiration_days": 14,
    "uploads_expiration_days": 3,
    "api_auth": "api_key",
    "records_ttl_days": 0,
    "records_shards": 8,
    "records_indexes": ["time", "owner", "label", "model_version"],
    "bulk_max_concurrency": 25,
    "bulk_tolerated_failure_percent": 12,
    "bulk_source_bucket": "acme-images",
    "throttle_rate_limit": 10,
    "throttle_burst_limit": 20,
    "cors_allow_origins": ["https://example.com"],
    "api_domain_name": "api.example.com",
    "api_certificate_arn": "arn:aws:acm:eu-west-1:111122223333:certificate/1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809",
    "waf": True,
    "waf_rate_limit": 500,
    "tracing": True,
    "alarm_email": "ops@example.com",
    "alarm_latency_p99_ms": 2000,
    "dashboard": True,
    "function_url": True,
    "edge": True,
    "classify_on_upload": True,
    "dashboard_certificate_arn": "arn:aws:acm:eu-west-1:111122223333:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
    "dashboard_domain_name": "dashboard.example.com",
    "dashboard_allowed_cidrs": ["203.0.113.0/24", "198.51.100.7/32"],
    "dashboard_user_pool_id": "eu-west-1_DashUsers1",
    "function_url_invoker_principal": "arn:aws:iam::444455556666:role/image-pipeline",
}
# Every switch on, everything else as cdk.json has it (SigV4, the Function URL
# for this account, us-east-1, so that the edge gets a web ACL too), and what
# the dashboard then needs: a certificate (and its name) for HTTPS and a login,
# open to any network.
SWITCHES: dict[str, Any] = {
    "dashboard": True, "function_url": True, "edge": True, "classify_on_upload": True, "waf": True, "tracing": True,
    "dashboard_certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
    "dashboard_domain_name": "dashboard.example.com",
}
IMPORTED_FILE_SYSTEM_ID = "fs-0123456789abcdef0"
IMPORTED_USER_POOL_ID = "us-east-1_ApiUsers99"
IMPORTED: dict[str, Any] = {
    "efs_file_system_id": IMPORTED_FILE_SYSTEM_ID, "api_auth": "cognito", "api_user_pool_id": IMPORTED_USER_POOL_ID,
    "bulk": False,
}
# The least protected deployment synth allows: a public API open to scripts on
# any site, a plain HTTP dashboard without a login, for one network.
PUBLIC: dict[str, Any] = {
    "api_auth": "none", "cors_allow_origins": ["*"], "dashboard": True, "dashboard_allowed_cidrs": ["203.0.113.0/24"],
}


def cdk_json_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    return context


@dataclass
class Synth:
    """One synthesized app: both stacks, their templates, and the cloud assembly."""

    deployment: Any  # lambda_docker.Deployment
    storage: Any  # aws_cdk.assertions.Template
    service: Any
    outdir: Path

    @property
    def templates(self) -> list[Path]:
        return sorted(self.outdir.glob("*.template.json"))

    def assets(self, stack: Any) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads((self.outdir / f"{stack.artifact_id}.assets.json").read_text())
        return manifest

    def images(self, stack: Any) -> dict[str, dict[str, Any]]:
        """The stack's Docker image assets, by what they build: ``model`` or ``dashboard``."""
        images = self.assets(stack)["dockerImages"].values()
        return {image_kind(self.outdir / image["source"]["directory"]): image for image in images}


def image_kind(directory: Path) -> str:
    """What a staged Docker build context is: model/ (the functions) or the root's dashboard files."""
    if (directory / "classifier").is_dir():
        return "model"
    if (directory / "streamlit-docker" / "streamlit_app.py").is_file():
        return "dashboard"
    raise AssertionError(f"unknown build context {directory}")


def synth(outdir: Path, overrides: dict[str, Any]) -> Synth:
    from aws_cdk import App
    from aws_cdk.assertions import Template

    from lambda_docker import build

    app = App(context={**cdk_json_context(), **overrides}, outdir=str(outdir))
    deployment = build(app, environ=DEFAULT_ENV)
    app.synth()
    return Synth(deployment, Template.from_stack(deployment.storage), Template.from_stack(deployment.service), outdir)


@pytest.fixture(scope="session")
def default(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The app as cdk.json configures it."""
    return synth(tmp_path_factory.mktemp("cdk-default"), {})


@pytest.fixture(scope="session")
def options(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The app with every option in OPTIONS changed."""
    return synth(tmp_path_factory.mktemp("cdk-options"), OPTIONS)


@pytest.fixture(scope="session")
def switches(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The app with every feature switch on and every other option at its default."""
    return synth(tmp_path_factory.mktemp("cdk-switches"), SWITCHES)


@pytest.fixture(scope="session")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The app mounting an existing file system, its API open to an existing user pool's users, without bulk."""
    return synth(tmp_path_factory.mktemp("cdk-imported"), IMPORTED)


@pytest.fixture(scope="session")
def public(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """The app with a public API and a plain HTTP dashboard for one network."""
    return synth(tmp_path_factory.mktemp("cdk-public"), PUBLIC)


@pytest.fixture(scope="session")
def all_synths(default: Synth, options: Synth, switches: Synth, imported: Synth, public: Synth) -> dict[str, Synth]:
    return {"default": default, "options": options, "switches": switches, "imported": imported, "public": public}
