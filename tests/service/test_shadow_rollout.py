"""A shadow rollout on a running server, with two versions that disagree on some photos: every answer the
current version's, every record the candidate's answer and agreement, and the judge acting on it.

The current version is the fitted test model (``helpers.fitted_model``: batch-norm statistics estimated on
the test photos, its final layer fitted to give each photo its own class), published with ``--weights
PATH``. The candidate is a checkpoint this module writes from it and publishes with ``--weights PATH
--labels FILE --no-activate``, as a user would a fine-tuned model: the same weights with two rows of the
final layer swapped, chelsea's class (tabby) and one no photo gets (tench). So the candidate disagrees on
chelsea and agrees on the other photos.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from classifier.cli import main
from classifier.store.layout import ModelStore
from classifier.store.rollout import RolloutStore

from helpers.fitted_model import class_index, fitted_weights
from helpers.openapi import matches_the_document
from helpers.photos import encode, photo
from helpers.processes import LiveServer, live_server, wait_for
from helpers.stores import copy_store, stored_records

NAME = "resnet50"
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
SENT = {name: encode(photo(name), "JPEG", quality=90) for name in PHOTOS}
FAST = {"MODEL_REFRESH_SECONDS": "1", "ROLLOUT_JUDGE_SECONDS": "1"}
# The class the candidate moves chelsea's answer to (tench: no photo's).
MOVED_TO = 0


def candidate_checkpoint(current: Path, folder: Path) -> tuple[Path, Path]:
    """The candidate's checkpoint (``current`` with chelsea's and ``MOVED_TO``'s rows of ``fc`` swapped) and a
    labels file of the ImageNet classes; returns their paths."""
    from safetensors.torch import load_file, save_file
    from torchvision.models import ResNet50_Weights

    weights = load_file(str(current))
    swap = [class_index("chelsea"), MOVED_TO]
    for key in ("fc.weight", "fc.bias"):
        weights[key][swap] = weights[key][list(reversed(swap))].clone()
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "candidate.safetensors"))
    labels = folder / "labels.txt"
    labels.write_text("\n".join(ResNet50_Weights.IMAGENET1K_V2.meta["categories"]) + "\n")
    return folder / "candidate.safetensors", labels


def publish_candidate(store: Path, weights: Path, labels: Path) -> str:
    """``publish --weights PATH --labels FILE --no-activate``, as a user installs a version to roll out."""
    out = subprocess.run([sys.executable, "-m", "classifier", "publish", "--store", str(store), "--weights",
                          str(weights), "--labels", str(labels), "--no-activate"],
                         check=True, capture_output=True, text=True)
    return out.stdout.split()[2]


@pytest.fixture(scope="module")
def disagreeing(fitted_store: Path, output_dir: Path,
                tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A read-only store: the fitted model current, and a candidate that disagrees with it on chelsea."""
    folder = tmp_path_factory.mktemp("disagreeing")
    store = copy_store(fitted_store, folder / "store")
    current = ModelStore(store).current(NAME)
    assert current is not None
    weights, labels = candidate_checkpoint(fitted_weights(output_dir / "cache"), folder / "weights")
    return store, current, publish_candidate(store, weights, labels)


@pytest.fixture
def pair(disagreeing: tuple[Path, str, str], tmp_path: Path) -> tuple[Path, str, str]:
    store, current, candidate = disagreeing
    return copy_store(store, tmp_path / "store"), current, candidate


def candidate_loaded(server: LiveServer) -> bool:
    rollout = httpx.get(server.url + "/model", timeout=60).json().get("rollout") or {}
    return bool(rollout.get("candidate_state") == "loaded")


def status(store: Path) -> dict[str, Any]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["rollout", "status", "--store", str(store), "--json"]) == 0
    report: dict[str, Any] = json.loads(buffer.getvalue())
    return report


@contextlib.contextmanager
def serving(store: Path, tmp_path: Path, *start: str) -> Iterator[LiveServer]:
    with live_server(store, tmp_path, env=FAST) as server:
        assert main(["rollout", "start", *start, "--store", str(store)]) == 0
        wait_for(lambda: candidate_loaded(server), "the candidate loaded")
        yield server


def test_shadow_at_100_percent(pair: tuple[Path, str, str], tmp_path: Path) -> None:
    store, current, candidate = pair
    # GIVEN a full shadow that never concludes
    with serving(store, tmp_path, candidate, "--shadow", "100", "--min-requests", "1000000") as server:
        # WHEN each photo is classified three times, and once all four in one batch
        answers: dict[str, dict[str, Any]] = {}
        with server.client() as client:
            for name in PHOTOS * 3:
                response = client.post("/classify", content=SENT[name], headers={"content-type": "image/jpeg"})
                assert response.status_code == 200, response.text
                answers[response.json()["id"]] = {**response.json(), "photo": name}
            files = [("file", (f"{name}.jpg", SENT[name], "image/jpeg")) for name in PHOTOS]
            batch = client.post("/classify", files=files)
            assert batch.status_code == 200
            for name, result in zip(PHOTOS, batch.json()["results"], strict=True):
                answers[result["id"]] = {**result, "photo": name}
        # THEN every answer came from the current version, and none carries the shadow
        assert {(a["model"]["version"], a["model"]["role"]) for a in answers.values()} == {(current, "current")}
        assert not any("shadow" in a for a in answers.values())
        # AND every record, once its shadow run is done, carries the candidate's answer and agreement
        wait_for(lambda: all("shadow" in r for r in stored_records(store).values())
                 and len(stored_records(store)) == len(answers), "every record with its shadow")
        # (a record, shadow and all, as the API document describes it)
        first = next(iter(answers))
        matches_the_document(httpx.get(f"{server.url}/classifications/{first}", timeout=60).json(),
                             "/classifications/{record_id}", "get")
    records = stored_records(store)
    assert set(records) == set(answers)
    for record_id, record in records.items():
        shadow = record["shadow"]
        assert "error" not in shadow, shadow
        assert shadow["version"] == candidate and shadow["inference_ms"] > 0 and len(shadow["predictions"]) == 5
        assert shadow["agrees_top1"] == (shadow["predictions"][0]["index"] == record["predictions"][0]["index"])
        # each photo gets its own class from the current version; the candidate moved chelsea's elsewhere
        name = answers[record_id]["photo"]
        assert record["predictions"][0]["index"] == class_index(name)
        assert shadow["predictions"][0]["index"] == (MOVED_TO if name == "chelsea" else class_index(name))
        assert shadow["agrees_top1"] == (name != "chelsea")
    # AND `rollout status` reports the agreement the records hold
    report = status(store)
    agreed = sum(r["shadow"]["agrees_top1"] for r in records.values())
    assert (report["evidence"]["compared"], report["evidence"]["agreed"]) == (len(records), agreed)
    assert report["evidence"]["agreement"] == round(agreed / len(records), 6)
    assert report["evidence"]["candidate"]["requests"] == 13 and report["evidence"]["current"]["requests"] == 13


def test_a_disagreeing_candidate_is_aborted_by_the_judge(pair: tuple[Path, str, str], tmp_path: Path) -> None:
    store, current, candidate = pair
    # GIVEN a shadow asking for 90% agreement after 8 requests (latency not at stake), auto-promotion on
    with serving(store, tmp_path, candidate, "--shadow", "100", "--min-requests", "8", "--min-agreement", "0.9",
                 "--max-latency-ratio", "100", "--auto-promote") as server, server.client() as client:
        # WHEN the photos keep coming, chelsea among them (a quarter of the requests: 75% agreement)
        sent = 0

        def ended() -> bool:
            nonlocal sent
            name = PHOTOS[sent % len(PHOTOS)]
            sent += 1
            assert client.post("/classify", content=SENT[name], headers={"content-type": "image/jpeg"}).status_code \
                == 200
            return RolloutStore(ModelStore(store)).get(NAME) is None

        wait_for(ended, "the rollout ended")
    # THEN the server's judge aborted it for its agreement, and CURRENT never moved
    (outcome,) = RolloutStore(ModelStore(store)).outcomes(NAME)
    assert outcome["outcome"] == "aborted" and outcome["reason"].startswith("judge: breached: min_agreement")
    assert outcome["evidence"]["agreement"] < 0.9 and outcome["evidence"]["candidate"]["requests"] >= 8
    assert ModelStore(store).current(NAME) == current
