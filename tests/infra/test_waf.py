"""The web application firewall (switch ``waf``): on the API stage, and on the edge in us-east-1.

``switches`` deploys to us-east-1 (the edge gets a CLOUDFRONT web ACL too);
``options`` to eu-west-1 (the API's only, and a warning), rate limit 500.
"""

from __future__ import annotations

from typing import Any

from .conftest import Synth
from .test_api_auth import warns
from .test_edge import distribution_config
from .test_storage_stack import only, resources


def web_acl(synth: Synth, scope: str) -> tuple[str, dict[str, Any]]:
    return only(synth.service, "AWS::WAFv2::WebACL", {"Scope": scope})


def rules(acl: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["Name"]: rule for rule in acl["Properties"]["Rules"]}


def test_no_web_acl_by_default(default: Synth) -> None:
    # waf is false in cdk.json: no ACL, no association.
    default.service.resource_count_is("AWS::WAFv2::WebACL", 0)
    default.service.resource_count_is("AWS::WAFv2::WebACLAssociation", 0)


def test_api_web_acl_has_the_common_rule_set_without_the_body_size_rule(switches: Synth) -> None:
    # AWS's managed common rules block; SizeRestrictions_BODY (every body over 8 KB: every image) only counts.
    _, acl = web_acl(switches, "REGIONAL")
    assert acl["Properties"]["DefaultAction"] == {"Allow": {}}
    common = rules(acl)["CommonRules"]
    statement = common["Statement"]["ManagedRuleGroupStatement"]
    assert (statement["VendorName"], statement["Name"]) == ("AWS", "AWSManagedRulesCommonRuleSet")
    assert statement["RuleActionOverrides"] == [{"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}]
    assert common["OverrideAction"] == {"None": {}}


def test_api_web_acl_limits_each_ip(switches: Synth, options: Synth) -> None:
    # A rate-based rule per source IP over five minutes, evaluated first: 1000 by default, waf_rate_limit otherwise.
    for synth, limit in ((switches, 1000), (options, 500)):
        _, acl = web_acl(synth, "REGIONAL")
        rate = rules(acl)["RatePerIp"]
        assert rate["Priority"] < rules(acl)["CommonRules"]["Priority"]
        assert rate["Action"] == {"Block": {}}
        assert rate["Statement"]["RateBasedStatement"] == {
            "AggregateKeyType": "IP", "Limit": limit, "EvaluationWindowSec": 300,
        }


def test_api_web_acl_is_associated_with_the_stage(switches: Synth) -> None:
    # The association names the stage's ARN and the regional ACL.
    acl_id, _ = web_acl(switches, "REGIONAL")
    stage_id, _ = only(switches.service, "AWS::ApiGateway::Stage")
    _, association = only(switches.service, "AWS::WAFv2::WebACLAssociation")
    props = association["Properties"]
    assert props["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    assert {"Ref": stage_id} in props["ResourceArn"]["Fn::Join"][1]


def test_edge_gets_a_cloudfront_web_acl_in_us_east_1(switches: Synth) -> None:
    # edge and waf in us-east-1: a CLOUDFRONT-scope ACL with the same rules, attached to the distribution.
    acl_id, acl = web_acl(switches, "CLOUDFRONT")
    assert set(rules(acl)) == {"RatePerIp", "CommonRules"}
    assert distribution_config(switches)["WebACLId"] == {"Fn::GetAtt": [acl_id, "Arn"]}


def test_edge_outside_us_east_1_has_no_web_acl_and_a_warning(options: Synth) -> None:
    # CloudFront web ACLs exist in us-east-1 only: the distribution has none, and synth says so.
    assert len(resources(options.service, "AWS::WAFv2::WebACL")) == 1
    assert "WebACLId" not in distribution_config(options)
    assert warns(options, "CloudFront needs a web ACL created in us-east-1")
