"""The EFS model store: file system, access points and the NFS security groups.

Layout and who may do what (docs/architecture.md: only the installer changes models)::

    /store              owner 1001 (installer), group 1000, mode 1775
    /store/models/      created by the installer: owner 1001, mode 0755

Both access points expose ``/store`` (each function mounts it at
``/mnt/store``) and differ only in the POSIX identity EFS enforces:

- installer, uid/gid 1001: owns ``/store``, creates and writes ``models/``;
  its role has ``elasticfilesystem:ClientWrite``.
- inference, uid/gid 1000 (the API, the upload classifier and the bulk
  worker): read only. Their roles lack ``ClientWrite`` (``StoreMount.read_only``),
  so EFS refuses every write through their mounts, whatever the file modes.
  Beneath that, POSIX: ``models/`` (0755, owned by 1001) is read-only to
  uid 1000, and ``/store``'s sticky bit stops it renaming or deleting ``models/``.

Records used to live in ``/store/records/``, created by uid 1000 through
``/store``'s group-write bit; they are in DynamoDB now (``records.py``). The
access points' creation info keeps that bit all the same: changing an access
point's root directory replaces it, and CloudFormation refuses to replace a
value the service stack imports (the access point ids); nor would it change
an existing ``/store``. IAM closes the write path instead.

Why one shared root instead of nesting the installer's access point at
``/store/models``: EFS creates an access point's root directory, with its
creation info, when a client first connects. With nested roots, whichever
function connects first decides how ``/store`` is created, and the sticky bit
does not protect an entry from the directory's *owner*; if the inference user
owned ``/store`` it could rename ``models/`` away. With one shared root and
identical creation info, the order does not matter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, cast

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_efs as efs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct, DependencyGroup

STORE_PATH = "/store"
# The one mount path both functions use (Lambda requires /mnt/<name>); the
# inference function's MODEL_STORE points here (docs/architecture.md).
MOUNT_PATH = "/mnt/store"
INSTALLER_UID = 1001
INFERENCE_UID = 1000
# Owner: the installer. Group: the inference user, which once created records/
# here (kept: see the module docstring). Sticky: a group member may not rename
# or delete others' entries.
STORE_OWNER_UID = INSTALLER_UID
STORE_OWNER_GID = INFERENCE_UID
STORE_PERMISSIONS = "1775"
NFS_PORT = 2049
CLIENT_WRITE = "elasticfilesystem:ClientWrite"
CLIENT_ACTIONS = ("elasticfilesystem:ClientMount", CLIENT_WRITE)
ALL_CLIENT_ACTIONS = (*CLIENT_ACTIONS, "elasticfilesystem:ClientRootAccess")


class FunctionMountOptions(TypedDict):
    """The Lambda function properties that put a function in the VPC with the store mounted."""

    vpc: ec2.IVpc
    vpc_subnets: ec2.SubnetSelection
    security_groups: Sequence[ec2.ISecurityGroup]
    filesystem: lambda_.FileSystem


@dataclass(frozen=True)
class StoreMount:
    """What a function needs to mount the store: where it runs, the group EFS admits, its access point.

    ``read_only``: the function's role gets ``ClientMount`` only, without
    which EFS treats the mount as read-only.
    """

    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    security_group: ec2.ISecurityGroup
    access_point: efs.IAccessPoint
    read_only: bool

    def function_options(self) -> FunctionMountOptions:
        """``**``-pass these to a Lambda function: it mounts the store at ``MOUNT_PATH`` as its access point's user."""
        return FunctionMountOptions(
            vpc=self.vpc,
            vpc_subnets=self.subnets,
            security_groups=[self.security_group],
            filesystem=self._file_system(),
        )

    def _file_system(self) -> lambda_.FileSystem:
        writable = lambda_.FileSystem.from_efs_access_point(self.access_point, MOUNT_PATH)
        if not self.read_only:
            return writable
        # aws-lambda's own configuration (mount targets to wait for, NFS rules, the
        # ClientMount statement pinned to this access point), minus its ClientWrite grant.
        config = writable.config
        policies = [p for p in config.policies or [] if CLIENT_WRITE not in p.actions]
        assert policies and len(policies) < len(config.policies or []), "aws-lambda's EFS grants changed"
        return lambda_.FileSystem(
            arn=config.arn,
            local_mount_path=config.local_mount_path,
            connections=config.connections,
            dependency=config.dependency,
            policies=policies,
        )


class ModelStorage(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        removal_policy: RemovalPolicy,
        existing_file_system_id: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)

        self.security_group = ec2.SecurityGroup(
            self, "EfsSecurityGroup", vpc=vpc, allow_all_outbound=False,
            description="EFS mount targets: NFS from the installer and inference functions only",
        )
        # One group per function, so the EFS rules name exactly who may mount.
        self.installer_security_group = self._function_security_group(vpc, "Installer", "model installer")
        self.inference_security_group = self._function_security_group(vpc, "Inference", "inference")

        self.mount_targets: list[efs.CfnMountTarget] = []
        if existing_file_system_id is None:
            self.file_system = self._new_file_system(vpc, subnets, removal_policy)
        else:
            self.file_system = self._existing_file_system(vpc, subnets, existing_file_system_id)
        self._allow_nfs_from_functions()

        self.installer_access_point = self._access_point("InstallerAccessPoint", INSTALLER_UID)
        self.inference_access_point = self._access_point("InferenceAccessPoint", INFERENCE_UID)
        self.installer_mount = StoreMount(
            vpc, subnets, self.installer_security_group, self.installer_access_point, read_only=False,
        )
        self.inference_mount = StoreMount(
            vpc, subnets, self.inference_security_group, self.inference_access_point, read_only=True,
        )

    def _function_security_group(self, vpc: ec2.IVpc, construct_id: str, what: str) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(
            self, f"{construct_id}SecurityGroup", vpc=vpc, allow_all_outbound=False,
            description=f"The {what} function: NFS to EFS, HTTPS to S3",
        )
        # The subnets route nothing but S3 and DynamoDB (gateway endpoints): 443 reaches those only.
        group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to S3 and DynamoDB via gateway endpoints")
        return group

    def _new_file_system(
        self, vpc: ec2.IVpc, subnets: ec2.SubnetSelection, removal_policy: RemovalPolicy,
    ) -> efs.IFileSystem:
        return efs.FileSystem(
            self, "FileSystem",
            vpc=vpc,
            vpc_subnets=subnets,
            security_group=self.security_group,
            encrypted=True,
            # Bursting credits run out when many cold starts read the
            # ~100 MB model at once; elastic throughput has no credits.
            throughput_mode=efs.ThroughputMode.ELASTIC,
            performance_mode=efs.PerformanceMode.GENERAL_PURPOSE,
            # Superseded model versions are rarely read again: move them to
            # the cheaper class; the first read brings a file back.
            lifecycle_policy=efs.LifecyclePolicy.AFTER_30_DAYS,
            out_of_infrequent_access_policy=efs.OutOfInfrequentAccessPolicy.AFTER_1_ACCESS,
            enable_automatic_backups=True,
            removal_policy=removal_policy,
            file_system_policy=self._file_system_policy(),
            # Our policy already refuses anonymous clients. Left unset, CDK
            # would append its own statement granting ClientRootAccess and
            # ClientWrite to any principal that comes through a mount target.
            allow_anonymous_access=True,
        )

    def _existing_file_system(
        self, vpc: ec2.IVpc, subnets: ec2.SubnetSelection, file_system_id: str,
    ) -> efs.IFileSystem:
        """A file system kept from an earlier deployment (RETAIN), with new mount targets in this VPC.

        It keeps its data and policy. EFS allows mount targets in one VPC
        only, so the file system must have none left elsewhere.
        """
        file_system = efs.FileSystem.from_file_system_attributes(
            self, "FileSystem", file_system_id=file_system_id, security_group=self.security_group,
        )
        self.mount_targets = [
            efs.CfnMountTarget(
                self, f"MountTarget{index}",
                file_system_id=file_system_id,
                subnet_id=subnet.subnet_id,
                security_groups=[self.security_group.security_group_id],
            )
            for index, subnet in enumerate(vpc.select_subnets(subnet_type=subnets.subnet_type).subnets, start=1)
        ]
        # What aws-lambda's FileSystem makes a mounting function wait for.
        cast(DependencyGroup, file_system.mount_targets_available).add(*self.mount_targets)
        return file_system

    def _allow_nfs_from_functions(self) -> None:
        for group in (self.installer_security_group, self.inference_security_group):
            self.security_group.add_ingress_rule(
                group, ec2.Port.tcp(NFS_PORT), f"NFS from {group.node.id}",
            )
            group.add_egress_rule(self.security_group, ec2.Port.tcp(NFS_PORT), "NFS to the model store")

    def _access_point(self, construct_id: str, uid: int) -> efs.AccessPoint:
        return efs.AccessPoint(
            self, construct_id,
            file_system=self.file_system,
            path=STORE_PATH,
            posix_user=efs.PosixUser(uid=str(uid), gid=str(uid)),
            # Identical on both access points: whichever function connects
            # first creates /store the same way.
            create_acl=efs.Acl(
                owner_uid=str(STORE_OWNER_UID), owner_gid=str(STORE_OWNER_GID), permissions=STORE_PERMISSIONS,
            ),
        )

    @staticmethod
    def _file_system_policy() -> iam.PolicyDocument:
        """Clients use TLS, come through an access point, and are IAM principals of this account."""
        return iam.PolicyDocument(statements=[
            _deny_every_client("DenyUnencryptedTransport", {"Bool": {"aws:SecureTransport": "false"}}),
            # Without an access point a client would pick its own uid (or root)
            # and bypass the ownership rules above.
            _deny_every_client("DenyWithoutAccessPoint", {"Null": {"elasticfilesystem:AccessPointArn": "true"}}),
            # The functions' roles grant mount (and the installer's, write) on
            # their own access point; nobody is granted ClientRootAccess.
            iam.PolicyStatement(
                sid="AllowAccountPrincipalsViaMountTargets",
                principals=[iam.AccountRootPrincipal()],
                actions=list(CLIENT_ACTIONS),
                conditions={"Bool": {"elasticfilesystem:AccessedViaMountTarget": "true"}},
            ),
        ])


def _deny_every_client(sid: str, conditions: Mapping[str, Any]) -> iam.PolicyStatement:
    """Any principal is refused every client action (root access too) under ``conditions``."""
    return iam.PolicyStatement(
        sid=sid,
        effect=iam.Effect.DENY,
        principals=[iam.AnyPrincipal()],
        actions=list(ALL_CLIENT_ACTIONS),
        conditions=dict(conditions),
    )
