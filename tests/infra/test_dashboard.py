"""The dashboard (switch ``dashboard``): Streamlit on Fargate behind an ALB, in a VPC of its own.

``switches``: HTTPS with a Cognito login on a pool created here, open to any
network, SigV4 to the API. ``options``: HTTPS for a CIDR allow list with an
existing user pool, an API key, arm64. ``public``: plain HTTP for one network,
a public API.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Match

from .conftest import OPTIONS, PUBLIC, SWITCHES, Synth
from .test_storage_stack import only, resources
from helpers.dashboard import files_under, stage_build_context


def task_container(synth: Synth) -> dict[str, Any]:
    _, task = only(synth.service, "AWS::ECS::TaskDefinition")
    (container,) = task["Properties"]["ContainerDefinitions"]
    return dict(container)


def load_balancer_group(synth: Synth) -> tuple[str, dict[str, Any]]:
    _, alb = only(synth.service, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    (group,) = alb["Properties"]["SecurityGroups"]
    group_id = group["Fn::GetAtt"][0]
    return group_id, resources(synth.service, "AWS::EC2::SecurityGroup")[group_id]


def task_group_id(synth: Synth) -> str:
    _, service = only(synth.service, "AWS::ECS::Service")
    (group,) = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"]
    return str(group["Fn::GetAtt"][0])


def test_no_dashboard_by_default(default: Synth) -> None:
    # The switch is off in cdk.json: no VPC, ALB or ECS resources, no DashboardUrl.
    for type_ in ("AWS::ECS::Service", "AWS::ElasticLoadBalancingV2::LoadBalancer", "AWS::EC2::VPC"):
        default.service.resource_count_is(type_, 0)
    assert not default.service.find_outputs("DashboardUrl")


def test_fargate_service_runs_the_streamlit_image(switches: Synth) -> None:
    # One Fargate task from streamlit-docker/, listening on 8501, built for x86_64 by default.
    switches.service.has_resource_properties("AWS::ECS::Service", {"LaunchType": "FARGATE", "DesiredCount": 1})
    switches.service.has_resource_properties("AWS::ECS::TaskDefinition", {
        "RequiresCompatibilities": ["FARGATE"],
        "RuntimePlatform": {"CpuArchitecture": "X86_64", "OperatingSystemFamily": "LINUX"},
    })
    container = task_container(switches)
    assert container["PortMappings"] == [{"ContainerPort": 8501, "Protocol": "tcp"}]
    image = switches.images(switches.deployment.service)["dashboard"]
    assert image["source"]["platform"] == "linux/amd64"
    assert next(iter(image["destinations"].values()))["imageTag"] in json.dumps(container["Image"])


def test_dashboard_image_is_built_from_the_root_through_the_dockerfiles_allowlist(switches: Synth,
                                                                                  tmp_path: Path) -> None:
    # The asset is the repository root with streamlit-docker/Dockerfile, staged through the same
    # allowlist a `docker build -f streamlit-docker/Dockerfile .` reads: the dashboard and the client.
    image = switches.images(switches.deployment.service)["dashboard"]
    assert image["source"]["dockerFile"] == "streamlit-docker/Dockerfile"
    staged = files_under(switches.outdir / image["source"]["directory"])
    assert staged == stage_build_context(tmp_path / "context")
    assert {"streamlit-docker/streamlit_app.py", "model/classifier/client/api.py"} <= staged
    assert not {"model/requirements.txt", "model/classifier/api/app.py", "uv.lock", "app.py"} & staged


def test_dashboard_follows_the_architecture(options: Synth) -> None:
    # architecture=arm64: the dashboard image and its tasks run on Graviton too.
    assert options.images(options.deployment.service)["dashboard"]["source"]["platform"] == "linux/arm64"
    options.service.has_resource_properties("AWS::ECS::TaskDefinition", {
        "RuntimePlatform": {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"},
    })


def test_load_balancer_is_internet_facing_in_public_subnets(switches: Synth) -> None:
    # An application load balancer in the dashboard VPC's two public subnets.
    _, alb = only(switches.service, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert (alb["Properties"]["Scheme"], alb["Properties"]["Type"]) == ("internet-facing", "application")
    subnets = resources(switches.service, "AWS::EC2::Subnet")
    assert len(subnets) == 2
    assert all(s["Properties"]["MapPublicIpOnLaunch"] is True for s in subnets.values())
    assert sorted(ref["Ref"] for ref in alb["Properties"]["Subnets"]) == sorted(subnets)


def test_load_balancer_drops_invalid_header_fields(switches: Synth) -> None:
    # Requests with malformed header names never reach Streamlit (request smuggling guard).
    switches.service.has_resource_properties("AWS::ElasticLoadBalancingV2::LoadBalancer", {
        "LoadBalancerAttributes": Match.array_with([
            {"Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "true"},
        ]),
    })


def test_health_check_is_streamlits_own(switches: Synth) -> None:
    # The target group probes /_stcore/health and wants a 200.
    switches.service.has_resource_properties("AWS::ElasticLoadBalancingV2::TargetGroup", {
        "HealthCheckPath": "/_stcore/health",
        "Matcher": {"HttpCode": "200"},
        "TargetType": "ip",
    })


def test_deployment_circuit_breaker_rolls_back(switches: Synth) -> None:
    # A new task that never gets healthy rolls the service back instead of retrying forever.
    switches.service.has_resource_properties("AWS::ECS::Service", {
        "DeploymentConfiguration": Match.object_like({"DeploymentCircuitBreaker": {"Enable": True, "Rollback": True}}),
    })


def test_healthy_percents_let_a_redeploy_always_make_progress(switches: Synth) -> None:
    # Never below the desired count, and room for one more task to start beside the old one.
    _, service = only(switches.service, "AWS::ECS::Service")
    deployment = service["Properties"]["DeploymentConfiguration"]
    desired = service["Properties"]["DesiredCount"]
    assert deployment["MinimumHealthyPercent"] == 100
    assert desired * deployment["MaximumPercent"] // 100 >= desired + 1


def test_draining_is_short_and_sessions_stick(switches: Synth) -> None:
    # WebSocket sessions stick to their task; a draining task is let go after 30 s, not 300.
    _, group = only(switches.service, "AWS::ElasticLoadBalancingV2::TargetGroup")
    attributes = {a["Key"]: a["Value"] for a in group["Properties"]["TargetGroupAttributes"]}
    assert attributes["deregistration_delay.timeout_seconds"] == "30"
    assert (attributes["stickiness.enabled"], attributes["stickiness.type"]) == ("true", "lb_cookie")


def test_tasks_admit_only_the_load_balancer(switches: Synth) -> None:
    # The tasks' security group: one ingress rule, 8501 from the load balancer's group, nothing else.
    task_group = task_group_id(switches)
    alb_group, _ = load_balancer_group(switches)
    group = resources(switches.service, "AWS::EC2::SecurityGroup")[task_group]
    assert "SecurityGroupIngress" not in group["Properties"]
    rules = [r["Properties"] for r in resources(switches.service, "AWS::EC2::SecurityGroupIngress").values()
             if r["Properties"]["GroupId"] == {"Fn::GetAtt": [task_group, "GroupId"]}]
    assert len(rules) == 1
    (rule,) = rules
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 8501, 8501)
    assert rule["SourceSecurityGroupId"] == {"Fn::GetAtt": [alb_group, "GroupId"]}


def test_tasks_get_out_over_https_only(switches: Synth) -> None:
    # Public IPs in public subnets (no NAT gateway, no interface endpoints), egress on 443 only.
    task_group = task_group_id(switches)
    group = resources(switches.service, "AWS::EC2::SecurityGroup")[task_group]["Properties"]
    assert [(e["IpProtocol"], e["FromPort"], e["ToPort"]) for e in group["SecurityGroupEgress"]] == [("tcp", 443, 443)]
    switches.service.has_resource_properties("AWS::ECS::Service", {"NetworkConfiguration": {
        "AwsvpcConfiguration": Match.object_like({"AssignPublicIp": "ENABLED"}),
    }})
    switches.service.resource_count_is("AWS::EC2::NatGateway", 0)
    switches.service.resource_count_is("AWS::EC2::VPCEndpoint", 0)


def test_the_dashboard_vpc_logs_rejected_flows(switches: Synth) -> None:
    # Like the storage VPC: rejected traffic to a log group with the retention.
    switches.service.has_resource_properties("AWS::EC2::FlowLog", {"ResourceType": "VPC", "TrafficType": "REJECT"})


def test_storage_stack_is_untouched_by_the_switches(default: Synth, switches: Synth) -> None:
    # The dashboard has its own VPC; the data VPC keeps no route to the internet, whatever is switched on.
    assert switches.storage.to_json() == default.storage.to_json()


def test_container_logs_have_a_retention(switches: Synth) -> None:
    # awslogs to the dashboard's own log group, kept 30 days.
    options = task_container(switches)["LogConfiguration"]
    assert options["LogDriver"] == "awslogs"
    group_id = options["Options"]["awslogs-group"]["Ref"]
    assert resources(switches.service, "AWS::Logs::LogGroup")[group_id]["Properties"]["RetentionInDays"] == 30


def environment(synth: Synth) -> dict[str, Any]:
    return {v["Name"]: v["Value"] for v in task_container(synth)["Environment"]}


def test_dashboard_calls_the_rest_api_stage(switches: Synth) -> None:
    # API_URL is the stage URL the ApiUrl output shows.
    assert environment(switches)["API_URL"] == switches.service.find_outputs("ApiUrl")["ApiUrl"]["Value"]


def test_dashboard_signs_its_calls_with_a_task_role_that_may_invoke_the_api(switches: Synth) -> None:
    # api_auth=iam: API_SIGV4=1, and the task role carries the API's invoke policy; with dashboard_read_all
    # (switches) the read-all policy too, and API_READ_ALL=1 has its history show every caller's records.
    assert environment(switches)["API_SIGV4"] == "1"
    assert environment(switches)["API_READ_ALL"] == "1"
    outputs = switches.service.to_json()["Outputs"]
    invoke, read_all = (outputs[name]["Value"] for name in ("ApiInvokePolicyArn", "ApiReadAllPolicyArn"))
    _, task = only(switches.service, "AWS::ECS::TaskDefinition")
    task_role_id = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    role = resources(switches.service, "AWS::IAM::Role")[task_role_id]
    assert role["Properties"]["ManagedPolicyArns"] == [invoke, read_all]


def test_reading_all_is_not_the_dashboards_by_default(public: Synth) -> None:
    # Without dashboard_read_all the history shows the dashboard's own records (public: no auth, no key).
    assert "API_READ_ALL" not in environment(public)


def test_no_signing_without_iam(options: Synth, public: Synth) -> None:
    # api_key and none: nothing to sign, no invoke policy for the tasks.
    for synth in (options, public):
        assert "API_SIGV4" not in environment(synth)


def test_no_secret_without_an_api_key(switches: Synth) -> None:
    # api_key=false: nothing to pass, no secret created.
    assert "Secrets" not in task_container(switches)
    switches.service.resource_count_is("AWS::SecretsManager::Secret", 0)


def test_api_key_reaches_the_task_from_secrets_manager(options: Synth) -> None:
    # api_key=true: API_KEY is an ECS secret from the secret behind the API key, never a plain variable.
    secret_id, _ = only(options.service, "AWS::SecretsManager::Secret")
    container = task_container(options)
    assert container["Secrets"] == [{"Name": "API_KEY", "ValueFrom": {"Ref": secret_id}}]
    assert "API_KEY" not in json.dumps(container["Environment"])
    options.service.has_resource_properties("AWS::IAM::Policy", {"PolicyDocument": {"Statement": Match.array_with([
        Match.object_like({"Action": ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"],
                           "Resource": {"Ref": secret_id}}),
    ])}})


def test_http_listener_without_a_certificate(public: Synth) -> None:
    # No dashboard_certificate_arn: one HTTP listener on 80, forwarding to the tasks, for the one allowed network.
    _, listener = only(public.service, "AWS::ElasticLoadBalancingV2::Listener")
    assert (listener["Properties"]["Port"], listener["Properties"]["Protocol"]) == (80, "HTTP")
    assert listener["Properties"]["DefaultActions"][0]["Type"] == "forward"
    public.service.has_output("DashboardUrl", {"Value": {"Fn::Join": ["", [
        "http://", {"Fn::GetAtt": [Match.any_value(), "DNSName"]},
    ]]}})
    _, group = load_balancer_group(public)
    ingress = [(r["CidrIp"], r["FromPort"]) for r in group["Properties"]["SecurityGroupIngress"]]
    assert ingress == [(PUBLIC["dashboard_allowed_cidrs"][0], 80)]


def test_https_dashboard_open_to_all_carries_its_nag_suppression(switches: Synth) -> None:
    # Empty dashboard_allowed_cidrs behind HTTPS: 443 and 80 (redirect) from anywhere, a finding (EC23)
    # suppressed on the load balancer's group with its reason: the login.
    _, group = load_balancer_group(switches)
    ingress = {(r["CidrIp"], r["FromPort"]) for r in group["Properties"]["SecurityGroupIngress"]}
    assert ingress == {("0.0.0.0/0", 443), ("0.0.0.0/0", 80)}
    rules = {r["id"]: r["reason"] for r in group["Metadata"]["cdk_nag"]["rules_to_suppress"]}
    assert "Cognito" in rules["AwsSolutions-EC23"]


def https_listener(synth: Synth) -> dict[str, Any]:
    _, listener = only(synth.service, "AWS::ElasticLoadBalancingV2::Listener", {"Protocol": "HTTPS"})
    return dict(listener["Properties"])


def test_https_listener_logs_users_in_with_cognito_before_forwarding(switches: Synth) -> None:
    # authenticate-cognito first (the pool, client and hosted-UI domain created here), then forward.
    pool_id, pool = only(switches.service, "AWS::Cognito::UserPool")
    client_id, client = only(switches.service, "AWS::Cognito::UserPoolClient")
    domain_id, _ = only(switches.service, "AWS::Cognito::UserPoolDomain")
    login, forward = sorted(https_listener(switches)["DefaultActions"], key=lambda a: a["Order"])
    assert (login["Type"], forward["Type"]) == ("authenticate-cognito", "forward")
    config = login["AuthenticateCognitoConfig"]
    assert config["UserPoolArn"] == {"Fn::GetAtt": [pool_id, "Arn"]}
    assert config["UserPoolClientId"] == {"Ref": client_id}
    assert config["UserPoolDomain"] == {"Ref": domain_id}
    # Invited users only, with MFA; the load balancer holds the client secret and redeems codes.
    assert pool["Properties"]["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert pool["Properties"]["MfaConfiguration"] == "ON"
    props = client["Properties"]
    assert (props["GenerateSecret"], props["AllowedOAuthFlows"]) == (True, ["code"])
    assert props["CallbackURLs"] == [f"https://{SWITCHES['dashboard_domain_name']}/oauth2/idpresponse"]


def test_https_listener_uses_an_existing_user_pool(options: Synth) -> None:
    # dashboard_user_pool_id: the login uses that pool; none is created.
    options.service.resource_count_is("AWS::Cognito::UserPool", 0)
    (login,) = [a for a in https_listener(options)["DefaultActions"] if a["Type"] == "authenticate-cognito"]
    assert OPTIONS["dashboard_user_pool_id"] in json.dumps(login["AuthenticateCognitoConfig"]["UserPoolArn"])


def test_https_only_with_tls_1_2_and_port_80_only_redirects(switches: Synth) -> None:
    # A TLS 1.2+ security policy on 443; the listener on 80 answers every request with a redirect to 443.
    assert https_listener(switches)["SslPolicy"].startswith("ELBSecurityPolicy-TLS13-1-2-")
    _, http = only(switches.service, "AWS::ElasticLoadBalancingV2::Listener", {"Protocol": "HTTP"})
    (action,) = http["Properties"]["DefaultActions"]
    assert action == {"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443",
                                                            "StatusCode": "HTTP_301"}}


def test_https_listener_with_a_certificate(options: Synth) -> None:
    # dashboard_certificate_arn: HTTPS on 443 with a TLS 1.2+ policy; port 80 only redirects to it.
    options.service.has_resource_properties("AWS::ElasticLoadBalancingV2::Listener", {
        "Port": 443, "Protocol": "HTTPS",
        "Certificates": [{"CertificateArn": OPTIONS["dashboard_certificate_arn"]}],
        "SslPolicy": Match.string_like_regexp("^ELBSecurityPolicy-TLS13-1-2-"),
    })
    options.service.has_resource_properties("AWS::ElasticLoadBalancingV2::Listener", {
        "Port": 80, "Protocol": "HTTP",
        "DefaultActions": [Match.object_like({"Type": "redirect", "RedirectConfig": Match.object_like({
            "Protocol": "HTTPS", "Port": "443"})})],
    })
    options.service.resource_count_is("AWS::ElasticLoadBalancingV2::Listener", 2)
    options.service.has_output("DashboardUrl", {"Value": "https://dashboard.example.com"})
    options.service.has_output("DashboardLoadBalancer", {"Value": {"Fn::GetAtt": [Match.any_value(), "DNSName"]}})


def test_allowed_cidrs_are_the_only_way_in(options: Synth) -> None:
    # dashboard_allowed_cidrs: each block on 443 and 80, nothing open to the world, no EC23 suppression.
    _, group = load_balancer_group(options)
    ingress = {(r["CidrIp"], r["FromPort"]) for r in group["Properties"]["SecurityGroupIngress"]}
    assert ingress == {(cidr, port) for cidr in OPTIONS["dashboard_allowed_cidrs"] for port in (443, 80)}
    assert "AwsSolutions-EC23" not in json.dumps(group.get("Metadata", {}))
