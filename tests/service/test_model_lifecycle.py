"""Your own model, evaluated before it serves: a fine-tuned head with its labels, ``evaluate``,
gated ``promote``, and an int8 version from ``quantize``.

One 3-class ResNet-50 checkpoint (torchvision's ``resnet50(num_classes=3)``, seeded) is written
and published once per module, and quantized once; tests work on private copies of that store.
The references are computed independently with torchvision on the same images.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from starlette.testclient import TestClient
from torchvision.models import ResNet50_Weights, resnet50

from classifier.api.app import create_app
from classifier.config import Settings
from classifier.store.layout import ModelStore

from helpers.photos import encode, jpeg, photo
from helpers.processes import live_server
from helpers.stores import copy_store

LABELS = ["cat", "coffee", "rocket"]
# The photos of each class of the small ImageFolder: real photos, each also rotated, so classes hold
# several images and a random head gets some right and some wrong.
CLASS_PHOTOS = {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket"}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "classifier", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=900)


def versions(store: Path) -> list[str]:
    return ModelStore(store).versions("resnet50")


def current(store: Path) -> str | None:
    return ModelStore(store).current("resnet50")


@dataclass
class Published:
    store: Path
    fp32: str
    int8: str
    model: torch.nn.Module  # the checkpoint, for references
    data: Path  # the ImageFolder
    labels_file: Path


def image_folder(root: Path) -> Path:
    for label, name in CLASS_PHOTOS.items():
        (root / label).mkdir(parents=True)
        base = photo(name)
        for i, angle in enumerate((0, 8, -8)):
            (root / label / f"{name}-{i}.jpg").write_bytes(encode(base.rotate(angle), "JPEG", quality=90))
    return root


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    work = tmp_path_factory.mktemp("lifecycle")
    torch.manual_seed(3)
    model = resnet50(num_classes=len(LABELS)).eval()
    checkpoint = work / "fine-tuned.pth"
    torch.save(model.state_dict(), checkpoint)
    labels_file = work / "labels.txt"
    labels_file.write_text("\n".join(LABELS) + "\n")
    store = work / "store"
    done = cli("publish", "--store", str(store), "--weights", str(checkpoint), "--labels", str(labels_file))
    assert done.returncode == 0, done.stderr
    fp32 = current(store)
    assert fp32 is not None
    done = cli("quantize", "--store", str(store), "--no-activate")
    assert done.returncode == 0, done.stderr
    (int8,) = set(versions(store)) - {fp32}
    return Published(store, fp32, int8, model, image_folder(work / "data"), labels_file)


@pytest.fixture
def store(published: Published, tmp_path: Path) -> Path:
    return copy_store(published.store, tmp_path / "store")


def reference_logits(model: torch.nn.Module, data: bytes) -> np.ndarray:
    x = ResNet50_Weights.IMAGENET1K_V2.transforms()(Image.open(io.BytesIO(data)).convert("RGB"))
    with torch.inference_mode():
        return model(x[None])[0].numpy()


# --- publish: a fine-tuned head and its labels --------------------------------------------------


def test_a_fine_tuned_head_is_served_with_its_labels(published: Published, store: Path) -> None:
    # GIVEN the published 3-class checkpoint
    manifest = ModelStore(store).manifest("resnet50", published.fp32)
    assert manifest["labels"]["count"] == 3 and manifest["precision"] == "fp32"
    assert manifest["source"].startswith("file:") and "derived_from" not in manifest
    data = jpeg("chelsea")
    # WHEN a photo is classified through the API, asking for more predictions than there are classes
    with TestClient(create_app(Settings(model_store=store, fast_jpeg_decode=False))) as client:
        answer = client.post("/classify", params={"top_k": 5}, content=data, headers={"content-type": "image/jpeg"})
    # THEN top_k is capped at the 3 labels, the labels are the file's, and the scores are torchvision's
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    probs = torch.softmax(torch.from_numpy(reference_logits(published.model, data)), 0).numpy()
    assert [p["index"] for p in predictions] == np.argsort(-probs).tolist()
    assert [p["label"] for p in predictions] == [LABELS[i] for i in np.argsort(-probs)]
    for p in predictions:
        assert abs(p["score"] - probs[p["index"]]) <= 1e-4


@pytest.mark.parametrize("labels", [["cat", "coffee", "rocket", "dog"], ["cat", "coffee"]])
def test_labels_that_do_not_match_the_head_are_refused(published: Published, tmp_path: Path,
                                                        labels: list[str]) -> None:
    # GIVEN a 3-class checkpoint and a labels file of another length (JSON this time)
    checkpoint = tmp_path / "fine-tuned.pth"
    torch.save(published.model.state_dict(), checkpoint)
    labels_file = tmp_path / "labels.json"
    labels_file.write_text(json.dumps(labels))
    store = tmp_path / "store"
    # WHEN it is published
    done = cli("publish", "--store", str(store), "--weights", str(checkpoint), "--labels", str(labels_file))
    # THEN it is refused with the two counts, and nothing is installed
    assert done.returncode == 2
    assert f"{len(labels)} labels" in done.stderr and "3 outputs" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (store / "models").exists() or versions(store) == []


def test_a_head_other_than_imagenet_needs_its_labels(published: Published, tmp_path: Path) -> None:
    checkpoint = tmp_path / "fine-tuned.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in published.model.state_dict().items()}, str(checkpoint))
    done = cli("publish", "--store", str(tmp_path / "store"), "--weights", str(checkpoint))
    assert done.returncode == 2 and "3-class head" in done.stderr and "--labels" in done.stderr


def test_publish_no_activate_leaves_current_as_it_was(published: Published, store: Path, tmp_path: Path) -> None:
    # GIVEN a store whose current version is the fine-tuned one
    before = current(store)
    assert before == published.fp32
    # WHEN another model is published with --no-activate
    done = cli("publish", "--store", str(store), "--weights", "random", "--labels", str(published.labels_file),
               "--no-activate")
    # THEN it is installed, and CURRENT still names the old version
    assert done.returncode == 0, done.stderr
    assert "not current" in done.stdout
    assert len(versions(store)) == 3
    assert current(store) == before


# --- evaluate -----------------------------------------------------------------------------------


def reference_report(model: torch.nn.Module, data: Path) -> dict[str, Any]:
    """top-1, top-5, per class and confusion, computed with torchvision alone."""
    per_class: dict[str, list[int]] = {}
    confusion: dict[str, dict[str, int]] = {}
    top1 = top5 = n = 0
    for folder in sorted(data.iterdir()):
        for path in sorted(folder.iterdir()):
            order = np.argsort(-reference_logits(model, path.read_bytes()))
            predicted = LABELS[order[0]]
            hit = predicted == folder.name
            top1 += hit
            top5 += folder.name in [LABELS[i] for i in order[:5]]
            n += 1
            per_class.setdefault(folder.name, []).append(hit)
            confusion.setdefault(folder.name, {}).setdefault(predicted, 0)
            confusion[folder.name][predicted] += 1
    return {"images": n, "top1": round(top1 / n, 6), "top5": round(top5 / n, 6),
            "per_class": {k: {"images": len(v), "top1": round(sum(v) / len(v), 6)} for k, v in per_class.items()},
            "confusion": confusion}


def test_evaluate_reports_what_torchvision_computes(published: Published, store: Path) -> None:
    # WHEN the fine-tuned version is evaluated on the small ImageFolder
    done = cli("evaluate", "--store", str(store), "--data", str(published.data), "--json",
               env={"FAST_JPEG_DECODE": "0"})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # THEN every figure equals the reference computed with torchvision on the same images
    want = reference_report(published.model, published.data)
    assert {k: report[k] for k in want} == want
    assert 0 < want["top1"] < 1, "a data set where the head is neither always right nor always wrong"
    assert report["version"] == published.fp32 and report["images"] == 9
    assert report["latency_ms"]["p95"] >= report["latency_ms"]["p50"] > 0
    # AND the report is kept beside the version (not inside it), and `models` shows its score
    saved = list((store / "models" / "resnet50" / "evaluations" / published.fp32).glob("*.json"))
    assert len(saved) == 1 and json.loads(saved[0].read_text())["top1"] == want["top1"]
    assert not any(p.name.endswith(".json") and p.name != "manifest.json" and p.name != "labels.json"
                   for p in (store / "models" / "resnet50" / "versions" / published.fp32).iterdir())
    listing = cli("models", "--store", str(store)).stdout
    line = next(line for line in listing.splitlines() if published.fp32 in line)
    assert f"{want['top1']:.3f} on 9 images" in line and "fp32" in line


def test_evaluate_names_a_folder_that_is_not_a_label(published: Published, store: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "cat").mkdir(parents=True)
    (data / "cat" / "a.jpg").write_bytes(jpeg("chelsea"))
    (data / "dog").mkdir()
    (data / "dog" / "b.jpg").write_bytes(jpeg("coffee"))
    done = cli("evaluate", "--store", str(store), "--data", str(data))
    assert done.returncode == 2 and "'dog'" in done.stderr and "Traceback" not in done.stderr


def test_evaluate_skips_an_unreadable_image_and_says_so(published: Published, store: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "cat").mkdir(parents=True)
    (data / "cat" / "good.jpg").write_bytes(jpeg("chelsea"))
    (data / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    (data / "cat" / "IMG_0001").write_bytes(jpeg("chelsea", quality=70))  # an image without a suffix: taken
    (data / "cat" / "notes.txt").write_text("shot on a sunny day")  # not an image: ignored, and counted
    (data / "README").write_text("cats")  # outside the <label>/ folders: ignored, and counted
    done = cli("evaluate", "--store", str(store), "--data", str(data), "--json")
    report = json.loads(done.stdout)
    assert report["images"] == 2 and report["data"]["images"] == 3
    assert report["errors"] == [{"file": "cat/broken.jpg", "code": "unsupported_media_type",
                                 "message": report["errors"][0]["message"]}]
    assert report["data"]["ignored"] == {"not an image (neither its name nor its bytes)": 1,
                                         "directly in DIR, not in a <label>/ folder": 1}
    assert "3 images; ignored 2 files" in done.stderr


# --- promote ------------------------------------------------------------------------------------


def measured_top1(published: Published, store: Path, version: str) -> float:
    done = cli("evaluate", "--store", str(store), "--data", str(published.data), "--version", version, "--json")
    assert done.returncode == 0, done.stderr
    top1: float = json.loads(done.stdout)["top1"]
    return top1


def test_a_gate_above_the_measured_top1_refuses_and_changes_nothing(published: Published, store: Path) -> None:
    # GIVEN the int8 version, installed but not current, and its measured top-1
    assert current(store) == published.fp32
    top1 = measured_top1(published, store, published.int8)
    before = (store / "models" / "resnet50" / "CURRENT").read_bytes()
    # WHEN it is promoted behind a gate just above that figure
    done = cli("promote", published.int8, "--store", str(store), "--data", str(published.data),
               "--min-top1", str(round(top1 + 0.01, 4)))
    # THEN the promotion is refused, with the measured figure, and CURRENT is byte for byte the same
    assert done.returncode == 1
    assert f"{top1:.4f}" in done.stderr and "unchanged" in done.stderr
    assert (store / "models" / "resnet50" / "CURRENT").read_bytes() == before
    # AND a gate at the figure passes (reusing the saved report: same data set digest)
    passed = cli("promote", published.int8, "--store", str(store), "--data", str(published.data),
                 "--min-top1", str(top1))
    assert passed.returncode == 0, passed.stderr
    assert current(store) == published.int8


def test_promote_switches_and_the_server_follows(published: Published, store: Path, tmp_path: Path) -> None:
    # GIVEN a server on the fine-tuned version, re-reading CURRENT every second
    with live_server(store, tmp_path, env={"MODEL_REFRESH_SECONDS": "1"}) as server:
        assert httpx.get(server.url + "/health").json()["version"] == published.fp32
        # WHEN the int8 version is promoted without a gate
        done = cli("promote", published.int8, "--store", str(store))
        assert done.returncode == 0, done.stderr
        # THEN the server serves it within MODEL_REFRESH_SECONDS (a deadline, not a sleep)
        deadline = time.monotonic() + 60
        while httpx.get(server.url + "/health").json()["version"] != published.int8:
            assert time.monotonic() < deadline, "the server never picked up the promoted version"
            time.sleep(0.2)
        answer = httpx.post(server.url + "/classify", content=jpeg("coffee"), headers={"content-type": "image/jpeg"})
    assert answer.status_code == 200 and answer.json()["model"]["version"] == published.int8


# --- quantize -----------------------------------------------------------------------------------


def test_the_int8_version_is_derived_small_and_serves(published: Published, store: Path) -> None:
    models = ModelStore(store)
    manifest = models.manifest("resnet50", published.int8)
    fp32 = models.manifest("resnet50", published.fp32)
    # It says what it is and where it comes from, and keeps the labels and preprocessing
    assert manifest["precision"] == "int8" and manifest["derived_from"] == published.fp32
    assert manifest["labels"] == fp32["labels"] and manifest["preprocessing"] == fp32["preprocessing"]
    assert set(manifest["artifacts"]) == {"model.onnx", "labels.json"}
    # Its file is under a third of fp32's
    assert manifest["artifacts"]["model.onnx"]["bytes"] < fp32["artifacts"]["model.onnx"]["bytes"] / 3
    # It loads and serves on the onnx backend
    models.set_current("resnet50", published.int8)
    with TestClient(create_app(Settings(model_store=store))) as client:
        answer = client.post("/classify", content=jpeg("rocket"), headers={"content-type": "image/jpeg"})
        state = client.get("/model").json()
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"]["version"] == published.int8 and len(answer.json()["predictions"]) == 3
    assert state["manifest"]["precision"] == "int8"


def independent_agreement(published: Published, store: Path) -> dict[str, float]:
    """How often the int8 version's top-1 is the checkpoint's, and how much their top-k lists overlap, on
    the ImageFolder: its graph run by ONNX Runtime directly and the checkpoint by torchvision, both fed
    torchvision's preprocessing (none of the service's code)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    int8 = onnxruntime.InferenceSession(
        str(store / "models" / "resnet50" / "versions" / published.int8 / "model.onnx"), options,
        providers=["CPUExecutionProvider"])
    transforms = ResNet50_Weights.IMAGENET1K_V2.transforms()
    k = min(5, len(LABELS))
    paths = sorted(published.data.rglob("*.jpg"))
    same = overlap = 0.0
    for path in paths:
        x = transforms(Image.open(path).convert("RGB"))[None].numpy()
        quantized = int8.run(None, {"input": x})[0][0]
        full = reference_logits(published.model, path.read_bytes())
        same += int(np.argmax(quantized) == np.argmax(full))
        overlap += len(set(np.argsort(-quantized)[:k]) & set(np.argsort(-full)[:k])) / k
    return {"images": len(paths), "top1": round(same / len(paths), 6), "top5_overlap": round(overlap / len(paths), 6)}


def test_evaluate_compare_reports_agreement(published: Published, store: Path) -> None:
    # WHEN the int8 version is evaluated against the fp32 one it was derived from
    done = cli("evaluate", "--store", str(store), "--data", str(published.data), "--version", published.int8,
               "--compare", published.fp32, "--json", env={"FAST_JPEG_DECODE": "0"})
    assert done.returncode == 0, done.stderr
    # THEN the agreement it reports is the one computed here without the service
    agreement = json.loads(done.stdout)["agreement"]
    assert agreement == {"version": published.fp32, **independent_agreement(published, store)}


@pytest.fixture
def torch_server(store: Path, tmp_path: Path) -> Iterator[Any]:
    with live_server(store, tmp_path, env={"BACKEND": "torch", "MODEL_REFRESH_SECONDS": "1"}) as server:
        yield server


def test_the_torch_backend_refuses_int8_and_keeps_serving(published: Published, store: Path, torch_server: Any) -> None:
    # GIVEN the torch backend serving the fp32 version
    assert httpx.get(torch_server.url + "/health").json() == {
        "status": "ok", "version": published.fp32, "backend": "torch"}
    # WHEN the int8 version becomes current
    ModelStore(store).set_current("resnet50", published.int8)
    deadline = time.monotonic() + 60
    # (a generous read timeout: the server answers while it loads, but a shared machine can be slow)
    while "int8" not in str(httpx.get(torch_server.url + "/model", timeout=30).json()["last_error"]):
        assert time.monotonic() < deadline, "the refusal never showed"
        time.sleep(0.2)
    # THEN it says why it refuses, and requests keep being answered by the previous version
    answer = httpx.post(torch_server.url + "/classify", content=jpeg("coffee"), headers={"content-type": "image/jpeg"},
                        timeout=30)
    assert answer.status_code == 200 and answer.json()["model"]["version"] == published.fp32


def test_the_torch_backend_with_only_int8_is_503(published: Published, store: Path) -> None:
    ModelStore(store).set_current("resnet50", published.int8)
    with TestClient(create_app(Settings(model_store=store, backend="torch"))) as client:
        answer = client.post("/classify", content=jpeg("coffee"), headers={"content-type": "image/jpeg"})
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "model_unavailable" and "int8" in answer.json()["error"]["message"]


def test_models_api_lists_versions_with_their_evaluations(published: Published, store: Path) -> None:
    # GIVEN an evaluation of the int8 version
    assert cli("evaluate", "--store", str(store), "--data", str(published.data), "--version",
               published.int8).returncode == 0
    with TestClient(create_app(Settings(model_store=store))) as client:
        listing = client.get("/model/versions").json()
        report = client.get(f"/model/versions/{published.int8}/evaluation")
        none = client.get(f"/model/versions/{published.fp32}/evaluation")
    # THEN the listing shows both versions, newest first, which is current, and the int8 one's score
    assert listing["current"] == published.fp32
    assert [v["version"] for v in listing["versions"]] == [published.int8, published.fp32]
    int8, fp32 = listing["versions"]
    assert (int8["precision"], int8["derived_from"], int8["current"]) == ("int8", published.fp32, False)
    assert int8["evaluation"]["images"] == 9 and fp32["evaluation"] is None
    assert report.status_code == 200 and set(report.json()["per_class"]) == set(LABELS)
    assert none.status_code == 404 and none.json()["error"]["code"] == "not_found"
