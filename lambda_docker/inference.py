"""The inference function: the container Lambda built from model/, reading models from EFS.

The image holds the runtime only (model/Dockerfile); the weights are read
from EFS at ``/mnt/store`` through the inference access point, read only (see
``storage.py``), and every classification is stored as a record in DynamoDB
(``records.py``). Synthesis only hashes the build context; ``cdk deploy``
builds and pushes the image.

The API invokes the ``live`` alias. Provisioned concurrency, when asked for,
is configured on that alias, so switching it on or off never changes what the
API calls. Concurrency is reserved by default (``reserved_concurrency``): it
caps what the API can cost and run at once, and keeps the account's other
functions (the installer among them) from being starved by it.

Its role may do exactly what its code calls (tests/infra/test_least_privilege.py):
on records GetItem, Query and PutItem; on the uploads bucket GetObject, and
PutObject, which S3 checks when a presigned POST it signed is used.
"""


from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from lambda_docker.checkov import ENVIRONMENT_KMS, LOG_GROUP_KMS, NO_RESERVED_CONCURRENCY, CheckovSkip, skip_checks
from lambda_docker.config import AppConfig
from lambda_docker.paths import MODEL_DIR
from lambda_docker.records import GET_ITEM, PUT_ITEM, QUERY, RecordsTable
from lambda_docker.storage import MOUNT_PATH, StoreMount

ALIAS_NAME = "live"
# The inference function also gets the records' cursor key (lambda_docker/records.py).
CURSOR_ENVIRONMENT_KMS = CheckovSkip(
    ENVIRONMENT_KMS.id,
    "The environment holds settings (paths, model, bucket and table names, numbers) and the key that signs "
    "GET /classifications page cursors, which guards no data: a cursor is bound to its listing, and a forged "
    "one leads to pages of a listing its holder may read anyway. Lambda encrypts it at rest with its service "
    "key, enough for that.",
)
# Powertools' service name (every log line's "service", every metric's "service"
# dimension) and the metrics namespace; observability.py reads the same names.
POWERTOOLS_SERVICE_NAME = "classifier"
METRICS_NAMESPACE = "Classifier"


def classifier_image(config: AppConfig, *, cmd: list[str] | None = None) -> lambda_.DockerImageCode:
    """The container image built from model/; ``cmd`` overrides its handler (the image's CMD).

    Every function built from it shares one image asset: the build arguments
    and platform make the asset hash, ``cmd`` only the function's ImageConfig.
    """
    arm64 = config.architecture == "arm64"
    return lambda_.DockerImageCode.from_image_asset(
        str(MODEL_DIR),
        cmd=cmd,
        platform=ecr_assets.Platform.LINUX_ARM64 if arm64 else ecr_assets.Platform.LINUX_AMD64,
        build_args={"BACKEND": config.backend},
    )


@dataclass(frozen=True)
class ClassifierRuntime:
    """What every function of the classifier image shares: the settings, the store's mount, records, uploads."""

    config: AppConfig
    mount: StoreMount
    records: RecordsTable
    uploads_bucket_name: str

    def environment(self) -> dict[str, str]:
        """The runtime's settings; names and meanings: model/classifier/config.py (Settings.from_env)."""
        return {
            "MODEL_STORE": MOUNT_PATH,
            "MODEL_NAME": self.config.model_name,
            "MODELS": ",".join(self.config.models) or self.config.model_name,
            "BACKEND": self.config.backend,
            "MODEL_REFRESH_SECONDS": str(self.config.model_refresh_seconds),
            # EFS is read-only to these functions: a rollout is judged, and acted on, by the rollout
            # judge through the installer (lambda_docker/rollout_judge.py), never by them.
            "ROLLOUT_JUDGE_SECONDS": "0",
            "INFERENCE_THREADS": str(self.config.inference_threads),
            "UPLOADS_BUCKET": self.uploads_bucket_name,
            "POWERTOOLS_SERVICE_NAME": POWERTOOLS_SERVICE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
            # numpy's OpenBLAS starts a thread per core when numpy is imported, and it spins for a while:
            # on 2 vCPUs it takes one from the model load for most of the init phase. The runtime calls
            # no BLAS routine; ONNX Runtime has its own threads (docs/performance.md).
            "OPENBLAS_NUM_THREADS": "1",
            **self.records.environment,
        }


def classifier_function(
    scope: Construct,
    *,
    runtime: ClassifierRuntime,
    description: str,
    timeout: Duration,
    cmd: list[str] | None = None,
    environment: Mapping[str, str] | None = None,
    reserved_concurrency: int = 0,
    retry_attempts: int | None = None,
    max_event_age: Duration | None = None,
    dead_letter_queue: sqs.IQueue | None = None,
) -> lambda_.DockerImageFunction:
    """A function of the classifier image (``scope``/Function, logging to ``scope``/Logs) with the store mounted.

    The inference function, the upload classifier and the bulk worker: the
    same runtime and settings, each with its own handler (``cmd``), timeout,
    settings of its own (``environment``), reserved concurrency (0: none) and
    asynchronous-invocation options. Each grants itself its records access.
    """
    config = runtime.config
    function = lambda_.DockerImageFunction(
        scope, "Function",
        description=description,
        code=classifier_image(config, cmd=cmd),
        architecture=lambda_.Architecture.ARM_64 if config.architecture == "arm64" else lambda_.Architecture.X86_64,
        memory_size=config.memory_mb,
        timeout=timeout,
        **runtime.mount.function_options(),
        environment={**runtime.environment(), **(environment or {})},
        log_group=logs.LogGroup(scope, "Logs", retention=config.log_retention, removal_policy=RemovalPolicy.DESTROY),
        reserved_concurrent_executions=reserved_concurrency or None,
        retry_attempts=retry_attempts,
        max_event_age=max_event_age,
        dead_letter_queue=dead_letter_queue,
        tracing=lambda_.Tracing.ACTIVE if config.tracing else None,
    )
    unreserved = [NO_RESERVED_CONCURRENCY] if not reserved_concurrency else []
    secret = CURSOR_ENVIRONMENT_KMS if "RECORDS_CURSOR_SECRET" in (environment or {}) else ENVIRONMENT_KMS
    skip_checks(function, secret, *unreserved)
    skip_checks(function.log_group, LOG_GROUP_KMS)
    return function


class InferenceFunction(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, runtime: ClassifierRuntime) -> None:
        super().__init__(scope, construct_id)

        config = runtime.config
        self.function = classifier_function(
            self,
            runtime=runtime,
            description=f"ResNet-50 classifier ({config.backend} backend), models from EFS",
            timeout=Duration.seconds(config.timeout_seconds),
            # It signs the cursors of GET /classifications; no other function lists records.
            environment=runtime.records.cursor_environment,
            reserved_concurrency=config.reserved_concurrency,
        )
        runtime.records.grant(self.function, GET_ITEM, QUERY, PUT_ITEM)
        self.log_group = self.function.log_group
        skip_checks(self.function, CheckovSkip(
            "CKV_AWS_116",
            "Invoked synchronously (API Gateway, the Function URL): a failure is answered to the caller, "
            "and a dead-letter queue only ever receives failed asynchronous invocations.",
        ))
        self.alias = lambda_.Alias(
            self, "Alias",
            alias_name=ALIAS_NAME,
            version=self.function.current_version,
            provisioned_concurrent_executions=config.provisioned_concurrency or None,
        )
