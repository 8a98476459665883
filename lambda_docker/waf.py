"""The web application firewall (switch ``waf``): WAFv2 web ACLs for the API stage and, in us-east-1, the edge.

Each web ACL has two rules, in this order:

1. ``RatePerIp``: an IP that sent more than ``waf_rate_limit`` requests in
   the last five minutes is blocked until its rate drops (API Gateway's stage
   throttling limits all callers together; this limits each one).
2. ``CommonRules``: AWS's managed common rule set (AWSManagedRulesCommonRuleSet),
   free of a subscription; its ``SizeRestrictions_BODY`` rule only counts,
   because it blocks every body over 8 KB, that is every image.

A REGIONAL web ACL is associated with the API stage. CloudFront accepts only a
CLOUDFRONT-scope web ACL created in us-east-1, so with ``edge`` the service
stack creates one for the distribution when it deploys to us-east-1; elsewhere
docs/security.md says how to attach one. Behind CloudFront the regional ACL
sees CloudFront's addresses, not the callers': the edge ACL rates callers.

Cost (docs/security.md): 5 USD a month per web ACL, 1 USD a month per rule,
0.60 USD per million requests inspected.
"""

from __future__ import annotations

from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from lambda_docker.checkov import CheckovSkip, skip_checks

COMMON_RULE_SET = "AWSManagedRulesCommonRuleSet"
# Matches every request body over 8 KB: counted, never blocked (the API's bodies are images).
COUNTED_COMMON_RULES = ("SizeRestrictions_BODY",)
RATE_WINDOW_SECONDS = 300


def _visibility(metric_name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric_name, sampled_requests_enabled=True,
    )


class WebAcl(Construct):
    """A web ACL of ``scope_name`` (REGIONAL or CLOUDFRONT) that allows what its rules do not block."""

    def __init__(
        self, scope: Construct, construct_id: str, *, scope_name: str, rate_limit: int, metric_prefix: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.acl = wafv2.CfnWebACL(
            self, "WebAcl",
            scope=scope_name,
            description="Classifier API - per-IP rate limit and the AWS managed common rule set",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=_visibility(metric_prefix),
            rules=[
                # Rule groups set override_action, single rules an action; "none" keeps the group's own.
                wafv2.CfnWebACL.RuleProperty(
                    name="RatePerIp", priority=0, visibility_config=_visibility(f"{metric_prefix}RatePerIp"),
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(rate_based_statement=self._rate_per_ip(rate_limit)),
                ),
                wafv2.CfnWebACL.RuleProperty(
                    name="CommonRules", priority=1, visibility_config=_visibility(f"{metric_prefix}CommonRules"),
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(managed_rule_group_statement=self._common_rules()),
                ),
            ],
        )
        self.arn = self.acl.attr_arn
        skip_checks(self.acl, CheckovSkip(
            "CKV_AWS_192",
            "Log4j lookups (CVE-2021-44228) threaten Java applications; behind this ACL run only Python "
            "(the classifier) and API Gateway, so that rule group would add a monthly fee and catch nothing.",
        ))

    @staticmethod
    def _rate_per_ip(rate_limit: int) -> wafv2.CfnWebACL.RateBasedStatementProperty:
        return wafv2.CfnWebACL.RateBasedStatementProperty(
            aggregate_key_type="IP", limit=rate_limit, evaluation_window_sec=RATE_WINDOW_SECONDS,
        )

    @staticmethod
    def _common_rules() -> wafv2.CfnWebACL.ManagedRuleGroupStatementProperty:
        return wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
            vendor_name="AWS", name=COMMON_RULE_SET,
            rule_action_overrides=[
                wafv2.CfnWebACL.RuleActionOverrideProperty(
                    name=name, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={}),
                ) for name in COUNTED_COMMON_RULES
            ],
        )

    def associate(self, resource_arn: str) -> wafv2.CfnWebACLAssociation:
        """Put a regional resource (here: the API stage) behind this web ACL."""
        return wafv2.CfnWebACLAssociation(self, "Association", resource_arn=resource_arn, web_acl_arn=self.arn)
