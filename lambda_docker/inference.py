"""The inference function: the container Lambda built from model/, reading models from EFS.

The image holds the runtime only (model/Dockerfile); the weights are read
from EFS at ``/mnt/store`` through the inference access point, which can read
``models/`` and write ``records/`` (see ``storage.py``). Synthesis only hashes
the build context; ``cdk deploy`` builds and pushes the image.

The API invokes the ``live`` alias. Provisioned concurrency, when asked for,
is configured on that alias, so switching it on or off never changes what the
API calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_efs as efs
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from lambda_docker.storage import MOUNT_PATH

MODEL_DIR = Path(__file__).resolve().parents[1] / "model"
ALIAS_NAME = "live"


@dataclass(frozen=True)
class InferenceSettings:
    """What the deployment decides about the function (from ``AppConfig``)."""

    model_name: str
    backend: str
    architecture: str
    memory_mb: int
    timeout_seconds: int
    reserved_concurrency: int | None
    provisioned_concurrency: int
    model_refresh_seconds: int
    inference_threads: int
    log_retention: logs.RetentionDays


def classifier_image(settings: InferenceSettings, *, cmd: list[str] | None = None) -> lambda_.DockerImageCode:
    """The container image built from model/; ``cmd`` overrides its handler (the image's CMD).

    Every function built from it shares one image asset: the build arguments
    and platform make the asset hash, ``cmd`` only the function's ImageConfig.
    """
    arm64 = settings.architecture == "arm64"
    return lambda_.DockerImageCode.from_image_asset(
        str(MODEL_DIR),
        cmd=cmd,
        platform=ecr_assets.Platform.LINUX_ARM64 if arm64 else ecr_assets.Platform.LINUX_AMD64,
        build_args={"BACKEND": settings.backend},
    )


def lambda_architecture(settings: InferenceSettings) -> lambda_.Architecture:
    return lambda_.Architecture.ARM_64 if settings.architecture == "arm64" else lambda_.Architecture.X86_64


def runtime_environment(settings: InferenceSettings, *, uploads_bucket_name: str) -> dict[str, str]:
    """The runtime's settings; names and meanings: model/classifier/config.py (Settings.from_env)."""
    return {
        "MODEL_STORE": MOUNT_PATH,
        "MODEL_NAME": settings.model_name,
        "BACKEND": settings.backend,
        "MODEL_REFRESH_SECONDS": str(settings.model_refresh_seconds),
        "INFERENCE_THREADS": str(settings.inference_threads),
        "UPLOADS_BUCKET": uploads_bucket_name,
    }


class InferenceFunction(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: InferenceSettings,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        security_group: ec2.ISecurityGroup,
        access_point: efs.IAccessPoint,
        uploads_bucket_name: str,
    ) -> None:
        super().__init__(scope, construct_id)

        self.log_group = logs.LogGroup(
            self, "Logs", retention=settings.log_retention, removal_policy=RemovalPolicy.DESTROY,
        )
        self.function = lambda_.DockerImageFunction(
            self, "Function",
            description=f"ResNet-50 classifier ({settings.backend} backend), models from EFS",
            code=classifier_image(settings),
            architecture=lambda_architecture(settings),
            memory_size=settings.memory_mb,
            timeout=Duration.seconds(settings.timeout_seconds),
            reserved_concurrent_executions=settings.reserved_concurrency,
            vpc=vpc,
            vpc_subnets=subnets,
            security_groups=[security_group],
            filesystem=lambda_.FileSystem.from_efs_access_point(access_point, MOUNT_PATH),
            environment=runtime_environment(settings, uploads_bucket_name=uploads_bucket_name),
            log_group=self.log_group,
        )
        self.alias = lambda_.Alias(
            self, "Alias",
            alias_name=ALIAS_NAME,
            version=self.function.current_version,
            provisioned_concurrent_executions=settings.provisioned_concurrency or None,
        )
