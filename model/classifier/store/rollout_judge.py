"""The AWS rollout judge: a scheduled Lambda that weighs each running rollout every minute.

It runs outside the VPC (CloudWatch's API has no gateway endpoint, and an
interface endpoint would cost more than the judge), so it never touches EFS:

1. it reads the rollout state the installer mirrors to ``rollouts/<name>.json``
   in the model inbox (``classifier.store.inbox``);
2. for each running rollout, it reads the evidence from CloudWatch
   (``classifier.store.cloudwatch_evidence``) and judges it (``classifier.store.judge``);
3. to act, it writes a rollout request (``models/<name>/ROLLOUT``: abort on a
   breach, promote when ready and ``auto_promote``) into the inbox, and the
   installer carries it out on EFS, the store's only writer.

Every decision is one log line: the verdict, why, the action and the evidence.
A request names the rollout's id, so a request the installer has not yet
carried out when the judge runs again is harmless when it arrives twice. A
mirror older than ``STATE_REFRESH`` is refreshed (a ``sync`` request) before the
inbox's lifecycle rule would expire it.

``rollout status --s3`` and ``rollout judge --s3`` run the same code from a laptop.
Standard library and boto3 only: it ships in the installer's zip.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from classifier.observability import logs
from classifier.store.cloudwatch_evidence import cloudwatch_evidence
from classifier.store.inbox import ROLLOUT_STATE_PREFIX, RolloutRequestKey, rollout_state_key
from classifier.store.judge import Evidence, Verdict, judge
from classifier.store.rollout import Rollout, RolloutError
from classifier.store.s3_notifications import is_not_found

log = logging.getLogger("classifier.store.rollout_judge")

STATE_REFRESH = timedelta(days=7)
DEFAULT_NAMESPACE = "Classifier"
DEFAULT_SERVICE = "classifier"


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point (an EventBridge schedule): judge every running rollout, act through the inbox."""
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        logs.configure()
    import boto3

    # The deployment's model names spare a LIST a minute; "*" (or none) lists the mirrored states.
    models = [n for n in os.environ.get("ROLLOUT_MODELS", "").split(",") if n.strip()]
    decisions = judge_inbox(
        boto3.client("s3"), boto3.client("cloudwatch"), os.environ["INBOX_BUCKET"],
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE,
        service=os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE,
        act=True, names=None if not models or "*" in models else [n.strip() for n in models],
    )
    return {"decisions": decisions}


def read_state(s3: Any, bucket: str, name: str) -> tuple[dict[str, Any], datetime] | None:
    """A model's mirrored rollout state and when it was written, or None if the installer wrote none."""
    from botocore.exceptions import ClientError

    try:
        obj = s3.get_object(Bucket=bucket, Key=rollout_state_key(name))
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    return json.loads(obj["Body"].read()), obj["LastModified"]


def state_names(s3: Any, bucket: str) -> list[str]:
    """The models with a mirrored rollout state."""
    names = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=ROLLOUT_STATE_PREFIX):
        for item in page.get("Contents", []):
            key = item["Key"].removeprefix(ROLLOUT_STATE_PREFIX)
            if key.endswith(".json") and "/" not in key:
                names.append(key.removesuffix(".json"))
    return names


def send_request(s3: Any, bucket: str, prefix: str, name: str, request: Mapping[str, Any]) -> str:
    """Write a rollout request where the installer acts on it; return its key."""
    key = RolloutRequestKey(prefix, name).key
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(request).encode(), ContentType="application/json")
    return key


def assess(cloudwatch: Any, rollout: Rollout, *, namespace: str, service: str,
           now: datetime | None = None) -> tuple[Evidence, Verdict]:
    evidence = cloudwatch_evidence(cloudwatch, rollout, namespace=namespace, service=service, now=now)
    return evidence, judge(rollout, evidence)


def judge_inbox(s3: Any, cloudwatch: Any, bucket: str, *, namespace: str, service: str, act: bool,
                names: list[str] | None = None, now: datetime | None = None) -> list[dict[str, Any]]:
    """Judge the running rollouts mirrored in ``bucket`` (of ``names``, default all); with ``act``,
    send the abort or promotion each verdict calls for. One decision (logged) per rollout."""
    now = now or datetime.now(UTC)
    decisions = []
    for name in names if names is not None else state_names(s3, bucket):
        found = read_state(s3, bucket, name)
        if found is None or found[0].get("rollout") is None:
            continue
        state, written = found
        try:
            rollout = Rollout.from_dict(state["rollout"])
        except RolloutError as exc:
            log.error("unreadable rollout state of %s: %s", name, exc, extra={"state": state})
            continue
        evidence, verdict = assess(cloudwatch, rollout, namespace=namespace, service=service, now=now)
        action = verdict.action(rollout)
        decision: dict[str, Any] = {
            "name": name, "id": rollout.id, "candidate": rollout.candidate, "current": rollout.current,
            "mode": rollout.mode, "percent": rollout.percent, **verdict.as_dict(),
            "action": action, "evidence": evidence.as_dict(),
        }
        if act and action is not None:
            decision["request"] = send_request(s3, bucket, "", name, {
                "action": action, "id": rollout.id, "reason": f"judge: {verdict}: {verdict.reason}",
                "evidence": evidence.as_dict()})
        elif act and now - written > STATE_REFRESH:
            decision["request"] = send_request(s3, bucket, "", name, {"action": "sync"})
        what = "nothing to do" if action is None else (
            f"asked the installer to {action}" if act else f"would ask the installer to {action}")
        log.info("rollout of %s %s judged %s: %s; %s", name, rollout.candidate, verdict, verdict.reason, what,
                 extra={"decision": decision})
        decisions.append(decision)
    return decisions
