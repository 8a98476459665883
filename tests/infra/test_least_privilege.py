"""Each role may do exactly what its code calls: the actions of every function's role (and of the inbox's
publisher role) are compared with the AWS calls its entry point can reach in model/classifier
(``helpers.aws_calls``), so the two cannot drift; the VPC's S3 endpoint admits no write but deferred
records; the cursor key reaches only the function whose code signs cursors; the bulk worker reads only its prefixes."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import pytest

from .conftest import Synth, cdk_json_context
from helpers import ROOT
from helpers.aws_calls import Package

# What the platform does with a function's role on its behalf, which no line of our code calls: mount
# EFS (elasticfilesystem:ClientMount, and the installer's ClientWrite), send X-Ray segments (tracing),
# put a failed asynchronous event in the dead-letter queue (sqs:SendMessage). EFS writes are held to
# the installer by tests/infra/test_storage_stack.py.
PLATFORM_ACTIONS = re.compile(r"^(elasticfilesystem|xray):|^sqs:SendMessage$")
# The `batch s3://` command's calls run with the operator's own credentials, not a role of the stacks.
CLIENT_ENTRIES = ("classifier.cli.batch.batch_s3",)
PUBLISHER_ENTRIES = ("classifier.lifecycle.publish_s3.publish_to_s3",
                     "classifier.lifecycle.publish_s3.promote_in_inbox")


@cache
def package() -> Package:
    return Package(ROOT / "model" / "classifier")


def image_cmd() -> str:
    """The classifier image's default handler: the Dockerfile's CMD."""
    (cmd,) = re.findall(r'^CMD \["([^"]+)"\]', (ROOT / "model" / "Dockerfile").read_text(), re.M)
    return cmd


def entry_module_function(handler: str) -> str:
    """``classifier.handler.handler`` names a module-level object: the module's top level builds it."""
    module, _, name = handler.rpartition(".")
    functions = package().functions
    return f"{module}.{name}" if f"{module}.{name}" in functions else module


def derived_actions(*entries: str) -> set[str]:
    actions = set().union(*(package().actions(e) for e in entries))
    # Reading a key that may be missing: S3 answers 404 (which the code tells from "not allowed") only
    # to a caller that may list the bucket; otherwise 403 for both.
    if "s3:GetObject" in actions:
        actions.add("s3:ListBucket")
    return actions


def role_actions(template: dict[str, Any], role_id: str) -> set[str]:
    """The actions of the policies attached to the role (its managed AWS policies aside)."""
    found: set[str] = set()
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in props.get("Roles", []):
            for statement in props["PolicyDocument"]["Statement"]:
                actions = statement["Action"]
                found.update([actions] if isinstance(actions, str) else actions)
    return {a for a in found if not PLATFORM_ACTIONS.search(a)}


def our_functions(synth: Synth) -> list[tuple[dict[str, Any], str, str, dict[str, Any]]]:
    """(template, handler, role logical id, function properties) of each function running our code."""
    found = []
    for template in (synth.storage.to_json(), synth.service.to_json()):
        for resource in template["Resources"].values():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            props = resource["Properties"]
            handler = props.get("Handler") or (props.get("ImageConfig", {}).get("Command") or [image_cmd()])[0]
            if handler.startswith("classifier."):
                found.append((template, handler, props["Role"]["Fn::GetAtt"][0], props))
    return found


SYNTHS = ["default", "switches", "options"]


@pytest.mark.parametrize("name", SYNTHS)
def test_each_functions_role_allows_exactly_what_its_code_calls(all_synths: dict[str, Synth], name: str) -> None:
    functions = our_functions(all_synths[name])
    handlers = {handler for _, handler, _, _ in functions}
    # (switches holds all six: the API, the upload classifier, the bulk worker, the records replay, the installer,
    # the rollout judge)
    if name == "switches":
        assert handlers == {image_cmd(), "classifier.aws.upload_classifier.handler",
                            "classifier.aws.bulk_worker.handler", "classifier.aws.records_replay.handler",
                            "classifier.store.installer.handler", "classifier.store.rollout_judge.handler"}
    for template, handler, role_id, _ in functions:
        assert role_actions(template, role_id) == derived_actions(entry_module_function(handler)), handler


@pytest.mark.parametrize("name", ["default", "options"])
def test_the_publisher_role_allows_exactly_what_publishing_calls(all_synths: dict[str, Synth], name: str) -> None:
    storage = all_synths[name].storage.to_json()
    role_id = storage["Outputs"]["InboxPublisherRoleArn"]["Value"]["Fn::GetAtt"][0]
    assert role_actions(storage, role_id) == derived_actions(*PUBLISHER_ENTRIES)


def test_every_aws_call_of_the_code_is_reached_by_an_entry_point(switches: Synth) -> None:
    # An AWS call no entry point reaches is dead code, or a path the reading above missed (then a role
    # could lack an action the code needs): either way, look.
    entries = [entry_module_function(h) for _, h, _, _ in our_functions(switches)]
    assert package().unreached_aws_calls([*entries, *PUBLISHER_ENTRIES, *CLIENT_ENTRIES]) == set()


def test_the_reading_sees_the_calls_it_must(switches: Synth) -> None:
    # What the comparison above rests on, pinned: the API lists (Query) and never batch-writes; the upload
    # classifier claims (PutItem) and never lists; the bulk worker batch-writes and never reads a record.
    api, uploads, bulk = (derived_actions(e) for e in (image_cmd().rpartition(".")[0],
                                                        "classifier.aws.upload_classifier.handler",
                                                        "classifier.aws.bulk_worker.handler"))
    assert {"dynamodb:Query", "s3:PutObject"} <= api and "dynamodb:BatchWriteItem" not in api
    assert "dynamodb:PutItem" in uploads and not {"dynamodb:Query", "dynamodb:BatchWriteItem"} & uploads
    assert "dynamodb:BatchWriteItem" in bulk and not {"dynamodb:GetItem", "dynamodb:Query"} & bulk
    # The replay takes deferred records back (reads, deletes, batch-writes) and never defers one itself.
    replay = derived_actions("classifier.aws.records_replay.handler")
    assert {"s3:GetObject", "s3:DeleteObject", "dynamodb:BatchWriteItem"} <= replay and "s3:PutObject" not in replay
    # The rollout judge reads CloudWatch's figures and the inbox's requests, and touches no record.
    judge = derived_actions("classifier.store.rollout_judge.handler")
    assert "cloudwatch:GetMetricData" in judge and not any(a.startswith("dynamodb:") for a in judge)


@pytest.mark.parametrize("name", SYNTHS)
def test_only_the_function_that_signs_cursors_holds_the_cursor_key(all_synths: dict[str, Synth], name: str) -> None:
    for _, handler, _, props in our_functions(all_synths[name]):
        reached = package().reachable(entry_module_function(handler))
        signs = "classifier.records.cursors.Cursors.make" in reached
        holds = "RECORDS_CURSOR_SECRET" in props.get("Environment", {}).get("Variables", {})
        assert holds is signs, handler
    # and that is the API's function alone
    assert "classifier.records.cursors.Cursors.make" in package().reachable(image_cmd().rpartition(".")[0])


def endpoint_statements(synth: Synth, service: str) -> list[dict[str, Any]]:
    storage = synth.storage.to_json()
    (endpoint,) = [r for r in storage["Resources"].values() if r["Type"] == "AWS::EC2::VPCEndpoint"
                   and service in json.dumps(r["Properties"]["ServiceName"])]
    statements: list[dict[str, Any]] = endpoint["Properties"]["PolicyDocument"]["Statement"]
    return statements


@pytest.mark.parametrize("name", SYNTHS)
def test_the_s3_endpoint_admits_reads_and_deferred_records_only(all_synths: dict[str, Synth], name: str) -> None:
    statements = endpoint_statements(all_synths[name], ".s3")
    assert all(s["Effect"] == "Allow" for s in statements)
    # The one write from the VPC: records DynamoDB refused, under records-deferred/ of their own bucket
    # (presigned POSTs go from the client straight to S3).
    (deferral,) = [s for s in statements if isinstance(s["Action"], list)]
    assert sorted(deferral["Action"]) == ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    assert deferral["Resource"]["Fn::Join"][1][-1] == "/records-deferred/*"
    others = [s for s in statements if s is not deferral]
    assert {s["Action"] for s in others} == {"s3:GetObject", "s3:ListBucket"}
    # and it reads where a VPC function reads: the inbox, uploads/, the bulk prefixes
    objects = {json.dumps(r) for s in others if s["Action"] == "s3:GetObject" for r in s["Resource"]}
    assert any("/uploads/*" in r for r in objects)
    assert any(r.endswith('/*"]]}') or r.endswith('/*"') for r in objects)


@pytest.mark.parametrize("name", SYNTHS)
def test_the_dynamodb_endpoint_admits_what_the_functions_call(all_synths: dict[str, Synth], name: str) -> None:
    statements = endpoint_statements(all_synths[name], ".dynamodb")
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    code = set().union(*(derived_actions(entry_module_function(h)) for _, h, _, _ in our_functions(all_synths[name])))
    assert actions == {a for a in code if a.startswith("dynamodb:")}


def worker_s3_statements(synth: Synth) -> list[dict[str, Any]]:
    for template, handler, role_id, _ in our_functions(synth):
        if handler == "classifier.aws.bulk_worker.handler":
            return [s for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Policy"
                    and {"Ref": role_id} in r["Properties"]["Roles"]
                    for s in r["Properties"]["PolicyDocument"]["Statement"] if str(s["Action"]).startswith("s3:")]
    raise AssertionError("no bulk worker")


def test_the_bulk_worker_reads_only_the_prefixes_jobs_read(default: Synth, options: Synth) -> None:
    # Default: bulk/ of the uploads bucket, never the callers' uploads/.
    (read,) = [s for s in worker_s3_statements(default) if s["Action"] == "s3:GetObject"]
    (listing,) = [s for s in worker_s3_statements(default) if s["Action"] == "s3:ListBucket"]
    assert read["Resource"]["Fn::Join"][1][-1] == "/bulk/*"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["bulk/*"]}}
    # A bucket of its own (options: acme-images), with the prefixes the deployer named.
    (read,) = [s for s in worker_s3_statements(options) if s["Action"] == "s3:GetObject"]
    assert sorted(read["Resource"]) == ["arn:aws:s3:::acme-images/photos/*", "arn:aws:s3:::acme-images/scans/2026/*"]


def test_the_worker_may_not_read_uploads() -> None:
    # uploads/ holds each caller's own images: no deployer's list can hand them to bulk jobs.
    from lambda_docker.config import AppConfig, DeployConfigError

    with pytest.raises(DeployConfigError, match="uploads/"):
        AppConfig.from_context({**cdk_json_context(), "bulk_source_prefixes": ["uploads/2026/"]}, {})
