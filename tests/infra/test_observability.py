"""Observability, CDK side: Powertools settings, the CloudWatch dashboard, latency and error-rate alarms, tracing."""

from __future__ import annotations

import json
from typing import Any

from .conftest import Synth
from .test_cdk_options import alarm_actions
from .test_storage_stack import only, resources

LATENCY = {"Namespace": "AWS/ApiGateway", "MetricName": "Latency"}


def image_functions(synth: Synth) -> list[dict[str, Any]]:
    found = resources(synth.service, "AWS::Lambda::Function", {"PackageType": "Image"})
    return [f["Properties"] for f in found.values()]


def dashboard_body(synth: Synth) -> str:
    # The body is a Fn::Join of JSON text and references: its text parts are what CloudWatch reads.
    _, dashboard = only(synth.service, "AWS::CloudWatch::Dashboard")
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    return "".join(part if isinstance(part, str) else "<ref>" for part in parts)


def error_rate_alarm(synth: Synth) -> dict[str, Any]:
    for alarm in resources(synth.service, "AWS::CloudWatch::Alarm").values():
        if any("Expression" in m for m in alarm["Properties"].get("Metrics", [])):
            return dict(alarm["Properties"])
    raise AssertionError("no metric-math alarm")


def test_functions_name_the_powertools_service_and_namespace(switches: Synth) -> None:
    # The inference function, the upload classifier, the bulk worker and the records replay log and emit
    # metrics as service "classifier".
    functions = image_functions(switches)
    assert len(functions) == 4
    for props in functions:
        env = props["Environment"]["Variables"]
        assert (env["POWERTOOLS_SERVICE_NAME"], env["POWERTOOLS_METRICS_NAMESPACE"]) == ("classifier", "Classifier")


def test_dashboard_shows_latency_per_model_version_and_from_api_gateway(default: Synth) -> None:
    # p50 and p99 of the runtime's TotalLatency through SEARCH over model_version, and API Gateway's Latency.
    body = dashboard_body(default)
    for statistic in ("p50", "p99"):
        search = (f"SEARCH('{{Classifier,model_version,service}} MetricName=\\\"TotalLatency\\\" "
                  f"service=\\\"classifier\\\"', '{statistic}', 300)")
        assert search in body
    widgets = json.loads(body.replace("<ref>", "REF"))["widgets"]
    latency = [w for w in widgets if w["properties"].get("title") == "Latency p50 / p99 (ms): API Gateway"]
    (widget,) = latency
    assert [m[-1]["stat"] for m in widget["properties"]["metrics"]] == ["p50", "p99"]
    assert all(m[:2] == ["AWS/ApiGateway", "Latency"] for m in widget["properties"]["metrics"])


def test_dashboard_shows_traffic_errors_capacity_cold_starts_and_model_version(default: Synth) -> None:
    # Requests, 4xx/5xx, throttles, concurrency, Powertools' ColdStart, and Images per model version.
    body = dashboard_body(default)
    for metric in ('"Count"', '"4XXError"', '"5XXError"', '"Throttles"', '"ConcurrentExecutions"'):
        assert metric in body, metric
    assert "{Classifier,function_name,service} MetricName=\\\"ColdStart\\\"" in body
    assert "{Classifier,model_version,service} MetricName=\\\"Images\\\"" in body
    assert "{Classifier,code,service} MetricName=\\\"Errors\\\"" in body
    default.service.has_output("MetricsDashboardUrl", {"Value": {"Fn::Join": ["", [
        "https://", {"Ref": "AWS::Region"}, ".console.aws.amazon.com/cloudwatch/home?region=",
        {"Ref": "AWS::Region"}, "#dashboards:name=", {"Ref": only(default.service, "AWS::CloudWatch::Dashboard")[0]},
    ]]}})


def test_p99_latency_alarm_threshold_comes_from_context(default: Synth, options: Synth) -> None:
    # API Gateway's p99 Latency at or above alarm_latency_p99_ms for three 5-minute periods (3000 ms by default).
    for synth, threshold in ((default, 3000), (options, 2000)):
        _, alarm = only(synth.service, "AWS::CloudWatch::Alarm", LATENCY)
        props = alarm["Properties"]
        assert (props["ExtendedStatistic"], props["Period"], props["EvaluationPeriods"]) == ("p99", 300, 3)
        assert (props["Threshold"], props["ComparisonOperator"]) == (threshold, "GreaterThanOrEqualToThreshold")


def test_error_rate_alarm_divides_5xx_by_requests(default: Synth) -> None:
    # Metric math: 100 * 5XXError / Count (0 without traffic), at or above 5 %.
    props = error_rate_alarm(default)
    by_id = {m["Id"]: m for m in props["Metrics"]}
    (expression,) = [m for m in by_id.values() if "Expression" in m]
    assert expression["Expression"] == "IF(requests > 0, 100 * errors / requests, 0)"
    assert by_id["errors"]["MetricStat"]["Metric"]["MetricName"] == "5XXError"
    assert by_id["requests"]["MetricStat"]["Metric"]["MetricName"] == "Count"
    assert {by_id[i]["MetricStat"]["Stat"] for i in ("errors", "requests")} == {"Sum"}
    assert props["Threshold"] == 5


def test_new_alarms_notify_the_alarm_topic(options: Synth, default: Synth) -> None:
    # With alarm_email both go to the same topic as the 5xx and dead-letter alarms; without it, nowhere.
    topic_id, _ = only(options.service, "AWS::SNS::Topic")
    assert alarm_actions(options.service, LATENCY) == ([{"Ref": topic_id}], [{"Ref": topic_id}])
    rate = error_rate_alarm(options)
    assert (rate["AlarmActions"], rate["OKActions"]) == ([{"Ref": topic_id}], [{"Ref": topic_id}])
    assert alarm_actions(default.service, LATENCY) == ([], [])


def test_tracing_is_off_by_default(default: Synth) -> None:
    # No X-Ray on the stage or the function unless tracing is true.
    _, stage = only(default.service, "AWS::ApiGateway::Stage")
    assert stage["Properties"].get("TracingEnabled", False) is False
    assert all("TracingConfig" not in props for props in image_functions(default))


def test_tracing_switch_traces_the_stage_and_every_function(switches: Synth) -> None:
    # tracing=true: the stage, the four image functions and the bulk state machine send X-Ray traces.
    _, stage = only(switches.service, "AWS::ApiGateway::Stage")
    assert stage["Properties"]["TracingEnabled"] is True
    assert [props["TracingConfig"] for props in image_functions(switches)] == [{"Mode": "Active"}] * 4
    _, state_machine = only(switches.service, "AWS::StepFunctions::StateMachine")
    assert state_machine["Properties"]["TracingConfiguration"] == {"Enabled": True}
