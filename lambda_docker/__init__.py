"""The CDK app's infrastructure: one construct per component, two stacks that wire them.

``build(app)`` is what ``app.py`` runs; tests call it with their own context.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import App, Aspects, Environment
from cdk_nag import AwsSolutionsChecks

from lambda_docker.config import AppConfig, DeployConfigError
from lambda_docker.service_stack import ServiceStack
from lambda_docker.storage_stack import StorageStack

__all__ = ["AppConfig", "DeployConfigError", "Deployment", "build"]


@dataclass(frozen=True)
class Deployment:
    config: AppConfig
    storage: StorageStack
    service: ServiceStack


def build(app: App, environ: Mapping[str, str] | None = None) -> Deployment:
    """Read the app's context once, validate it, and add both stacks to ``app``.

    Raises ``DeployConfigError`` (naming the context key) for a wrong value. Every
    stack is checked by cdk-nag's AwsSolutions pack: an unsuppressed finding
    is an error that fails ``cdk synth``.
    """
    config = AppConfig.from_context(app.node.get_all_context(), os.environ if environ is None else environ)
    env = Environment(account=config.aws_account, region=config.aws_region)
    storage = StorageStack(
        app, config.storage_stack_name, config=config, env=env,
        description="ResNet-50 classifier: VPC, EFS model store, model inbox and installer",
    )
    service = ServiceStack(
        app, config.service_stack_name, config=config, storage=storage, env=env,
        description="ResNet-50 classifier: inference function and REST API, and the optional dashboard, "
                    "Function URL, CloudFront distribution and upload classifier",
    )
    Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return Deployment(config, storage, service)
