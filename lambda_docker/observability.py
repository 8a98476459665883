"""Observability, CDK side: the service's CloudWatch dashboard, and its latency and error-rate alarms.

The runtime writes Powertools JSON logs and EMF metrics (no PutMetricData
calls: CloudWatch extracts the metrics from the log lines) in namespace
``METRICS_NAMESPACE``, service ``POWERTOOLS_SERVICE_NAME`` (both set on every
function by ``inference.runtime_environment``):

- ``TotalLatency``, ``InferenceLatency``, ``DecodeLatency`` (Milliseconds) and
  ``Images`` (Count), dimensions ``service``, ``model_version`` and ``role``
  (``current``, and during a rollout ``canary`` or ``shadow``);
- ``ModelErrors`` (Count), dimensions ``service``, ``model_version`` and ``role``;
  ``ShadowAgreement`` (1 or 0 per image), the same; ``CandidateLoadFailures``,
  ``service`` and ``model_version``;
- ``Errors`` (Count), dimensions ``service`` and ``code`` (the API's error code);
- Powertools' ``ColdStart``, dimensions ``function_name`` and ``service``.

The dashboard reads them with SEARCH expressions, so each model version (and
each role, each error code) gets its own line without the stack knowing the
versions, beside API Gateway's and Lambda's own metrics. Its rollout row puts
a running rollout's current version and candidate side by side: the evidence
the rollout judge weighs (docs/rollouts.md). The alarms watch API Gateway's
metrics, which exist whatever the runtime emits, and notify ``Alarms``' topic.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from lambda_docker.alarms import ALARM_PERIOD, Alarms, alarm_at_or_above
from lambda_docker.inference import METRICS_NAMESPACE, POWERTOOLS_SERVICE_NAME

# p99 over five minutes includes cold starts (seconds: the model loads from
# EFS); three periods in a row means users keep seeing it, not one cold start.
LATENCY_EVALUATION_PERIODS = 3
# 5xx answers as a percentage of requests, in one period; ApiServerErrors
# (alarms.py) counts them, this one scales with traffic.
ERROR_RATE_PERCENT = 5
GRAPH_PERIOD = Duration.minutes(5)
WIDGET_WIDTH = 8  # three widgets a row (CloudWatch's grid is 24 wide)


# The dimensions of the per-request metrics (classifier.observability.metrics).
BY_VERSION_AND_ROLE = "model_version,role"


def runtime_search(metric_name: str, dimension: str, statistic: str, label: str) -> cloudwatch.MathExpression:
    """Every time series of the runtime's ``metric_name``, one per value of ``dimension`` (comma-separated
    dimension names: one per combination of their values)."""
    schema = f"{{{METRICS_NAMESPACE},{dimension},service}}"
    query = f'{schema} MetricName="{metric_name}" service="{POWERTOOLS_SERVICE_NAME}"'
    return cloudwatch.MathExpression(
        expression=f"SEARCH('{query}', '{statistic}', {int(GRAPH_PERIOD.to_seconds())})",
        using_metrics={},
        label=label,
        period=GRAPH_PERIOD,
    )


class Observability(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api: apigw.RestApi | apigwv2.HttpApi,
        function: lambda_.IFunction,
        alarms: Alarms,
        latency_p99_ms: int,
    ) -> None:
        super().__init__(scope, construct_id)

        self.latency_alarm = alarm_at_or_above(
            self, "ApiLatencyP99",
            metric=api.metric_latency(period=ALARM_PERIOD, statistic="p99"),
            threshold=latency_p99_ms,
            evaluation_periods=LATENCY_EVALUATION_PERIODS,
            description=f"The classification API's p99 latency stayed at or above {latency_p99_ms} ms for "
                        f"{LATENCY_EVALUATION_PERIODS * 5} minutes: see the dashboard (cold starts, "
                        "concurrency, throttles) and the inference function's log group",
        )
        self.error_rate_alarm = alarm_at_or_above(
            self, "ApiErrorRate",
            metric=cloudwatch.MathExpression(
                expression="IF(requests > 0, 100 * errors / requests, 0)",
                using_metrics={
                    "errors": api.metric_server_error(period=ALARM_PERIOD, statistic=cloudwatch.Stats.SUM),
                    "requests": api.metric_count(period=ALARM_PERIOD, statistic=cloudwatch.Stats.SUM),
                },
                label="5xx (% of requests)",
                period=ALARM_PERIOD,
            ),
            threshold=ERROR_RATE_PERCENT,
            description=f"At least {ERROR_RATE_PERCENT}% of the classification API's answers in 5 minutes "
                        "were 5xx: see the inference function's log group",
        )
        for alarm in (self.latency_alarm, self.error_rate_alarm):
            alarms.watch(alarm)

        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.hours(3))
        self.dashboard.add_widgets(*self._latency_widgets(api))
        self.dashboard.add_widgets(*self._traffic_widgets(api))
        self.dashboard.add_widgets(*self._capacity_widgets(function))
        self.dashboard.add_widgets(*self._rollout_widgets())
        self.dashboard.add_widgets(cloudwatch.AlarmStatusWidget(
            title="Alarms", alarms=[alarms.api_server_errors, self.latency_alarm, self.error_rate_alarm],
            width=WIDGET_WIDTH * 3,
        ))
        self.url = (f"https://{Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}"
                    f"#dashboards:name={self.dashboard.dashboard_name}")

    def _latency_widgets(self, api: apigw.RestApi | apigwv2.HttpApi) -> list[cloudwatch.IWidget]:
        return [
            graph("Latency p50 / p99 (ms): the runtime, per model version and role", [
                runtime_search("TotalLatency", BY_VERSION_AND_ROLE, "p50", "p50"),
                runtime_search("TotalLatency", BY_VERSION_AND_ROLE, "p99", "p99"),
            ]),
            graph("Latency p50 / p99 (ms): API Gateway", [
                api.metric_latency(period=GRAPH_PERIOD, statistic="p50", label="p50"),
                api.metric_latency(period=GRAPH_PERIOD, statistic="p99", label="p99"),
            ]),
            graph("Inference and decode p99 (ms), per model version and role", [
                runtime_search("InferenceLatency", BY_VERSION_AND_ROLE, "p99", "inference p99"),
                runtime_search("DecodeLatency", BY_VERSION_AND_ROLE, "p99", "decode p99"),
            ]),
        ]

    def _traffic_widgets(self, api: apigw.RestApi | apigwv2.HttpApi) -> list[cloudwatch.IWidget]:
        return [
            graph("Requests", [
                api.metric_count(period=GRAPH_PERIOD, statistic=cloudwatch.Stats.SUM, label="requests"),
            ]),
            graph("4xx / 5xx answers", [
                api.metric_client_error(period=GRAPH_PERIOD, statistic=cloudwatch.Stats.SUM, label="4xx"),
                api.metric_server_error(period=GRAPH_PERIOD, statistic=cloudwatch.Stats.SUM, label="5xx"),
                runtime_search("Errors", "code", "Sum", "errors by code"),
            ]),
            graph("Model version in use (images classified)", [
                runtime_search("Images", BY_VERSION_AND_ROLE, "Sum", "images"),
            ], stacked=True),
        ]

    def _rollout_widgets(self) -> list[cloudwatch.IWidget]:
        """A rollout's evidence, as the judge weighs it: each version in its role (current, canary,
        shadow) side by side, from the same metrics."""
        return [
            graph("Rollout: inference p95 (ms), per version and role", [
                runtime_search("InferenceLatency", BY_VERSION_AND_ROLE, "p95", "p95"),
            ]),
            graph("Rollout: requests and model errors, per version and role", [
                runtime_search("InferenceLatency", BY_VERSION_AND_ROLE, "SampleCount", "requests"),
                runtime_search("ModelErrors", BY_VERSION_AND_ROLE, "Sum", "model errors"),
            ]),
            graph("Rollout: shadow top-1 agreement (0..1), candidate load failures", [
                runtime_search("ShadowAgreement", BY_VERSION_AND_ROLE, "Average", "agreement"),
                runtime_search("CandidateLoadFailures", "model_version", "Sum", "load failures"),
            ]),
        ]

    def _capacity_widgets(self, function: lambda_.IFunction) -> list[cloudwatch.IWidget]:
        return [
            graph("Lambda throttles", [function.metric_throttles(period=GRAPH_PERIOD, statistic="Sum")]),
            graph("Lambda concurrency (max)", [
                function.metric("ConcurrentExecutions", period=GRAPH_PERIOD, statistic="Maximum"),
            ]),
            graph("Cold starts", [runtime_search("ColdStart", "function_name", "Sum", "cold starts")]),
        ]


def graph(title: str, metrics: list[cloudwatch.IMetric], *, stacked: bool = False) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(title=title, left=metrics, width=WIDGET_WIDTH, stacked=stacked)
