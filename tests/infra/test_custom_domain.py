"""A stable URL (``api_domain_name`` with ``api_certificate_arn``): a regional custom domain for the API."""

from __future__ import annotations

from .conftest import OPTIONS, Synth
from .test_storage_stack import only


def test_no_custom_domain_by_default(default: Synth) -> None:
    # Neither key is set in cdk.json.
    default.service.resource_count_is("AWS::ApiGateway::DomainName", 0)
    assert not default.service.find_outputs("ApiDomainUrl")


def test_domain_is_regional_with_a_tls_1_2_policy(options: Synth) -> None:
    # The name, its certificate (the stacks' region), a regional endpoint, TLS 1.2 and above.
    _, domain = only(options.service, "AWS::ApiGateway::DomainName")
    assert domain["Properties"] == {
        "DomainName": "api.example.com",
        "RegionalCertificateArn": OPTIONS["api_certificate_arn"],
        "EndpointConfiguration": {"Types": ["REGIONAL"]},
        "SecurityPolicy": "TLS_1_2",
    }


def test_domain_root_maps_to_the_stage(options: Synth) -> None:
    # https://api.example.com/classify is <api>/prod/classify.
    domain_id, _ = only(options.service, "AWS::ApiGateway::DomainName")
    api_id, _ = only(options.service, "AWS::ApiGateway::RestApi")
    stage_id, _ = only(options.service, "AWS::ApiGateway::Stage")
    _, mapping = only(options.service, "AWS::ApiGateway::BasePathMapping")
    assert mapping["Properties"] == {"DomainName": {"Ref": domain_id}, "RestApiId": {"Ref": api_id},
                                     "Stage": {"Ref": stage_id}}


def test_domain_outputs_its_url_and_dns_target(options: Synth) -> None:
    # ApiDomainUrl for clients; ApiDomainTarget (and its hosted zone) for the DNS record.
    domain_id, _ = only(options.service, "AWS::ApiGateway::DomainName")
    options.service.has_output("ApiDomainUrl", {"Value": "https://api.example.com/"})
    options.service.has_output("ApiDomainTarget", {"Value": {"Fn::GetAtt": [domain_id, "RegionalDomainName"]}})
    options.service.has_output("ApiDomainHostedZoneId", {"Value": {"Fn::GetAtt": [domain_id, "RegionalHostedZoneId"]}})
