"""The caller of a request, read from the Lambda event that API Gateway or the Function URL wrote
(classifier.api.identity), and what it may read, through the Lambda handler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from classifier.api.identity import READ_ALL_GROUP, Caller, caller_of

from helpers.lambda_events import FakeContext, LambdaResponse, make_event, read_response
from helpers.photos import jpeg

ROLE_SESSION = "arn:aws:sts::123456789012:assumed-role/pipeline/i-0abc"
ROLE = "arn:aws:sts::123456789012:assumed-role/pipeline"
SUB = "3f1c2a6d-7e80-4b1e-9a55-0c6d2b8e1f42"
KEY_ID = "a1b2c3d4e5"
HTTP_API_DOMAIN = "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"


def event(kind: str, *, iam: str | None = None, claims: dict[str, Any] | None = None, api_key: str | None = None,
          domain: str | None = None, method: str = "GET", path: str = "/classifications",
          body: bytes | None = None, content_type: str | None = None) -> dict[str, Any]:
    """A real sample event (tests/events) with the identity fields AWS fills for each kind of caller."""
    built = make_event(kind, method, path, body=body, content_type=content_type)
    context = built["requestContext"]
    if kind == "v1":
        if iam:
            context["identity"].update(userArn=iam, caller=iam.rsplit("/", 1)[-1], accessKey="ASIAEXAMPLE")
        if api_key:
            context["identity"]["apiKeyId"] = api_key
        if claims is not None:
            context["authorizer"] = {"claims": claims}
    else:
        if domain:
            context["domainName"] = domain
        if iam:
            context["authorizer"] = {"iam": {"userArn": iam, "accessKey": "ASIAEXAMPLE", "accountId": "123456789012"}}
        if claims is not None:
            context["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    return built


@pytest.mark.parametrize(("name", "built", "expected"), [
    ("REST, SigV4", event("v1", iam=ROLE_SESSION), Caller(ROLE, "iam")),
    ("REST, Cognito", event("v1", claims={"sub": SUB, "cognito:groups": "a,classifier-read-all"}),
     Caller(SUB, "cognito", groups=frozenset({"a", READ_ALL_GROUP}))),
    ("REST, API key", event("v1", api_key=KEY_ID), Caller(KEY_ID, "api_key")),
    ("REST, no auth", event("v1"), Caller("none", "none")),
    ("HTTP API, SigV4", event("v2", iam=ROLE_SESSION, domain=HTTP_API_DOMAIN), Caller(ROLE, "iam")),
    ("HTTP API, JWT", event("v2", claims={"sub": SUB, "cognito:groups": "[ops classifier-read-all]"},
                            domain=HTTP_API_DOMAIN),
     Caller(SUB, "cognito", groups=frozenset({"ops", READ_ALL_GROUP}))),
    ("HTTP API, no auth", event("v2", domain=HTTP_API_DOMAIN), Caller("none", "none")),
    ("Function URL", event("v2", iam=ROLE_SESSION), Caller(ROLE, "iam", function_url=True)),
])
def test_the_caller_comes_from_the_request_context(name: str, built: dict[str, Any], expected: Caller) -> None:
    assert caller_of({"type": "http", "aws.event": built}) == expected


def test_a_local_server_has_no_caller_and_headers_name_none() -> None:
    # No event: a local server. Headers are the client's to write, so none of them is an identity.
    local = caller_of({"type": "http", "headers": [(b"x-amzn-oidc-identity", b"admin")]})
    assert local.owner is None and local.may_read_all
    spoofed = event("v1")
    spoofed["headers"].update({"x-amz-user-arn": ROLE, "x-api-key": "k"})
    assert caller_of({"type": "http", "aws.event": spoofed}) == Caller("none", "none")


@pytest.mark.parametrize(("caller", "may"), [
    (Caller(ROLE, "iam"), True),  # API Gateway allowed /all/... for it: the read-all policy
    (Caller(ROLE, "iam", function_url=True), False),  # the Function URL's invoker may call any path
    (Caller(SUB, "cognito", groups=frozenset({READ_ALL_GROUP})), True),
    (Caller(SUB, "cognito", groups=frozenset({"readers"})), False),
    (Caller(KEY_ID, "api_key"), False),  # a key identifies, it does not authenticate
    (Caller("none", "none"), False),
])
def test_who_may_read_every_callers_records(caller: Caller, may: bool) -> None:
    assert caller.may_read_all is may


# -- through the Lambda handler -------------------------------------------------------------------


def call(handler: Any, built: dict[str, Any]) -> LambdaResponse:
    return read_response(handler(built, FakeContext()))


def classify(handler: Any, kind: str, **identity: Any) -> dict[str, Any]:
    response = call(handler, event(kind, method="POST", path="/classify", body=jpeg("chelsea"),
                                   content_type="image/jpeg", **identity))
    assert response.status == 200, response.body
    record: dict[str, Any] = response.json()
    return record


def test_api_key_callers_see_their_own_records_and_cannot_read_all(handler_and_store: tuple[Any, Path]) -> None:
    handler, _ = handler_and_store
    # GIVEN a record made with one API key
    record = classify(handler, "v1", api_key=KEY_ID)
    assert record["owner"] == KEY_ID
    # THEN that key lists and reads it; another key neither lists nor reads it (404, as unknown)
    assert record["id"] in [r["id"] for r in call(handler, event("v1", api_key=KEY_ID)).json()["items"]]
    assert call(handler, event("v1", api_key="otherkey01")).json()["items"] == []
    other = call(handler, event("v1", api_key="otherkey01", path=f"/classifications/{record['id']}"))
    assert (other.status, other.json()["error"]["code"]) == (404, "not_found")
    # AND no key reads every caller's records
    refused = call(handler, event("v1", api_key=KEY_ID, path="/all/classifications"))
    assert (refused.status, refused.json()["error"]["code"]) == (403, "forbidden")


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_cognito_users_read_all_only_in_the_group(handler_and_store: tuple[Any, Path], kind: str) -> None:
    handler, _ = handler_and_store
    domain = HTTP_API_DOMAIN if kind == "v2" else None
    record = classify(handler, kind, claims={"sub": SUB}, domain=domain)
    assert record["owner"] == SUB
    member = call(handler, event(kind, claims={"sub": "ops-user", "cognito:groups": READ_ALL_GROUP}, domain=domain,
                                 path="/all/classifications", method="GET"))
    assert member.status == 200 and record["id"] in [r["id"] for r in member.json()["items"]]
    outsider = call(handler, event(kind, claims={"sub": "someone"}, domain=domain, path="/all/classifications"))
    assert (outsider.status, outsider.json()["error"]["code"]) == (403, "forbidden")


def test_the_function_url_never_reads_all(handler_and_store: tuple[Any, Path]) -> None:
    handler, _ = handler_and_store
    refused = call(handler, event("v2", iam=ROLE_SESSION, path="/all/classifications"))
    assert (refused.status, refused.json()["error"]["code"]) == (403, "forbidden")
    assert "Function URL" in refused.json()["error"]["message"]
