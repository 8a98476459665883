"""The service stack as cdk.json configures it: the inference function and the REST API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from aws_cdk.assertions import Match

from .conftest import Synth
from .test_storage_stack import function_statements, only, resources, uploads_bucket
from helpers import ROOT


def inference_function(synth: Synth) -> tuple[str, dict[str, Any]]:
    # The image's own CMD (the API handler); the upload classifier overrides it.
    return only(synth.service, "AWS::Lambda::Function", {"PackageType": "Image", "ImageConfig": Match.absent()})


def test_function_is_a_container_image_from_model_dir(default: Synth) -> None:
    # PackageType Image, built from model/ (its Dockerfile) at deploy time, not at synth.
    _, function = inference_function(default)
    assert "ImageUri" in function["Properties"]["Code"]
    images = default.images(default.deployment.service)
    assert list(images) == ["model"]
    source = images["model"]["source"]
    assert (default.outdir / source["directory"] / "Dockerfile").is_file()
    assert source.get("platform") == "linux/amd64"
    assert source.get("dockerBuildArgs") == {"BACKEND": "onnx"}


def test_function_mounts_the_store_through_the_inference_access_point(default: Synth) -> None:
    # /mnt/store, through the access point whose POSIX user is 1000 (read models, write records).
    inference_ap_id, _ = only(default.storage, "AWS::EFS::AccessPoint", {"PosixUser": {"Uid": "1000"}})
    _, function = inference_function(default)
    (config,) = function["Properties"]["FileSystemConfigs"]
    assert config["LocalMountPath"] == "/mnt/store"
    assert f"ExportsOutputRef{inference_ap_id}" in json.dumps(config["Arn"])


def test_function_environment(default: Synth) -> None:
    # The runtime's settings (model/classifier/config.py), from cdk.json's defaults.
    _, function = inference_function(default)
    env = function["Properties"]["Environment"]["Variables"]
    assert {k: env[k] for k in ("MODEL_STORE", "MODEL_NAME", "MODELS", "BACKEND", "MODEL_REFRESH_SECONDS",
                                "ROLLOUT_JUDGE_SECONDS", "INFERENCE_THREADS")} == {
        "MODEL_STORE": "/mnt/store", "MODEL_NAME": "resnet50", "MODELS": "resnet50", "BACKEND": "onnx",
        # read-only EFS: the function never judges a rollout (the rollout judge does, through the installer)
        "MODEL_REFRESH_SECONDS": "30", "ROLLOUT_JUDGE_SECONDS": "0", "INFERENCE_THREADS": "0",
    }
    uploads_id, _ = uploads_bucket(default)
    assert f"ExportsOutputRef{uploads_id}" in json.dumps(env["UPLOADS_BUCKET"])


def test_the_bench_runs_the_handler_with_the_functions_settings(default: Synth) -> None:
    # make bench measures the cold start Lambda pays: where the function's environment differs from a
    # local server's defaults, the bench's processes get the function's value (bench/run.py).
    _, function = inference_function(default)
    env = function["Properties"]["Environment"]["Variables"]
    printed = subprocess.run([sys.executable, "-c", "import json, run; print(json.dumps(run.LAMBDA_SETTINGS))"],
                             cwd=ROOT / "bench", capture_output=True, text=True, check=True).stdout
    settings = json.loads(printed)
    assert settings, "the bench sets none of the function's settings"
    assert {key: env.get(key) for key in settings} == settings


def test_the_functions_numpy_starts_no_spinning_blas_threads(default: Synth) -> None:
    # numpy's OpenBLAS starts a thread per core at import unless told not to; those threads spin and
    # take a core from the model load (docs/performance.md). With the function's environment, importing
    # numpy leaves the process with its one thread.
    _, function = inference_function(default)
    env = function["Properties"]["Environment"]["Variables"]
    count = "import os, numpy; print(len(os.listdir('/proc/self/task')))"
    threads = subprocess.run([sys.executable, "-c", count], capture_output=True, text=True, check=True,
                             env={**os.environ, "OPENBLAS_NUM_THREADS": env["OPENBLAS_NUM_THREADS"]}).stdout
    assert int(threads) == 1


def test_function_size_and_timeout(default: Synth) -> None:
    # x86_64, 3008 MB, and a timeout below API Gateway's 29 s; 50 concurrent executions reserved by default:
    # the most the API runs (and costs) at once, and what the other functions cannot take from it.
    _, function = inference_function(default)
    props = function["Properties"]
    assert (props["Architectures"], props["MemorySize"]) == (["x86_64"], 3008)
    assert props["Timeout"] < 29
    assert props["ReservedConcurrentExecutions"] == 50


def test_function_runs_in_the_isolated_subnets_with_its_security_group(default: Synth) -> None:
    # The security group the storage stack admits to NFS.
    inference_group, _ = only(default.storage, "AWS::EC2::SecurityGroup",
                              {"GroupDescription": Match.string_like_regexp("^The inference function")})
    _, function = inference_function(default)
    vpc = function["Properties"]["VpcConfig"]
    assert inference_group in json.dumps(vpc["SecurityGroupIds"])
    assert len(vpc["SubnetIds"]) == 2


def test_function_logs_have_a_retention(default: Synth) -> None:
    # Its own log group, 30 days.
    _, function = inference_function(default)
    group_id = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    assert resources(default.service, "AWS::Logs::LogGroup")[group_id]["Properties"]["RetentionInDays"] == 30


def test_api_invokes_the_live_alias_without_provisioned_concurrency(default: Synth) -> None:
    # The alias is always there, so turning provisioned concurrency on never changes the API.
    alias_id, alias = only(default.service, "AWS::Lambda::Alias")
    assert alias["Properties"]["Name"] == "live"
    assert "ProvisionedConcurrencyConfig" not in alias["Properties"]
    proxies = resources(default.service, "AWS::ApiGateway::Method", {"Integration": {"Type": "AWS_PROXY"}})
    assert len(proxies) == 2  # / and /{proxy+}
    for method in proxies.values():
        assert {"Ref": alias_id} in method["Properties"]["Integration"]["Uri"]["Fn::Join"][1]


def test_function_may_use_only_the_uploads_prefix(default: Synth) -> None:
    # Read and write uploads/* of the uploads bucket; nothing on the inbox (the deferral of refused
    # records aside: tests/infra/test_records.py).
    function_id, _ = inference_function(default)
    s3 = [s for s in function_statements(default.service, function_id)
          if "s3:" in json.dumps(s["Action"]) and "RecordsDeferred" not in json.dumps(s)]
    assert {json.dumps(s["Action"]) for s in s3} == {'["s3:GetObject", "s3:PutObject"]', '"s3:ListBucket"'}
    inbox_id, _ = only(default.storage, "AWS::S3::Bucket", {"VersioningConfiguration": {"Status": "Enabled"}})
    assert inbox_id not in json.dumps(s3)
    assert "/uploads/*" in json.dumps(s3)


def test_api_has_binary_media_types_for_images_and_multipart(default: Synth) -> None:
    # Without them API Gateway would mangle image bytes into UTF-8 text.
    default.service.has_resource_properties("AWS::ApiGateway::RestApi", {
        "BinaryMediaTypes": Match.array_with(["image/*", "multipart/form-data", "application/octet-stream"]),
        "EndpointConfiguration": {"Types": ["REGIONAL"]},
    })


def test_api_stage_throttles_and_writes_json_access_logs(default: Synth) -> None:
    # 50 req/s, bursts of 100; JSON access logs to a log group with retention; execution errors logged.
    logs_ids = [k for k, v in resources(default.service, "AWS::Logs::LogGroup").items()
                if v["Properties"]["RetentionInDays"] == 30]
    _, stage = only(default.service, "AWS::ApiGateway::Stage")
    props = stage["Properties"]
    assert props["StageName"] == "prod"
    (settings,) = props["MethodSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (50, 100)
    assert (settings["LoggingLevel"], settings["DataTraceEnabled"]) == ("ERROR", False)
    assert json.loads(props["AccessLogSetting"]["Format"])["status"] == "$context.status"
    assert any(group in json.dumps(props["AccessLogSetting"]["DestinationArn"]) for group in logs_ids)


def test_no_cors_by_default(default: Synth) -> None:
    # cors_allow_origins is empty: no preflight methods, so browsers refuse cross-origin calls.
    assert not resources(default.service, "AWS::ApiGateway::Method", {"HttpMethod": "OPTIONS"})


def test_no_api_key_by_default(default: Synth) -> None:
    # SigV4 (api_auth=iam) is the default: no key, no usage plan, no method wants one.
    default.service.resource_count_is("AWS::ApiGateway::ApiKey", 0)
    default.service.resource_count_is("AWS::ApiGateway::UsagePlan", 0)
    for method in resources(default.service, "AWS::ApiGateway::Method").values():
        assert method["Properties"].get("ApiKeyRequired", False) is False


def test_outputs(default: Synth) -> None:
    # What a user needs after `cdk deploy`: the URL, where to publish models, the function.
    alias_function_id, _ = inference_function(default)
    stage_id, _ = only(default.service, "AWS::ApiGateway::Stage")
    api_url = json.dumps(default.service.find_outputs("ApiUrl"))
    assert "https://" in api_url and json.dumps({"Ref": stage_id}) in api_url
    default.service.has_output("InboxBucket", {"Value": {"Fn::ImportValue": Match.string_like_regexp("InboxBucket")}})
    default.service.has_output("FunctionName", {"Value": {"Ref": alias_function_id}})
    assert not default.service.find_outputs("ApiKeyId")


def test_service_stack_depends_on_the_storage_stack(default: Synth) -> None:
    # Deploying the service deploys (or requires) the storage first.
    assert default.deployment.storage in default.deployment.service.dependencies
