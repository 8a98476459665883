"""checkov findings accepted on purpose: each skip sits in its resource's template metadata, with its reason.

checkov reads ``Metadata: {checkov: {skip: [{id, comment}]}}`` on a
CloudFormation resource and reports the check as skipped, with the comment.
Constructs call ``skip_checks`` on the resources a finding concerns, never on a
whole stack; tests/infra/test_checkov.py runs checkov on the synthesized
templates and requires zero failed checks and a reason on every skip, and
docs/security.md lists every skip with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import CfnResource
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import IConstruct

METADATA_KEY = "checkov"


@dataclass(frozen=True)
class CheckovSkip:
    id: str  # a checkov check id, e.g. CKV_AWS_158
    comment: str  # why the finding is accepted here


def skip_checks(construct: IConstruct, *skips: CheckovSkip) -> None:
    """Add ``skips`` to the metadata of ``construct`` (a CfnResource, or an L2 construct's default child)."""
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    assert isinstance(resource, CfnResource), f"{construct.node.path} has no CloudFormation resource"
    existing: dict[str, Any] = resource.get_metadata(METADATA_KEY) or {}
    entries = [e for e in existing.get("skip", []) if e["id"] not in {s.id for s in skips}]
    entries += [{"id": s.id, "comment": s.comment} for s in skips]
    resource.add_metadata(METADATA_KEY, {"skip": entries})


# Findings shared by several constructs, with their one reason.
LOG_GROUP_KMS = CheckovSkip(
    "CKV_AWS_158",
    "CloudWatch Logs encrypts every log group at rest with its service-managed key. A customer key would "
    "add a key policy for the logs service and a monthly fee, for logs of request metadata and timings "
    "that never hold image bytes or credentials.",
)
ENVIRONMENT_KMS = CheckovSkip(
    "CKV_AWS_173",
    "The environment holds settings (paths, model and bucket names, numbers), never a secret; Lambda "
    "encrypts it at rest with its service key, which is enough for that.",
)
NO_RESERVED_CONCURRENCY = CheckovSkip(
    "CKV_AWS_115",
    "No reserved concurrency: the installer runs once per published model, and the functions that can be "
    "called at will reserve theirs (reserved_concurrency, upload_reserved_concurrency, bulk_reserved_concurrency), "
    "so the rest of the account's quota stays free for it; or the deployer set one of those keys to 0 "
    "because the account's quota leaves none to reserve (docs/deploy.md).",
)
CDK_PROVIDER_FUNCTION = (
    CheckovSkip("CKV_AWS_116", "aws-cdk-lib's custom resource handler, called synchronously by CloudFormation "
                               "during deploys; CloudFormation reports its failures, a queue would hold nothing."),
    CheckovSkip("CKV_AWS_117", "aws-cdk-lib's custom resource handler calls the EC2 API only; in the isolated "
                               "subnets it would need an EC2 interface endpoint for a deploy-time call."),
    CheckovSkip("CKV_AWS_115", "aws-cdk-lib's custom resource handler runs once per deploy; reserving "
                               "concurrency for it would take from the account's small quota."),
)


def accept_finding(construct: IConstruct, *, checkov_id: str, nag_id: str, reason: str) -> None:
    """The same finding as both tools name it (checkov's check, cdk-nag's rule): accepted once, for one reason."""
    NagSuppressions.add_resource_suppressions(construct, [NagPackSuppression(id=nag_id, reason=reason)])
    skip_checks(construct, CheckovSkip(checkov_id, reason))
