"""The dashboard (switch ``dashboard``): the Streamlit UI from streamlit-docker/ on Fargate behind an ALB.

The UI holds no state and no model; it calls the REST API (``API_URL``) like
any client: with ``api_auth=iam`` it signs each call with its task role's
credentials (``API_SIGV4=1``; the role may invoke the API), with
``api_auth=api_key`` it sends ``API_KEY``, read from Secrets Manager. Its
history shows the records its own role made, or, with ``dashboard_read_all``
(a deliberate grant: every dashboard user then sees every caller's records),
every caller's (``API_READ_ALL=1``; the task role gets the read-all policy).

Exposure (docs/security.md). With ``dashboard_certificate_arn``: HTTPS only
(a TLS 1.2+ policy; port 80 only redirects to 443) and every request passes a
Cognito login on the load balancer (``authenticate-cognito``) before it
reaches a task; reachable from ``dashboard_allowed_cidrs``, or from anywhere
when that list is empty. Without a certificate: plain HTTP without a login,
which ``AppConfig`` allows only from networks narrower than the internet.

Networking. The dashboard gets a small VPC of its own, in the service stack:
two public subnets, an internet gateway, no NAT gateway. The load balancer and
the tasks sit in the public subnets; each task has a public IP, so it pulls
its image from ECR, ships its logs, reads its secret and calls the public API
over the internet gateway at no charge per hour, while its security group
admits nothing but the load balancer on 8501 (a public IP does not make a
task reachable). The alternative, keeping the tasks in isolated subnets,
would need interface endpoints for ECR (api and dkr), CloudWatch Logs and
Secrets Manager, about 7 USD a month each per AZ (~58 USD a month for two
AZs), and still an internet gateway for an internet-facing load balancer;
and an execute-api endpoint with private DNS would make the public API
unreachable from that VPC. A VPC of its own keeps the storage stack's VPC, where EFS
and the functions live, without any route to the internet, and turning the
dashboard on or off never touches the storage stack.

Redeploys never hang (issue 5: the well-known sample's redeploys waited
until someone stopped tasks by hand): see ``MIN_HEALTHY_PERCENT``.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Annotations, Duration, IgnoreMode, RemovalPolicy
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_ecs_patterns as ecs_patterns
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_elasticloadbalancingv2_actions as elbv2_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from lambda_docker.auth import DashboardLogin
from lambda_docker.checkov import LOG_GROUP_KMS, CheckovSkip, accept_finding, skip_checks
from lambda_docker.config import AppConfig
from lambda_docker.network import log_rejected_flows, vpc_without_nat
from lambda_docker.paths import DASHBOARD_DIR

CONTAINER_PORT = 8501  # streamlit-docker/Dockerfile: STREAMLIT_SERVER_PORT
HEALTH_CHECK_PATH = "/_stcore/health"  # Streamlit's own liveness endpoint
DESIRED_COUNT = 1
# With one task, 100/200 means: start the new task beside the old one (room
# for 200%), wait until the ALB finds it healthy, then stop the old one (never
# below 100%, so the UI never goes away during a deploy). ECS always has room
# to make progress; the known hang comes from max 100% (no room for a new
# task while min 100% forbids stopping the old one). A new task that never
# gets healthy trips the circuit breaker, which rolls back to the last
# working task definition instead of retrying forever.
MIN_HEALTHY_PERCENT = 100
MAX_HEALTHY_PERCENT = 200
# Streamlit starts in a few seconds; the grace period covers a slow image pull.
HEALTH_CHECK_GRACE = Duration.seconds(60)
# Streamlit sessions are WebSockets that a draining task cannot hand over;
# waiting ALB's default 300 s for them only makes every deploy 5 minutes
# longer. Clients reconnect to the new task by themselves.
DEREGISTRATION_DELAY_SECONDS = 30
# A session's uploads (POST /_stcore/upload_file) must reach the task that
# holds its WebSocket; during a deploy two tasks run, so stick to one.
STICKINESS = Duration.hours(1)
# 0.5 vCPU / 1 GiB: Streamlit, pandas and Pillow resizing a few images per session.
CPU = 512
MEMORY_MIB = 1024
HTTPS_PORT = 443
HTTP_PORT = 80
# Who may reach an HTTPS dashboard when dashboard_allowed_cidrs is empty: anyone, to log in.
ANYWHERE = ("0.0.0.0/0",)
# The finding cdk-nag reports for ecr:GetAuthorizationToken, which has no resource scoping.
ECR_AUTHORIZATION_RESOURCE = "Resource::*"


class Dashboard(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        api_url: str,
        api_key_secret: secretsmanager.ISecret | None,
        api_invoke_policy: iam.IManagedPolicy | None,
        api_read_all_policy: iam.IManagedPolicy | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        https = config.dashboard_certificate_arn is not None
        allowed_cidrs = config.dashboard_allowed_cidrs or ANYWHERE

        self.vpc = vpc_without_nat(self, subnet_name="public", subnet_type=ec2.SubnetType.PUBLIC)
        log_rejected_flows(self, self.vpc, log_retention=config.log_retention)
        self.cluster = ecs.Cluster(self, "Cluster", vpc=self.vpc)
        self.task_security_group = self._task_security_group()
        self.log_group = logs.LogGroup(
            self, "Logs", retention=config.log_retention, removal_policy=RemovalPolicy.DESTROY,
        )
        self.service = self._service(
            config, api_url=api_url, api_key_secret=api_key_secret, sigv4=api_invoke_policy is not None,
            read_all=api_read_all_policy is not None,
        )
        if api_invoke_policy is not None:
            self.service.task_definition.task_role.add_managed_policy(api_invoke_policy)
        if api_read_all_policy is not None:
            self.service.task_definition.task_role.add_managed_policy(api_read_all_policy)
        self._configure_target_group()
        self.load_balancer = self.service.load_balancer
        self._configure_load_balancer(https=https, allowed_cidrs=allowed_cidrs)

        scheme = "https" if https else "http"
        host = config.dashboard_domain_name or self.load_balancer.load_balancer_dns_name
        self.url = f"{scheme}://{host}"
        self.login = self._require_login(config) if https else None
        self._suppress_findings(https=https, open_to_all="0.0.0.0/0" in allowed_cidrs)

    def _task_security_group(self) -> ec2.SecurityGroup:
        group = ec2.SecurityGroup(
            self, "TaskSecurityGroup", vpc=self.vpc, allow_all_outbound=False,
            description="Dashboard tasks: 8501 from the load balancer only; HTTPS out (ECR, logs, "
                        "Secrets Manager, the API)",
        )
        group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to ECR, CloudWatch Logs, Secrets Manager and the API",
        )
        return group

    def _service(
        self, config: AppConfig, *, api_url: str, api_key_secret: secretsmanager.ISecret | None, sigv4: bool,
        read_all: bool,
    ) -> ecs_patterns.ApplicationLoadBalancedFargateService:
        certificate_arn = config.dashboard_certificate_arn
        https = certificate_arn is not None
        arm64 = config.architecture == "arm64"
        secrets = {"API_KEY": ecs.Secret.from_secrets_manager(api_key_secret)} if api_key_secret else None
        return ecs_patterns.ApplicationLoadBalancedFargateService(
            self, "Service",
            cluster=self.cluster,
            cpu=CPU,
            memory_limit_mib=MEMORY_MIB,
            runtime_platform=ecs.RuntimePlatform(
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
                cpu_architecture=ecs.CpuArchitecture.ARM64 if arm64 else ecs.CpuArchitecture.X86_64,
            ),
            desired_count=DESIRED_COUNT,
            task_image_options=ecs_patterns.ApplicationLoadBalancedTaskImageOptions(
                image=ecs.ContainerImage.from_asset(
                    # The repository root, filtered by the allowlist BuildKit reads for this Dockerfile
                    # (`docker build -f streamlit-docker/Dockerfile .`): the dashboard and the client.
                    str(DASHBOARD_DIR.parent),
                    file="streamlit-docker/Dockerfile",
                    exclude=(DASHBOARD_DIR / "Dockerfile.dockerignore").read_text().splitlines(),
                    ignore_mode=IgnoreMode.DOCKER,
                    platform=ecr_assets.Platform.LINUX_ARM64 if arm64 else ecr_assets.Platform.LINUX_AMD64,
                ),
                container_name="dashboard",
                container_port=CONTAINER_PORT,
                environment={"API_URL": api_url, **({"API_SIGV4": "1"} if sigv4 else {}),
                             **({"API_READ_ALL": "1"} if read_all else {})},
                secrets=secrets,
                log_driver=ecs.LogDrivers.aws_logs(stream_prefix="dashboard", log_group=self.log_group),
            ),
            public_load_balancer=True,
            task_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            assign_public_ip=True,
            security_groups=[self.task_security_group],
            # Who may reach the listeners is set by _configure_load_balancer, from dashboard_allowed_cidrs.
            open_listener=False,
            protocol=elbv2.ApplicationProtocol.HTTPS if https else elbv2.ApplicationProtocol.HTTP,
            certificate=(acm.Certificate.from_certificate_arn(self, "Certificate", certificate_arn)
                         if certificate_arn else None),
            redirect_http=https,
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS if https else None,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            min_healthy_percent=MIN_HEALTHY_PERCENT,
            max_healthy_percent=MAX_HEALTHY_PERCENT,
            health_check_grace_period=HEALTH_CHECK_GRACE,
        )

    def _configure_target_group(self) -> None:
        """How the load balancer decides a task is healthy, drains it, and keeps a session on one task."""
        target_group = self.service.target_group
        target_group.configure_health_check(
            path=HEALTH_CHECK_PATH,
            healthy_http_codes="200",
            interval=Duration.seconds(15),
            timeout=Duration.seconds(5),
            healthy_threshold_count=2,
            unhealthy_threshold_count=3,
        )
        target_group.set_attribute("deregistration_delay.timeout_seconds", str(DEREGISTRATION_DELAY_SECONDS))
        target_group.enable_cookie_stickiness(STICKINESS)

    def _require_login(self, config: AppConfig) -> DashboardLogin:
        """Replace the HTTPS listener's forward action: log in with Cognito first, then forward."""
        login = DashboardLogin(self, "Login", config=config, url=self.url)
        listener = self.service.listener
        listener.add_action("LogInThenForward", action=elbv2_actions.AuthenticateCognitoAction(
            user_pool=login.user_pool,
            user_pool_client=login.client,
            user_pool_domain=login.domain,
            session_timeout=DashboardLogin.SESSION_TIMEOUT,
            next=elbv2.ListenerAction.forward([self.service.target_group]),
        ))
        Annotations.of(listener).acknowledge_warning(
            "@aws-cdk/aws-elbv2:listenerExistingDefaultActionReplaced",
            "The pattern's forward action is replaced on purpose: the login comes first.",
        )
        return login

    def _configure_load_balancer(self, *, https: bool, allowed_cidrs: Sequence[str]) -> None:
        # Header smuggling guard (AWS Security Hub ELB.4); Streamlit sends nothing unusual.
        self.load_balancer.set_attribute("routing.http.drop_invalid_header_fields.enabled", "true")
        # The pattern's own outputs repeat the stack's DashboardUrl under generated names.
        for output in ("LoadBalancerDNS", "ServiceURL"):
            self.service.node.try_remove_child(output)
        for port in (HTTPS_PORT, HTTP_PORT) if https else (HTTP_PORT,):
            for cidr in allowed_cidrs:
                self.load_balancer.connections.allow_from(
                    ec2.Peer.ipv4(cidr), ec2.Port.tcp(port), f"Dashboard users ({cidr}) on {port}",
                )

    def _suppress_findings(self, *, https: bool, open_to_all: bool) -> None:
        accept_finding(
            self.load_balancer, nag_id="AwsSolutions-ELB2", checkov_id="CKV_AWS_91",
            reason="No ALB access logs: they need a bucket with an ELB log-delivery policy and a region "
                   "known at synth; the dashboard's every API call is in the API's access logs, and "
                   "Streamlit's own log is in the container log group.",
        )
        accept_finding(
            self.cluster, nag_id="AwsSolutions-ECS4", checkov_id="CKV_AWS_65",
            reason="One small task: ECS's free service CPU and memory metrics and the ALB's target "
                   "metrics cover it; Container Insights would add per-task custom metrics at a cost.",
        )
        if open_to_all:
            NagSuppressions.add_resource_suppressions(self.load_balancer, [NagPackSuppression(
                id="AwsSolutions-EC23",
                reason="dashboard_allowed_cidrs is empty or 0.0.0.0/0 behind HTTPS: anyone may reach the "
                       "login on 443 (80 only redirects to 443), and only Cognito users get further; the "
                       "tasks admit only this load balancer's security group.",
            )], apply_to_children=True)
        skip_checks(self.log_group, LOG_GROUP_KMS)
        if not https:
            plain_http = ("No dashboard_certificate_arn: plain HTTP, which synth allows only for "
                          "dashboard_allowed_cidrs narrower than the internet; with a certificate the listener is "
                          "HTTPS with a TLS 1.2+ policy.")
            for check in ("CKV_AWS_2", "CKV_AWS_103"):  # HTTPS, and its TLS version
                skip_checks(self.service.listener, CheckovSkip(check, plain_http))
        if open_to_all:
            skip_checks(self.load_balancer.connections.security_groups[0], CheckovSkip(
                "CKV_AWS_260",
                "Port 80 is open to all only to redirect to HTTPS (443), where Cognito asks for a login "
                "before anything reaches the dashboard.",
            ))
        task_definition = self.service.task_definition
        NagSuppressions.add_resource_suppressions(task_definition, [
            NagPackSuppression(
                id="AwsSolutions-ECS2",
                reason="The plain environment variables are API_URL, the API's public URL, and API_SIGV4 and "
                       "API_READ_ALL, switches; the API key, when there is one, comes from Secrets Manager as an "
                       "ECS secret.",
            ),
        ])
        execution_role = task_definition.execution_role
        assert isinstance(execution_role, iam.Role)
        NagSuppressions.add_resource_suppressions(execution_role, [NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="ecr:GetAuthorizationToken has no resource-level permissions (it must be '*'); "
                   "pulling is limited to the CDK asset repository by the other statements.",
            applies_to=[ECR_AUTHORIZATION_RESOURCE],
        )], apply_to_children=True)
