"""Served predictions equal torchvision's own resnet50 + weights.transforms() on the same weights.

The fitted model (``helpers.fitted_model``) gives each photo its own class, so a top-1 check can fail:
a photo answered with another photo's class, or a batch answered out of order. The untrained one
spreads its scores over many classes, which shows how far the reduced-scale JPEG decode moves them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from classifier.config import Settings
from classifier.records.sqlite import SqliteRecordStore
from classifier.serving.manager import ModelManager
from classifier.serving.service import Classifier, ImageInput

from helpers import torchvision_reference
from helpers.fitted_model import PHOTO_LABELS, class_index
from helpers.photos import big_jpeg, encode, jpeg, photo
from helpers.torchvision_reference import assert_same_top5, reference_probs

PHOTOS = ["chelsea", "coffee", "astronaut", "rocket"]


@pytest.fixture(scope="module")
def reference_model(published_store: Path) -> torch.nn.Module:
    return torchvision_reference.reference_model(published_store)


@pytest.fixture(scope="module")
def fitted_reference(fitted_store: Path) -> torch.nn.Module:
    return torchvision_reference.reference_model(fitted_store)


def make_classifier(store: Path, tmp_path: Path, backend: str, fast_jpeg: bool = False) -> Classifier:
    settings = Settings(model_store=store, backend=backend, fast_jpeg_decode=fast_jpeg)
    return Classifier(settings, ModelManager(settings), SqliteRecordStore(tmp_path / "records.sqlite3"))


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_predictions_equal_torchvision(backend: str, fitted_store: Path, tmp_path: Path,
                                       fitted_reference: torch.nn.Module) -> None:
    # GIVEN the fitted model served by each backend, fast JPEG decode off
    classifier = make_classifier(fitted_store, tmp_path, backend)
    # WHEN real photos (JPEG and PNG) are classified
    for name in PHOTOS:
        for data in (jpeg(name), encode(photo(name), "PNG")):
            result = classifier.classify([ImageInput(data)], k=5)[0].as_dict()
            # THEN top-5 indices and scores match torchvision's reference pipeline
            assert result["model"]["backend"] == backend
            assert_same_top5(result["predictions"], reference_probs(fitted_reference, data))
            # AND the top-1 is the photo's own class, by index and label
            top = result["predictions"][0]
            assert (top["index"], top["label"]) == (class_index(name), PHOTO_LABELS[name]), name
            assert "warning" not in result  # published from a checkpoint file: "trained"


def test_backends_agree_on_batches(fitted_store: Path, tmp_path: Path) -> None:
    # The same batch through onnx and torch gives the same top-5, each image its own class, in order
    images = [jpeg(name) for name in PHOTOS]
    inputs = [ImageInput(data) for data in images]
    onnx = make_classifier(fitted_store, tmp_path, "onnx").classify(inputs, k=5)
    torch_ = make_classifier(fitted_store, tmp_path, "torch").classify(inputs, k=5)
    assert [r.predictions[0].label for r in onnx] == [PHOTO_LABELS[name] for name in PHOTOS]
    for a, b in zip(onnx, torch_, strict=True):
        assert a.predictions[0].index == b.predictions[0].index  # below it, scores ~1e-5 apart may swap
        for pa, pb in zip(a.predictions, b.predictions, strict=True):
            assert abs(pa.score - pb.score) <= 1e-4


def test_fast_jpeg_decode_moves_the_scores_little_and_keeps_the_top_prediction(
    published_store: Path, fitted_store: Path, tmp_path: Path, reference_model: torch.nn.Module,
    fitted_reference: torch.nn.Module,
) -> None:
    # On 12 MP JPEGs, the reduced-scale decode changes the input slightly
    untrained = make_classifier(published_store, tmp_path, "onnx", fast_jpeg=True)
    fitted = make_classifier(fitted_store, tmp_path, "onnx", fast_jpeg=True)
    for name in ("astronaut", "coffee"):
        data = big_jpeg(name)
        # THEN the untrained model's scores (spread over many classes) move little from torchvision's
        result = untrained.classify([ImageInput(data)], k=5)[0].as_dict()
        probs = reference_probs(reference_model, data)
        drift = max(abs(p["score"] - probs[p["index"]]) for p in result["predictions"])
        print(f"{name}: fast JPEG max score drift {drift:.4f}")
        assert drift < 0.05
        # AND the fitted model's top-1 is torchvision's: the photo's own class, which no other photo gets
        result = fitted.classify([ImageInput(data)], k=5)[0].as_dict()
        probs = reference_probs(fitted_reference, data)
        assert result["predictions"][0]["index"] == int(np.argmax(probs)) == class_index(name)
