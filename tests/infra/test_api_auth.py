"""Who may call the REST API (context ``api_auth``): iam by default, cognito, api_key, none.

``default``: iam. ``imported``: cognito with an existing user pool.
``options``: api_key. ``public``: none, CORS for any origin.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Annotations, Match

from .conftest import IMPORTED_USER_POOL_ID, Synth
from .test_storage_stack import only, resources


def methods(synth: Synth, *, preflight: bool = False) -> dict[str, Any]:
    found = resources(synth.service, "AWS::ApiGateway::Method")
    return {k: v for k, v in found.items() if (v["Properties"]["HttpMethod"] == "OPTIONS") is preflight}


def both_methods(synth: Synth, *, preflight: bool = False) -> list[dict[str, Any]]:
    """The API's two methods (``/`` and ``/{proxy+}``, or their preflights): a check made on each of
    them cannot pass on an API that has none."""
    found = methods(synth, preflight=preflight)
    paths = sorted(json.dumps(m["Properties"]["ResourceId"]) for m in found.values())
    assert len(found) == 2 and len(set(paths)) == 2, f"expected a method on / and on /{{proxy+}}, found {paths}"
    return [m["Properties"] for m in found.values()]


def warns(synth: Synth, text: str) -> bool:
    # has_warning raises when nothing matches (find_warning cannot hand its matches back to Python).
    try:
        Annotations.from_stack(synth.deployment.service).has_warning("*", Match.string_like_regexp(text))
    except Exception:  # jsii wraps the assertion error
        return False
    return True


def test_every_method_needs_sigv4_by_default(default: Synth) -> None:
    # api_auth=iam: / and /{proxy+} (every method) are AWS_IAM; there is no preflight without CORS origins.
    assert {m["AuthorizationType"] for m in both_methods(default)} == {"AWS_IAM"}
    assert not methods(default, preflight=True)


def test_invoke_policy_allows_this_stage_only_and_is_an_output(default: Synth) -> None:
    # execute-api:Invoke, GET and POST on the prod stage of this API, nothing else; ApiInvokePolicyArn names it.
    api_id, _ = only(default.service, "AWS::ApiGateway::RestApi")
    policy_id, policy = only(default.service, "AWS::IAM::ManagedPolicy")
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "execute-api:Invoke")
    arns = [json.dumps(arn) for arn in statement["Resource"]]
    assert len(arns) == 2
    assert all(json.dumps({"Ref": api_id}) in arn for arn in arns)
    assert {arn.rsplit('"', 2)[-2] for arn in arns} == {"/prod/GET/*", "/prod/POST/*"}
    default.service.has_output("ApiInvokePolicyArn", {"Value": {"Ref": policy_id}})


def test_cognito_authorizes_every_method_with_the_given_pool(imported: Synth) -> None:
    # api_auth=cognito with api_user_pool_id: an authorizer on that pool, on every method; no pool created.
    authorizer_id, authorizer = only(imported.service, "AWS::ApiGateway::Authorizer")
    props = authorizer["Properties"]
    assert (props["Type"], props["IdentitySource"]) == ("COGNITO_USER_POOLS", "method.request.header.Authorization")
    assert IMPORTED_USER_POOL_ID in json.dumps(props["ProviderARNs"])
    for method in both_methods(imported):
        assert method["AuthorizationType"] == "COGNITO_USER_POOLS"
        assert method["AuthorizerId"] == {"Ref": authorizer_id}
    imported.service.resource_count_is("AWS::Cognito::UserPool", 0)
    imported.service.resource_count_is("AWS::IAM::ManagedPolicy", 0)
    imported.service.has_output("ApiUserPoolId", {"Value": IMPORTED_USER_POOL_ID})


def test_api_key_mode_wants_the_key_and_nothing_else(options: Synth) -> None:
    # api_auth=api_key: keys identify and throttle (test_cdk_options); no IAM or Cognito authorization.
    for method in both_methods(options):
        assert (method["AuthorizationType"], method["ApiKeyRequired"]) == ("NONE", True)
    options.service.resource_count_is("AWS::ApiGateway::Authorizer", 0)
    options.service.resource_count_is("AWS::IAM::ManagedPolicy", 0)
    assert not options.service.find_outputs("ApiInvokePolicyArn")


def test_preflight_carries_no_authorization(options: Synth, public: Synth) -> None:
    # Browsers send OPTIONS without credentials, so preflight stays open under every mode.
    for synth in (options, public):
        for method in both_methods(synth, preflight=True):
            assert (method["AuthorizationType"], method.get("ApiKeyRequired", False)) == ("NONE", False)


def test_none_is_public_and_warns(public: Synth, default: Synth) -> None:
    # api_auth=none: no authorization at all, an explicit choice that synth reports.
    for method in both_methods(public):
        assert method["AuthorizationType"] == "NONE"
        assert method.get("ApiKeyRequired", False) is False
    assert warns(public, "api_auth=none: anyone on the internet may call the API")
    assert not warns(default, "api_auth=none")


def test_cors_for_any_origin_warns(public: Synth, options: Synth) -> None:
    # '*' stays possible, never silent; listed origins do not warn.
    for method in both_methods(public, preflight=True):
        headers = method["Integration"]["IntegrationResponses"][0]["ResponseParameters"]
        assert headers["method.response.header.Access-Control-Allow-Origin"] == "'*'"
        assert "X-Amz-Security-Token" in headers["method.response.header.Access-Control-Allow-Headers"]
    assert warns(public, "cors_allow_origins is '\\*'")
    assert not warns(options, "cors_allow_origins")


def test_cognito_creates_a_user_pool_and_a_client_when_none_is_given() -> None:
    # api_auth=cognito without api_user_pool_id: a pool of invited users with MFA, an SRP client without a
    # secret (scripts cannot keep one), and the authorizer on that pool. The API construct alone, synthesized.
    from aws_cdk import App, Stack
    from aws_cdk import aws_lambda as lambda_
    from aws_cdk.assertions import Template

    from lambda_docker.api import ClassificationRestApi
    from lambda_docker.config import AppConfig

    stack = Stack(App(), "CognitoApi")
    handler = lambda_.Function(stack, "Handler", runtime=lambda_.Runtime.PYTHON_3_12, handler="index.handler",
                               code=lambda_.Code.from_inline("def handler(event, context):\n    return {}\n"))
    api = ClassificationRestApi(stack, "Api", handler=handler, config=AppConfig(api_auth="cognito"))
    template = Template.from_stack(stack)
    pool_id, pool = only(template, "AWS::Cognito::UserPool")
    assert pool["Properties"]["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert pool["Properties"]["MfaConfiguration"] == "ON"
    assert pool["DeletionPolicy"] == "Retain"
    _, client = only(template, "AWS::Cognito::UserPoolClient")
    assert client["Properties"]["GenerateSecret"] is False
    assert "ALLOW_USER_SRP_AUTH" in client["Properties"]["ExplicitAuthFlows"]
    _, authorizer = only(template, "AWS::ApiGateway::Authorizer")
    assert authorizer["Properties"]["ProviderARNs"] == [{"Fn::GetAtt": [pool_id, "Arn"]}]
    assert api.access.user_pool_client is not None
