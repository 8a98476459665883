"""The classify use case during a rollout: a failure counts against the version it was routed to, and a
shadow run completes each record with the candidate's answer (or its failure) before storing it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from classifier.config import Settings
from classifier.records.evidence import RolloutLedger
from classifier.records.sqlite import SqliteRecordStore
from classifier.serving.manager import ModelManager
from classifier.serving.service import Classifier, ImageInput
from classifier.store.layout import ModelStore
from classifier.store.rollout import RolloutStore

from helpers.photos import jpeg
from helpers.stores import derive_version

NAME = "resnet50"


class BrokenBackend:
    """A backend whose every run fails, as ONNX Runtime does on a graph it cannot execute."""

    name = "onnx"
    num_classes = 1000

    def run(self, batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("ORT: the graph cannot run")


class Rolling:
    def __init__(self, store: Path, tmp_path: Path, mode: str) -> None:
        models = ModelStore(store)
        current = models.current(NAME)
        assert current is not None
        candidate = models.install_dir(derive_version(models.version_dir(NAME, current), tmp_path / "candidate",
                                                      created="2031-06-01T00:00:00Z"), make_current=False)
        self.rollout = RolloutStore(models).start(NAME, candidate, mode=mode, percent=100)
        settings = Settings(model_store=store, refresh_seconds=0.0, rollout_judge_seconds=0.0, verify_on_load=False)
        self.manager = ModelManager(settings)
        self.records = SqliteRecordStore(store / "records.sqlite3")
        self.classifier = Classifier(settings, self.manager, self.records)
        self.ledger = RolloutLedger(store / "records.sqlite3")
        self.manager.current()  # the first load: the current version, then the candidate beside it
        assert self.manager.rollout.candidate is not None


def test_a_failing_canary_counts_its_error_and_the_request_fails(store: Path, tmp_path: Path) -> None:
    rolling = Rolling(store, tmp_path, "canary")
    route = rolling.manager.route("key")
    assert route.role == "canary"
    broken = replace(route, model=replace(route.model, backend=BrokenBackend()))
    with pytest.raises(RuntimeError, match="cannot run"):
        rolling.classifier.classify_routed([ImageInput(jpeg("chelsea"))], broken)
    evidence = rolling.ledger.evidence(rolling.rollout)
    assert (evidence.candidate.requests, evidence.candidate.errors, evidence.current.requests) == (1, 1, 0)


def test_a_shadow_run_completes_and_stores_each_record(store: Path, tmp_path: Path) -> None:
    rolling = Rolling(store, tmp_path, "shadow")
    route = rolling.manager.route("key")
    images = [ImageInput(jpeg("chelsea")), ImageInput(jpeg("coffee"))]
    # WHEN a batch is classified: the answer comes first, nothing stored yet
    results, shadow = rolling.classifier.classify_routed(images, route, k=3)
    assert shadow is not None and [r.model["role"] for r in results] == ["current", "current"]
    assert rolling.records.get(results[0].id) is None
    # THEN the shadow run stores both, each with the candidate's answer
    shadow()
    for result in results:
        record = rolling.records.get(result.id)
        assert record is not None
        assert record["shadow"]["version"] == rolling.rollout.candidate and record["shadow"]["agrees_top1"] is True
        assert [p["index"] for p in record["shadow"]["predictions"]] == [p.index for p in result.predictions]
    evidence = rolling.ledger.evidence(rolling.rollout)
    assert (evidence.compared, evidence.agreed, evidence.candidate.requests, evidence.current.requests) == (2, 2, 1, 1)


def test_a_failing_shadow_still_stores_the_records(store: Path, tmp_path: Path) -> None:
    rolling = Rolling(store, tmp_path, "shadow")
    route = rolling.manager.route("key")
    assert route.shadow is not None
    broken = replace(route, shadow=replace(route.shadow, backend=BrokenBackend()))
    results, shadow = rolling.classifier.classify_routed([ImageInput(jpeg("chelsea"))], broken)
    assert shadow is not None
    shadow()  # never raises: the candidate's failure is evidence
    record = rolling.records.get(results[0].id)
    assert record is not None and "cannot run" in record["shadow"]["error"]
    evidence = rolling.ledger.evidence(rolling.rollout)
    assert (evidence.candidate.requests, evidence.candidate.errors, evidence.compared) == (1, 1, 0)


def test_classify_without_a_route_stays_outside_the_rollout(store: Path, tmp_path: Path) -> None:
    # The S3 trigger and batch call classify() with no request id: the current version, no evidence.
    rolling = Rolling(store, tmp_path, "canary")
    (result,) = rolling.classifier.classify([ImageInput(jpeg("rocket"))])
    assert result.model["version"] == rolling.rollout.current and "role" not in result.model
    assert rolling.ledger.evidence(rolling.rollout).current.requests == 0
