"""``quantize`` (classifier.lifecycle.quantize): which photos calibrate it, what they are fed as, the
versions it refuses before any work; then, on small ONNX classifiers (tests/helpers/onnx_models.py,
so that each quantization takes a moment), what it measures against fp32 on a version of any origin
and what it does with what it measured. Quantizing a ResNet-50 and a MobileNetV3, and serving and
evaluating the result, is in tests/service/test_model_lifecycle.py and test_architectures.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.models import ResNet50_Weights

from classifier.lifecycle import quantize as quantizer
from classifier.lifecycle.publish import PublishRequest, publish_to_store
from classifier.lifecycle.quantize import QuantizeError, calibration_images, calibration_tensors, quantize
from classifier.serving.imaging import DEFAULT_PREPROCESSING, Preprocessing
from classifier.store.layout import ModelStore
from classifier.store.manifest import MANIFEST

from helpers import ROOT
from helpers.inbox import tree
from helpers.onnx_models import tiny_classifier, write_labels, write_preprocessing
from helpers.photos import encode, jpeg, photo
from helpers.stores import derive_version, small_version

BUNDLED = ROOT / "model" / "classifier" / "assets" / "calibration"


def test_without_a_folder_the_bundled_photos_calibrate() -> None:
    found, ignored = calibration_images(None)
    assert ignored == {}
    assert [p.name for p in found] == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "hubble_deep_field.jpg",
                                       "immunohistochemistry.jpg", "retina.jpg", "rocket.jpg"]
    assert all(p.read_bytes() == (BUNDLED / p.name).read_bytes() for p in found)


def test_a_folder_gives_its_images_at_any_depth(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "cat.JPG").write_bytes(jpeg("chelsea"))
    (tmp_path / "a" / "cup.webp").write_bytes(encode(photo("coffee"), "WEBP"))
    (tmp_path / "rocket.png").write_bytes(encode(photo("rocket"), "PNG"))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "a" / "photos.jpg").mkdir()  # a folder named like an image
    found, ignored = calibration_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/b/cat.JPG", "a/cup.webp", "rocket.png"]
    assert ignored == {"not an image (neither its name nor its bytes)": 1}


def test_calibration_takes_images_by_bytes_and_counts_the_rest(tmp_path: Path) -> None:
    # GIVEN a photo, a photo without a suffix in a subfolder, a text file and a hidden file
    (tmp_path / "a").mkdir()
    (tmp_path / "cat.jpg").write_bytes(jpeg("chelsea"))
    (tmp_path / "a" / "IMG_0001").write_bytes(jpeg("coffee"))
    (tmp_path / "notes.txt").write_text("calibration notes")
    (tmp_path / ".hidden.jpg").write_bytes(jpeg("rocket"))
    # WHEN the calibration images are chosen
    paths, ignored = calibration_images(tmp_path)
    # THEN both photos are used, and the two other files are counted with their reasons
    assert sorted(p.relative_to(tmp_path).as_posix() for p in paths) == ["a/IMG_0001", "cat.jpg"]
    assert ignored == {"hidden": 1, "not an image (neither its name nor its bytes)": 1}


def test_calibration_folders_without_images_are_refused(tmp_path: Path) -> None:
    with pytest.raises(QuantizeError, match="is not a directory"):
        calibration_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(QuantizeError, match=r"no calibration images in .* \(ignored 1 file: 1 not an image"):
        calibration_images(tmp_path / "empty")


def test_each_photo_calibrates_as_served_and_mirrored(tmp_path: Path) -> None:
    # GIVEN two photos
    paths = [tmp_path / "cat.jpg", tmp_path / "cup.png"]
    paths[0].write_bytes(jpeg("chelsea"))
    paths[1].write_bytes(encode(photo("coffee"), "PNG"))
    # WHEN they become calibration tensors
    tensors = calibration_tensors(paths, Preprocessing.from_manifest(DEFAULT_PREPROCESSING))
    # THEN each photo gives two: torchvision's own preprocessing of it, then that mirrored left to right
    reference = ResNet50_Weights.IMAGENET1K_V2.transforms()
    assert len(tensors) == 4
    for i, path in enumerate(paths):
        want = reference(Image.open(io.BytesIO(path.read_bytes())).convert("RGB")).numpy()
        served, mirrored = tensors[2 * i], tensors[2 * i + 1]
        np.testing.assert_allclose(served, want, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(mirrored, served[:, :, ::-1])
        assert mirrored.flags.c_contiguous and served.dtype == np.float32


def test_quantize_refuses_a_store_without_a_current_version(tmp_path: Path) -> None:
    with pytest.raises(QuantizeError, match="model resnet50 has no current version to quantize: pass --version"):
        quantize(ModelStore(tmp_path / "store"), "resnet50")


def test_quantize_refuses_an_int8_version_and_a_missing_one(tmp_path: Path) -> None:
    # GIVEN a store holding an int8 version (a stand-in: nothing gets as far as reading its model)
    store = ModelStore(tmp_path / "store")
    small_version(tmp_path / "v", precision="int8", derived_from="20261122T100000Z-0123456789ab")
    version = store.install_dir(tmp_path / "v", make_current=True)
    # THEN quantizing it is refused: it is int8 already; and so is a version that is not installed
    with pytest.raises(QuantizeError, match=f"resnet50 {version} is already int8: quantize an fp32 version"):
        quantize(store, "resnet50")
    with pytest.raises(QuantizeError):
        quantize(store, "resnet50", "20990101T000000Z-000000000000")
    assert store.versions("resnet50") == [version]  # nothing was added


# -- any version: what it measures, and what it does with it -------------------------------------

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
