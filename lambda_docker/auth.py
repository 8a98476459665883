"""Who may call the API (context ``api_auth``), and the Cognito user pools users log in with.

The REST API's methods take ``ApiAccess.method_options``; the HTTP API
(``api_type=http``, ``http_api.py``) builds its route's authorizer from the same
pool and binds the same invoke policy to its ``$default`` stage.

- ``iam`` (the default): every method but CORS preflight needs a SigV4
  signature (``AWS_IAM``) from a principal whose policies allow
  ``execute-api:Invoke``. The stack creates two managed policies, for users
  to attach to their roles: ``ApiInvokePolicyArn`` allows every route but
  ``/all/...`` (a caller's own records), ``ApiReadAllPolicyArn`` the
  ``/all/...`` routes (every caller's records), a separate, deliberate grant.
  Both list their paths from the OpenAPI document (``classifier.api.grants``).
  The dashboard's task role gets the first, and the second with
  ``dashboard_read_all``.
- ``cognito``: a Cognito user pool authorizer; callers send a user's ID token
  in ``Authorization``. The pool is ``api_user_pool_id``'s or created here,
  with an app client for users to sign in with (SRP, no OAuth flows) and the
  group whose members read every caller's records (``classifier-read-all``).
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

from classifier.api.grants import invoke_grants, read_all_grants
from classifier.api.identity import READ_ALL_GROUP
from lambda_docker.config import AppConfig


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
        self.read_all_policy: iam.ManagedPolicy | None = None
        if self.mode == "cognito":
            self.user_pool = user_pool(self, "Users", pool_id=config.api_user_pool_id, purpose="the API")
            if config.api_user_pool_id is None:
                # SRP sign-in from a script or an app; no secret, since such a client cannot keep one;
                # no OAuth flows or callback URLs: nothing signs in through a hosted UI.
                self.user_pool_client = self.user_pool.add_client(
                    "ApiClient", auth_flows=cognito.AuthFlow(user_srp=True), generate_secret=False,
                    disable_o_auth=True, prevent_user_existence_errors=True,
                )
                # Membership is the read-all grant (admin-add-user-to-group): empty until someone is added.
                cognito.CfnUserPoolGroup(
                    self, "ReadAllGroup", user_pool_id=self.user_pool.user_pool_id, group_name=READ_ALL_GROUP,
                    description="Members may read every caller's classification records (GET /all/...)",
                )
            if config.api_type == "rest":  # an HTTP API has its own JWT authorizer (http_api.py)
                self.authorizer = apigw.CognitoUserPoolsAuthorizer(
                    self, "Authorizer", cognito_user_pools=[self.user_pool],
                    identity_source=apigw.IdentitySource.header("Authorization"),
                )
        if self.mode == "none":
            Annotations.of(scope).add_warning_v2(
                "classifier:publicApi",
                "api_auth=none: anyone on the internet may call the API (classify images at your cost, read "
                "every record any anonymous caller stored). Use api_auth=iam (the default), cognito or api_key "
                "unless this is intended.",
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
        """With ``iam``: the two managed policies that may invoke ``api``'s stage, each on its routes only."""
        if self.mode != "iam":
            return
        self.invoke_policy = self._policy(
            "InvokePolicy", api, stage_name, invoke_grants(),
            description="May call the classification API (SigV4): every route but /all/..., so the caller's "
                        "own records only",
        )
        self.read_all_policy = self._policy(
            "ReadAllPolicy", api, stage_name, read_all_grants(),
            description="May read every caller's classification records (GET /all/...): attach it beside "
                        "the invoke policy, deliberately",
        )

    def _policy(self, construct_id: str, api: apigw.RestApi | apigwv2.HttpApi, stage_name: str,
                grants: list[tuple[str, str]], *, description: str) -> iam.ManagedPolicy:
        policy = iam.ManagedPolicy(
            self, construct_id,
            description=description,
            statements=[iam.PolicyStatement(
                actions=["execute-api:Invoke"],
                resources=[api.arn_for_execute_api(method, path, stage_name) for method, path in grants],
            )],
        )
        if any("*" in path for _, path in grants):
            NagSuppressions.add_resource_suppressions(policy, [NagPackSuppression(
                id="AwsSolutions-IAM5",
                reason="Paths that carry an id (a record, a version) are granted with '*' in place of the "
                       "id, as API Gateway matches them; each route is listed, and no other API.",
                applies_to=[RegexAppliesTo(regex=rf"/^Resource::arn:[^:]+:execute-api:.*\/{re.escape(stage_name)}\/.*\*.*$/")],
            )])
        return policy


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
