"""The Function URL (switch ``function_url``): IAM auth on the ``live`` alias, and its invoker role."""

from __future__ import annotations

from typing import Any

from .conftest import OPTIONS, Synth
from .test_service_stack import inference_function
from .test_storage_stack import only, resources


def invoker_role(synth: Synth) -> tuple[str, dict[str, Any]]:
    roles = {k: v for k, v in resources(synth.service, "AWS::IAM::Role").items()
             if "Function URL" in v["Properties"].get("Description", "")}
    assert len(roles) == 1
    return next(iter(roles.items()))


def invoker_statements(synth: Synth) -> list[dict[str, Any]]:
    role_id, _ = invoker_role(synth)
    (policy,) = [p for p in resources(synth.service, "AWS::IAM::Policy").values()
                 if p["Properties"]["Roles"] == [{"Ref": role_id}]]
    return list(policy["Properties"]["PolicyDocument"]["Statement"])


def test_no_function_url_by_default(default: Synth) -> None:
    # The switch is off in cdk.json.
    default.service.resource_count_is("AWS::Lambda::Url", 0)
    assert not default.service.find_outputs("FunctionUrl")


def test_function_url_uses_iam_auth_on_the_live_alias(switches: Synth) -> None:
    # AWS_IAM: unsigned callers are refused; the alias is the one the REST API invokes.
    function_id, _ = inference_function(switches)
    switches.service.has_resource_properties("AWS::Lambda::Url", {
        "AuthType": "AWS_IAM",
        "Qualifier": "live",
        "TargetFunctionArn": {"Fn::GetAtt": [function_id, "Arn"]},
    })


def test_nobody_else_is_granted_the_url(switches: Synth) -> None:
    # No resource-policy statement opens the URL (or the function) to a principal of its own.
    for permission in resources(switches.service, "AWS::Lambda::Permission").values():
        props = permission["Properties"]
        assert "FunctionUrlAuthType" not in props
        assert props["Principal"] != "*"


def test_invoker_role_may_invoke_the_url_and_nothing_else(switches: Synth) -> None:
    # lambda:InvokeFunctionUrl (IAM auth) and, as function URLs now also require, lambda:InvokeFunction
    # only through the URL; both on the live alias.
    alias_id, _ = only(switches.service, "AWS::Lambda::Alias")
    statements = invoker_statements(switches)
    assert {s["Action"]: s["Condition"] for s in statements} == {
        "lambda:InvokeFunctionUrl": {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}},
        "lambda:InvokeFunction": {"Bool": {"lambda:InvokedViaFunctionUrl": True}},
    }
    assert all(s["Effect"] == "Allow" and s["Resource"] == {"Ref": alias_id} for s in statements)


def test_invoker_role_trusts_this_account_by_default(switches: Synth) -> None:
    # function_url_invoker_principal unset: principals of the deploying account may assume it.
    _, role = invoker_role(switches)
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRole"
    assert ":iam::123456789012:root" in str(statement["Principal"]["AWS"])


def test_invoker_principal_comes_from_context(options: Synth) -> None:
    # function_url_invoker_principal names who may assume the role (here a role of another account).
    _, role = invoker_role(options)
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"AWS": OPTIONS["function_url_invoker_principal"]}


def test_function_url_outputs(switches: Synth) -> None:
    # FunctionUrl for `classify --url ... --sigv4`, InvokerRoleArn for `aws sts assume-role`.
    url_id, _ = only(switches.service, "AWS::Lambda::Url")
    role_id, _ = invoker_role(switches)
    switches.service.has_output("FunctionUrl", {"Value": {"Fn::GetAtt": [url_id, "FunctionUrl"]}})
    switches.service.has_output("InvokerRoleArn", {"Value": {"Fn::GetAtt": [role_id, "Arn"]}})
