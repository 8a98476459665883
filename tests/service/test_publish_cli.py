"""`python -m classifier publish` as a user runs it (a subprocess): offline defaults, weights files, refusals."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import ResNet50_Weights, resnet50

from classifier.config import Settings
from classifier.records.sqlite import SqliteRecordStore
from classifier.serving.manager import ModelManager
from classifier.serving.service import Classifier, ImageInput
from classifier.store.fsio import sha256_file
from classifier.store.layout import ModelStore

from helpers.photos import jpeg


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "classifier", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_offline_default_names_the_alternatives(tmp_path: Path) -> None:
    # GIVEN no network (a proxy that refuses) and an empty torch hub cache
    env = {"TORCH_HOME": str(tmp_path / "torch"), "https_proxy": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9"}
    result = run_cli("publish", "--store", str(tmp_path / "store"), env=env)
    # THEN publish fails clearly, says how to proceed, and the store stays empty
    assert result.returncode == 2
    assert "IMAGENET1K_V2" in result.stderr
    assert "--weights PATH" in result.stderr and "--weights random" in result.stderr
    assert "Traceback" not in result.stderr
    assert ModelStore(tmp_path / "store").current("resnet50") is None


def test_publish_from_a_weights_file(tmp_path: Path) -> None:
    # GIVEN a checkpoint a user trained (here: seeded weights, saved the common way)
    torch.manual_seed(7)
    model = resnet50().eval()
    checkpoint = tmp_path / "my-resnet50.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, checkpoint)
    # WHEN it is published with the CLI
    store = tmp_path / "store"
    result = run_cli("publish", "--store", str(store), "--weights", str(checkpoint))
    assert result.returncode == 0, result.stderr
    # THEN the manifest records its sha256 and says it is trained
    models = ModelStore(store)
    version = models.current("resnet50")
    assert version is not None
    manifest = models.verify("resnet50", version)
    assert manifest["source"] == f"file:{sha256_file(checkpoint)[1]}"
    assert manifest["trained"] is True
    # AND the version id names its content: computed here from the files themselves, by the rule
    # docs/architecture.md gives (the UTC creation time, then 12 hex of the sha256 over each artifact's
    # name and sha256, in name order)
    vdir = models.version_dir("resnet50", version)
    hashes = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in vdir.iterdir() if p.name != "manifest.json"}
    assert {name: meta["sha256"] for name, meta in manifest["artifacts"].items()} == hashes
    content_id = hashlib.sha256("".join(f"{n}\0{h}\n" for n, h in sorted(hashes.items())).encode()).hexdigest()
    created = datetime.fromisoformat(manifest["created_at"].replace("Z", "+00:00")).astimezone(UTC)
    assert version == f"{created:%Y%m%dT%H%M%SZ}-{content_id[:12]}"
    # AND the served model is that checkpoint: predictions equal torchvision's on it
    settings = Settings(model_store=store, fast_jpeg_decode=False)
    classifier = Classifier(settings, ModelManager(settings), SqliteRecordStore(tmp_path / "records.sqlite3"))
    data = jpeg("astronaut")
    result_ = classifier.classify([ImageInput(data)], k=5)[0].as_dict()
    assert "warning" not in result_
    x = ResNet50_Weights.IMAGENET1K_V2.transforms()(Image.open(io.BytesIO(data)).convert("RGB"))
    with torch.inference_mode():
        probs = torch.softmax(model(x[None]), 1)[0].numpy()
    assert [p["index"] for p in result_["predictions"]] == np.argsort(-probs)[:5].tolist()
    # AND `models` lists it as current
    listing = run_cli("models", "--store", str(store)).stdout
    assert f"* {version}" in listing and "yes" in listing


def test_weights_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    # A 1000-class head with nothing else: the labels are ImageNet's, the body is missing.
    bad = tmp_path / "bad.pth"
    torch.save({"fc.weight": torch.zeros(1000, 2048)}, bad)
    result = run_cli("publish", "--store", str(tmp_path / "store"), "--weights", str(bad))
    assert result.returncode == 2 and "does not fit" in result.stderr
    # A 10-class head needs its 10 labels before anything else is read.
    head = tmp_path / "head.pth"
    torch.save({"fc.weight": torch.zeros(10, 2048)}, head)
    result = run_cli("publish", "--store", str(tmp_path / "store"), "--weights", str(head))
    assert result.returncode == 2 and "pass --labels FILE with its 10 labels" in result.stderr
    assert ModelStore(tmp_path / "store").versions("resnet50") == []
    missing = run_cli("publish", "--store", str(tmp_path / "store"), "--weights", str(tmp_path / "nope.pth"))
    assert missing.returncode == 2 and "neither" in missing.stderr




@pytest.mark.parametrize(("args", "message"), [
    (["--arch", "fasterrcnn_resnet50_fpn"], "'fasterrcnn_resnet50_fpn' is not a torchvision classification model"),
    (["--arch", "efficientnet_b0", "--weights", "IMAGENET1K_V2"],
     "is neither a weights name of efficientnet_b0 (IMAGENET1K_V1), 'random', nor an existing file"),
    (["--arch", "vit_b_16", "--weights", "IMAGENET1K_SWAG_E2E_V1"],
     "could not download torchvision's vit_b_16 IMAGENET1K_SWAG_E2E_V1 weights"),
    (["--arch", "mobilenet_v3_large", "--weights", "random", "--labels", "labels.txt"],
     "labels.txt holds an empty label"),
    (["--onnx", "model.onnx", "--arch", "resnet50"], "--onnx publishes that file as it is"),
])
def test_publish_refusals_name_the_problem(tmp_path: Path, args: list[str], message: str) -> None:
    # GIVEN no network (a proxy that refuses) and an empty torch hub cache; an empty labels file
    env = {"TORCH_HOME": str(tmp_path / "torch"), "https_proxy": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9"}
    (tmp_path / "labels.txt").write_text("\n \n")
    args = [str(tmp_path / a) if a in ("labels.txt", "model.onnx") else a for a in args]
    # WHEN publish is asked for it, THEN it says what is wrong, without a traceback, and installs nothing
    result = run_cli("publish", "--store", str(tmp_path / "store"), *args, env=env)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "store" / "models").exists()
