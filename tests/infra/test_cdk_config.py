"""The deploy-time config: cdk.json context, validated once into ``AppConfig`` (no synthesis)."""

from __future__ import annotations

from typing import Any

import pytest

from lambda_docker.config import AppConfig, DeployConfigError

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
    # The documented defaults: demo stacks, onnx on x86_64, SigV4 on the API, no CORS, EFS kept on delete.
    cfg = config()
    assert (cfg.storage_stack_name, cfg.service_stack_name) == ("demo-storage-stack", "demo-service-stack")
    assert (cfg.backend, cfg.architecture, cfg.memory_mb, cfg.timeout_seconds) == ("onnx", "x86_64", 3008, 28)
    assert cfg.reserved_concurrency is None and cfg.provisioned_concurrency == 0
    assert cfg.api_auth == "iam" and cfg.cors_allow_origins == () and not (cfg.waf or cfg.tracing)
    assert cfg.efs_removal_policy == "retain" and cfg.efs_file_system_id is None
    assert not (cfg.dashboard or cfg.function_url or cfg.edge or cfg.classify_on_upload)
    assert cfg.dashboard_certificate_arn is None and cfg.dashboard_domain_name is None
    assert cfg.dashboard_allowed_cidrs == () and cfg.function_url_invoker_principal is None
    assert cfg.records_ttl_days == 365
    assert cfg.bulk is True and cfg.bulk_source_bucket is None
    assert (cfg.bulk_max_concurrency, cfg.bulk_tolerated_failure_percent) == (10, 5)


def test_command_line_strings_are_parsed() -> None:
    # `cdk synth -c key=value` passes strings; they mean the same as JSON values.
    cfg = config(memory_mb="4096", api_auth="API_KEY", reserved_concurrency="10", provisioned_concurrency="3",
                 cors_allow_origins="https://a.example,https://b.example", architecture="ARM64")
    assert cfg.memory_mb == 4096 and cfg.api_auth == "api_key"
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
    ("models", ["Defects"]),
    ("models", "*,defects"),
    ("models", ["resnet50", "../x"]),
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
    ("api_auth", "oauth"),
    ("api_user_pool_id", "my-pool"),
    ("api_domain_name", "https://api.example.com"),
    ("api_certificate_arn", "my-certificate"),
    ("waf", "maybe"),
    ("waf_rate_limit", 5),
    ("tracing", "xray"),
    ("alarm_latency_p99_ms", 30_000),
    ("records_ttl_days", -1),
    ("bulk", "often"),
    ("bulk_max_concurrency", 0),
    ("bulk_tolerated_failure_percent", 101),
    ("bulk_source_bucket", "My_Images"),
    ("bulk_source_bucket", "s3://images"),
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
    ("dashboard_user_pool_id", "pool"),
    ("dashboard_allowed_cidrs", ["203.0.113.0/24", "203.0.113.0/24"]),
    ("function_url_invoker_principal", "everyone"),
    ("function_url_invoker_principal", "arn:aws:iam::111122223333:group/admins"),
    ("function_url_invoker_principal", "12345"),
])
def test_a_wrong_value_names_its_key(key: str, value: Any) -> None:
    # Synth stops before building anything, with a message naming the key.
    with pytest.raises(DeployConfigError, match=f"'{key}'"):
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
    with pytest.raises(DeployConfigError, match=r"'dashboard_certificate_arn'.*us-east-1.*eu-west-1"):
        config(**{"aws-region": "eu-west-1", "dashboard_certificate_arn": arn})


def test_models_from_cdk_json_or_the_command_line() -> None:
    # A JSON list or -c models=a,b; the default model (model_name) among them, or every model with "*".
    assert config(models=["resnet50", "defects"]).models == ("resnet50", "defects")
    assert config(models="defects, resnet50").models == ("defects", "resnet50")
    assert config(models="*").models == ("*",) and config(models="[]").models == ()
    with pytest.raises(DeployConfigError, match=r"'model_name'.*'models'.*must be one of models"):
        config(models="defects,products")
    assert config(model_name="defects", models="defects,products").model_name == "defects"


def test_provisioned_concurrency_cannot_exceed_reserved() -> None:
    # Lambda would reject it at deploy time; synth rejects it first.
    with pytest.raises(DeployConfigError, match=r"'provisioned_concurrency'.*'reserved_concurrency'"):
        config(reserved_concurrency=2, provisioned_concurrency=3)


def test_an_unknown_key_is_a_typo() -> None:
    # A misspelt option would otherwise be silently ignored.
    with pytest.raises(DeployConfigError, match="'memroy_mb'"):
        config(memroy_mb=4096)


def test_keys_the_cdk_cli_writes_are_left_alone() -> None:
    # Feature flags, cached lookups and `cdk acknowledge` live in the same context.
    cfg = config(**{"acknowledged-issue-numbers": [32775], "cli-telemetry": False,
                    "availability-zones:account=123456789012:region=eu-west-1": ["eu-west-1a"],
                    "@aws-cdk/core:newStyleStackSynthesis": True})
    assert cfg == AppConfig()


CERTIFICATE = "arn:aws:acm:eu-west-1:111122223333:certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"


def test_api_key_is_replaced_by_api_auth() -> None:
    # An old cdk.json's api_key is refused with the key that replaces it, not ignored.
    with pytest.raises(DeployConfigError, match=r"'api_key' is replaced by 'api_auth'.*api_auth=api_key"):
        config(api_key=True)


def test_empty_lists_from_the_command_line() -> None:
    # -c cors_allow_origins= and an empty JSON list both mean none.
    assert config(cors_allow_origins="[]").cors_allow_origins == ()
    assert config(dashboard_allowed_cidrs=[]).dashboard_allowed_cidrs == ()


def test_api_domain_and_certificate_go_together() -> None:
    # A name without a certificate (or the reverse) cannot make a custom domain.
    with pytest.raises(DeployConfigError, match=r"'api_domain_name' and 'api_certificate_arn'"):
        config(api_domain_name="api.example.com")
    with pytest.raises(DeployConfigError, match=r"'api_domain_name' and 'api_certificate_arn'"):
        config(api_certificate_arn=CERTIFICATE)
    cfg = config(api_domain_name="API.example.com", api_certificate_arn=CERTIFICATE)
    assert (cfg.api_domain_name, cfg.api_certificate_arn) == ("api.example.com", CERTIFICATE)


def test_api_certificate_must_be_in_the_stacks_region() -> None:
    # A regional custom domain takes a certificate of its own region only.
    with pytest.raises(DeployConfigError, match=r"'api_certificate_arn'.*eu-west-1.*us-east-1"):
        config(**{"aws-region": "us-east-1", "api_domain_name": "api.example.com", "api_certificate_arn": CERTIFICATE})


def test_user_pool_ids_that_would_be_ignored_are_refused() -> None:
    # api_user_pool_id means nothing without api_auth=cognito, dashboard_user_pool_id nothing without HTTPS.
    with pytest.raises(DeployConfigError, match="'api_user_pool_id'"):
        config(api_user_pool_id="eu-west-1_AbC123xyz")
    assert config(api_auth="cognito", api_user_pool_id="eu-west-1_AbC123xyz").api_user_pool_id == "eu-west-1_AbC123xyz"
    with pytest.raises(DeployConfigError, match=r"'dashboard_user_pool_id'.*'dashboard_certificate_arn'"):
        config(dashboard_user_pool_id="eu-west-1_AbC123xyz")


def test_dashboard_cannot_call_a_cognito_api() -> None:
    # The dashboard has no user token to send; synth says so instead of deploying a broken UI.
    with pytest.raises(DeployConfigError, match=r"'dashboard' and 'api_auth'"):
        config(dashboard=True, api_auth="cognito", dashboard_certificate_arn=CERTIFICATE)


@pytest.mark.parametrize("cidrs", [[], ["0.0.0.0/0"], ["203.0.113.0/24", "0.0.0.0/0"]])
def test_synth_refuses_a_plain_http_dashboard_open_to_the_internet(cidrs: list[str]) -> None:
    # No certificate means no TLS and no login: the keys to fix are named.
    named = r"'dashboard', 'dashboard_certificate_arn' and 'dashboard_allowed_cidrs'"
    with pytest.raises(DeployConfigError, match=named):
        config(dashboard=True, dashboard_allowed_cidrs=cidrs)


def test_a_dashboard_is_allowed_behind_https_or_for_named_networks() -> None:
    # A certificate (HTTPS and a login) may face the internet; plain HTTP only a network narrower than it.
    assert config(dashboard=True, dashboard_certificate_arn=CERTIFICATE).dashboard_allowed_cidrs == ()
    assert config(dashboard=True, dashboard_certificate_arn=CERTIFICATE,
                  dashboard_allowed_cidrs=["0.0.0.0/0"]).dashboard_allowed_cidrs == ("0.0.0.0/0",)
    assert config(dashboard=True, dashboard_allowed_cidrs=["10.0.0.0/8"]).dashboard_allowed_cidrs == ("10.0.0.0/8",)
