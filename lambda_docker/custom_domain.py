"""A stable URL for the API (``api_domain_name`` with ``api_certificate_arn``): a regional custom domain.

``https://<api_domain_name>/classify`` reaches the stage, whatever API id a
redeploy or a new stack gives the REST API. The domain is regional (its
certificate lives in the stacks' region, which ``AppConfig`` checks), allows
TLS 1.2 and above only, and maps its root to the stage. DNS stays the user's:
point a CNAME (or a Route 53 alias) for the name at the output
``ApiDomainTarget``.
"""

from __future__ import annotations

from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_certificatemanager as acm
from constructs import Construct


class ApiCustomDomain(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, api: apigw.RestApi, domain_name: str, certificate_arn: str,
    ) -> None:
        super().__init__(scope, construct_id)

        self.domain = apigw.DomainName(
            self, "Domain",
            domain_name=domain_name,
            certificate=acm.Certificate.from_certificate_arn(self, "Certificate", certificate_arn),
            endpoint_type=apigw.EndpointType.REGIONAL,
            security_policy=apigw.SecurityPolicy.TLS_1_2,
        )
        # The root of the domain is the stage: https://<name>/classify -> <api>/prod/classify.
        self.mapping = apigw.BasePathMapping(
            self, "Mapping", domain_name=self.domain, rest_api=api, stage=api.deployment_stage,
        )
        self.url = f"https://{domain_name}/"
        self.target = self.domain.domain_name_alias_domain_name
        self.target_hosted_zone_id = self.domain.domain_name_alias_hosted_zone_id
