"""Rollouts in AWS, on loopback: ``rollout ... --s3`` through the inbox, the installer acting on EFS (a
directory), and the scheduled judge reading the runtime's EMF metrics from CloudWatch (moto's server)."""

from __future__ import annotations

import json
import logging
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from classifier.cli import main
from classifier.observability import metrics
from classifier.store import installer, rollout_judge
from classifier.store.inbox import rollout_state_key
from classifier.store.layout import ModelStore
from classifier.store.rollout import RolloutStore

from helpers.aws import new_bucket, point_boto3_at, s3_client
from helpers.cloudwatch import cloudwatch_client, emf_lines, moto_percentiles, put_emf
from helpers.inbox import s3_event
from helpers.stores import copy_store, derive_version

NAME = "resnet50"


class Deployment:
    """The inbox bucket, CloudWatch, and the EFS store with a current version and a candidate of its own
    (fresh version ids, so no other test's metrics share their dimensions on the shared moto server)."""

    def __init__(self, endpoint: str, published_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        point_boto3_at(monkeypatch, endpoint)
        monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Classifier")
        moto_percentiles(monkeypatch)
        self.s3, self.cloudwatch = s3_client(endpoint), cloudwatch_client(endpoint)
        self.bucket = new_bucket(endpoint, "inbox")
        monkeypatch.setenv("INBOX_BUCKET", self.bucket)
        self.store = ModelStore(copy_store(published_store, tmp_path / "efs"))
        monkeypatch.setenv("MODEL_STORE", str(self.store.root))
        published = self.store.current(NAME)
        assert published is not None
        base = datetime(2031, 1, 1, tzinfo=UTC) + timedelta(seconds=random.randrange(10**8))
        versions = []
        for offset, folder in ((0, "current"), (1, "candidate")):
            created = (base + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")
            source = derive_version(self.store.version_dir(NAME, published), tmp_path / folder, created=created)
            versions.append(self.store.install_dir(source, make_current=offset == 0))
        self.current, self.candidate = versions
        self.rollouts = RolloutStore(self.store)

    def installer_acts(self, key: str) -> dict[str, Any]:
        (result,) = installer.handler(s3_event("eventbridge", self.bucket, key))["results"]
        return dict(result)

    def mirror(self) -> dict[str, Any]:
        return dict(json.loads(self.s3.get_object(Bucket=self.bucket, Key=rollout_state_key(NAME))["Body"].read()))

    def start(self, capsys: pytest.CaptureFixture[str], *options: str) -> None:
        """``rollout start --s3``, then the installer on the request it wrote."""
        assert main(["rollout", "start", self.candidate, "--name", NAME, "--s3", f"s3://{self.bucket}/releases",
                     *options]) == 0
        assert "releases/models/resnet50/ROLLOUT" in capsys.readouterr().out
        assert self.installer_acts("releases/models/resnet50/ROLLOUT")["status"] == "started"

    def serve_metrics(self, capsys: pytest.CaptureFixture[str], *, requests: int, candidate_ms: float,
                      current_ms: float = 20.0, agreeing: int | None = None, canary: bool = False) -> int:
        """What the inference function's EMF lines say after ``requests`` requests, in CloudWatch."""
        capsys.readouterr()
        for i in range(requests):
            metrics.record_request(timing={"total": current_ms + 5, "inference": current_ms, "decode": 2.0},
                                   images=1, model_version=self.current, error_code=None, cold_start=False)
            if canary:
                metrics.record_request(timing={"total": candidate_ms + 5, "inference": candidate_ms, "decode": 2.0},
                                       images=1, model_version=self.candidate, error_code=None, cold_start=False,
                                       role="canary")
            else:
                metrics.record_shadow(model_version=self.candidate, inference_ms=candidate_ms,
                                      agreements=[agreeing is None or i < agreeing])
        return put_emf(self.cloudwatch, emf_lines(capsys.readouterr().out))


@pytest.fixture
def aws(s3_endpoint: str, published_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Deployment:
    return Deployment(s3_endpoint, published_store, tmp_path, monkeypatch)


def test_start_through_the_inbox_and_the_mirror(aws: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    # WHEN `rollout start --s3` writes its request and the installer acts on it
    aws.start(capsys, "--shadow", "25", "--min-requests", "7", "--auto-promote")
    # THEN EFS holds the rollout, and the bucket mirrors it for those who cannot reach EFS
    rollout = aws.rollouts.get(NAME)
    assert rollout is not None and (rollout.candidate, rollout.mode, rollout.percent) == (aws.candidate, "shadow", 25)
    assert (rollout.guards.min_requests, rollout.auto_promote, rollout.current) == (7, True, aws.current)
    mirror = aws.mirror()
    assert mirror["rollout"] == rollout.as_dict() and mirror["current"] == aws.current
    assert mirror["last_request"]["status"] == "started" and mirror["last_request"]["id"] == rollout.id
    # AND `rollout status --s3` shows it, judged on CloudWatch's (still empty) evidence
    assert main(["rollout", "status", "--name", NAME, "--s3", f"s3://{aws.bucket}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rollout"]["id"] == rollout.id and report["verdict"] == "running"
    assert report["evidence"]["candidate"]["requests"] == 0


def test_a_refused_request_is_in_the_mirror_and_status(aws: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a start of a version that is not installed
    missing = "20991231T000000Z-0123456789ab"
    assert main(["rollout", "start", missing, "--s3", f"s3://{aws.bucket}", "--canary", "10"]) == 0
    # WHEN the installer sees it
    result = aws.installer_acts("models/resnet50/ROLLOUT")
    # THEN it is refused with its reason, EFS has no rollout, and status says why
    assert result["status"] == "refused" and "is not installed" in result["reason"]
    assert aws.rollouts.get(NAME) is None
    capsys.readouterr()
    assert main(["rollout", "status", "--s3", f"s3://{aws.bucket}"]) == 0
    out = capsys.readouterr().out
    assert "no rollout running" in out and "refused by the installer" in out and "is not installed" in out


def test_the_judge_aborts_a_disagreeing_shadow_through_the_installer(
    aws: Deployment, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a full shadow whose candidate agrees on 6 of 12 images, and the function's metrics in CloudWatch
    aws.start(capsys, "--shadow", "100", "--min-requests", "10", "--min-agreement", "0.9", "--auto-promote")
    assert aws.serve_metrics(capsys, requests=12, candidate_ms=21.0, agreeing=6) > 0
    # WHEN the scheduled judge runs
    with caplog.at_level(logging.INFO, logger="classifier.store.rollout_judge"):
        (decision,) = rollout_judge.handler({"source": "aws.events", "detail-type": "Scheduled Event"})["decisions"]
    # THEN it judged the CloudWatch evidence a breach of min_agreement, said why in its log, and asked to abort
    assert decision["verdict"] == "breached: min_agreement" and decision["action"] == "abort"
    evidence = decision["evidence"]
    assert (evidence["compared"], evidence["agreed"]) == (12, 6)
    assert evidence["current"]["requests"] == 12 and evidence["candidate"]["requests"] == 12
    assert (evidence["current"]["p95_ms"], evidence["candidate"]["p95_ms"]) == (20.0, 21.0)
    assert any("judged breached: min_agreement" in r.getMessage() and "0.5000 (6 of 12 images)" in r.getMessage()
               for r in caplog.records)
    assert decision["request"] == "models/resnet50/ROLLOUT"
    # AND the installer, acting on that request, aborts it: CURRENT unchanged, the outcome logged with its evidence
    assert aws.installer_acts(decision["request"])["status"] == "aborted"
    assert aws.store.current(NAME) == aws.current and aws.rollouts.get(NAME) is None
    (outcome,) = aws.rollouts.outcomes(NAME)
    assert outcome["reason"].startswith("judge: breached: min_agreement") and outcome["evidence"]["agreed"] == 6
    assert aws.mirror()["rollout"] is None and aws.mirror()["last_outcome"]["outcome"] == "aborted"
    # AND the request, delivered again, changes nothing
    assert aws.installer_acts(decision["request"])["status"] == "already-ended"


def test_the_judge_promotes_a_canary_that_holds_every_guard(
    aws: Deployment, capsys: pytest.CaptureFixture[str],
) -> None:
    aws.start(capsys, "--canary", "50", "--min-requests", "8", "--max-latency-ratio", "1.5", "--auto-promote")
    aws.serve_metrics(capsys, requests=8, candidate_ms=22.0, canary=True)
    # `rollout judge --s3` runs what the schedule runs
    assert main(["rollout", "judge", "--s3", f"s3://{aws.bucket}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "ready" and report["request"] == "models/resnet50/ROLLOUT"
    assert aws.installer_acts(report["request"])["status"] == "promoted"
    assert aws.store.current(NAME) == aws.candidate
    assert aws.mirror()["current"] == aws.candidate


def test_the_judge_aborts_a_slow_canary(aws: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    aws.start(capsys, "--canary", "20", "--min-requests", "5", "--max-latency-ratio", "1.5")
    aws.serve_metrics(capsys, requests=6, candidate_ms=45.0, canary=True)
    (decision,) = rollout_judge.handler({})["decisions"]
    assert decision["verdict"] == "breached: max_latency_ratio" and "45.0 ms" in decision["reason"]
    aws.installer_acts(decision["request"])
    assert aws.store.current(NAME) == aws.current and aws.rollouts.get(NAME) is None


def test_a_candidate_no_instance_could_load_is_aborted(aws: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    aws.start(capsys, "--canary", "20")
    capsys.readouterr()
    metrics.record_candidate_load_failure(aws.candidate)
    put_emf(aws.cloudwatch, emf_lines(capsys.readouterr().out))
    (decision,) = rollout_judge.handler({})["decisions"]
    assert decision["verdict"] == "breached: load" and decision["action"] == "abort"


def test_a_running_rollout_keeps_its_mirror_fresh(aws: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a rollout still gathering evidence, its mirror written more than a week before the judge runs
    aws.start(capsys, "--canary", "20")
    later = datetime.now(UTC) + rollout_judge.STATE_REFRESH + timedelta(hours=1)
    (decision,) = rollout_judge.judge_inbox(aws.s3, aws.cloudwatch, aws.bucket, namespace="Classifier",
                                            service="classifier", act=True, now=later)
    # THEN the judge asks the installer to rewrite it, and the installer does
    assert decision["verdict"] == "running" and decision["request"] == "models/resnet50/ROLLOUT"
    assert aws.installer_acts(decision["request"])["status"] == "synced"
    assert aws.mirror()["last_request"]["action"] == "sync" and aws.rollouts.get(NAME) is not None


def test_a_promotion_through_the_inbox_ends_the_rollout_it_overtakes(
    aws: Deployment, capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a running rollout, and `promote --s3` of the candidate by hand
    aws.start(capsys, "--canary", "20")
    aws.s3.put_object(Bucket=aws.bucket, Key=f"models/{NAME}/{aws.candidate}/manifest.json", Body=b"{}")
    aws.s3.put_object(Bucket=aws.bucket, Key=f"models/{NAME}/CURRENT", Body=f"{aws.candidate}\n".encode())
    # WHEN the installer promotes it
    assert aws.installer_acts(f"models/{NAME}/CURRENT")["status"] == "promoted"
    # THEN the rollout ended as promoted, and the mirror says so
    assert aws.rollouts.get(NAME) is None and aws.rollouts.outcomes(NAME)[-1]["outcome"] == "promoted"
    assert aws.mirror()["rollout"] is None and aws.mirror()["current"] == aws.candidate
