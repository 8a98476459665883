"""Who is calling: the identity API Gateway or the Function URL put in the Lambda event.

Only AWS writes an event's ``requestContext`` (a client sends headers and a body,
never the context), so it is the one place a caller's identity can be read from:

| where | REST API (v1 event) | HTTP API (v2 event) |
|---|---|---|
| SigV4 (``api_auth=iam``, the Function URL) | ``identity.userArn`` | ``authorizer.iam.userArn`` |
| Cognito (``api_auth=cognito``) | ``authorizer.claims.sub`` | ``authorizer.jwt.claims.sub`` |
| API key (``api_auth=api_key``) | ``identity.apiKeyId`` | (HTTP APIs have no keys) |
| none of these (``api_auth=none``) | ``none`` | ``none`` |

Under a local server there is no event, hence no identity (``owner`` None): every
record is visible, as before ownership existed.

Reading every caller's records (``/all/...``) is a separate grant
(``Caller.may_read_all``): for SigV4 callers API Gateway enforces it, since only the
read-all policy allows ``execute-api:Invoke`` on those paths; for Cognito users it
is membership of the group ``READ_ALL_GROUP``. API keys identify rather than
authenticate, and the Function URL's invoker may call any path, so neither reads all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from classifier.aws.principals import NO_AUTH_OWNER, principal_owner
from classifier.errors import Forbidden

# The routes that read every caller's records; the read-all policy allows exactly these paths.
READ_ALL_PREFIX = "/all"
# The Cognito group whose users may read every caller's records.
READ_ALL_GROUP = "classifier-read-all"
# How the Function URL's domain is named: <url-id>.lambda-url.<region>.on.aws.
_FUNCTION_URL_MARK = ".lambda-url."

LOCAL, IAM, COGNITO, API_KEY, NONE = "local", "iam", "cognito", "api_key", "none"


@dataclass(frozen=True)
class Caller:
    """The caller of one request: its ``owner`` (None: no identity, a local server) and how it was known."""

    owner: str | None
    auth: str
    function_url: bool = False
    groups: frozenset[str] = frozenset()

    @property
    def may_read_all(self) -> bool:
        """Whether this caller may read every caller's records (the ``/all/...`` routes)."""
        if self.auth == LOCAL:
            return True
        if self.function_url:
            return False
        if self.auth == IAM:
            return True  # API Gateway let the request through: the read-all policy allows this path
        return self.auth == COGNITO and READ_ALL_GROUP in self.groups

    def require_read_all(self) -> None:
        """Raise ``Forbidden`` (403) unless this caller may read every caller's records."""
        if self.may_read_all:
            return
        how = {
            IAM: "call through the API (not the Function URL) with the ApiReadAllPolicyArn policy attached",
            COGNITO: f"be a member of the user pool group {READ_ALL_GROUP}",
        }.get(self.auth, f"use api_auth=iam or cognito (this API uses {self.auth})")
        raise Forbidden(f"reading every caller's records is a separate grant: {how}")


LOCAL_CALLER = Caller(owner=None, auth=LOCAL)


def caller_of(scope: Mapping[str, Any]) -> Caller:
    """The caller of the request whose ASGI ``scope`` this is (Mangum puts the Lambda event in it)."""
    event = scope.get("aws.event")
    if not isinstance(event, Mapping):
        return LOCAL_CALLER
    context = _mapping(event.get("requestContext"))
    if event.get("version") == "2.0":
        return _from_v2(context)
    return _from_v1(context)


def _from_v1(context: Mapping[str, Any]) -> Caller:
    identity = _mapping(context.get("identity"))
    authorizer = _mapping(context.get("authorizer"))
    claims = _mapping(authorizer.get("claims"))
    if _text(identity.get("userArn")):
        return Caller(principal_owner(identity["userArn"]), IAM)
    if _text(claims.get("sub")):
        return Caller(claims["sub"], COGNITO, groups=_groups(claims.get("cognito:groups")))
    if _text(identity.get("apiKeyId")):
        return Caller(identity["apiKeyId"], API_KEY)
    return Caller(NO_AUTH_OWNER, NONE)


def _from_v2(context: Mapping[str, Any]) -> Caller:
    authorizer = _mapping(context.get("authorizer"))
    iam = _mapping(authorizer.get("iam"))
    claims = _mapping(_mapping(authorizer.get("jwt")).get("claims"))
    function_url = _FUNCTION_URL_MARK in str(context.get("domainName", ""))
    if _text(iam.get("userArn")):
        return Caller(principal_owner(iam["userArn"]), IAM, function_url=function_url)
    if _text(claims.get("sub")):
        return Caller(claims["sub"], COGNITO, groups=_groups(claims.get("cognito:groups")))
    return Caller(NO_AUTH_OWNER, NONE, function_url=function_url)


def _groups(raw: object) -> frozenset[str]:
    """Cognito's groups claim as API Gateway passes it: a list, or text such as ``[a b]`` or ``a,b``."""
    if isinstance(raw, list | tuple):
        return frozenset(str(g) for g in raw)
    if not isinstance(raw, str):
        return frozenset()
    return frozenset(raw.strip("[]").replace(",", " ").split())


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> bool:
    return isinstance(value, str) and bool(value)
