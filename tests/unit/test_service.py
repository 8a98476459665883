"""The classify use case (classifier.serving.service): a pixel budget per request, summed over its batch,
checked from the image headers before anything is decoded; and during a rollout, a failure counts against
the version it was routed to, and a shadow run completes each record with the candidate's answer (or its
failure) before storing it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from classifier.api.app import create_app
from classifier.config import ConfigError, Settings
from classifier.records.evidence import RolloutLedger
from classifier.records.sqlite import SqliteRecordStore
from classifier.serving.manager import ModelManager
from classifier.serving.service import Classifier, ImageInput
from classifier.store.layout import ModelStore
from classifier.store.rollout import RolloutStore

from helpers.photos import encode, jpeg, photo
from helpers.stores import copy_store, derive_version, stored_records

BUDGET = 1_000_000
SIDE = (800, 600)  # 480,000 pixels: two fit the budget, three do not


@pytest.fixture(scope="module")
def budget_client(published_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Path]]:
    store = copy_store(published_store, tmp_path_factory.mktemp("budget") / "store")
    settings = Settings(model_store=store, max_image_pixels=BUDGET, max_request_pixels=BUDGET)
    with TestClient(create_app(settings)) as client:
        yield client, store


def images() -> tuple[bytes, bytes]:
    """A whole 800x600 photo, and the same cut short: its header intact, its pixels not decodable."""
    whole = encode(photo("chelsea").resize(SIDE, Image.Resampling.BICUBIC), "PNG")
    return whole, whole[: len(whole) // 2]


def post(client: TestClient, *parts: bytes) -> tuple[int, dict[str, object]]:
    files = [("file", (f"{i}.png", data, "image/png")) for i, data in enumerate(parts)]
    response = client.post("/classify", files=files)
    return response.status_code, response.json()


def test_a_batch_over_the_pixel_budget_is_413_before_any_decoding(budget_client: tuple[TestClient, Path]) -> None:
    client, store = budget_client
    whole, truncated = images()
    before = len(stored_records(store))
    # GIVEN a batch whose second image would fail to decode (422), and whose three headers hold 1.44 MP
    status, body = post(client, whole, truncated, whole)
    # THEN it is refused for its size, not for the broken image: nothing was decoded, nothing stored
    assert status == 413
    assert body["error"] == {"code": "image_too_large", "message": (
        f"the 3 images hold 1440000 pixels between them; the limit per request is {BUDGET} (MAX_REQUEST_PIXELS): "
        "send them in smaller batches")}
    assert len(stored_records(store)) == before


def test_a_batch_within_the_budget_is_decoded_and_classified(budget_client: tuple[TestClient, Path]) -> None:
    client, _ = budget_client
    whole, truncated = images()
    # The same broken image in a batch of two (960,000 pixels) is decoded, and refused for what it is
    status, body = post(client, whole, truncated)
    assert (status, body["error"]["code"]) == (422, "invalid_image")  # type: ignore[index]
    status, body = post(client, whole, whole)
    assert status == 200 and len(body["results"]) == 2  # type: ignore[arg-type]


def test_the_budget_holds_at_least_one_image() -> None:
    with pytest.raises(ConfigError, match="MAX_REQUEST_PIXELS"):
        Settings.from_env({"MAX_IMAGE_PIXELS": "50000000", "MAX_REQUEST_PIXELS": "40000000"})
    assert Settings.from_env({}).max_request_pixels == 120_000_000


# -- rollouts --------------------------------------------------------------------------------------

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
