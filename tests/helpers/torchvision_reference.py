"""What torchvision itself answers for an image: its resnet50 with a published version's weights,
fed by ``ResNet50_Weights.IMAGENET1K_V2.transforms()``. None of the service's code is involved, so a
served prediction compared with this checks the whole path (decoding, preprocessing, the backend)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from torchvision.models import ResNet50_Weights, resnet50

TRANSFORMS = ResNet50_Weights.IMAGENET1K_V2.transforms()


def current_dir(store: Path, name: str = "resnet50") -> Path:
    """The current version's directory, read from CURRENT with no help from classifier.store.layout."""
    version = (store / "models" / name / "CURRENT").read_text().strip()
    return store / "models" / name / "versions" / version


def reference_model(store: Path, name: str = "resnet50") -> torch.nn.Module:
    """torchvision's resnet50 holding the current version's weights, in eval mode."""
    model = resnet50()
    model.load_state_dict(load_file(current_dir(store, name) / "weights.safetensors"))
    return model.eval()


def reference_labels(store: Path, name: str = "resnet50") -> list[str]:
    labels: list[str] = json.loads((current_dir(store, name) / "labels.json").read_text())
    return labels


def reference_probs(model: torch.nn.Module, data: bytes) -> np.ndarray:
    """Softmax probabilities of ``data`` (encoded image bytes) by torchvision's own pipeline."""
    x = TRANSFORMS(Image.open(io.BytesIO(data)).convert("RGB"))
    with torch.inference_mode():
        probs: np.ndarray = torch.softmax(model(x[None]), dim=1)[0].numpy()
    return probs


def assert_same_top5(predictions: list[dict[str, Any]], probs: np.ndarray) -> None:
    """``predictions`` (the API's) are torchvision's top 5 (all of them, for fewer classes), in order,
    with its scores within 1e-4."""
    want = np.argsort(-probs, kind="stable")[:5]
    got = [p["index"] for p in predictions]
    assert len(got) == min(5, len(probs)), predictions
    for position, (g, w) in enumerate(zip(got, want, strict=True)):
        # positions whose reference scores tie within 1e-4 may swap
        assert g == w or abs(probs[g] - probs[w]) <= 1e-4, f"position {position}: {got} vs {want.tolist()}"
    for p in predictions:
        assert abs(p["score"] - probs[p["index"]]) <= 1e-4
