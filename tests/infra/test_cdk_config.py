"""The deploy-time config: cdk.json context, validated once into ``AppConfig`` (no synthesis)."""

from __future__ import annotations

from typing import Any

import pytest

from lambda_docker.config import AppConfig, ConfigError

from .conftest import IMPORTED, OPTIONS, cdk_json_context


def config(**context: Any) -> AppConfig:
    return AppConfig.from_context({**cdk_json_context(), **context}, {})


def test_cdk_json_lists_every_option_with_the_code_defaults() -> None:
    # cdk.json documents every key, and its values are the defaults the code uses.
    context = cdk_json_context()
    assert set(AppConfig.context_keys()) <= set(context)
    assert AppConfig.from_context(context, {}) == AppConfig()


def test_the_option_fixtures_cover_every_context_key() -> None:
    # "every option changes the template" is only shown for options the suite changes.
    assert set(OPTIONS) | set(IMPORTED) == set(AppConfig.context_keys())


def test_defaults() -> None:
    # The documented defaults: demo stacks, onnx on x86_64, no API key, EFS kept on delete.
    cfg = config()
    assert (cfg.storage_stack_name, cfg.service_stack_name) == ("demo-storage-stack", "demo-service-stack")
    assert (cfg.backend, cfg.architecture, cfg.memory_mb, cfg.timeout_seconds) == ("onnx", "x86_64", 3008, 28)
    assert cfg.reserved_concurrency is None and cfg.provisioned_concurrency == 0
    assert cfg.api_key is False and cfg.efs_removal_policy == "retain" and cfg.efs_file_system_id is None
    assert not (cfg.dashboard or cfg.function_url or cfg.edge or cfg.classify_on_upload)
    assert cfg.dashboard_certificate_arn is None and cfg.dashboard_domain_name is None
    assert cfg.dashboard_allowed_cidrs == ("0.0.0.0/0",) and cfg.function_url_invoker_principal is None
    assert cfg.records_ttl_days == 365
    assert cfg.bulk is True and cfg.bulk_source_bucket is None
    assert (cfg.bulk_max_concurrency, cfg.bulk_tolerated_failure_percent) == (10, 5)


def test_command_line_strings_are_parsed() -> None:
    # `cdk synth -c key=value` passes strings; they mean the same as JSON values.
    cfg = config(memory_mb="4096", api_key="true", reserved_concurrency="10", provisioned_concurrency="3",
                 cors_allow_origins="https://a.example,https://b.example", architecture="ARM64")
    assert cfg.memory_mb == 4096 and cfg.api_key is True
    assert (cfg.reserved_concurrency, cfg.provisioned_concurrency) == (10, 3)
    assert cfg.cors_allow_origins == ("https://a.example", "https://b.example")
    assert cfg.architecture == "arm64"


def test_account_and_region_fall_back_to_the_cli_defaults() -> None:
    # Without aws-account / aws-region, the CLI's CDK_DEFAULT_* (from credentials) apply.
    env = {"CDK_DEFAULT_ACCOUNT": "123456789012", "CDK_DEFAULT_REGION": "eu-central-1"}
    cfg = AppConfig.from_context(cdk_json_context(), env)
    assert (cfg.aws_account, cfg.aws_region) == ("123456789012", "eu-central-1")
    explicit = AppConfig.from_context({**cdk_json_context(), "aws-account": "111122223333",
                                       "aws-region": "us-west-2"}, env)
    assert (explicit.aws_account, explicit.aws_region) == ("111122223333", "us-west-2")


@pytest.mark.parametrize(("key", "value"), [
    ("aws-account", "12345"),
    ("aws-region", "mars"),
    ("name", "Demo Stack"),
    ("model_name", "ResNet/50"),
    ("backend", "tensorflow"),
    ("architecture", "sparc"),
    ("memory_mb", 64),
    ("memory_mb", "lots"),
    ("memory_mb", True),
    ("timeout_seconds", 29),
    ("reserved_concurrency", 0),
    ("provisioned_concurrency", -1),
    ("model_refresh_seconds", 90_000),
    ("inference_threads", 1000),
    ("log_retention_days", 42),
    ("efs_removal_policy", "snapshot"),
    ("efs_file_system_id", "my-filesystem"),
    ("inbox_expiration_days", 0),
    ("uploads_expiration_days", 0),
    ("records_ttl_days", -1),
    ("bulk", "often"),
    ("bulk_max_concurrency", 0),
    ("bulk_tolerated_failure_percent", 101),
    ("bulk_source_bucket", "My_Images"),
    ("bulk_source_bucket", "s3://images"),
    ("api_key", "maybe"),
    ("throttle_rate_limit", 0),
    ("throttle_burst_limit", 10_000),
    ("cors_allow_origins", "example.com"),
    ("cors_allow_origins", ["*", "https://example.com"]),
    ("alarm_email", "ops"),
    ("alarm_email", "ops@example.com, dev@example.com"),
    ("dashboard", "yes please"),
    ("function_url", 1),
    ("edge", "on"),
    ("classify_on_upload", "sometimes"),
    ("dashboard_certificate_arn", "arn:aws:iam::111122223333:server-certificate/dashboard"),
    ("dashboard_certificate_arn", "my-certificate"),
    ("dashboard_domain_name", "https://dashboard.example.com"),
    ("dashboard_domain_name", "dashboard"),
    ("dashboard_allowed_cidrs", "203.0.113.7"),
    ("dashboard_allowed_cidrs", ["203.0.113.1/24"]),
    ("dashboard_allowed_cidrs", ["2001:db8::/32"]),
    ("dashboard_allowed_cidrs", []),
    ("dashboard_allowed_cidrs", ["203.0.113.0/24", "203.0.113.0/24"]),
    ("function_url_invoker_principal", "everyone"),
    ("function_url_invoker_principal", "arn:aws:iam::111122223333:group/admins"),
    ("function_url_invoker_principal", "12345"),
])
def test_a_wrong_value_names_its_key(key: str, value: Any) -> None:
    # Synth stops before building anything, with a message naming the key.
    with pytest.raises(ConfigError, match=f"'{key}'"):
        config(**{key: value})


def test_feature_keys_from_the_command_line() -> None:
    # -c dashboard_allowed_cidrs=a,b and friends: strings, normalised.
    cfg = config(dashboard_allowed_cidrs="203.0.113.0/24, 198.51.100.7/32", dashboard_domain_name="Dash.Example.com",
                 function_url_invoker_principal="444455556666", dashboard="TRUE")
    assert cfg.dashboard_allowed_cidrs == ("203.0.113.0/24", "198.51.100.7/32")
    assert cfg.dashboard_domain_name == "dash.example.com"
    assert cfg.function_url_invoker_principal == "444455556666" and cfg.dashboard is True


def test_dashboard_certificate_must_be_in_the_stacks_region() -> None:
    # An ALB can only use an ACM certificate of its own region; synth says so before CloudFormation does.
    arn = "arn:aws:acm:us-east-1:111122223333:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
    assert config(**{"aws-region": "us-east-1", "dashboard_certificate_arn": arn}).dashboard_certificate_arn == arn
    with pytest.raises(ConfigError, match=r"'dashboard_certificate_arn'.*us-east-1.*eu-west-1"):
        config(**{"aws-region": "eu-west-1", "dashboard_certificate_arn": arn})


def test_provisioned_concurrency_cannot_exceed_reserved() -> None:
    # Lambda would reject it at deploy time; synth rejects it first.
    with pytest.raises(ConfigError, match=r"'provisioned_concurrency'.*'reserved_concurrency'"):
        config(reserved_concurrency=2, provisioned_concurrency=3)


def test_an_unknown_key_is_a_typo() -> None:
    # A misspelt option would otherwise be silently ignored.
    with pytest.raises(ConfigError, match="'memroy_mb'"):
        config(memroy_mb=4096)


def test_keys_the_cdk_cli_writes_are_left_alone() -> None:
    # Feature flags, cached lookups and `cdk acknowledge` live in the same context.
    cfg = config(**{"acknowledged-issue-numbers": [32775], "cli-telemetry": False,
                    "availability-zones:account=123456789012:region=eu-west-1": ["eu-west-1a"],
                    "@aws-cdk/core:newStyleStackSynthesis": True})
    assert cfg == AppConfig()
