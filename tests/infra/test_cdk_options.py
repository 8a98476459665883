"""Every option in cdk.json changes the template as the README documents.

Each test compares the ``options`` app (every option changed, see
conftest.OPTIONS) or the ``imported`` app with what the defaults produce.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match

from .conftest import IMPORTED_FILE_SYSTEM_ID, Synth
from .test_service_stack import inference_function
from .test_storage_stack import only, resources


def function_props(synth: Synth) -> dict[str, Any]:
    return dict(inference_function(synth)[1]["Properties"])


def test_name_and_environment(options: Synth) -> None:
    # name -> stack names; aws-account / aws-region -> the stacks' environment.
    storage, service = options.deployment.storage, options.deployment.service
    assert (storage.stack_name, service.stack_name) == ("acme-storage-stack", "acme-service-stack")
    assert (storage.account, storage.region) == ("111122223333", "eu-west-1")
    assert (service.account, service.region) == ("111122223333", "eu-west-1")
    assert "arn:aws:elasticfilesystem:eu-west-1:" in json.dumps(options.service.to_json())


def test_architecture_arm64(options: Synth) -> None:
    # The function runs on Graviton and its image is built for linux/arm64.
    assert function_props(options)["Architectures"] == ["arm64"]
    image = options.images(options.deployment.service)["model"]
    assert image["source"]["platform"] == "linux/arm64"


def test_backend_torch(options: Synth) -> None:
    # BACKEND reaches both the image build (installs torch) and the runtime.
    image = options.images(options.deployment.service)["model"]
    assert image["source"]["dockerBuildArgs"] == {"BACKEND": "torch"}
    assert function_props(options)["Environment"]["Variables"]["BACKEND"] == "torch"


def test_memory_timeout_and_runtime_settings(options: Synth) -> None:
    # memory_mb, timeout_seconds, model_name, models, model_refresh_seconds, inference_threads.
    props = function_props(options)
    assert (props["MemorySize"], props["Timeout"]) == (4096, 20)
    env = props["Environment"]["Variables"]
    assert (env["MODEL_NAME"], env["MODEL_REFRESH_SECONDS"], env["INFERENCE_THREADS"]) == ("resnet50-ft", "120", "2")
    assert env["MODELS"] == "defects,resnet50-ft"


def test_reserved_concurrency(options: Synth) -> None:
    # reserved_concurrency caps the function.
    assert function_props(options)["ReservedConcurrentExecutions"] == 5


def test_provisioned_concurrency_on_the_live_alias(options: Synth) -> None:
    # provisioned_concurrency keeps instances warm on the alias the API invokes.
    options.service.has_resource_properties("AWS::Lambda::Alias", {
        "Name": "live", "ProvisionedConcurrencyConfig": {"ProvisionedConcurrentExecutions": 2},
    })


def test_log_retention(options: Synth) -> None:
    # log_retention_days applies to every log group of both stacks.
    for template in (options.storage, options.service):
        template.all_resources_properties("AWS::Logs::LogGroup", {"RetentionInDays": 7})


def test_efs_removal_policy_destroy(options: Synth) -> None:
    # efs_removal_policy=destroy deletes the file system with the stack.
    options.storage.has_resource("AWS::EFS::FileSystem", {"DeletionPolicy": "Delete", "UpdateReplacePolicy": "Delete"})


def test_bucket_expirations(options: Synth) -> None:
    # inbox_expiration_days and uploads_expiration_days drive the lifecycle rules.
    options.storage.has_resource_properties("AWS::S3::Bucket", {
        "VersioningConfiguration": {"Status": "Enabled"},
        "LifecycleConfiguration": {"Rules": [Match.object_like({"ExpirationInDays": 14})]},
    })
    options.storage.has_resource_properties("AWS::S3::Bucket", {
        "LifecycleConfiguration": {"Rules": [Match.object_like({"Id": "expire-uploads", "ExpirationInDays": 3})]},
    })


def test_throttling_limits(options: Synth) -> None:
    # throttle_rate_limit / throttle_burst_limit on the stage (and on the usage plan).
    _, stage = only(options.service, "AWS::ApiGateway::Stage")
    (settings,) = stage["Properties"]["MethodSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (10, 20)


def test_cors_origins(options: Synth) -> None:
    # cors_allow_origins reaches the API's preflight and the uploads bucket's CORS rule (browsers POST uploads).
    for method in resources(options.service, "AWS::ApiGateway::Method", {"HttpMethod": "OPTIONS"}).values():
        headers = method["Properties"]["Integration"]["IntegrationResponses"][0]["ResponseParameters"]
        assert headers["method.response.header.Access-Control-Allow-Origin"] == "'https://example.com'"
    options.storage.has_resource_properties("AWS::S3::Bucket", {
        "CorsConfiguration": {"CorsRules": [Match.object_like({"AllowedOrigins": ["https://example.com"]})]},
    })


def test_api_key_and_usage_plan(options: Synth) -> None:
    # api_auth=api_key: every proxied method needs the key; a usage plan throttles it; its id is an output.
    options.service.resource_count_is("AWS::ApiGateway::ApiKey", 1)
    options.service.has_resource_properties("AWS::ApiGateway::UsagePlan", {
        "Throttle": {"RateLimit": 10, "BurstLimit": 20},
        "ApiStages": [Match.object_like({"Stage": Match.any_value()})],
    })
    options.service.resource_count_is("AWS::ApiGateway::UsagePlanKey", 1)
    for method in resources(options.service, "AWS::ApiGateway::Method").values():
        expected = method["Properties"]["HttpMethod"] != "OPTIONS"  # preflight carries no key
        assert method["Properties"]["ApiKeyRequired"] is expected
    key_id, _ = only(options.service, "AWS::ApiGateway::ApiKey")
    options.service.has_output("ApiKeyId", {"Value": {"Ref": key_id}})


def test_api_key_value_comes_from_secrets_manager(options: Synth) -> None:
    # The key's value is a generated secret, resolved by CloudFormation (never in the template); its ARN is an output.
    secret_id, secret = only(options.service, "AWS::SecretsManager::Secret")
    assert secret["Properties"]["GenerateSecretString"]["PasswordLength"] >= 20  # API Gateway's minimum
    _, key = only(options.service, "AWS::ApiGateway::ApiKey")
    assert key["Properties"]["Value"] == {"Fn::Join": ["", [
        "{{resolve:secretsmanager:", {"Ref": secret_id}, ":SecretString:::}}",
    ]]}
    options.service.has_output("ApiKeySecret", {"Value": {"Ref": secret_id}})


def test_existing_file_system_is_imported_not_created(imported: Synth) -> None:
    # efs_file_system_id: no new file system; mount targets and access points on the given one.
    imported.storage.resource_count_is("AWS::EFS::FileSystem", 0)
    targets = resources(imported.storage, "AWS::EFS::MountTarget")
    assert len(targets) == 2
    assert all(t["Properties"]["FileSystemId"] == IMPORTED_FILE_SYSTEM_ID for t in targets.values())
    imported.storage.all_resources_properties("AWS::EFS::AccessPoint", {"FileSystemId": IMPORTED_FILE_SYSTEM_ID})


def test_functions_wait_for_the_imported_file_systems_mount_targets(imported: Synth) -> None:
    # Mounting fails until a mount target exists in the function's AZ.
    targets = set(resources(imported.storage, "AWS::EFS::MountTarget"))
    installer = resources(imported.storage, "AWS::Lambda::Function", {"Handler": "classifier.store.installer.handler"})
    (props,) = installer.values()
    assert targets <= set(props.get("DependsOn", []))
    assert imported.deployment.storage in imported.deployment.service.dependencies


def test_imported_file_system_grants_name_it(imported: Synth) -> None:
    # The installer's ClientWrite permission (the only one) names the imported file system.
    _, policy = only(imported.storage, "AWS::IAM::Policy", {"PolicyName": Match.string_like_regexp("Installer")})
    assert f"file-system/{IMPORTED_FILE_SYSTEM_ID}" in json.dumps(policy["Properties"]["PolicyDocument"])


def alarm_actions(template: Any, props: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    _, alarm = only(template, "AWS::CloudWatch::Alarm", props)
    return alarm["Properties"].get("AlarmActions", []), alarm["Properties"].get("OKActions", [])


API_5XX = {"Namespace": "AWS/ApiGateway", "MetricName": "5XXError"}
DEAD_LETTERS = {"Namespace": "AWS/SQS"}


def test_api_server_errors_alarm_without_a_topic_by_default(default: Synth) -> None:
    # With alarm_email unset the 5xx alarm exists (console, later subscriptions) but notifies no one.
    default.service.has_resource_properties("AWS::CloudWatch::Alarm", {
        **API_5XX, "Statistic": "Sum", "Period": 300, "Threshold": 5,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "notBreaching",
    })
    assert alarm_actions(default.service, API_5XX) == ([], [])
    default.service.resource_count_is("AWS::SNS::Topic", 0)
    assert "AlarmTopicArn" not in default.service.to_json()["Outputs"]


def test_alarm_email_subscribes_an_encrypted_topic_to_every_alarm(options: Synth) -> None:
    # alarm_email: one topic, KMS-encrypted with a key CloudWatch may use, TLS only, the address
    # subscribed; the API 5xx alarm and the dead-letter alarm notify it on ALARM and on OK.
    topic_id, topic = only(options.service, "AWS::SNS::Topic")
    key_ref = topic["Properties"]["KmsMasterKeyId"]
    key_id, key = only(options.service, "AWS::KMS::Key")
    assert key_ref == {"Fn::GetAtt": [key_id, "Arn"]}
    assert key["Properties"]["EnableKeyRotation"] is True
    grants = [s for s in key["Properties"]["KeyPolicy"]["Statement"]
              if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert [set(s["Action"]) for s in grants] == [{"kms:Decrypt", "kms:GenerateDataKey*"}]
    options.service.has_resource_properties("AWS::SNS::TopicPolicy", {
        "PolicyDocument": {"Statement": Match.array_with([Match.object_like({
            "Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        })])},
    })
    options.service.has_resource_properties("AWS::SNS::Subscription", {
        "Protocol": "email", "Endpoint": "ops@example.com", "TopicArn": {"Ref": topic_id},
    })
    for props in (API_5XX, DEAD_LETTERS):
        assert alarm_actions(options.service, props) == ([{"Ref": topic_id}], [{"Ref": topic_id}])
    options.service.has_output("AlarmTopicArn", {"Value": {"Ref": topic_id}})
