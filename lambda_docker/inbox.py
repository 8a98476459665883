"""The model inbox: the S3 bucket ``publish --s3`` uploads to, and the installer Lambda.

When ``[<prefix>/]models/<name>/<version>/manifest.json`` lands in the bucket,
S3 sends an "Object Created" event to EventBridge, and a rule invokes the
installer (``classifier.store.installer``), which copies the version into EFS
through its access point and makes it current (unless the upload says not
to). The same rule fires for ``[<prefix>/]models/<name>/CURRENT``, the
promotion object ``promote VERSION --s3`` writes: the installer then makes
that installed version current (``classifier.store.inbox``), and for
``[<prefix>/]models/<name>/ROLLOUT``, a rollout request (``rollout ... --s3``,
the rollout judge): the installer starts, promotes or aborts the rollout and
mirrors its state to ``rollouts/<name>.json``, the one prefix it may write.

EventBridge rather than a direct S3 -> Lambda notification: CloudFormation
sets a bucket's EventBridge switch natively, whereas CDK's direct
notifications need a custom resource (an extra Lambda and role).

Who may publish. Whatever lands in the inbox is installed, and by default made
current: the inbox is the model's front door. So its bucket policy denies
``s3:PutObject`` to every principal but one, the publisher role (output
``InboxPublisherRoleArn``), which may do exactly what ``publish --s3`` and
``promote --s3`` call (``classifier.lifecycle.publish_s3``): ListBucket
(``head_bucket``), PutObject and AbortMultipartUpload (``upload_file``,
``put_object``), GetObject (``head_object``). ``inbox_publisher_principal``
says who may assume it (by default, principals of this account allowed to).
docs/security.md says why a publish still activates by default.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import (
    AssetHashType,
    BundlingOptions,
    DockerImage,
    Duration,
    IgnoreMode,
    ILocalBundling,
    RemovalPolicy,
    Stack,
)
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from classifier.store.inbox import MANIFEST_NAME, PROMOTION_NAME, ROLLOUT_REQUEST_NAME, ROLLOUT_STATE_PREFIX
from lambda_docker.bucket_access import allow_objects, object_created_rule
from lambda_docker.buckets import SecureBucket
from lambda_docker.checkov import ENVIRONMENT_KMS, LOG_GROUP_KMS, NO_RESERVED_CONCURRENCY, CheckovSkip, skip_checks
from lambda_docker.nag import suppress_vpc_function_role
from lambda_docker.paths import MODEL_DIR
from lambda_docker.storage import MOUNT_PATH, StoreMount

# The installer's zip: the classifier package's top module and the two subpackages the
# installer imports (the model store and its logs: no numpy or onnxruntime), and the SDK
# it calls S3 with, installed from the lock's hash-checked export rather than taken from
# whatever boto3 the Lambda runtime happens to carry.
INSTALLER_PACKAGES = ("store", "observability")
INSTALLER_REQUIREMENTS = "requirements-installer.txt"
INSTALLER_HANDLER = "classifier.store.installer.handler"
# The installer's runtime: the Python the lock resolves for and the Lambda image runs.
INSTALLER_RUNTIME = lambda_.Runtime.PYTHON_3_12
INSTALLER_ARCHITECTURE = lambda_.Architecture.ARM_64
# The keys the installer acts on: a version's manifest, a model's promotion object and its rollout requests.
INSTALLER_KEY_SUFFIXES = (f"/{MANIFEST_NAME}", f"/{PROMOTION_NAME}", f"/{ROLLOUT_REQUEST_NAME}")


def pip_install_command(target: str) -> list[str]:
    """pip's arguments that install the installer's requirements into ``target``, for its runtime."""
    version = INSTALLER_RUNTIME.name.removeprefix("python")
    machine = "aarch64" if INSTALLER_ARCHITECTURE is lambda_.Architecture.ARM_64 else "x86_64"
    return ["install", "--quiet", "--no-deps", "--require-hashes", "--only-binary=:all:", "--no-compile",
            "--python-version", version, "--implementation", "cp", "--platform", f"manylinux2014_{machine}",
            "--target", target, "--requirement", str(MODEL_DIR / INSTALLER_REQUIREMENTS)]


@jsii.implements(ILocalBundling)
class LocalInstallerBundling:
    """Builds the installer's zip with this machine's pip, so synth needs no Docker."""

    # Keyword-only, as ILocalBundling declares it: jsii then passes the
    # BundlingOptions struct's fields as keywords (it would pass the struct
    # positionally to a method without keyword-only parameters).
    def try_bundle(self, output_dir: str, *, image: DockerImage, **options: Any) -> bool:
        done = subprocess.run([sys.executable, "-m", "pip", *pip_install_command(output_dir)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pip could not bundle the installer's requirements:\n{done.stderr[-4000:]}")
        package = Path(output_dir) / "classifier"
        package.mkdir()
        shutil.copy2(MODEL_DIR / "classifier" / "__init__.py", package / "__init__.py")
        for subpackage in INSTALLER_PACKAGES:
            shutil.copytree(MODEL_DIR / "classifier" / subpackage, package / subpackage,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        return True


def installer_code() -> lambda_.Code:
    """The installer's code asset: ``INSTALLER_PACKAGES`` of model/classifier and its locked requirements."""
    folders = " ".join(f"classifier/{subpackage}" for subpackage in INSTALLER_PACKAGES)
    in_docker = " ".join(["pip", *pip_install_command("/asset-output")]).replace(str(MODEL_DIR), "/asset-input")
    return lambda_.Code.from_asset(
        str(MODEL_DIR),
        ignore_mode=IgnoreMode.DOCKER,
        # Docker-ignore rules, last match wins: drop everything, then bring back the
        # listed subpackages and the requirements (the asset's hash covers exactly these).
        exclude=["*", f"!{INSTALLER_REQUIREMENTS}", "!classifier", "classifier/*", "!classifier/__init__.py",
                 *(f"!classifier/{subpackage}" for subpackage in INSTALLER_PACKAGES), "**/__pycache__"],
        asset_hash_type=AssetHashType.SOURCE,
        bundling=BundlingOptions(
            image=INSTALLER_RUNTIME.bundling_image,
            command=["bash", "-c", f"{in_docker} && mkdir /asset-output/classifier && "
                                   f"cp -r classifier/__init__.py {folders} /asset-output/classifier/"],
            local=LocalInstallerBundling(),
        ),
    )


class ModelInbox(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        mount: StoreMount,
        access_logs: s3.IBucket,
        expiration_days: int,
        log_retention: logs.RetentionDays,
        publisher_principal: iam.IPrincipal,
    ) -> None:
        super().__init__(scope, construct_id)

        self.bucket = SecureBucket(
            self, "Inbox",
            access_logs=access_logs,
            lifecycle_rules=[s3.LifecycleRule(
                id="expire-installed-models",
                # Once installed, a version lives on EFS; the upload is only a
                # way in. Overwritten or expired copies go a week later.
                expiration=Duration.days(expiration_days),
                noncurrent_version_expiration=Duration.days(7),
                abort_incomplete_multipart_upload_after=Duration.days(1),
            )],
            event_bridge=True,
        ).bucket
        self.log_group = logs.LogGroup(
            self, "InstallerLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY,
        )
        self.publisher = self._publisher(publisher_principal)
        self.function = self._installer(mount)
        # Read only (GetObject covers HEAD too): an upload is never changed or deleted here. The one
        # write: the rollout state it mirrors for the rollout judge, which cannot reach EFS.
        allow_objects(self.function, self.bucket, "s3:GetObject")
        self.function.add_to_role_policy(iam.PolicyStatement(
            actions=["s3:PutObject"], resources=[self.bucket.arn_for_objects(f"{ROLLOUT_STATE_PREFIX}*")],
        ))
        self.rule = object_created_rule(
            self, "ManifestCreated",  # the id it had before promotions: an id change would replace the rule
            description="A model manifest, promotion or rollout request landed in the inbox: act on it",
            bucket=self.bucket,
            key_filters=[{"suffix": suffix} for suffix in INSTALLER_KEY_SUFFIXES],
            target=targets.LambdaFunction(self.function, retry_attempts=2),
        )
        self._suppress_findings()

    def _publisher(self, principal: iam.IPrincipal) -> iam.Role:
        """The one role that may put objects in the inbox, and what publishing takes of it."""
        role = iam.Role(
            self, "Publisher",
            assumed_by=principal,
            description="May publish and promote models through the inbox (python -m classifier publish --s3), "
                        "nothing else",
        )
        role.add_to_policy(iam.PolicyStatement(
            actions=["s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject"],
            resources=[self.bucket.arn_for_objects("*")],
        ))
        role.add_to_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn]))
        # Everyone else is denied, whatever their own policies allow (an account administrator included:
        # they may assume the role, which CloudTrail then records).
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="OnlyThePublisherRolePutsObjects",
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["s3:PutObject"],
            resources=[self.bucket.arn_for_objects("*")],
            conditions={"ArnNotEquals": {"aws:PrincipalArn": role.role_arn}},
        ))
        cfn_bucket = self.bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        NagSuppressions.add_resource_suppressions(role, [NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="A publish uploads a new version under keys named by its id, unknown at deploy time: object "
                   "writes and reads in this one bucket only.",
            applies_to=[f"Resource::<{Stack.of(self).get_logical_id(cfn_bucket)}.Arn>/*"],
        )], apply_to_children=True)
        return role

    def _installer(self, mount: StoreMount) -> lambda_.Function:
        return lambda_.Function(
            self, "Installer",
            description="Installs a model version from the S3 inbox into the EFS model store",
            code=installer_code(),
            handler=INSTALLER_HANDLER,
            runtime=INSTALLER_RUNTIME,
            architecture=INSTALLER_ARCHITECTURE,
            # Memory buys network and CPU: ~200 MB of artifacts to download and hash.
            memory_size=1024,
            timeout=Duration.minutes(5),
            # No reserved concurrency: a new account's concurrency quota may be
            # too small to reserve any. Concurrent installs are safe (each
            # stages, verifies and renames on its own); the last to finish
            # becomes current.
            **mount.function_options(),
            environment={"MODEL_STORE": MOUNT_PATH},
            log_group=self.log_group,
        )

    def _suppress_findings(self) -> None:
        cfn_bucket = self.bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        bucket_id = Stack.of(self).get_logical_id(cfn_bucket)
        skip_checks(self.log_group, LOG_GROUP_KMS)
        skip_checks(self.function, ENVIRONMENT_KMS, NO_RESERVED_CONCURRENCY, CheckovSkip(
            "CKV_AWS_116",
            "A failed install changes nothing (the current version keeps serving) and is in the installer's "
            "log group; uploading the manifest again retries it, which a queued event could not do better.",
        ))
        suppress_vpc_function_role(self.function, NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="The installer reads whichever version is uploaded: object keys are not known "
                   "at deploy time. Scoped to this one bucket's objects, read only, but for the rollout "
                   "states it mirrors under rollouts/ (one object a model).",
            applies_to=[f"Resource::<{bucket_id}.Arn>/*", f"Resource::<{bucket_id}.Arn>/{ROLLOUT_STATE_PREFIX}*"],
        ))
        NagSuppressions.add_resource_suppressions(self.function, [NagPackSuppression(
            id="AwsSolutions-L1",
            reason="The installer runs the Python of the Lambda image (public.ecr.aws/lambda/python:3.12) "
                   "and of uv.lock (requires-python <3.13), which its bundled requirements are locked "
                   "and tested for; supported by Lambda until 2028. Both move to a newer Python together.",
        )])
