"""Bring your own ONNX (classifier.lifecycle.publish_onnx): what ``publish --onnx`` installs, and each
refusal, which names the problem and leaves the store as it was. The models are small ONNX files
written with onnx.helper (tests/helpers/onnx_models.py); serving one over HTTP is in
tests/service/test_architectures.py."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from classifier.config import Settings
from classifier.lifecycle.publish import PublishError, PublishRequest, publish_to_store
from classifier.serving.backends.onnx_backend import OnnxBackend
from classifier.serving.imaging import preprocess
from classifier.serving.manager import ModelManager
from classifier.serving.service import Classifier, ImageInput
from classifier.store.layout import ModelStore

from helpers.inbox import tree
from helpers.onnx_models import broken_model, tiny_classifier, write_labels, write_preprocessing
from helpers.photos import jpeg
from helpers.stores import small_version

# Not ImageNet's: a 299 crop of a 320 resize, bicubic, mean and std 0.5, BGR, NHWC.
INCEPTION_STYLE: dict[str, Any] = {"resize": 320, "crop": 299, "interpolation": "bicubic", "mean": [0.5] * 3,
                                   "std": [0.5] * 3, "channel_order": "BGR", "layout": "NHWC"}


@pytest.fixture
def serving(tmp_path: Path) -> ModelStore:
    """A store already serving a model, so that "unchanged" means something."""
    store = ModelStore(tmp_path / "store")
    small_version(tmp_path / "existing")
    store.install_dir(tmp_path / "existing")
    return store


def request(tmp_path: Path, *, labels: int = 5, name: str | None = "byo", **model: Any) -> PublishRequest:
    spec = model.pop("spec", INCEPTION_STYLE)
    onnx_file = tiny_classifier(tmp_path / "model.onnx", **{"layout": spec.get("layout", "NCHW"), **model})
    return PublishRequest(onnx=onnx_file, labels_file=write_labels(tmp_path / "labels.json", labels),
                          preprocessing_file=write_preprocessing(tmp_path / "prep.json", **spec), name=name)


def test_an_onnx_file_is_installed_as_it_is(serving: ModelStore, tmp_path: Path) -> None:
    # GIVEN a 5-class NHWC classifier with its labels and non-ImageNet preprocessing
    wanted = request(tmp_path)
    assert wanted.onnx is not None
    # WHEN it is published
    manifest = publish_to_store(serving, wanted)
    # THEN it is current under its name, its file byte for byte, with the preprocessing completed
    assert serving.current("byo") == manifest["version"]
    installed = serving.version_dir("byo", manifest["version"])
    assert (installed / "model.onnx").read_bytes() == wanted.onnx.read_bytes()
    assert set(manifest["artifacts"]) == {"model.onnx", "labels.json"}
    assert manifest["architecture"] == "onnx" and manifest["precision"] == "fp32" and manifest["trained"] is True
    assert manifest["source"] == "file:" + hashlib.sha256(wanted.onnx.read_bytes()).hexdigest()
    assert manifest["preprocessing"] == {**INCEPTION_STYLE, "scale": 1 / 255, "output": "logits"}
    assert manifest["labels"]["count"] == 5
    assert manifest["onnx"]["input"] == "image" and manifest["onnx"]["dynamic_batch"] is True
    # AND it was run once on a real photo, as a batch of two, before it was installed
    assert manifest["verification"]["photo"] == "chelsea.jpg" and manifest["verification"]["batch"] == 2


def test_the_name_defaults_to_the_file_name(serving: ModelStore, tmp_path: Path) -> None:
    wanted = request(tmp_path, name=None)
    renamed = wanted.onnx.rename(tmp_path / "Defects Model v2.onnx")  # type: ignore[union-attr]
    manifest = publish_to_store(serving, PublishRequest(onnx=renamed, labels_file=wanted.labels_file,
                                                        preprocessing_file=wanted.preprocessing_file))
    assert manifest["name"] == "defects-model-v2" and serving.current("defects-model-v2") == manifest["version"]


def test_a_model_with_a_fixed_batch_of_one_runs_a_batch_image_by_image(serving: ModelStore, tmp_path: Path) -> None:
    # GIVEN a model exported with a batch of exactly 1 (some exporters' default)
    manifest = publish_to_store(serving, request(tmp_path, batch=1))
    assert manifest["onnx"]["dynamic_batch"] is False
    # WHEN the backend is given a batch of three, THEN each row is what that image alone gives
    backend = OnnxBackend(serving.version_dir("byo", manifest["version"]) / "model.onnx", threads=1,
                          input_shape=(299, 299, 3))
    images = np.random.default_rng(0).normal(size=(3, 299, 299, 3)).astype(np.float32)
    together = backend.run(images)
    assert together.shape == (3, 5)
    for i in range(3):
        np.testing.assert_allclose(together[i], backend.run(images[i:i + 1])[0], rtol=1e-6)


def test_a_model_that_answers_probabilities(serving: ModelStore, tmp_path: Path) -> None:
    spec = {**INCEPTION_STYLE, "output": "probabilities"}
    manifest = publish_to_store(serving, request(tmp_path, probabilities=True, spec=spec))
    assert manifest["preprocessing"]["output"] == "probabilities"


REFUSALS: list[tuple[str, dict[str, Any], str]] = [
    ("a file the checker refuses", {"broken": True}, "fails the ONNX checker"),
    ("bytes that are not ONNX", {"garbage": True}, "fails the ONNX checker"),
    ("a 2-D input", {"flat_input": True}, "input 'image' is 2-D (?x268203), not a 4-D NHWC image batch"),
    ("one channel", {"channels": 1}, "input 'image' (?x299x299x1) does not have 3 channels where NHWC puts them"),
    ("NCHW declared NHWC", {"layout": "NCHW"}, "(?x3x299x299) does not have 3 channels where NHWC puts them"),
    ("a fixed size that is not the crop", {"size": (224, 224)}, "input 'image' is ?x224x224x3, but the "
                                                                 "preprocessing crops 299x299"),
    ("a fixed batch of 4", {"batch": 4}, "input 'image' has a fixed batch of 4"),
    ("more outputs than labels", {"labels": 4}, "output 'scores' has 5 scores for 4 labels"),
    ("an unknown preprocessing key", {"spec": {**INCEPTION_STYLE, "pad": 16}},
     "prep.json: preprocessing has an unknown key 'pad'"),
    ("a resize of 100000", {"spec": {**INCEPTION_STYLE, "resize": 100_000}},
     "prep.json: preprocessing resize must be an integer from 8 to 1024 pixels, got 100000"),
    ("a layout that does not exist", {"spec": {**INCEPTION_STYLE, "layout": "CHW"}},
     "prep.json: preprocessing layout must be one of NCHW, NHWC, got 'CHW'"),
    ("logits said to be probabilities", {"spec": {**INCEPTION_STYLE, "output": "probabilities"}},
     "the preprocessing says output: probabilities, but the scores on chelsea.jpg range"),
]


@pytest.mark.parametrize(("case", "change", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_each_refusal_names_the_problem_and_installs_nothing(serving: ModelStore, tmp_path: Path, case: str,
                                                             change: dict[str, Any], message: str) -> None:
    # GIVEN a store serving a model, and an ONNX file, labels and preprocessing with one thing wrong
    change = dict(change)
    labels = change.pop("labels", 5)
    broken, garbage = change.pop("broken", False), change.pop("garbage", False)
    wanted = request(tmp_path, labels=5 if labels == 4 else labels, **change)
    if labels == 4:
        write_labels(tmp_path / "labels.json", 4)
    assert wanted.onnx is not None
    if broken:
        broken_model(wanted.onnx)
    if garbage:
        wanted.onnx.write_bytes(b"\x08\x07" + b"not a protobuf" * 100)
    before = tree(serving.root)
    # WHEN it is published, THEN it is refused with a message that names the problem
    with pytest.raises(PublishError) as refused:
        publish_to_store(serving, wanted)
    assert message in str(refused.value)
    assert "nothing was published" in str(refused.value)
    # AND the store is exactly as it was: no model, no version, no staging directory, CURRENT untouched
    assert tree(serving.root) == before


def test_an_onnx_file_needs_its_labels_and_preprocessing(serving: ModelStore, tmp_path: Path) -> None:
    onnx_file = tiny_classifier(tmp_path / "model.onnx")
    before = tree(serving.root)
    for missing in ({"labels_file": None}, {"preprocessing_file": None}):
        files = {"labels_file": write_labels(tmp_path / "labels.json", 5),
                 "preprocessing_file": write_preprocessing(tmp_path / "prep.json", **INCEPTION_STYLE), **missing}
        with pytest.raises(PublishError, match="--onnx needs --labels FILE and --preprocessing FILE"):
            publish_to_store(serving, PublishRequest(onnx=onnx_file, name="byo", **files))
    with pytest.raises(PublishError, match="--weights is for torchvision architectures"):
        publish_to_store(serving, PublishRequest(onnx=onnx_file, weights="random", name="byo",
                                                 labels_file=tmp_path / "labels.json",
                                                 preprocessing_file=tmp_path / "prep.json"))
    assert tree(serving.root) == before
    assert json.loads((tmp_path / "labels.json").read_text())[0] == "class 0"


def test_a_model_that_answers_probabilities_is_taken_at_its_word(serving: ModelStore, tmp_path: Path) -> None:
    # GIVEN a model ending in a softmax, published with output: probabilities
    wanted = request(tmp_path, probabilities=True, spec={**INCEPTION_STYLE, "output": "probabilities"})
    manifest = publish_to_store(serving, wanted)
    settings = Settings(model_store=serving.root, model_name="byo", fast_jpeg_decode=False)
    manager = ModelManager(settings)
    # WHEN a photo is classified
    result = Classifier(settings, manager, None).classify([ImageInput(jpeg("coffee"))], store=False)[0]
    # THEN the scores are the model's own outputs (not a softmax of them), in order
    model = manager.current()
    tensor, _ = preprocess(jpeg("coffee"), model.preprocessing, max_pixels=10**8, fast_jpeg=False)
    outputs = model.backend.run(tensor[None])[0]
    assert manifest["version"] == result.model["version"]
    assert [p.index for p in result.predictions] == np.argsort(-outputs)[:5].tolist()
    for p in result.predictions:
        assert abs(p.score - outputs[p.index]) <= 1e-6
