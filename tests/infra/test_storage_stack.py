"""The storage stack as cdk.json configures it: network, EFS, access points, buckets, installer."""

from __future__ import annotations

import fnmatch
import json
import re
import stat
import subprocess
from dataclasses import dataclass
from typing import Any

from aws_cdk.assertions import Match, Template

from .conftest import IMPORTED_FILE_SYSTEM_ID, ROOT, Synth
from helpers.venvs import lambda_python

# -- helpers -------------------------------------------------------------------


def resources(template: Template, type_: str, props: dict[str, Any] | None = None) -> dict[str, Any]:
    return dict(template.find_resources(type_, {"Properties": props} if props else None))


def only(template: Template, type_: str, props: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    found = resources(template, type_, props)
    assert len(found) == 1, f"expected one {type_} matching {props}, found {len(found)}"
    return next(iter(found.items()))


def uploads_bucket(synth: Synth) -> tuple[str, dict[str, Any]]:
    # The bucket whose lifecycle rule expires uploads (it has a CORS rule only with cors_allow_origins).
    return only(synth.storage, "AWS::S3::Bucket", {"LifecycleConfiguration": {"Rules": [
        Match.object_like({"Id": "expire-uploads"}),
    ]}})


def role_statements(template: Template, role_id: str) -> list[dict[str, Any]]:
    """Every statement of every policy attached to the role ``role_id``."""
    return [statement for policy in resources(template, "AWS::IAM::Policy").values()
            if {"Ref": role_id} in policy["Properties"]["Roles"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]]


def function_statements(template: Template, function_id: str) -> list[dict[str, Any]]:
    """The statements of the policies on a function's role."""
    role = resources(template, "AWS::Lambda::Function")[function_id]["Properties"]["Role"]
    return role_statements(template, role["Fn::GetAtt"][0])


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def access_point(template: Template, uid: str) -> tuple[str, dict[str, Any]]:
    return only(template, "AWS::EFS::AccessPoint", {"PosixUser": {"Uid": uid}})


def function_using(template: Template, access_point_id: str) -> dict[str, Any]:
    for resource in resources(template, "AWS::Lambda::Function").values():
        configs = resource["Properties"].get("FileSystemConfigs", [])
        if access_point_id in json.dumps(configs):
            return dict(resource["Properties"])
    raise AssertionError(f"no function mounts {access_point_id}")


# -- POSIX rules, to read the access points' identities as a file server does --


@dataclass(frozen=True)
class Node:
    uid: int
    gid: int
    mode: int  # permission bits, with the sticky bit


@dataclass(frozen=True)
class User:
    uid: int
    gid: int


def may_write_in(directory: Node, user: User) -> bool:
    """Create, remove or rename entries of ``directory`` (write + search permission)."""
    if user.uid == directory.uid:
        bits = (directory.mode >> 6) & 0o7
    elif user.gid == directory.gid:
        bits = (directory.mode >> 3) & 0o7
    else:
        bits = directory.mode & 0o7
    return bits & 0o3 == 0o3


def may_remove_or_rename(entry: Node, parent: Node, user: User) -> bool:
    """Sticky parent: only the entry's owner or the parent's owner may unlink or rename it."""
    if not may_write_in(parent, user):
        return False
    return not parent.mode & stat.S_ISVTX or user.uid in (entry.uid, parent.uid)


def posix_user(ap: dict[str, Any]) -> User:
    return User(int(ap["Properties"]["PosixUser"]["Uid"]), int(ap["Properties"]["PosixUser"]["Gid"]))


def store_root(ap: dict[str, Any]) -> Node:
    info = ap["Properties"]["RootDirectory"]["CreationInfo"]
    return Node(int(info["OwnerUid"]), int(info["OwnerGid"]), int(info["Permissions"], 8))


# -- network ---------------------------------------------------------------------


def test_no_nat_gateway_and_no_internet_route(default: Synth) -> None:
    # Isolated subnets only: nothing to pay for by the hour, nothing reachable from outside.
    default.storage.resource_count_is("AWS::EC2::NatGateway", 0)
    default.storage.resource_count_is("AWS::EC2::InternetGateway", 0)
    default.storage.resource_count_is("AWS::EC2::EIP", 0)


def test_two_isolated_subnets_in_two_azs(default: Synth) -> None:
    # One subnet per AZ, no public IPs.
    default.storage.resource_count_is("AWS::EC2::Subnet", 2)
    subnets = resources(default.storage, "AWS::EC2::Subnet")
    assert len({json.dumps(s["Properties"]["AvailabilityZone"]) for s in subnets.values()}) == 2
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is False for s in subnets.values())


def gateway_endpoint(template: Template, service: str) -> dict[str, Any]:
    _, endpoint = only(template, "AWS::EC2::VPCEndpoint", {
        "VpcEndpointType": "Gateway",
        "ServiceName": {"Fn::Join": ["", ["com.amazonaws.", {"Ref": "AWS::Region"}, f".{service}"]]},
    })
    return endpoint


def test_s3_gateway_endpoint_reaches_only_the_project_buckets(default: Synth) -> None:
    # The functions reach S3 through the free gateway endpoint, and only the inbox and uploads buckets
    # (the default bulk source too), and the deferred records' bucket (where the replay also deletes);
    # bulk results are written by Step Functions, outside the VPC.
    endpoint = gateway_endpoint(default.storage, "s3")
    inbox_id, _ = only(default.storage, "AWS::S3::Bucket", {"VersioningConfiguration": {"Status": "Enabled"}})
    uploads_id, _ = uploads_bucket(default)
    (deferred_id,) = [i for i in resources(default.storage, "AWS::S3::Bucket") if "RecordsDeferred" in i]

    def bucket_and_objects(*buckets: str) -> list[str]:
        return sorted(map(json.dumps, [
            *({"Fn::GetAtt": [bucket, "Arn"]} for bucket in buckets),
            *({"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/*"]]} for bucket in buckets),
        ]))

    data, deferred = endpoint["Properties"]["PolicyDocument"]["Statement"]
    assert sorted(map(json.dumps, data["Resource"])) == bucket_and_objects(inbox_id, uploads_id)
    assert sorted(data["Action"]) == ["s3:GetObject", "s3:ListBucket", "s3:PutObject"]
    assert sorted(map(json.dumps, deferred["Resource"])) == bucket_and_objects(deferred_id)
    assert sorted(deferred["Action"]) == ["s3:DeleteObject", "s3:GetObject", "s3:ListBucket", "s3:PutObject"]


def test_vpc_flow_logs_are_kept_for_the_retention_period(default: Synth) -> None:
    # Rejected flows go to a log group with the configured retention.
    default.storage.has_resource_properties("AWS::EC2::FlowLog", {
        "ResourceType": "VPC", "TrafficType": "REJECT", "LogDestinationType": "cloud-watch-logs",
    })
    default.storage.all_resources_properties("AWS::Logs::LogGroup", {"RetentionInDays": 30})


# -- EFS -------------------------------------------------------------------------


def test_efs_is_encrypted_with_elastic_throughput(default: Synth) -> None:
    # Bursting credits would run out under many cold starts reading the model at once.
    default.storage.has_resource_properties("AWS::EFS::FileSystem", {
        "Encrypted": True, "ThroughputMode": "elastic", "PerformanceMode": "generalPurpose",
    })


def test_efs_is_retained_when_the_stack_is_deleted(default: Synth) -> None:
    # The default removal policy keeps the models and records.
    default.storage.has_resource("AWS::EFS::FileSystem", {
        "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain",
    })


def test_efs_policy_requires_tls_and_an_access_point(default: Synth) -> None:
    # No client may mount in clear text or without the POSIX identity an access point enforces.
    _, fs = only(default.storage, "AWS::EFS::FileSystem")
    statements = fs["Properties"]["FileSystemPolicy"]["Statement"]
    denies = [s for s in statements if s["Effect"] == "Deny"]
    assert {"Bool": {"aws:SecureTransport": "false"}} in [s["Condition"] for s in denies]
    assert {"Null": {"elasticfilesystem:AccessPointArn": "true"}} in [s["Condition"] for s in denies]
    allowed = [a for s in statements if s["Effect"] == "Allow" for a in s["Action"]]
    assert "elasticfilesystem:ClientRootAccess" not in allowed


def test_both_access_points_share_the_store_root_with_identical_creation_info(default: Synth) -> None:
    # Whichever function connects first, /store is created the same way.
    points = resources(default.storage, "AWS::EFS::AccessPoint")
    assert len(points) == 2
    roots = [p["Properties"]["RootDirectory"] for p in points.values()]
    assert roots[0] == roots[1]
    assert roots[0]["Path"] == "/store"
    assert roots[0]["CreationInfo"] == {"OwnerUid": "1001", "OwnerGid": "1000", "Permissions": "1775"}


def test_installer_user_owns_the_store_and_writes_models(default: Synth) -> None:
    # uid 1001 owns /store, so it can create models/ (and everything under it).
    _, installer = access_point(default.storage, "1001")
    assert posix_user(installer) == User(1001, 1001)
    assert may_write_in(store_root(installer), posix_user(installer))


def test_inference_user_cannot_write_or_move_models(default: Synth) -> None:
    # models/ (created by the installer, 0755) is read-only to uid 1000, and the sticky bit on
    # /store stops it from renaming or deleting models/ (beneath IAM, which allows it no write at all).
    _, installer_ap = access_point(default.storage, "1001")
    _, inference_ap = access_point(default.storage, "1000")
    inference, installer = posix_user(inference_ap), posix_user(installer_ap)
    root = store_root(inference_ap)
    models = Node(installer.uid, installer.gid, 0o755)  # mkdir under Lambda's umask 022
    assert not may_write_in(models, inference), "inference must not write models/"
    assert not may_remove_or_rename(models, root, inference), "inference must not rename models/"
    assert root.mode & stat.S_ISVTX
    assert inference.uid not in (root.uid, installer.uid) and inference.gid != installer.gid


CLIENT_WRITE = "elasticfilesystem:ClientWrite"
INSTALLER_HANDLER = "classifier.store.installer.handler"


def allow_statements(template: Template) -> list[tuple[list[Any], dict[str, Any]]]:
    """Every Allow statement of every identity policy in ``template``, with the roles it is attached to:
    policies, managed policies and roles' inline policies."""
    found: list[tuple[list[Any], dict[str, Any]]] = []
    for type_ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for policy in resources(template, type_).values():
            roles = list(policy["Properties"].get("Roles", []))
            found += [(roles, st) for st in policy["Properties"]["PolicyDocument"]["Statement"]]
    for role_id, role in resources(template, "AWS::IAM::Role").items():
        for inline in role["Properties"].get("Policies", []):
            found += [([{"Ref": role_id}], st) for st in inline["PolicyDocument"]["Statement"]]
    return [(roles, st) for roles, st in found if st.get("Effect") == "Allow"]


def grants(statement: dict[str, Any], action: str) -> bool:
    """Whether an Allow statement covers ``action``, wildcards (``elasticfilesystem:*``, ``*``) and
    ``NotAction`` included."""
    def matches(patterns: Any) -> bool:
        listed = [patterns] if isinstance(patterns, str) else list(patterns)
        return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in listed)

    if "NotAction" in statement:
        return not matches(statement["NotAction"])
    return matches(statement["Action"])


def test_only_the_installer_may_write_the_store(all_synths: dict[str, Synth]) -> None:
    # EFS admits writes only from roles granted ClientWrite: the installer's, on this file system, in
    # every configuration; every other role (the functions that mount the store read-only above all) lacks it.
    for name, synth in all_synths.items():
        _, installer = only(synth.storage, "AWS::Lambda::Function", {"Handler": INSTALLER_HANDLER})
        installer_role = {"Ref": installer["Properties"]["Role"]["Fn::GetAtt"][0]}
        writers = [(roles, st) for roles, st in allow_statements(synth.storage) if grants(st, CLIENT_WRITE)]
        assert [roles for roles, _ in writers] == [[installer_role]], f"{name}: ClientWrite granted to {writers}"
        resource = json.dumps(writers[0][1]["Resource"])
        assert ":file-system/" in resource, name
        if name == "imported":
            assert IMPORTED_FILE_SYSTEM_ID in resource
        else:
            fs_id, _ = only(synth.storage, "AWS::EFS::FileSystem")
            assert fs_id in resource, name
        assert not [st for _, st in allow_statements(synth.service) if grants(st, CLIENT_WRITE)], name
        # AND the service's functions that mount the store are granted the mount (so the check above had
        # readers to exclude), without the write
        mounting = [fid for fid, f in resources(synth.service, "AWS::Lambda::Function").items()
                    if f["Properties"].get("FileSystemConfigs")]
        assert mounting, f"{name}: no function mounts the store"
        for function_id in mounting:
            statements = function_statements(synth.service, function_id)
            assert any(grants(st, "elasticfilesystem:ClientMount") for st in statements), (name, function_id)
            assert not any(grants(st, CLIENT_WRITE) for st in statements), (name, function_id)


def test_nfs_reaches_efs_only_from_the_two_functions(default: Synth) -> None:
    # The mount targets' security group admits TCP 2049 from the two functions' groups, nothing else.
    targets = resources(default.storage, "AWS::EFS::MountTarget")
    assert len(targets) == 2
    efs_groups = {json.dumps(t["Properties"]["SecurityGroups"]) for t in targets.values()}
    assert len(efs_groups) == 1
    efs_group_id = json.loads(efs_groups.pop())[0]["Fn::GetAtt"][0]
    efs_group = resources(default.storage, "AWS::EC2::SecurityGroup")[efs_group_id]
    assert "SecurityGroupIngress" not in efs_group["Properties"]
    rules = [r["Properties"] for r in resources(default.storage, "AWS::EC2::SecurityGroupIngress").values()
             if r["Properties"]["GroupId"] == {"Fn::GetAtt": [efs_group_id, "GroupId"]}]
    installer_group, _ = only(default.storage, "AWS::EC2::SecurityGroup",
                              {"GroupDescription": Match.string_like_regexp("^The model installer function")})
    inference_group, _ = only(default.storage, "AWS::EC2::SecurityGroup",
                              {"GroupDescription": Match.string_like_regexp("^The inference function")})
    _, installer = only(default.storage, "AWS::Lambda::Function", {"Handler": "classifier.store.installer.handler"})
    assert installer["Properties"]["VpcConfig"]["SecurityGroupIds"] == [{"Fn::GetAtt": [installer_group, "GroupId"]}]
    assert len(rules) == 2
    assert all((r["IpProtocol"], r["FromPort"], r["ToPort"]) == ("tcp", 2049, 2049) for r in rules)
    sources = {r["SourceSecurityGroupId"]["Fn::GetAtt"][0] for r in rules}
    assert sources == {installer_group, inference_group}
    assert efs_group_id not in sources


def test_function_security_groups_allow_only_nfs_and_https_out(default: Synth) -> None:
    # No allow-all egress: NFS to EFS, and 443, which in these subnets routes only to S3.
    for group in resources(default.storage, "AWS::EC2::SecurityGroup",
                           {"GroupDescription": Match.string_like_regexp("^The .* function:")}).values():
        egress = group["Properties"]["SecurityGroupEgress"]
        assert [(e["IpProtocol"], e["FromPort"], e["ToPort"]) for e in egress] == [("tcp", 443, 443)]
    for rule in resources(default.storage, "AWS::EC2::SecurityGroupEgress").values():
        assert (rule["Properties"]["FromPort"], rule["Properties"]["ToPort"]) == (2049, 2049)


# -- buckets ---------------------------------------------------------------------


def test_every_bucket_blocks_public_access_and_is_encrypted(default: Synth) -> None:
    # Inbox, uploads, bulk results, deferred records and access logs alike.
    default.storage.resource_count_is("AWS::S3::Bucket", 5)
    default.storage.all_resources_properties("AWS::S3::Bucket", {
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
        },
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}},
        ]},
        "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
    })


def test_every_bucket_denies_requests_without_tls(default: Synth) -> None:
    # A bucket policy per bucket, each with a Deny on aws:SecureTransport=false.
    policies = resources(default.storage, "AWS::S3::BucketPolicy")
    insecure = {"Bool": {"aws:SecureTransport": "false"}}
    covered = set()
    for policy in policies.values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny" and statement.get("Condition") == insecure:
                covered.add(policy["Properties"]["Bucket"]["Ref"])
    assert covered == set(resources(default.storage, "AWS::S3::Bucket"))


def test_buckets_are_retained_when_the_stack_is_deleted(default: Synth) -> None:
    # CloudFormation cannot delete a bucket with objects; keeping them is explicit.
    for bucket in resources(default.storage, "AWS::S3::Bucket").values():
        assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_inbox_bucket_is_versioned_logged_and_expires_old_uploads(default: Synth) -> None:
    # Installed models live on EFS; the inbox keeps uploads 30 days, old versions 7.
    logs_id, _ = only(default.storage, "AWS::S3::Bucket", {"LoggingConfiguration": Match.absent()})
    default.storage.has_resource_properties("AWS::S3::Bucket", {
        "VersioningConfiguration": {"Status": "Enabled"},
        "LoggingConfiguration": {"DestinationBucketName": {"Ref": logs_id}},
        "LifecycleConfiguration": {"Rules": [Match.object_like({
            "Status": "Enabled",
            "ExpirationInDays": 30,
            "NoncurrentVersionExpiration": {"NoncurrentDays": 7},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        })]},
        "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
    })


def test_uploads_bucket_expires_objects_after_a_day(default: Synth) -> None:
    # Large images are transient inputs; with no CORS origins (the default) no browser page elsewhere may POST them.
    default.storage.has_resource_properties("AWS::S3::Bucket", {
        "LifecycleConfiguration": {"Rules": [Match.object_like({"Id": "expire-uploads", "ExpirationInDays": 1})]},
        "CorsConfiguration": Match.absent(),
    })


# -- the installer ----------------------------------------------------------------


def test_installer_mounts_the_store_through_its_own_access_point(default: Synth) -> None:
    # A Python zip in the VPC, mounting /store at /mnt/store as uid 1001.
    installer_ap_id, _ = access_point(default.storage, "1001")
    props = function_using(default.storage, installer_ap_id)
    assert props["Handler"] == "classifier.store.installer.handler"
    assert props["Runtime"].startswith("python3.")
    assert props["FileSystemConfigs"][0]["LocalMountPath"] == "/mnt/store"
    assert props["Environment"]["Variables"]["MODEL_STORE"] == "/mnt/store"
    assert len(props["VpcConfig"]["SubnetIds"]) == 2


def test_manifests_and_promotions_trigger_the_installer(default: Synth) -> None:
    # EventBridge: "Object Created" in the inbox for keys ending in /manifest.json (install a
    # version) or /CURRENT (promote one: `promote VERSION --s3`).
    inbox_id, _ = only(default.storage, "AWS::S3::Bucket", {"VersioningConfiguration": {"Status": "Enabled"}})
    installer_id, _ = only(default.storage, "AWS::Lambda::Function", {"Handler": "classifier.store.installer.handler"})
    default.storage.has_resource_properties("AWS::Events::Rule", {
        "EventPattern": {
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": [{"Ref": inbox_id}]},
                       "object": {"key": [{"suffix": "/manifest.json"}, {"suffix": "/CURRENT"}]}},
        },
        "Targets": [Match.object_like({"Arn": {"Fn::GetAtt": [installer_id, "Arn"]}})],
    })
    default.storage.has_resource_properties("AWS::Lambda::Permission", {
        "Principal": "events.amazonaws.com", "FunctionName": {"Fn::GetAtt": [installer_id, "Arn"]},
    })


def test_installer_may_only_read_the_inbox(default: Synth) -> None:
    # GetObject on the inbox's objects and ListBucket on it; no writes, no other bucket.
    inbox_id, _ = only(default.storage, "AWS::S3::Bucket", {"VersioningConfiguration": {"Status": "Enabled"}})
    _, policy = only(default.storage, "AWS::IAM::Policy", {"PolicyName": Match.string_like_regexp("Installer")})
    s3_statements = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
                     if "s3:" in json.dumps(s["Action"])]
    assert sorted(json.dumps(s["Action"]) for s in s3_statements) == ['"s3:GetObject"', '"s3:ListBucket"']
    assert all(inbox_id in json.dumps(s["Resource"]) for s in s3_statements)


def test_installer_zip_holds_its_modules_and_its_locked_requirements(default: Synth) -> None:
    # The zip has the package's store and observability folders (no numpy, onnxruntime or torch),
    # and exactly the distributions of model/requirements-installer.txt, at the locked versions.
    _, installer = only(default.storage, "AWS::Lambda::Function", {"Handler": "classifier.store.installer.handler"})
    asset_hash = installer["Properties"]["Code"]["S3Key"].removesuffix(".zip")
    asset_dir = default.outdir / f"asset.{asset_hash}"
    modules = sorted(p.relative_to(asset_dir).as_posix() for p in (asset_dir / "classifier").rglob("*.py"))
    package = ROOT / "model" / "classifier"
    expected = [package / "__init__.py", *(package / "store").glob("*.py"), *(package / "observability").glob("*.py")]
    assert modules == sorted(p.relative_to(package.parent).as_posix() for p in expected)
    bundled = {re.sub(r"[-_.]+", "-", d.name.removesuffix(".dist-info")).lower()
               for d in asset_dir.glob("*.dist-info")}
    pins = re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+)", (ROOT / "model/requirements-installer.txt").read_text(), re.M)
    assert bundled == {re.sub(r"[-_.]+", "-", f"{name}-{version}").lower() for name, version in pins}
    assert "boto3" in dict(pins)
    # Importing the handler from the zip alone, on the runtime's Python with no site-packages,
    # finds boto3 in the zip and pulls in nothing heavy.
    assert installer["Properties"]["Runtime"] == "python3.12"
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import classifier.store.installer as i, boto3; "
             "assert i.__file__.startswith(sys.argv[1]) and boto3.__file__.startswith(sys.argv[1]); "
             "heavy = {'numpy', 'onnxruntime', 'torch', 'PIL'} & set(sys.modules); "
             "assert not heavy, heavy; import botocore.session; botocore.session.get_session().create_client("
             "'s3', region_name='eu-west-1')")
    subprocess.run([lambda_python(), "-I", "-S", "-c", probe, str(asset_dir)], check=True, cwd=ROOT)


def test_installer_logs_are_kept_for_the_retention_period(default: Synth) -> None:
    # The function logs to its own log group (not an unbounded default one).
    _, installer = only(default.storage, "AWS::Lambda::Function", {"Handler": "classifier.store.installer.handler"})
    group_id = installer["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    assert resources(default.storage, "AWS::Logs::LogGroup")[group_id]["Properties"]["RetentionInDays"] == 30


def test_storage_stack_outputs_the_inbox_and_the_installer(default: Synth) -> None:
    # Publishing can start as soon as the storage stack is up, and its outcome is in that log group.
    inbox_id, _ = only(default.storage, "AWS::S3::Bucket", {"VersioningConfiguration": {"Status": "Enabled"}})
    default.storage.has_output("InboxBucket", {"Value": {"Ref": inbox_id}})
    _, installer = only(default.storage, "AWS::Lambda::Function", {"Handler": "classifier.store.installer.handler"})
    default.storage.has_output("InstallerLogGroup", {"Value": installer["Properties"]["LoggingConfig"]["LogGroup"]})
    installer_id, _ = only(default.storage, "AWS::Lambda::Function", {"Handler": "classifier.store.installer.handler"})
    default.storage.has_output("InstallerFunction", {"Value": {"Ref": installer_id}})
