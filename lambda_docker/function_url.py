"""The Function URL (switch ``function_url``): the inference function reached without API Gateway.

For service-to-service calls: a caller signs its requests with SigV4
(``python -m classifier classify ... --sigv4``) using credentials of the
invoker role, which may call this URL and nothing else. With ``AWS_IAM``
auth Lambda refuses unsigned requests and anyone whose policies do not
allow the call; there is no public access.

The URL is on the ``live`` alias, like the REST API, so provisioned
concurrency serves both, and both always run the same version. The same
ASGI app answers either way (``classifier.handler`` adapts Function URL
events); API Gateway's throttling, API key and access logs do not apply
here: IAM decides who calls, and the function's own logs record each request.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct


def invoker_principal(principal: str | None) -> iam.IPrincipal:
    """Who may assume a role (the Function URL's invoker, the inbox's publisher): an account id, an IAM ARN,
    or (None) this account."""
    if principal is None:
        return iam.AccountRootPrincipal()
    if principal.isdigit():
        return iam.AccountPrincipal(principal)
    return iam.ArnPrincipal(principal)


class ClassifierFunctionUrl(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alias: lambda_.Alias,
        invoker_principal: iam.IPrincipal,
    ) -> None:
        super().__init__(scope, construct_id)

        self.url = alias.add_function_url(auth_type=lambda_.FunctionUrlAuthType.AWS_IAM)
        self.invoker_role = iam.Role(
            self, "InvokerRole",
            assumed_by=invoker_principal,
            description="May call the classifier's Function URL (SigV4-signed requests), nothing else",
        )
        # lambda:InvokeFunctionUrl, and lambda:InvokeFunction conditioned on
        # lambda:InvokedViaFunctionUrl, which function URLs created since
        # October 2025 also require; both on the alias only.
        self.url.grant_invoke_url(self.invoker_role)
