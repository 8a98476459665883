"""Who may call the API (context ``api_auth``), and the Cognito user pools users log in with.

The REST API's methods take ``ApiAccess.method_options``; the HTTP API
(``api_type=http``, ``http_api.py``) builds its route's authorizer from the same
pool and binds the same invoke policy to its ``$default`` stage.

- ``iam`` (the default): every method but CORS preflight needs a SigV4
  signature (``AWS_IAM``) from a principal whose policies allow
  ``execute-api:Invoke``. The stack creates a managed policy that allows
  exactly that on this API's stage (output ``ApiInvokePolicyArn``), for users
  to attach to their roles; the dashboard's task role gets it too.
- ``cognito``: a Cognito user pool authorizer; callers send a user's ID token
  in ``Authorization``. The pool is ``api_user_pool_id``'s or created here,
  with an app client for users to sign in with.
- ``api_key``: callers send ``x-api-key``; the key identifies a usage plan and
  throttles it, it does not authenticate anyone (see ``api.py``).
- ``none``: public. An explicit choice, which synth reports as a warning.

docs/security.md says who can call what under each.
"""

from __future__ import annotations

import re

from aws_cdk import Annotations, Aws, Duration, Fn, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from lambda_docker.config import AppConfig

# What API callers do: classify and upload (POST), read records and the model (GET).
INVOKED_METHODS = ("GET", "POST")


def user_pool(scope: Construct, construct_id: str, *, pool_id: str | None, purpose: str) -> cognito.IUserPool:
    """The user pool ``pool_id``, or (None) a new one whose users an administrator creates."""
    if pool_id is not None:
        return cognito.UserPool.from_user_pool_id(scope, construct_id, pool_id)
    pool = cognito.UserPool(
        scope, construct_id,
        # Nobody signs themselves up: an administrator invites each user.
        self_sign_up_enabled=False,
        sign_in_aliases=cognito.SignInAliases(email=True),
        auto_verify=cognito.AutoVerifiedAttrs(email=True),
        mfa=cognito.Mfa.REQUIRED,
        mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
        password_policy=cognito.PasswordPolicy(
            min_length=12, require_lowercase=True, require_uppercase=True, require_digits=True,
            require_symbols=True, temp_password_validity=Duration.days(3),
        ),
        account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
        # User accounts outlive a `cdk destroy` of the service stack.
        removal_policy=RemovalPolicy.RETAIN,
    )
    threat_protection = (f"Threat protection (advanced security) needs Cognito's Plus plan, billed per monthly "
                         f"active user; {purpose} has invited users only, with MFA required and a strong "
                         "password policy.")
    NagSuppressions.add_resource_suppressions(pool, [
        NagPackSuppression(id="AwsSolutions-COG3", reason=threat_protection),
        NagPackSuppression(id="AwsSolutions-COG8", reason=threat_protection),
    ])
    return pool


def user_pool_domain_prefix(config: AppConfig, purpose: str) -> str:
    """A hosted-UI domain prefix unique in the region: it must not collide with another account's."""
    return Fn.join("-", [config.name, purpose, Aws.ACCOUNT_ID])


class ApiAccess(Construct):
    """How the API is authorized under ``api_auth``; built before the API, bound after."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig) -> None:
        super().__init__(scope, construct_id)
        self.mode = config.api_auth
        self.user_pool: cognito.IUserPool | None = None
        self.user_pool_client: cognito.UserPoolClient | None = None
        self.authorizer: apigw.CognitoUserPoolsAuthorizer | None = None
        self.invoke_policy: iam.ManagedPolicy | None = None
        if self.mode == "cognito":
            self.user_pool = user_pool(self, "Users", pool_id=config.api_user_pool_id, purpose="the API")
            if config.api_user_pool_id is None:
                # SRP sign-in from a script or an app; no secret, since such a client cannot keep one.
                self.user_pool_client = self.user_pool.add_client(
                    "ApiClient", auth_flows=cognito.AuthFlow(user_srp=True), generate_secret=False,
                )
            if config.api_type == "rest":  # an HTTP API has its own JWT authorizer (http_api.py)
                self.authorizer = apigw.CognitoUserPoolsAuthorizer(
                    self, "Authorizer", cognito_user_pools=[self.user_pool],
                    identity_source=apigw.IdentitySource.header("Authorization"),
                )
        if self.mode == "none":
            Annotations.of(scope).add_warning_v2(
                "classifier:publicApi",
                "api_auth=none: anyone on the internet may call the API (classify images, read every "
                "stored record). Use api_auth=iam (the default), cognito or api_key unless this is intended.",
            )

    @property
    def method_options(self) -> apigw.MethodOptions:
        """Every method's authorization (CDK exempts the CORS preflight OPTIONS methods)."""
        if self.mode == "iam":
            return apigw.MethodOptions(authorization_type=apigw.AuthorizationType.IAM)
        if self.mode == "cognito":
            return apigw.MethodOptions(authorization_type=apigw.AuthorizationType.COGNITO, authorizer=self.authorizer)
        return apigw.MethodOptions(api_key_required=self.mode == "api_key")

    def bind(self, api: apigw.RestApi | apigwv2.HttpApi, stage_name: str) -> None:
        """With ``iam``: the managed policy that may invoke ``api``'s stage, GET and POST on any path, nothing else."""
        if self.mode != "iam":
            return
        self.invoke_policy = iam.ManagedPolicy(
            self, "InvokePolicy",
            description="May call the classification API (SigV4, execute-api:Invoke on its stage)",
            statements=[iam.PolicyStatement(
                actions=["execute-api:Invoke"],
                resources=[api.arn_for_execute_api(method, "/*", stage_name) for method in INVOKED_METHODS],
            )],
        )
        NagSuppressions.add_resource_suppressions(self.invoke_policy, [NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="The API's paths carry record ids and are proxied to the application: the policy allows "
                   "GET and POST on every path of this API's stage, and nothing on any other API.",
            applies_to=[RegexAppliesTo(
                regex=rf"/^Resource::arn:[^:]+:execute-api:.*\/{re.escape(stage_name)}\/(GET|POST)\/\*$/",
            )],
        )])


class DashboardLogin(Construct):
    """The Cognito login the dashboard's HTTPS listener requires: a user pool, an app client and a hosted UI.

    The load balancer runs the OAuth code flow itself (``authenticate-cognito``)
    and forwards only signed-in users' requests to the tasks; its session
    cookie lasts ``SESSION_TIMEOUT``.
    """

    SESSION_TIMEOUT = Duration.hours(8)

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, url: str) -> None:
        super().__init__(scope, construct_id)
        self.user_pool = user_pool(self, "Users", pool_id=config.dashboard_user_pool_id, purpose="the dashboard")
        self.client = self.user_pool.add_client(
            "Client",
            # The load balancer keeps the secret; it redeems the code at Cognito's token endpoint.
            generate_secret=True,
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL],
                callback_urls=[f"{url}/oauth2/idpresponse"],
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            prevent_user_existence_errors=True,
        )
        self.domain = self.user_pool.add_domain(
            "HostedUi", cognito_domain=cognito.CognitoDomainOptions(
                domain_prefix=user_pool_domain_prefix(config, "dashboard"),
            ),
        )
