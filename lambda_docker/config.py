"""The deployment's settings: CDK context read once, typed and validated.

``app.py`` builds an ``AppConfig`` from the context (``cdk.json`` plus any
``-c key=value``) before any construct exists; constructs receive typed values
and never read context themselves. A wrong value stops ``cdk synth`` with a
message that names the key.

Each field carries its parser (``option(default, parser)``), and
``AppConfig.from_context`` reads every field with its own. Values from
``cdk.json`` arrive as JSON types, values from ``-c key=value`` as strings:
every parser accepts both (``4096`` and ``"4096"``, ``true`` and ``"true"``).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any, TypeVar

from aws_cdk import aws_logs as logs

from classifier.config import EVERY_MODEL, MODEL_NAME_RE, Settings
from classifier.records.keys import DEFAULT_FAMILIES, DEFAULT_SHARDS, MAX_SHARDS, KeyLayout, parse_families

T = TypeVar("T")

ARCHITECTURES = ("x86_64", "arm64")
BACKENDS = ("onnx", "torch")
REMOVAL_POLICIES = ("retain", "destroy")
# Who may call the REST API: SigV4-signed IAM principals, users of a Cognito user
# pool, holders of an API key (which identifies, it does not authenticate), or anyone.
API_AUTH_MODES = ("iam", "cognito", "api_key", "none")

# The retention periods CloudWatch Logs accepts, in days, and the name of the
# matching ``aws_logs.RetentionDays`` member (jsii enums carry names, not numbers).
RETENTION_DAYS = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS",
    30: "ONE_MONTH", 60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS",
    150: "FIVE_MONTHS", 180: "SIX_MONTHS", 365: "ONE_YEAR", 400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1096: "THREE_YEARS", 1827: "FIVE_YEARS",
    2192: "SIX_YEARS", 2557: "SEVEN_YEARS", 2922: "EIGHT_YEARS", 3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}

# API Gateway (REST) gives up on an integration after 29 s; the function must
# finish first so that a slow request is a clean Lambda timeout, not a 504
# from a request that is still running.
API_GATEWAY_TIMEOUT_SECONDS = 29

_ACCOUNT_RE = re.compile(r"^\d{12}$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
# Stack names are "<name>-storage-stack": keep <name> short and DNS-friendly.
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,23}$")
_FS_ID_RE = re.compile(r"^fs-[0-9a-f]{8,40}$")
# A Cognito user pool id: <region>_<id>.
_USER_POOL_ID_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d_[0-9A-Za-z]{1,50}$")
_ORIGIN_RE = re.compile(r"^(\*|https?://[^\s/]+)$")
# An ACM certificate: arn:<partition>:acm:<region>:<account>:certificate/<id>.
_CERTIFICATE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:acm:([a-z]{2}(?:-[a-z]+)+-\d):\d{12}:certificate/[0-9a-f-]{36}$")
# A DNS name such as dashboard.example.com (at least two labels, no trailing dot).
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
# Who may assume the Function URL's invoker role: an account id, or an IAM
# account root, role or user ARN.
_PRINCIPAL_RE = re.compile(
    r"^(\d{12}|arn:aws[a-z-]*:iam::\d{12}:(root|role/[\w+=,.@/-]{1,512}|user/[\w+=,.@/-]{1,512}))$"
)
# Where alarm notifications go: one address, checked for shape only (SNS
# mails it a confirmation link).
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# An S3 bucket name (general purpose buckets: 3-63 characters, no "..").
_BUCKET_NAME_RE = re.compile(r"^(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

# Options are snake_case; an unknown snake_case key is most likely a misspelt
# option. Other keys belong to the CDK and its CLI (feature flags, lookups
# cached in cdk.context.json, "acknowledged-issue-numbers", ...) and pass.
_OPTION_KEY_RE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


class DeployConfigError(ValueError):
    """A context value is missing or wrong; the message names the key."""


# -- parsers: each takes the raw value and returns it typed, or raises ValueError


def _optional(parse: Callable[[Any], T]) -> Callable[[Any], T | None]:
    def parse_optional(raw: Any) -> T | None:
        if isinstance(raw, str) and raw.strip().lower() in ("null", "none"):
            return None
        return parse(raw)

    return parse_optional


def _int(lo: int, hi: int) -> Callable[[Any], int]:
    def parse_int(raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ValueError("must be an integer")
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("must be an integer") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return value

    return parse_int


def _bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    raise ValueError("must be true or false")


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse_choice(raw: Any) -> str:
        if not isinstance(raw, str) or raw.strip().lower() not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return raw.strip().lower()

    return parse_choice


def _pattern(regex: re.Pattern[str], what: str) -> Callable[[Any], str]:
    def parse_pattern(raw: Any) -> str:
        if not isinstance(raw, str) or not regex.fullmatch(raw.strip()):
            raise ValueError(f"must be {what}")
        return raw.strip()

    return parse_pattern


def _retention(raw: Any) -> int:
    days = _int(1, 3653)(raw)
    if days not in RETENTION_DAYS:
        raise ValueError(f"must be one of CloudWatch's periods: {', '.join(map(str, RETENTION_DAYS))}")
    return days


def _origins(raw: Any) -> tuple[str, ...]:
    """A JSON list (cdk.json), or a comma-separated string (``-c cors_allow_origins=a,b``); empty: no CORS."""
    origins = tuple(_string_list(raw))
    for origin in origins:
        if not _ORIGIN_RE.fullmatch(origin):
            raise ValueError(f"{origin!r} is not '*' or an origin like https://example.com")
    if "*" in origins and len(origins) > 1:
        raise ValueError("'*' cannot be combined with other origins")
    return origins


def _records_indexes(raw: Any) -> tuple[str, ...]:
    """A list of the records table's index families (classifier.records.keys.FAMILIES), ``time`` among them."""
    return parse_families(_string_list(raw))


def _string_list(raw: Any) -> list[str]:
    """A JSON list (cdk.json), or a comma-separated string (``-c key=a,b``)."""
    if isinstance(raw, str):
        text = raw.strip()
        items = json.loads(text) if text.startswith("[") else text.split(",")
    else:
        items = raw
    if not isinstance(items, list):
        raise ValueError("must be a list")
    return [str(item).strip() for item in items if str(item).strip()]


def _models(raw: Any) -> tuple[str, ...]:
    """The names of the models the functions serve (MODELS), or ``["*"]`` for every model of the store."""
    names = tuple(dict.fromkeys(_string_list(raw)))
    if EVERY_MODEL in names:
        if len(names) > 1:
            raise ValueError(f"is either [\"{EVERY_MODEL}\"] (every model of the store) or a list of names")
        return names
    for name in names:
        if not MODEL_NAME_RE.fullmatch(name):
            raise ValueError(f"{name!r} is not a model name (1-64 lowercase letters, digits, '-' or '_')")
    return names


def _cidrs(raw: Any) -> tuple[str, ...]:
    cidrs = []
    for item in _string_list(raw):
        try:
            if "/" not in item:  # a bare address would silently mean /32
                raise ValueError
            network = ipaddress.IPv4Network(item, strict=True)
        except ValueError:
            # The load balancer listens on IPv4 only: an IPv6 block would admit no one.
            raise ValueError(f"{item!r} is not an IPv4 CIDR block like 203.0.113.0/24") from None
        cidrs.append(str(network))
    if len(set(cidrs)) != len(cidrs):
        raise ValueError("lists a CIDR block twice")
    return tuple(cidrs)


def _certificate_arn(raw: Any) -> str:
    return _pattern(_CERTIFICATE_ARN_RE, "an ACM certificate ARN "
                                         "(arn:aws:acm:<region>:<account>:certificate/<id>)")(raw)


def _certificate_region(arn: str) -> str:
    match = _CERTIFICATE_ARN_RE.fullmatch(arn)
    assert match is not None
    return match.group(1)


def _domain(raw: Any) -> str:
    if not isinstance(raw, str) or not _DOMAIN_RE.fullmatch(raw.strip().lower()):
        raise ValueError("must be a DNS name such as dashboard.example.com")
    return raw.strip().lower()


# -- a field's reading: which context key, which parser, which default


@dataclass(frozen=True)
class _Option:
    parse: Callable[[Any], Any]
    # The context key when it is not the field's name (the account and region keys use '-').
    key: str | None = None
    # An environment variable whose value, when set, replaces the field's default.
    default_from: str | None = None


_OPTION = "option"


def option(default: T, parse: Callable[[Any], T], *, key: str | None = None, default_from: str | None = None) -> T:
    """An ``AppConfig`` field read from the context with ``parse`` (an absent, null or empty value: ``default``)."""
    return field(default=default, metadata={_OPTION: _Option(parse, key, default_from)})


def _option_of(config_field: Field[Any]) -> _Option:
    reading = config_field.metadata[_OPTION]
    assert isinstance(reading, _Option), f"AppConfig.{config_field.name} is not declared with option()"
    return reading


def _context_key(config_field: Field[Any]) -> str:
    return _option_of(config_field).key or config_field.name


@dataclass(frozen=True)
class AppConfig:
    """Every deploy-time option. Field names are the context keys with ``_``."""

    # Where and what: stacks are "<name>-storage-stack" and "<name>-service-stack".
    aws_account: str | None = option(None, _optional(_pattern(_ACCOUNT_RE, "a 12-digit account id")),
                                     key="aws-account", default_from="CDK_DEFAULT_ACCOUNT")
    aws_region: str | None = option(None, _optional(_pattern(_REGION_RE, "a region such as eu-west-1")),
                                    key="aws-region", default_from="CDK_DEFAULT_REGION")
    name: str = option("demo", _pattern(_NAME_RE, "1-24 lowercase letters, digits or '-', starting with a letter"))
    model_name: str = option(Settings.model_name,
                             _pattern(MODEL_NAME_RE, "1-64 lowercase letters, digits, '-' or '_'"))
    # The models the inference function serves (MODELS), model_name among them; empty: model_name alone.
    models: tuple[str, ...] = option((), _models)

    # The inference function.
    backend: str = option("onnx", _choice(BACKENDS))
    architecture: str = option("x86_64", _choice(ARCHITECTURES))
    # 3008 MB (~1.8 vCPUs) is the most a new account may use before a quota
    # increase; ResNet-50 inference speeds up with vCPUs up to 10240 MB.
    memory_mb: int = option(3008, _int(128, 10_240))
    timeout_seconds: int = option(28, _int(1, API_GATEWAY_TIMEOUT_SECONDS - 1))
    reserved_concurrency: int | None = option(None, _optional(_int(1, 1000)))
    provisioned_concurrency: int = option(0, _int(0, 1000))
    model_refresh_seconds: int = option(30, _int(0, 86_400))
    inference_threads: int = option(0, _int(0, 256))  # 0: one per CPU the function may use
    log_retention_days: int = option(30, _retention)

    # Storage.
    efs_removal_policy: str = option("retain", _choice(REMOVAL_POLICIES))
    efs_file_system_id: str | None = option(None, _optional(_pattern(_FS_ID_RE, "an id like fs-0123abcd")))
    inbox_expiration_days: int = option(30, _int(1, 3650))
    uploads_expiration_days: int = option(1, _int(1, 365))
    # Classification records (DynamoDB) expire this many days after creation; 0 keeps them.
    records_ttl_days: int = option(365, _int(0, 36_500))
    # Records at volume (docs/bulk-and-records.md): each index partition key in this many shards,
    # and the indexes the table has, each one more write unit a record (None: time and owner, or
    # time and label with api_auth=none, where every record's owner is "none").
    records_shards: int = option(DEFAULT_SHARDS, _int(1, MAX_SHARDS))
    records_indexes: tuple[str, ...] | None = option(None, _optional(_records_indexes))

    # Bulk classification (switch bulk): a Step Functions Distributed Map over an S3 prefix.
    # Its batches run this many at once, each one worker invocation: the Lambda concurrency a job takes.
    bulk_max_concurrency: int = option(10, _int(1, 1000))
    # A job fails when more than this share of its batches still fails after the retries.
    bulk_tolerated_failure_percent: int = option(5, _int(0, 100))
    # The bucket jobs may read; None: the uploads bucket.
    bulk_source_bucket: str | None = option(None, _optional(_pattern(_BUCKET_NAME_RE, "an S3 bucket name")))

    # The REST API: who may call it (docs/security.md), its throttling, which
    # browser origins may call it (empty: no CORS; '*' is allowed, with a warning).
    api_auth: str = option("iam", _choice(API_AUTH_MODES))
    # api_auth=cognito: the user pool whose users may call; None: one is created.
    api_user_pool_id: str | None = option(None, _optional(_pattern(_USER_POOL_ID_RE, "a user pool id such as "
                                                                                      "eu-west-1_AbC123xyz")))
    throttle_rate_limit: int = option(50, _int(1, 10_000))
    throttle_burst_limit: int = option(100, _int(1, 5_000))
    cors_allow_origins: tuple[str, ...] = option((), _origins)
    # A stable URL: the API under this name, with this ACM certificate (in the stacks' region).
    api_domain_name: str | None = option(None, _optional(_domain))
    api_certificate_arn: str | None = option(None, _optional(_certificate_arn))
    # A WAF web ACL on the API stage (AWS's common rule set, and at most
    # waf_rate_limit requests per IP in 5 minutes); see docs/security.md for its cost.
    waf: bool = option(False, _bool)
    waf_rate_limit: int = option(1000, _int(10, 2_000_000_000))
    # X-Ray traces of the API stage and the functions.
    tracing: bool = option(False, _bool)

    # Alarms (API 5xx, 5xx rate, p99 latency; the upload classifier's dead-letter
    # queue) notify this address through an SNS topic; None: the alarms have no action.
    alarm_email: str | None = option(None, _optional(_pattern(_EMAIL_RE, "an email address")))
    # The API's p99 latency (API Gateway's Latency) that, held for 15 minutes, is an alarm.
    alarm_latency_p99_ms: int = option(3000, _int(100, API_GATEWAY_TIMEOUT_SECONDS * 1000))

    # The switches of docs/deploy.md, each a construct wired by the service stack.
    dashboard: bool = option(False, _bool)
    function_url: bool = option(False, _bool)
    edge: bool = option(False, _bool)
    classify_on_upload: bool = option(False, _bool)
    bulk: bool = option(True, _bool)

    # The dashboard (switch dashboard): HTTPS with this ACM certificate (in the
    # stacks' region) and a Cognito login (users of dashboard_user_pool_id, or of
    # a pool created here); the name users reach it by; which networks may reach
    # it (empty: any). Without a certificate: plain HTTP without a login, which
    # synth allows only for dashboard_allowed_cidrs narrower than the internet.
    dashboard_certificate_arn: str | None = option(None, _optional(_certificate_arn))
    dashboard_domain_name: str | None = option(None, _optional(_domain))
    dashboard_allowed_cidrs: tuple[str, ...] = option((), _cidrs)
    dashboard_user_pool_id: str | None = option(None, _optional(_pattern(_USER_POOL_ID_RE, "a user pool id such as "
                                                                                            "eu-west-1_AbC123xyz")))

    # The Function URL (switch function_url): who may assume the invoker role;
    # None means this account (its root principal).
    function_url_invoker_principal: str | None = option(None, _optional(_pattern(
        _PRINCIPAL_RE,
        "a 12-digit account id or an IAM ARN of an account root, role or user (arn:aws:iam::<account>:role/<name>)",
    )))

    @property
    def records_layout(self) -> KeyLayout:
        """The records table's indexes and shards: the context keys, or the defaults for ``api_auth``."""
        default = ("time", "label") if self.api_auth == "none" else DEFAULT_FAMILIES
        return KeyLayout(self.records_indexes or default, self.records_shards)

    @property
    def storage_stack_name(self) -> str:
        return f"{self.name}-storage-stack"

    @property
    def service_stack_name(self) -> str:
        return f"{self.name}-service-stack"

    @property
    def log_retention(self) -> logs.RetentionDays:
        """``log_retention_days`` as every log group's retention."""
        return logs.RetentionDays[RETENTION_DAYS[self.log_retention_days]]

    @classmethod
    def context_keys(cls) -> list[str]:
        return [_context_key(f) for f in fields(cls)]

    @classmethod
    def from_context(cls, context: Mapping[str, Any], environ: Mapping[str, str]) -> AppConfig:
        """Validate ``context`` (all of the app's context) into a config.

        ``environ`` supplies ``CDK_DEFAULT_ACCOUNT`` / ``CDK_DEFAULT_REGION``,
        which the CDK CLI sets from the caller's credentials, when the
        context names no account or region.
        """
        cls._refuse_unknown_keys(context)
        values: dict[str, Any] = {}
        for config_field in fields(cls):
            reading = _option_of(config_field)
            default = (environ.get(reading.default_from) or None) if reading.default_from else config_field.default
            values[config_field.name] = _read(context, _context_key(config_field), reading.parse, default)
        config = cls(**values)
        config._check_provisioned_within_reserved()
        config._check_default_model_is_served()
        config._check_certificate_region("dashboard_certificate_arn", "a load balancer")
        config._check_certificate_region("api_certificate_arn", "a regional API domain")
        config._check_api_domain()
        config._check_user_pools()
        config._check_dashboard_exposure()
        return config

    @classmethod
    def _refuse_unknown_keys(cls, context: Mapping[str, Any]) -> None:
        if "api_key" in context:
            raise DeployConfigError("context key 'api_key' is replaced by 'api_auth': use api_auth=api_key "
                              f"(or one of {', '.join(API_AUTH_MODES)}) and remove api_key")
        known = set(cls.context_keys())
        unknown = sorted(k for k in context if k not in known and _OPTION_KEY_RE.fullmatch(k))
        if unknown:
            raise DeployConfigError(
                f"unknown context key {unknown[0]!r}; known keys: {', '.join(sorted(known))}"
            )

    def _check_provisioned_within_reserved(self) -> None:
        reserved, provisioned = self.reserved_concurrency, self.provisioned_concurrency
        if reserved is not None and provisioned > reserved:
            raise DeployConfigError(
                f"context key 'provisioned_concurrency' ({provisioned}) must not exceed "
                f"'reserved_concurrency' ({reserved})"
            )

    def _check_default_model_is_served(self) -> None:
        if self.models and EVERY_MODEL not in self.models and self.model_name not in self.models:
            raise DeployConfigError(
                f"context keys 'model_name' ({self.model_name}) and 'models' ({', '.join(self.models)}): "
                "model_name is the model POST /classify serves, so it must be one of models"
            )

    def _check_certificate_region(self, key: str, user: str) -> None:
        certificate, region = getattr(self, key), self.aws_region
        if certificate is not None and region is not None and _certificate_region(certificate) != region:
            raise DeployConfigError(
                f"context key {key!r}: the certificate is in "
                f"{_certificate_region(certificate)}, the stacks deploy to {region}; {user} "
                "can only use a certificate from its own region"
            )

    def _check_api_domain(self) -> None:
        if (self.api_domain_name is None) != (self.api_certificate_arn is None):
            raise DeployConfigError("context keys 'api_domain_name' and 'api_certificate_arn' go together: the custom "
                              "domain needs a certificate for that name, and a certificate alone names no domain")

    def _check_user_pools(self) -> None:
        # A pool id that would be silently ignored is a mistake worth stopping for.
        if self.api_user_pool_id is not None and self.api_auth != "cognito":
            raise DeployConfigError(f"context key 'api_user_pool_id' applies to api_auth=cognito only "
                              f"(api_auth is {self.api_auth!r})")
        if self.dashboard_user_pool_id is not None and self.dashboard_certificate_arn is None:
            raise DeployConfigError("context key 'dashboard_user_pool_id' needs 'dashboard_certificate_arn': "
                              "the load balancer logs users in over HTTPS only")
        if self.dashboard and self.api_auth == "cognito":
            raise DeployConfigError("context keys 'dashboard' and 'api_auth': the dashboard cannot call an API that "
                              "wants a Cognito user's token (it has none); use api_auth=iam (the dashboard "
                              "signs its calls with its task role) or api_key")

    def _check_dashboard_exposure(self) -> None:
        if not self.dashboard or self.dashboard_certificate_arn is not None:
            return
        if not self.dashboard_allowed_cidrs or any(cidr.endswith("/0") for cidr in self.dashboard_allowed_cidrs):
            raise DeployConfigError(
                "context keys 'dashboard', 'dashboard_certificate_arn' and 'dashboard_allowed_cidrs': without a "
                "certificate the dashboard is plain HTTP with no login, so it must not be open to the internet "
                "(0.0.0.0/0, or an empty list: any network). Set dashboard_certificate_arn (HTTPS and a Cognito "
                "login), or list your networks in dashboard_allowed_cidrs"
            )


def _read(context: Mapping[str, Any], key: str, parse: Callable[[Any], T], default: T) -> T:
    raw = context.get(key)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except (ValueError, TypeError) as exc:
        raise DeployConfigError(f"context key {key!r}: {exc} (got {raw!r})") from None
