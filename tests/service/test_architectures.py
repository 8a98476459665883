"""Any classifier: four torchvision architectures besides ResNet-50 and a bring-your-own ONNX file,
published with the real CLI, served over HTTP, evaluated, promoted and quantized.

Heavy (a ViT-B/16 export alone takes a minute on two cores), so each architecture is published once,
into one store, by the module's fixture. Its weights are written by the test
(``helpers.weights.calibrated``: seeded, batch-norm statistics from real photos, a rescaled head), so
that photos get different answers; the references are torchvision's own model with its own
weights' transforms (the architecture's DEFAULT preprocessing), and for the ONNX file, ONNX Runtime
on the same file fed by a pipeline written here with torchvision's transforms.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime
import pytest
import torch
import torchvision.models
from PIL import Image
from starlette.testclient import TestClient
from torchvision import transforms

from classifier.api.app import create_app
from classifier.config import Settings
from classifier.store.layout import ModelStore

from helpers.onnx_models import tiny_classifier, write_labels, write_preprocessing
from helpers.photos import encode, jpeg, photo
from helpers.processes import live_server
from helpers.stores import copy_store
from helpers.torchvision_reference import assert_same_top5
from helpers.weights import calibrated

ARCHS = ["mobilenet_v3_large", "efficientnet_b0", "convnext_tiny", "vit_b_16"]
PHOTOS = ["chelsea", "coffee", "astronaut", "rocket"]
# efficientnet_b0 is published with a 3-class head and its labels (the head width is read from its
# final layer, classifier.1), and evaluated on a small ImageFolder of those classes.
LABELS = ["cat", "coffee", "rocket"]
CLASS_PHOTOS = {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket"}
# The bring-your-own model: a 299 crop of a 320 resize, bicubic, mean and std 0.5, BGR, NHWC.
BYO_PREPROCESSING: dict[str, Any] = {"resize": 320, "crop": 299, "interpolation": "bicubic", "mean": [0.5] * 3,
                                     "std": [0.5] * 3, "channel_order": "BGR", "layout": "NHWC"}
BYO_LABELS = 7


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "classifier", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=1800)


@dataclass
class Published:
    store: Path
    models: dict[str, torch.nn.Module]  # by architecture: the weights each version holds
    versions: dict[str, str]
    work: Path
    onnx: Path


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    work = tmp_path_factory.mktemp("architectures")
    store = work / "store"
    models: dict[str, torch.nn.Module] = {}
    versions: dict[str, str] = {}
    for arch in ARCHS:
        classes = len(LABELS) if arch == "efficientnet_b0" else 1000
        models[arch] = calibrated(arch, classes=classes)
        checkpoint = work / f"{arch}.pth"
        torch.save(models[arch].state_dict(), checkpoint)
        labels = ["--labels", str(write_labels_file(work / "labels.txt"))] if classes != 1000 else []
        done = cli("publish", "--store", str(store), "--arch", arch, "--weights", str(checkpoint), *labels)
        assert done.returncode == 0, done.stderr
        version = ModelStore(store).current(arch)
        assert version is not None and version in done.stdout
        versions[arch] = version
    onnx_file = tiny_classifier(work / "byo.onnx", labels=BYO_LABELS, layout="NHWC", normalise=(0.5, 0.5, True))
    done = cli("publish", "--store", str(store), "--onnx", str(onnx_file), "--name", "byo",
               "--labels", str(write_labels(work / "byo-labels.json", BYO_LABELS)),
               "--preprocessing", str(write_preprocessing(work / "byo-prep.json", **BYO_PREPROCESSING)))
    assert done.returncode == 0, done.stderr
    return Published(store, models, versions, work, onnx_file)


def write_labels_file(path: Path) -> Path:
    path.write_text("\n".join(LABELS) + "\n")
    return path


@pytest.fixture
def store(published: Published, tmp_path: Path) -> Path:
    return copy_store(published.store, tmp_path / "store")


def reference_probs(arch: str, model: torch.nn.Module, data: bytes) -> np.ndarray:
    """torchvision's own answer: the model, fed by its architecture's DEFAULT weights' transforms()."""
    preset = torchvision.models.get_model_weights(arch).DEFAULT.transforms()
    x = preset(Image.open(io.BytesIO(data)).convert("RGB"))
    with torch.inference_mode():
        probs: np.ndarray = torch.softmax(model(x[None]), dim=1)[0].numpy()
    return probs


def multipart(images: list[bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("file", (f"photo{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]


# -- any torchvision classifier, on both backends ------------------------------------------------


@pytest.mark.parametrize("backend", ["onnx", "torch"])
@pytest.mark.parametrize("arch", ARCHS)
def test_served_predictions_equal_torchvisions(published: Published, arch: str, backend: str,
                                               tmp_path: Path) -> None:
    # GIVEN the architecture's version served over HTTP by one backend, fast JPEG decode off
    env = {"MODEL_NAME": arch, "BACKEND": backend, "FAST_JPEG_DECODE": "0"}
    images = [jpeg(name) for name in PHOTOS]
    with live_server(published.store, tmp_path, env=env) as server:
        # WHEN the four photos are classified as one batch
        answer = httpx.post(server.url + "/classify", files=multipart(images), timeout=300)
        state = httpx.get(server.url + "/model").json()
    # THEN each answer's top-5 indices and scores are torchvision's own (scores within 1e-4)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    for data, result in zip(images, results, strict=True):
        assert result["model"] == {"name": arch, "version": published.versions[arch], "backend": backend,
                                   "trained": True}
        assert_same_top5(result["predictions"], reference_probs(arch, published.models[arch], data))
    # AND the photos got different answers (the reference check would be weak otherwise)
    assert len({r["predictions"][0]["index"] for r in results}) > 1
    # AND the manifest says which architecture and preprocessing it was built with
    manifest = state["manifest"]
    assert manifest["architecture"] == arch
    preset = torchvision.models.get_model_weights(arch).DEFAULT.transforms()
    assert (manifest["preprocessing"]["resize"], manifest["preprocessing"]["crop"]) == (
        preset.resize_size[0], preset.crop_size[0])
    assert manifest["preprocessing"]["interpolation"] == preset.interpolation.value


def test_the_head_width_is_read_from_the_final_layer(published: Published) -> None:
    # efficientnet_b0's final layer is classifier.1: its 3 rows decided the labels, not fc.weight
    manifest = ModelStore(published.store).manifest("efficientnet_b0", published.versions["efficientnet_b0"])
    assert manifest["labels"]["count"] == 3 and manifest["torchvision"]["kwargs"] == {"num_classes": 3}
    labels = json.loads((published.store / "models" / "efficientnet_b0" / "versions" /
                         published.versions["efficientnet_b0"] / "labels.json").read_text())
    assert labels == LABELS


@pytest.mark.parametrize("arch", ["regnet_y_400mf", "efficientnet_v2_s"])
def test_the_other_families_publish_and_both_backends_agree(arch: str, tmp_path: Path) -> None:
    # GIVEN RegNet (built on the CPU: its widths are computed with tensors) and EfficientNetV2, whose
    # weights take a 384 crop, published untrained
    done = cli("publish", "--store", str(tmp_path / "store"), "--arch", arch, "--weights", "random")
    assert done.returncode == 0, done.stderr
    manifest = ModelStore(tmp_path / "store").manifest(arch, str(ModelStore(tmp_path / "store").current(arch)))
    preset = torchvision.models.get_model_weights(arch).DEFAULT.transforms()
    assert manifest["preprocessing"]["crop"] == preset.crop_size[0]
    # WHEN a photo is classified by each backend
    answers = {}
    for backend in ("onnx", "torch"):
        settings = Settings(model_store=tmp_path / "store", model_name=arch, backend=backend, fast_jpeg_decode=False)
        with TestClient(create_app(settings)) as client:
            answer = client.post("/classify", content=jpeg("rocket"), headers={"content-type": "image/jpeg"})
        assert answer.status_code == 200, answer.text
        answers[backend] = answer.json()["predictions"]
    # THEN the exported model takes the crop's size, and the backends agree
    import onnx

    version_dir = tmp_path / "store" / "models" / arch / "versions" / manifest["version"]
    dims = onnx.load(str(version_dir / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [3, preset.crop_size[0], preset.crop_size[0]]
    assert [p["index"] for p in answers["onnx"]] == [p["index"] for p in answers["torch"]]
    for a, b in zip(answers["onnx"], answers["torch"], strict=True):
        assert abs(a["score"] - b["score"]) <= 1e-4


# -- bring your own ONNX ---------------------------------------------------------------------------


def byo_reference(onnx_file: Path, data: bytes) -> np.ndarray:
    """The ONNX file's own answer, run by ONNX Runtime on an input made here with torchvision's
    transforms: resize 320 bicubic, crop 299, levels / 255, BGR, (x - 0.5) / 0.5, NHWC."""
    rgb = transforms.Compose([
        transforms.Resize(320, interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
        transforms.CenterCrop(299), transforms.ToTensor(),
    ])(Image.open(io.BytesIO(data)).convert("RGB"))
    x = ((rgb.flip(0) - 0.5) / 0.5).permute(1, 2, 0)[None].numpy()
    session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"image": x})
    return torch.softmax(torch.from_numpy(logits), dim=1)[0].numpy()


def test_an_onnx_file_with_its_own_preprocessing_is_served_as_it_answers(published: Published,
                                                                         tmp_path: Path) -> None:
    images = [jpeg(name) for name in PHOTOS]
    with live_server(published.store, tmp_path, env={"MODEL_NAME": "byo", "FAST_JPEG_DECODE": "0"}) as server:
        answer = httpx.post(server.url + "/classify", files=multipart(images), timeout=120)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    for data, result in zip(images, results, strict=True):
        assert result["model"]["name"] == "byo"
        assert [p["label"] for p in result["predictions"]] == [f"class {p['index']}" for p in result["predictions"]]
        assert_same_top5(result["predictions"], byo_reference(published.onnx, data))
    assert len({r["predictions"][0]["index"] for r in results}) > 1


def test_the_torch_backend_refuses_an_onnx_version_and_keeps_serving(published: Published, store: Path,
                                                                     tmp_path: Path) -> None:
    # GIVEN the torch backend serving efficientnet_b0, and an ONNX file with the same 3 labels,
    # installed under that name but not current
    onnx_file = tiny_classifier(tmp_path / "three.onnx", labels=3, layout="NHWC")
    done = cli("publish", "--store", str(store), "--onnx", str(onnx_file), "--name", "efficientnet_b0",
               "--labels", str(write_labels_file(tmp_path / "labels.txt")), "--no-activate",
               "--preprocessing", str(write_preprocessing(tmp_path / "prep.json", **BYO_PREPROCESSING)))
    assert done.returncode == 0, done.stderr
    models = ModelStore(store)
    (byo,) = set(models.versions("efficientnet_b0")) - {published.versions["efficientnet_b0"]}
    settings = Settings(model_store=store, model_name="efficientnet_b0", backend="torch", refresh_seconds=0.0)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").json()["version"] == published.versions["efficientnet_b0"]
        # WHEN the ONNX version becomes current
        models.set_current("efficientnet_b0", byo, reason="promote")
        answer = client.post("/classify", content=jpeg("coffee"), headers={"content-type": "image/jpeg"})
        state = client.get("/model").json()
    # THEN requests keep being answered by the torchvision version, and the refusal says why
    assert answer.status_code == 200 and answer.json()["model"]["version"] == published.versions["efficientnet_b0"]
    assert "published from an ONNX file: only the onnx backend serves it" in state["last_error"]
    # AND a torch process that has only the ONNX version answers 503 model_unavailable
    with TestClient(create_app(Settings(model_store=store, model_name="efficientnet_b0", backend="torch"))) as client:
        refused = client.post("/classify", content=jpeg("coffee"), headers={"content-type": "image/jpeg"})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "model_unavailable"
    assert "only the onnx backend serves it" in refused.json()["error"]["message"]


# -- evaluate, promote, quantize: every version, whatever its architecture --------------------------


def image_folder(root: Path) -> Path:
    for label, name in CLASS_PHOTOS.items():
        (root / label).mkdir(parents=True)
        for i, angle in enumerate((0, 8, -8)):
            (root / label / f"{name}-{i}.jpg").write_bytes(encode(photo(name).rotate(angle), "JPEG", quality=90))
    return root


def test_evaluate_and_a_gated_promote_on_an_efficientnet(published: Published, store: Path, tmp_path: Path) -> None:
    # GIVEN a second efficientnet_b0 version (another seed), installed but not current, and an ImageFolder
    model = calibrated("efficientnet_b0", classes=3, seed=1)
    torch.save(model.state_dict(), tmp_path / "second.pth")
    done = cli("publish", "--store", str(store), "--arch", "efficientnet_b0", "--weights",
               str(tmp_path / "second.pth"), "--labels", str(write_labels_file(tmp_path / "labels.txt")),
               "--no-activate")
    assert done.returncode == 0, done.stderr
    models = ModelStore(store)
    (second,) = set(models.versions("efficientnet_b0")) - {published.versions["efficientnet_b0"]}
    data = image_folder(tmp_path / "data")
    # WHEN it is evaluated
    done = cli("evaluate", "--store", str(store), "--name", "efficientnet_b0", "--data", str(data),
               "--version", second, "--json", env={"FAST_JPEG_DECODE": "0"})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # THEN its top-1 and top-5 are torchvision's, with EfficientNet's own (bicubic 256/224) preprocessing
    top1 = hits = 0
    for folder in sorted(data.iterdir()):
        for path in sorted(folder.iterdir()):
            order = np.argsort(-reference_probs("efficientnet_b0", model, path.read_bytes()))
            top1 += LABELS[order[0]] == folder.name
            hits += 1
    assert report["images"] == hits == 9 and report["top1"] == round(top1 / hits, 6)
    assert 0 < report["top1"] < 1, "a data set where the head is neither always right nor always wrong"
    # WHEN it is promoted behind a gate just above that figure, THEN it is refused and nothing changes
    gate = str(round(report["top1"] + 0.01, 4))
    refused = cli("promote", second, "--store", str(store), "--name", "efficientnet_b0", "--data", str(data),
                  "--min-top1", gate)
    assert refused.returncode == 1 and f"{report['top1']:.4f}" in refused.stderr
    assert models.current("efficientnet_b0") == published.versions["efficientnet_b0"]
    # AND behind a gate at the figure it passes and becomes current
    passed = cli("promote", second, "--store", str(store), "--name", "efficientnet_b0", "--data", str(data),
                 "--min-top1", str(report["top1"]))
    assert passed.returncode == 0, passed.stderr
    assert models.current("efficientnet_b0") == second


def test_quantize_a_mobilenet_says_what_it_measured(published: Published, store: Path) -> None:
    fp32 = published.versions["mobilenet_v3_large"]
    models = ModelStore(store)
    # WHEN the MobileNetV3 is quantized, asking for the int8 version to become current
    done = cli("quantize", "--store", str(store), "--name", "mobilenet_v3_large")
    # THEN the int8 version is derived and installed, with the figures it measured against fp32
    assert done.returncode == 0, done.stderr
    (int8,) = set(models.versions("mobilenet_v3_large")) - {fp32}
    manifest = models.manifest("mobilenet_v3_large", int8)
    assert manifest["precision"] == "int8" and manifest["derived_from"] == fp32
    assert manifest["architecture"] == "mobilenet_v3_large" and manifest["preprocessing"] == models.manifest(
        "mobilenet_v3_large", fp32)["preprocessing"]
    assert manifest["artifacts"]["model.onnx"]["bytes"] < models.manifest(
        "mobilenet_v3_large", fp32)["artifacts"]["model.onnx"]["bytes"] / 3
    verification = manifest["verification"]
    assert "relative error" in done.stdout and "top-1 agreement" in done.stdout and "ms int8 against" in done.stdout
    # AND on these weights its outputs drift beyond the bounds: it says so, and does not make it current
    assert verification["relative_error_vs_fp32"] > 0.4 and verification["drift"]
    assert "NOT made current" in done.stdout and "WARNING: its outputs drift from fp32's" in done.stderr
    assert models.current("mobilenet_v3_large") == fp32
    # AND promoted, it serves on the onnx backend
    assert cli("promote", int8, "--store", str(store), "--name", "mobilenet_v3_large").returncode == 0
    with TestClient(create_app(Settings(model_store=store, model_name="mobilenet_v3_large"))) as client:
        answer = client.post("/classify", content=jpeg("rocket"), headers={"content-type": "image/jpeg"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"]["version"] == int8 and len(answer.json()["predictions"]) == 5
