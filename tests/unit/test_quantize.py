"""quantize (classifier.lifecycle.quantize) on any version: what it measures against fp32, and what it
does with what it measured. The versions are small ONNX classifiers (tests/helpers/onnx_models.py),
so that each quantization takes a moment; a MobileNetV3's is in tests/service/test_architectures.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classifier.lifecycle import quantize as quantizer
from classifier.lifecycle.publish import PublishRequest, publish_to_store
from classifier.store.layout import ModelStore
from classifier.store.manifest import MANIFEST

from helpers.inbox import tree
from helpers.onnx_models import tiny_classifier, write_labels, write_preprocessing
from helpers.stores import derive_version

SPEC = {"resize": 128, "crop": 112, "mean": [0.5] * 3, "std": [0.5] * 3, "channel_order": "BGR", "layout": "NHWC"}


def publish_tiny(tmp_path: Path, *, architecture: str | None = None) -> tuple[ModelStore, str]:
    """A small NHWC, BGR classifier published from an ONNX file, current; optionally re-labelled as
    another architecture (what quantize decides by)."""
    store = ModelStore(tmp_path / "store")
    manifest = publish_to_store(store, PublishRequest(
        onnx=tiny_classifier(tmp_path / "tiny.onnx", labels=6, size=(112, 112), layout="NHWC"), name="tiny",
        labels_file=write_labels(tmp_path / "labels.json", 6),
        preprocessing_file=write_preprocessing(tmp_path / "prep.json", **SPEC)))
    if architecture is None:
        return store, manifest["version"]
    source = store.version_dir("tiny", manifest["version"])
    relabelled = derive_version(source, tmp_path / "relabelled", labels=[f"kind {i}" for i in range(6)])
    edited = json.loads((relabelled / MANIFEST).read_text())
    edited["architecture"] = architecture
    (relabelled / MANIFEST).write_text(json.dumps(edited))
    return store, store.install_dir(relabelled)


def test_an_onnx_version_of_any_origin_is_quantized_with_its_own_preprocessing(tmp_path: Path) -> None:
    # GIVEN a version published from an ONNX file: its own input name, NHWC, BGR, a 112 crop
    store, fp32 = publish_tiny(tmp_path)
    # WHEN it is quantized
    manifest = quantizer.quantize(store, "tiny")
    # THEN the int8 version keeps its preprocessing and labels, and the figures are recorded
    assert manifest["precision"] == "int8" and manifest["derived_from"] == fp32
    assert manifest["architecture"] == "onnx" and manifest["preprocessing"] == store.manifest("tiny", fp32)[
        "preprocessing"]
    verification = manifest["verification"]
    assert verification["photos"] == 14  # the seven bundled photos and their mirror images
    assert 0 <= verification["relative_error_vs_fp32"] <= quantizer.MAX_RELATIVE_ERROR
    assert verification["top1_agreement_with_fp32"] >= quantizer.MIN_TOP1_AGREEMENT
    assert verification["drift"] == [] and verification["int8_forward_ms"] > 0 and verification["fp32_forward_ms"] > 0
    # AND, within the bounds, it is made current as asked
    assert store.current("tiny") == manifest["version"]


def test_a_version_that_drifts_beyond_the_bounds_is_installed_but_not_made_current(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a bound below what this model's int8 version measures
    store, fp32 = publish_tiny(tmp_path)
    monkeypatch.setattr(quantizer, "MAX_RELATIVE_ERROR", 0.0)
    # WHEN it is quantized, asking for the int8 version to become current
    manifest = quantizer.quantize(store, "tiny")
    # THEN it is installed, says how it drifts, and fp32 stays current
    assert manifest["version"] in store.versions("tiny") and store.current("tiny") == fp32
    (drift,) = manifest["verification"]["drift"]
    assert drift.startswith("its outputs drift from fp32's by a relative error of") and "(at most 0.0)" in drift
    # AND with force it is made current as asked
    forced = quantizer.quantize(store, "tiny", version=fp32, force=True)
    assert forced["version"][-12:] == manifest["version"][-12:] and store.current("tiny") == forced["version"]


def test_a_vision_transformer_is_refused_with_what_was_measured(tmp_path: Path) -> None:
    # GIVEN a version whose architecture is a ViT's
    store, vit = publish_tiny(tmp_path, architecture="vit_b_16")
    before = tree(store.root)
    # WHEN it is quantized, THEN it is refused, saying why and what it measured, and nothing is installed
    with pytest.raises(quantizer.QuantizeError) as refused:
        quantizer.quantize(store, "tiny", vit)
    message = str(refused.value)
    assert f"the int8 version of tiny {vit} was not installed: vit_b_16 is a vision transformer" in message
    assert "Measured on the 14 calibration photos: relative error" in message and "--force" in message
    assert tree(store.root) == before
    # AND with force it is installed, and says it was forced
    forced = quantizer.quantize(store, "tiny", vit, activate=False, force=True)
    assert forced["verification"]["forced"].startswith("vit_b_16 is a vision transformer")
    assert forced["version"] in store.versions("tiny") and store.current("tiny") == vit


def test_only_fp32_versions_with_an_onnx_file_are_quantized(tmp_path: Path) -> None:
    store, _ = publish_tiny(tmp_path)
    int8 = quantizer.quantize(store, "tiny")["version"]
    with pytest.raises(quantizer.QuantizeError, match=f"tiny {int8} is already int8: quantize an fp32 version"):
        quantizer.quantize(store, "tiny", int8)
