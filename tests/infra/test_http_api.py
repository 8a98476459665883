"""The cheaper front door (``api_type=http``): an HTTP API that keeps what the REST API gave.

``http``: SigV4 (the default auth), custom domain, CORS, throttling, alarm mail, the
dashboard and the edge with the web ACL (us-east-1). ``http_cognito``: a JWT
authorizer on a new user pool. cdk-nag, cfn-lint and checkov run on both in
test_cdk_checks.py and test_checkov.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambda_docker.config import AppConfig, DeployConfigError

from .conftest import HTTP, Synth, cdk_json_context
from .test_api_auth import warns
from .test_storage_stack import only, resources


def routes(synth: Synth) -> dict[str, Any]:
    return resources(synth.service, "AWS::ApiGatewayV2::Route")


def test_http_api_replaces_the_rest_api(http: Synth) -> None:
    # One HTTP API, no REST API, no API Gateway account role (HTTP APIs log without it).
    only(http.service, "AWS::ApiGatewayV2::Api", {"ProtocolType": "HTTP"})
    for rest_type in ("AWS::ApiGateway::RestApi", "AWS::ApiGateway::Account", "AWS::ApiGateway::Stage"):
        http.service.resource_count_is(rest_type, 0)


def test_every_route_needs_sigv4(http: Synth) -> None:
    # api_auth=iam: every route (here the catch-all $default) is AWS_IAM.
    found = routes(http)
    assert found
    assert {r["Properties"]["AuthorizationType"] for r in found.values()} == {"AWS_IAM"}
    assert {r["Properties"]["RouteKey"] for r in found.values()} == {"$default"}


def test_routes_reach_the_live_alias_with_payload_v2(http: Synth) -> None:
    # Lambda proxy integration on the `live` alias, payload format 2.0 (the handler's v2 events).
    alias_id, _ = only(http.service, "AWS::Lambda::Alias")
    _, integration = only(http.service, "AWS::ApiGatewayV2::Integration")
    props = integration["Properties"]
    assert (props["IntegrationType"], props["PayloadFormatVersion"]) == ("AWS_PROXY", "2.0")
    assert props["IntegrationUri"] == {"Ref": alias_id}


def test_the_two_policies_name_each_route_on_the_default_stage(http: Synth) -> None:
    # The managed policies the README tells users to attach, as on the REST API: execute-api:Invoke on each
    # route of this API's $default stage but /all/... (ApiInvokePolicyArn), and /all/... alone (ApiReadAllPolicyArn).
    from classifier.api.grants import invoke_grants, read_all_grants

    api_id, _ = only(http.service, "AWS::ApiGatewayV2::Api")
    outputs = http.service.to_json()["Outputs"]
    policies = resources(http.service, "AWS::IAM::ManagedPolicy")
    for output, grants in (("ApiInvokePolicyArn", invoke_grants()), ("ApiReadAllPolicyArn", read_all_grants())):
        (statement,) = policies[outputs[output]["Value"]["Ref"]]["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Action"] == "execute-api:Invoke"
        arns = [json.dumps(arn) for arn in statement["Resource"]]
        assert all(json.dumps({"Ref": api_id}) in arn for arn in arns)
        assert {arn.rsplit('"', 2)[-2] for arn in arns} == {f"/$default/{m}{p}" for m, p in grants}, output


def test_cognito_is_a_jwt_authorizer_on_the_user_pool(http_cognito: Synth) -> None:
    # api_auth=cognito: a JWT authorizer whose issuer is the pool and whose audience is its app client.
    pool_id, _ = only(http_cognito.service, "AWS::Cognito::UserPool")
    client_id, _ = only(http_cognito.service, "AWS::Cognito::UserPoolClient")
    authorizer_id, authorizer = only(http_cognito.service, "AWS::ApiGatewayV2::Authorizer")
    props = authorizer["Properties"]
    assert (props["AuthorizerType"], props["IdentitySource"]) == ("JWT", ["$request.header.Authorization"])
    issuer = json.dumps(props["JwtConfiguration"]["Issuer"])
    assert "https://cognito-idp." in issuer and json.dumps({"Ref": pool_id}) in issuer
    assert props["JwtConfiguration"]["Audience"] == [{"Ref": client_id}]
    for route in routes(http_cognito).values():
        assert route["Properties"]["AuthorizationType"] == "JWT"
        assert route["Properties"]["AuthorizerId"] == {"Ref": authorizer_id}
    http_cognito.service.has_output("ApiUserPoolClientId", {"Value": {"Ref": client_id}})
    http_cognito.service.resource_count_is("AWS::IAM::ManagedPolicy", 0)


def test_stage_throttles_and_writes_json_access_logs(http: Synth) -> None:
    # The $default stage deploys itself, throttles as configured and logs one JSON line per request.
    _, stage = only(http.service, "AWS::ApiGatewayV2::Stage")
    props = stage["Properties"]
    assert (props["StageName"], props["AutoDeploy"]) == ("$default", True)
    assert props["DefaultRouteSettings"] == {"ThrottlingRateLimit": HTTP["throttle_rate_limit"],
                                             "ThrottlingBurstLimit": HTTP["throttle_burst_limit"]}
    log_group_id = props["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    assert log_group_id in resources(http.service, "AWS::Logs::LogGroup")
    fields = json.loads(props["AccessLogSettings"]["Format"])
    assert {"requestId", "ip", "status", "routeKey", "integrationError"} <= set(fields)


def test_cors_answers_the_configured_origins_only(http: Synth, http_cognito: Synth) -> None:
    _, api = only(http.service, "AWS::ApiGatewayV2::Api")
    assert api["Properties"]["CorsConfiguration"]["AllowOrigins"] == HTTP["cors_allow_origins"]
    _, bare = only(http_cognito.service, "AWS::ApiGatewayV2::Api")
    assert "CorsConfiguration" not in bare["Properties"]


def test_custom_domain_maps_its_root_to_the_stage(http: Synth) -> None:
    # api_domain_name: a regional TLS 1.2 domain, its root mapped to the $default stage; outputs for DNS.
    domain_id, domain = only(http.service, "AWS::ApiGatewayV2::DomainName")
    assert domain["Properties"]["DomainName"] == HTTP["api_domain_name"]
    assert domain["Properties"]["DomainNameConfigurations"] == [{
        "CertificateArn": HTTP["api_certificate_arn"], "EndpointType": "REGIONAL", "SecurityPolicy": "TLS_1_2",
    }]
    api_id, _ = only(http.service, "AWS::ApiGatewayV2::Api")
    _, mapping = only(http.service, "AWS::ApiGatewayV2::ApiMapping")
    assert mapping["Properties"] == {"ApiId": {"Ref": api_id}, "DomainName": {"Ref": domain_id}, "Stage": "$default"}
    http.service.has_output("ApiDomainUrl", {"Value": f"https://{HTTP['api_domain_name']}/"})
    http.service.has_output("ApiDomainTarget", {"Value": {"Fn::GetAtt": [domain_id, "RegionalDomainName"]}})


def test_alarms_and_the_dashboard_watch_the_http_api(http: Synth) -> None:
    # The 5xx alarm reads the HTTP API's own metric (5xx by ApiId); the dashboard graphs its latency.
    api_id, _ = only(http.service, "AWS::ApiGatewayV2::Api")
    _, alarm = only(http.service, "AWS::CloudWatch::Alarm", {"MetricName": "5xx"})
    assert alarm["Properties"]["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": api_id}}]
    _, dashboard = only(http.service, "AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    assert '\\"ApiId\\",\\"' in body and json.dumps({"Ref": api_id}) in body


def test_the_dashboard_signs_its_calls_to_the_http_api(http: Synth) -> None:
    # The dashboard's task role holds the invoke policy, and its container signs (API_SIGV4=1) calls to ApiUrl.
    policy_id = http.service.to_json()["Outputs"]["ApiInvokePolicyArn"]["Value"]["Ref"]
    task_roles = [r for r in resources(http.service, "AWS::IAM::Role").values()
                  if {"Ref": policy_id} in r["Properties"].get("ManagedPolicyArns", [])]
    assert len(task_roles) == 1
    _, task = only(http.service, "AWS::ECS::TaskDefinition")
    environment = {e["Name"]: e["Value"] for c in task["Properties"]["ContainerDefinitions"]
                   for e in c.get("Environment", [])}
    assert environment["API_SIGV4"] == "1"
    api_id, _ = only(http.service, "AWS::ApiGatewayV2::Api")
    assert json.dumps({"Ref": api_id}) in json.dumps(environment["API_URL"])


def test_the_web_acl_goes_on_the_edge_not_the_stage(http: Synth) -> None:
    # waf=true with an HTTP API: the CloudFront distribution carries the web ACL; no regional ACL or association.
    http.service.resource_count_is("AWS::WAFv2::WebACLAssociation", 0)
    acl_id, _ = only(http.service, "AWS::WAFv2::WebACL", {"Scope": "CLOUDFRONT"})
    _, distribution = only(http.service, "AWS::CloudFront::Distribution")
    config = distribution["Properties"]["DistributionConfig"]
    assert config["WebACLId"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    (origin,) = config["Origins"]
    api_id, _ = only(http.service, "AWS::ApiGatewayV2::Api")
    assert origin["DomainName"] == {"Fn::Select": [2, {"Fn::Split": ["/", {"Fn::GetAtt": [api_id, "ApiEndpoint"]}]}]}
    assert "OriginPath" not in origin  # the $default stage is the API's root
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert warns(http, "CloudFront does not forward the Authorization header")


def config(**context: Any) -> AppConfig:
    return AppConfig.from_context({**cdk_json_context(), **context}, {})


def test_waf_on_an_http_api_is_refused_at_synth() -> None:
    # AWS WAF cannot protect an HTTP API's stage: synth stops and says what to do instead.
    with pytest.raises(DeployConfigError, match=r"'waf' and 'api_type'.*edge=true"):
        config(api_type="http", waf=True)
    # ...also when the edge cannot carry the web ACL (a CloudFront web ACL exists in us-east-1 only)
    with pytest.raises(DeployConfigError, match="'waf' and 'api_type'"):
        config(api_type="http", waf=True, edge=True, **{"aws-region": "eu-west-1"})
    assert config(api_type="http", waf=True, edge=True, **{"aws-region": "us-east-1"}).waf


def test_api_keys_on_an_http_api_are_refused_at_synth() -> None:
    with pytest.raises(DeployConfigError, match="'api_type' and 'api_auth': an HTTP API has no API keys"):
        config(api_type="http", api_auth="api_key")


@pytest.mark.parametrize("auth", ["iam", "cognito", "none"])
def test_http_api_takes_every_other_auth_mode(auth: str) -> None:
    assert config(api_type="HTTP", api_auth=auth).api_type == "http"


def test_api_type_is_rest_or_http() -> None:
    with pytest.raises(DeployConfigError, match="'api_type': must be one of rest, http"):
        config(api_type="websocket")
