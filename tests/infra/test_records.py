"""Classification records in DynamoDB: the table, its endpoint, and what each function may do with it.

The table must be the one the runtime queries: its keys and indexes are
compared with ``classifier.records.dynamodb.table_definition`` of the deployment's key layout
(``records_indexes``, ``records_shards``), the same definition the runtime's own tests create
on moto, and every function that reads or writes records is told the same layout.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match

from classifier.records.dynamodb import TTL_ATTRIBUTE, table_definition
from classifier.records.keys import KeyLayout
from lambda_docker.records_replay import HANDLER as REPLAY_HANDLER

from .conftest import Synth
from .test_bulk import worker_function
from .test_classify_on_upload import upload_function
from .test_service_stack import inference_function
from .test_storage_stack import actions, function_statements, gateway_endpoint, only, resources

DYNAMODB_ACTIONS = {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:BatchWriteItem"}


def records_table(synth: Synth) -> tuple[str, dict[str, Any]]:
    return only(synth.storage, "AWS::DynamoDB::Table")


def dynamodb_statements(synth: Synth, function_id: str) -> dict[str, Any]:
    """A function's DynamoDB grants: its actions (sorted, joined) -> the resources they apply to."""
    return {" ".join(sorted(actions(s))): s["Resource"] for s in function_statements(synth.service, function_id)
            if any(a.startswith("dynamodb:") for a in actions(s))}


def by(key: str) -> Any:
    return lambda item: item[key]


# -- the table --------------------------------------------------------------------------


def test_table_keys_and_indexes_are_the_runtimes(all_synths: dict[str, Synth]) -> None:
    # One for one: the key schema, the attribute definitions and the sparse GSIs of table_definition(),
    # for the layout each deployment chose; by default two indexes: a record costs 3 write units.
    expected_families = {"default": ("time", "owner"), "options": ("time", "owner", "label", "model_version"),
                         "public": ("time", "label")}
    for variant, synth in all_synths.items():
        _, table = records_table(synth)
        layout = synth.deployment.config.records_layout
        assert layout.families == expected_families.get(variant, ("time", "owner")), variant
        props, expected = table["Properties"], table_definition("records", layout)
        assert props["KeySchema"] == expected["KeySchema"]
        assert sorted(props["AttributeDefinitions"], key=by("AttributeName")) == \
            sorted(expected["AttributeDefinitions"], key=by("AttributeName"))
        assert sorted(props["GlobalSecondaryIndexes"], key=by("IndexName")) == \
            sorted(expected["GlobalSecondaryIndexes"], key=by("IndexName"))
    assert len(records_table(all_synths["default"])[1]["Properties"]["GlobalSecondaryIndexes"]) == 2


def test_table_is_on_demand_with_point_in_time_recovery(default: Synth) -> None:
    # Nothing to pay while idle; any second of the last 35 days can be restored.
    _, table = records_table(default)
    assert table["Properties"]["BillingMode"] == table_definition("records")["BillingMode"] == "PAY_PER_REQUEST"
    assert table["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_table_survives_stack_deletion_and_refuses_to_be_deleted(default: Synth) -> None:
    # Retained by CloudFormation, and DynamoDB itself refuses DeleteTable until protection is lifted.
    _, table = records_table(default)
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert table["Properties"]["DeletionProtectionEnabled"] is True


def test_table_is_encrypted_with_the_aws_owned_key(default: Synth) -> None:
    # DynamoDB encrypts every table; SSEEnabled false selects the AWS-owned key (no KMS key to pay or manage).
    _, table = records_table(default)
    assert table["Properties"]["SSESpecification"] == {"SSEEnabled": False}


def test_records_expire_through_ttl_on_expires_at(default: Synth, options: Synth) -> None:
    # TTL reads the attribute the runtime writes; it stays on with records_ttl_days 0 (no item has it then).
    for synth in (default, options):
        _, table = records_table(synth)
        assert table["Properties"]["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert TTL_ATTRIBUTE == "expires_at"


def test_table_is_an_output(default: Synth) -> None:
    # For the console or `aws dynamodb query`.
    table_id, _ = records_table(default)
    default.storage.has_output("RecordsTable", {"Value": {"Ref": table_id}})


def test_dynamodb_gateway_endpoint_reaches_only_the_records_table(default: Synth) -> None:
    # A gateway endpoint (free, no NAT) in the isolated subnets' route tables, for this table and its indexes.
    table_id, _ = records_table(default)
    props = gateway_endpoint(default.storage, "dynamodb")["Properties"]
    assert len(props["RouteTableIds"]) == 2
    (statement,) = props["PolicyDocument"]["Statement"]
    assert set(statement["Action"]) == DYNAMODB_ACTIONS
    assert statement["Resource"] == [
        {"Fn::GetAtt": [table_id, "Arn"]},
        {"Fn::Join": ["", [{"Fn::GetAtt": [table_id, "Arn"]}, "/index/*"]]},
    ]


def test_cursor_secret_is_generated_by_secrets_manager(default: Synth) -> None:
    # 64 letters and digits, generated at deploy time: the value is never in a template.
    _, secret = only(default.storage, "AWS::SecretsManager::Secret")
    assert secret["Properties"]["GenerateSecretString"] == {
        "ExcludePunctuation": True, "IncludeSpace": False, "PasswordLength": 64,
    }
    assert "SecretString" not in secret["Properties"]


# -- the functions' settings ------------------------------------------------------------------


def record_functions(synth: Synth) -> dict[str, str]:
    """The functions that store records, by role: logical ids."""
    functions = {"inference": inference_function(synth)[0], "replay": replay_function(synth)[0]}
    if synth.deployment.config.classify_on_upload:
        functions["upload"] = upload_function(synth)[0]
    if synth.deployment.config.bulk:
        functions["bulk"] = worker_function(synth)[0]
    return functions


def replay_function(synth: Synth) -> tuple[str, dict[str, Any]]:
    return only(synth.service, "AWS::Lambda::Function", {"ImageConfig": {"Command": [REPLAY_HANDLER]}})


def test_every_record_function_is_told_the_tables_key_layout_and_deferral_place(all_synths: dict[str, Synth]) -> None:
    # RECORDS_SHARDS and RECORDS_INDEXES as the table was made; RECORDS_DEFERRED in the deferral bucket
    for synth in all_synths.values():
        layout = synth.deployment.config.records_layout
        bucket_id, _ = deferral_bucket(synth)
        for function_id in record_functions(synth).values():
            variables = resources(synth.service, "AWS::Lambda::Function")[function_id]["Properties"]["Environment"][
                "Variables"]
            assert KeyLayout(tuple(variables["RECORDS_INDEXES"].split(",")), int(variables["RECORDS_SHARDS"])) == layout
            assert f"ExportsOutputRef{bucket_id}" in json.dumps(variables["RECORDS_DEFERRED"])
            assert variables["RECORDS_DEFERRED"]["Fn::Join"][1][-1] == "/records-deferred/"


def deferral_bucket(synth: Synth) -> tuple[str, dict[str, Any]]:
    found = {i: b for i, b in resources(synth.storage, "AWS::S3::Bucket").items() if "RecordsDeferred" in i}
    assert len(found) == 1, found
    return next(iter(found.items()))


def s3_statements(synth: Synth, function_id: str) -> list[dict[str, Any]]:
    return [s for s in function_statements(synth.service, function_id) if any(a.startswith("s3:") for a in actions(s))]


def test_writers_may_only_put_deferred_records_and_the_replay_only_take_them_back(switches: Synth) -> None:
    # Writers: PutObject under records-deferred/ and nothing else there; the replay: read, delete, list that prefix
    bucket_id, bucket = deferral_bucket(switches)
    assert "VersioningConfiguration" not in bucket["Properties"]  # written once per id, deleted once replayed
    assert all("ExpirationInDays" not in rule for rule in bucket["Properties"]["LifecycleConfiguration"]["Rules"])
    for role, function_id in record_functions(switches).items():
        on_deferral = [s for s in s3_statements(switches, function_id) if bucket_id in json.dumps(s["Resource"])]
        granted = sorted(a for s in on_deferral for a in actions(s))
        if role == "replay":
            assert granted == ["s3:DeleteObject", "s3:GetObject", "s3:ListBucket"], role
            listing = next(s for s in on_deferral if actions(s) == ["s3:ListBucket"])
            assert listing["Condition"] == {"StringLike": {"s3:prefix": ["records-deferred/*"]}}
        else:
            assert granted == ["s3:PutObject"], role
        for statement in on_deferral:
            if actions(statement) != ["s3:ListBucket"]:
                assert json.dumps(statement["Resource"]).endswith('"/records-deferred/*"]]}'), (role, statement)
    # and the dashboard or any other role never touches it
    roles_with_access = {i for i, r in resources(switches.service, "AWS::IAM::Policy").items()
                         if f"ExportsOutputRef{bucket_id}" in json.dumps(r) or f"{bucket_id}Arn" in json.dumps(r)}
    assert len(roles_with_access) == len(record_functions(switches))


def test_the_replay_runs_on_a_schedule_and_deferred_records_raise_an_alarm(default: Synth) -> None:
    function_id, _ = replay_function(default)
    _, rule = only(default.service, "AWS::Events::Rule", {"ScheduleExpression": "rate(15 minutes)"})
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]} and target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    assert resources(default.service, "AWS::Lambda::Function")[function_id]["Properties"][
        "ReservedConcurrentExecutions"] == 1
    default.service.has_resource_properties("AWS::CloudWatch::Alarm", {
        "MetricName": "RecordsDeferred", "Namespace": "Classifier", "Threshold": 1, "Statistic": "Sum",
        "Dimensions": [{"Name": "service", "Value": "classifier"}],
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
    })


def test_every_record_writer_gets_the_table_ttl_and_the_api_the_cursor_key(default: Synth, switches: Synth) -> None:
    # RECORDS_TABLE (imported from the storage stack), RECORDS_TTL_DAYS; and for the API's function alone (the
    # one that signs page cursors), RECORDS_CURSOR_SECRET as a CloudFormation dynamic reference to the secret:
    # resolved at deploy time, never written in the template.
    table_id, _ = records_table(default)
    secret_id, _ = only(default.storage, "AWS::SecretsManager::Secret")
    assert set(record_functions(switches)) == {"inference", "upload", "bulk", "replay"}
    for synth in (default, switches):
        for function_id in record_functions(synth).values():
            env = resources(synth.service, "AWS::Lambda::Function")[function_id]["Properties"]["Environment"]
            variables = env["Variables"]
            assert json.dumps(variables["RECORDS_TABLE"]).count(f"ExportsOutputRef{table_id}") == 1
            assert variables["RECORDS_TTL_DAYS"] == "365"
            if function_id != record_functions(synth)["inference"]:
                assert "RECORDS_CURSOR_SECRET" not in variables
                continue
            reference = variables["RECORDS_CURSOR_SECRET"]["Fn::Join"][1]
            assert reference[0] == "{{resolve:secretsmanager:" and reference[2] == ":SecretString:::}}"
            assert f"ExportsOutputRef{secret_id}" in reference[1]["Fn::ImportValue"]


def test_records_ttl_days_zero_keeps_records(options: Synth) -> None:
    # records_ttl_days 0: the functions write no expiry.
    for function_id in record_functions(options).values():
        env = resources(options.service, "AWS::Lambda::Function")[function_id]["Properties"]["Environment"]
        assert env["Variables"]["RECORDS_TTL_DAYS"] == "0"


# -- the functions' grants ------------------------------------------------------------------------


def test_api_and_upload_functions_read_and_write_records_in_this_table_only(switches: Synth) -> None:
    # The API: GetItem and PutItem on the table, Query on its indexes (listing). The upload classifier:
    # GetItem and PutItem (records, and the claims' conditional puts), no Query. Neither batch-writes;
    # no Scan, no delete, no other table (tests/infra/test_least_privilege.py derives the lists from the code).
    table_id, _ = records_table(switches)
    table_arn = f"{switches.deployment.storage.stack_name}:ExportsOutputFnGetAtt{table_id}Arn"
    api = dynamodb_statements(switches, record_functions(switches)["inference"])
    assert set(api) == {"dynamodb:GetItem dynamodb:PutItem", "dynamodb:Query"}
    assert api["dynamodb:Query"]["Fn::Join"][1][1] == "/index/*"
    upload = dynamodb_statements(switches, record_functions(switches)["upload"])
    assert set(upload) == {"dynamodb:GetItem dynamodb:PutItem"}
    for resource in (api["dynamodb:GetItem dynamodb:PutItem"], api["dynamodb:Query"]["Fn::Join"][1][0],
                     upload["dynamodb:GetItem dynamodb:PutItem"]):
        assert resource["Fn::ImportValue"].startswith(table_arn)


def test_bulk_worker_and_replay_only_write_records(default: Synth) -> None:
    # The worker and the replay store records and read none, on the table itself: the worker PutItem and
    # BatchWriteItem, the replay BatchWriteItem alone (it writes what waits in batches).
    table_id, _ = records_table(default)
    for role, granted in (("bulk", "dynamodb:BatchWriteItem dynamodb:PutItem"), ("replay", "dynamodb:BatchWriteItem")):
        grants = dynamodb_statements(default, record_functions(default)[role])
        assert list(grants) == [granted], role
        (resource,) = grants.values()
        assert f"ExportsOutputFnGetAtt{table_id}Arn" in resource["Fn::ImportValue"]


# -- EFS: read only for everything but the installer -------------------------------------------


def test_no_service_function_may_write_the_model_store(switches: Synth) -> None:
    # The API, the upload classifier and the bulk worker mount EFS through the inference access
    # point with ClientMount only: without ClientWrite, EFS refuses their writes.
    inference_ap_id, _ = only(switches.storage, "AWS::EFS::AccessPoint", {"PosixUser": {"Uid": "1000"}})
    mounting = resources(switches.service, "AWS::Lambda::Function", {"FileSystemConfigs": Match.any_value()})
    assert set(mounting) == set(record_functions(switches).values())
    for function_id in mounting:
        statements = function_statements(switches.service, function_id)
        efs = [s for s in statements if any(a.startswith("elasticfilesystem:") for a in actions(s))]
        assert [actions(s) for s in efs] == [["elasticfilesystem:ClientMount"]], function_id
        assert f"ExportsOutputRef{inference_ap_id}" in json.dumps(efs[0]["Condition"])
        assert "elasticfilesystem:ClientWrite" not in json.dumps(statements)
