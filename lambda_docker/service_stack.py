"""``<name>-service-stack``: the compute, redeployed with every change (``cdk deploy <name>-service-stack``).

The inference function (container image from model/) and the REST API in
front of it. Optional features, each behind a context switch validated in
``AppConfig`` and each a construct in its own file, hang off this stack;
see ``_optional_features``.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Annotations, CfnOutput
from aws_cdk import aws_lambda as lambda_
from cdk_nag import NagPackSuppression, RegexAppliesTo
from constructs import Construct

from lambda_docker.alarms import Alarms
from lambda_docker.api import STAGE_NAME, ClassificationRestApi
from lambda_docker.bucket_access import allow_objects
from lambda_docker.bulk import BulkClassification
from lambda_docker.config import AppConfig
from lambda_docker.custom_domain import ApiCustomDomain
from lambda_docker.dashboard import Dashboard
from lambda_docker.edge import ApiDistribution
from lambda_docker.function_url import ClassifierFunctionUrl, invoker_principal
from lambda_docker.inference import ClassifierRuntime, InferenceFunction
from lambda_docker.nag import suppress_vpc_function_role
from lambda_docker.observability import Observability
from lambda_docker.records_replay import RecordsReplay
from lambda_docker.storage_stack import UPLOADS_PREFIX, StorageStack
from lambda_docker.two_az_stack import TwoAzStack
from lambda_docker.upload_classifier import UploadClassifier
from lambda_docker.waf import WebAcl

# CloudFront takes only web ACLs of scope CLOUDFRONT, which exist in this region only.
CLOUDFRONT_WAF_REGION = "us-east-1"


class ServiceStack(TwoAzStack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, storage: StorageStack, **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.add_stack_dependency(storage, "the functions mount the storage stack's file system")
        self.storage = storage

        # The API, the upload classifier and the bulk worker: one image, one read-only
        # mount of the store (the inference access point and security group), one records table.
        self.runtime = ClassifierRuntime(
            config=config,
            mount=storage.model_storage.inference_mount,
            records=storage.records,
            uploads_bucket_name=storage.uploads.bucket_name,
        )
        self.inference = InferenceFunction(self, "Inference", runtime=self.runtime)
        self._grant_uploads(self.inference.function)
        self.api = ClassificationRestApi(self, "Api", handler=self.inference.alias, config=config)
        self.alarms = Alarms(self, "Alarms", api=self.api.api, email=config.alarm_email)
        self.observability = Observability(
            self, "Observability",
            api=self.api.api, function=self.inference.function, alarms=self.alarms,
            latency_p99_ms=config.alarm_latency_p99_ms,
        )
        self.records_replay = RecordsReplay(self, "RecordsReplay", runtime=self.runtime)
        self.alarms.watch(self.records_replay.deferred_alarm)
        self.alarms.watch(self.records_replay.failing_alarm)
        self.web_acl = self._api_web_acl(config) if config.waf else None
        self.custom_domain = self._custom_domain(config)
        self._optional_features(config)
        self._outputs()

    def _grant_uploads(self, function: lambda_.Function) -> None:
        # Presigned POSTs are signed with the function's role, so it needs
        # PutObject for the browser's upload to be accepted; GetObject to
        # classify it.
        allow_objects(function, self.storage.uploads, "s3:GetObject", "s3:PutObject", prefix=UPLOADS_PREFIX)
        suppress_vpc_function_role(function, NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="Uploaded images get random keys under uploads/: the function may read and "
                   "write that prefix of the uploads bucket only.",
            applies_to=[RegexAppliesTo(regex=r"/^Resource::.*\/uploads\/\*$/")],
        ))

    def _outputs(self) -> None:
        CfnOutput(self, "ApiUrl", value=self.api.url, description="Base URL of the classification API")
        CfnOutput(self, "InboxBucket", value=self.storage.inbox.bucket.bucket_name,
                  description="python -m classifier publish --s3 s3://<this bucket>")
        CfnOutput(self, "FunctionName", value=self.inference.function.function_name,
                  description="The inference function")
        CfnOutput(self, "UploadsBucket", value=self.storage.uploads.bucket_name,
                  description="Large images go here through POST /uploads")
        if self.alarms.topic is not None:
            CfnOutput(self, "AlarmTopicArn", value=self.alarms.topic.topic_arn,
                      description="Alarm notifications (alarm_email is subscribed; confirm its mail)")
        if self.api.api_key is not None:
            CfnOutput(self, "ApiKeyId", value=self.api.api_key.key_id,
                      description="aws apigateway get-api-key --include-value --api-key <this id>")
        if self.api.access.invoke_policy is not None:
            CfnOutput(self, "ApiInvokePolicyArn", value=self.api.access.invoke_policy.managed_policy_arn,
                      description="Attach to the roles that may call the API (SigV4-signed requests)")
        if self.api.access.user_pool is not None:
            CfnOutput(self, "ApiUserPoolId", value=self.api.access.user_pool.user_pool_id,
                      description="The API's users: send a user's ID token in Authorization")
        if self.api.access.user_pool_client is not None:
            CfnOutput(self, "ApiUserPoolClientId", value=self.api.access.user_pool_client.user_pool_client_id,
                      description="The app client users sign in with (SRP) to get their tokens")
        CfnOutput(self, "MetricsDashboardUrl", value=self.observability.url,
                  description="The service's CloudWatch dashboard: latency, traffic, errors, capacity")
        if self.api.api_key_secret is not None:
            CfnOutput(self, "ApiKeySecret", value=self.api.api_key_secret.secret_arn,
                      description="aws secretsmanager get-secret-value --query SecretString --secret-id <this>")

    def _api_web_acl(self, config: AppConfig) -> WebAcl:
        web_acl = WebAcl(self, "ApiFirewall", scope_name="REGIONAL", rate_limit=config.waf_rate_limit,
                         metric_prefix="ClassifierApi")
        web_acl.associate(self.api.api.deployment_stage.stage_arn)
        return web_acl

    def _custom_domain(self, config: AppConfig) -> ApiCustomDomain | None:
        if config.api_domain_name is None or config.api_certificate_arn is None:
            return None
        domain = ApiCustomDomain(self, "ApiDomain", api=self.api.api, domain_name=config.api_domain_name,
                                 certificate_arn=config.api_certificate_arn)
        CfnOutput(self, "ApiDomainUrl", value=domain.url, description="The API's stable URL (same paths as ApiUrl)")
        CfnOutput(self, "ApiDomainTarget", value=domain.target,
                  description="CNAME (or alias, hosted zone ApiDomainHostedZoneId) api_domain_name to this name")
        CfnOutput(self, "ApiDomainHostedZoneId", value=domain.target_hosted_zone_id,
                  description="The hosted zone of ApiDomainTarget, for a Route 53 alias record")
        return domain

    def _optional_features(self, config: AppConfig) -> None:
        """Features behind context switches: each one a construct in its own file, wired here."""
        self.dashboard = self._dashboard(config) if config.dashboard else None
        self.function_url = self._function_url(config) if config.function_url else None
        self.edge = self._edge(config) if config.edge else None
        self.upload_classifier = self._upload_classifier() if config.classify_on_upload else None
        self.bulk = self._bulk() if config.bulk else None

    def _dashboard(self, config: AppConfig) -> Dashboard:
        dashboard = Dashboard(
            self, "Dashboard", config=config, api_url=self.api.url, api_key_secret=self.api.api_key_secret,
            api_invoke_policy=self.api.access.invoke_policy,
        )
        CfnOutput(self, "DashboardUrl", value=dashboard.url,
                  description="The Streamlit dashboard (point dashboard_domain_name's DNS record at the "
                              "load balancer when it is set)")
        if config.dashboard_domain_name is not None:
            CfnOutput(self, "DashboardLoadBalancer", value=dashboard.load_balancer.load_balancer_dns_name,
                      description="CNAME (or alias) dashboard_domain_name to this name")
        return dashboard

    def _function_url(self, config: AppConfig) -> ClassifierFunctionUrl:
        function_url = ClassifierFunctionUrl(
            self, "FunctionUrlAccess",
            alias=self.inference.alias,
            invoker_principal=invoker_principal(config.function_url_invoker_principal),
        )
        CfnOutput(self, "FunctionUrl", value=function_url.url.url,
                  description="python -m classifier classify IMAGE --url <this> --sigv4 (as InvokerRoleArn)")
        CfnOutput(self, "InvokerRoleArn", value=function_url.invoker_role.role_arn,
                  description="Assume this role to call FunctionUrl")
        return function_url

    def _edge(self, config: AppConfig) -> ApiDistribution:
        edge_web_acl = None
        if config.waf and config.aws_region == CLOUDFRONT_WAF_REGION:
            edge_web_acl = WebAcl(self, "EdgeFirewall", scope_name="CLOUDFRONT", rate_limit=config.waf_rate_limit,
                                  metric_prefix="ClassifierEdge")
        elif config.waf:
            Annotations.of(self).add_warning_v2(
                "classifier:edgeWithoutWaf",
                f"waf=true with edge=true: CloudFront needs a web ACL created in {CLOUDFRONT_WAF_REGION}, and "
                f"these stacks deploy to {config.aws_region or 'an unknown region'}; the distribution has none "
                "(docs/security.md: attaching one).",
            )
        if config.api_auth in ("iam", "cognito"):
            Annotations.of(self).add_warning_v2(
                "classifier:edgeAuthorization",
                f"edge=true with api_auth={config.api_auth}: CloudFront does not forward the Authorization "
                "header to the API, so signed or token-carrying calls through EdgeUrl are refused; call "
                "ApiUrl (or ApiDomainUrl) directly, or use api_auth=api_key with the edge.",
            )
        edge = ApiDistribution(self, "Edge", api=self.api.api, stage_name=STAGE_NAME,
                               web_acl_arn=edge_web_acl.arn if edge_web_acl else None)
        self.edge_web_acl = edge_web_acl
        CfnOutput(self, "EdgeUrl", value=edge.url, description="The API through CloudFront (same paths as ApiUrl)")
        return edge

    def _upload_classifier(self) -> UploadClassifier:
        upload_classifier = UploadClassifier(
            self, "UploadClassifier",
            runtime=self.runtime,
            uploads_bucket=self.storage.uploads,
            uploads_prefix=UPLOADS_PREFIX,
        )
        self.alarms.watch(upload_classifier.alarm)
        CfnOutput(self, "UploadFailuresQueue", value=upload_classifier.dead_letter_queue.queue_url,
                  description="Uploads that could not be classified after every retry (alarmed)")
        CfnOutput(self, "UploadClassifierFunction", value=upload_classifier.function.function_name,
                  description="Classifies uploads; invoke it with a dead-lettered message body to re-drive it")
        return upload_classifier

    def _bulk(self) -> BulkClassification:
        source, results = self.storage.bulk_source, self.storage.bulk_results
        assert source is not None and results is not None, "the storage stack makes them when bulk is on"
        bulk = BulkClassification(self, "Bulk", runtime=self.runtime, source_bucket=source, results_bucket=results)
        self.alarms.watch(bulk.alarm)
        CfnOutput(self, "BulkStateMachineArn", value=bulk.state_machine.state_machine_arn,
                  description="python -m classifier batch s3://<bucket>/<prefix> starts an execution of this")
        CfnOutput(self, "BulkResultsBucket", value=results.bucket_name,
                  description="Each bulk job's results, under jobs/<map run>/ (manifest.json first)")
        return bulk
