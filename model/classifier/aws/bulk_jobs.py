"""Starting and following the deployed bulk state machine (``batch s3://bucket/prefix``).

A job's records carry the identity that started it (``owner``, as the API's records carry their
caller's): the starter's own IAM principal, from STS, its session name dropped
(``classifier.aws.principals``). The state machine cannot check it (Step Functions does not tell an
execution who started it), so it is the starter's word; starting a job at all takes a deliberate
grant (``states:StartExecution``), and CloudTrail records who really called it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from classifier.aws.principals import principal_owner

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})
ARN_OUTPUT = "BulkStateMachineArn"


def state_machine_from_stack(stack: str) -> str:
    """The ``BulkStateMachineArn`` output of ``stack`` (``<name>-service-stack``)."""
    import boto3

    described = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    for output in described.get("Outputs", []):
        if output.get("OutputKey") == ARN_OUTPUT:
            return str(output["OutputValue"])
    raise LookupError(f"{stack} has no {ARN_OUTPUT} output: is the bulk switch on?")


def caller_owner() -> str:
    """The owner this process's AWS identity stands for (``sts:GetCallerIdentity`` needs no permission)."""
    import boto3

    return principal_owner(str(boto3.client("sts").get_caller_identity()["Arn"]))


def start_job(state_machine: str, bucket: str, prefix: str, top_k: int, owner: str | None = None) -> str:
    import boto3

    payload: dict[str, Any] = {"bucket": bucket, "prefix": prefix, "top_k": top_k}
    if owner is not None:
        payload["owner"] = owner
    started = boto3.client("stepfunctions").start_execution(stateMachineArn=state_machine, input=json.dumps(payload))
    return str(started["executionArn"])


def follow(execution: str, *, poll_seconds: float = 5.0,
           on_progress: Callable[[Mapping[str, Any]], None] | None = None) -> dict[str, Any]:
    """Wait until the execution ends, reporting the Map Run's item counts as they move; its description."""
    import boto3

    sfn = boto3.client("stepfunctions")
    while True:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution)
        for run in sfn.list_map_runs(executionArn=execution).get("mapRuns", []):
            counts = sfn.describe_map_run(mapRunArn=run["mapRunArn"]).get("itemCounts") or {}
            if on_progress is not None and counts:
                on_progress(counts)
        if described["status"] in TERMINAL:
            return described
        time.sleep(poll_seconds)


def results_location(described: Mapping[str, Any]) -> str | None:
    """Where the Map's ResultWriter put the manifest of the results, from the execution's output."""
    try:
        output = json.loads(described.get("output") or "null")
        details = output["ResultWriterDetails"]
        return f"s3://{details['Bucket']}/{details['Key']}"
    except (TypeError, KeyError, ValueError):
        return None
