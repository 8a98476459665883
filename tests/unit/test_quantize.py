"""``quantize`` without quantizing (classifier.lifecycle.quantize): which photos calibrate it, what
they are fed as, and the versions it refuses before any work. Quantizing a real model, and serving
and evaluating the result, is in tests/service/test_model_lifecycle.py."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.models import ResNet50_Weights

from classifier.lifecycle.quantize import QuantizeError, calibration_images, calibration_tensors, quantize
from classifier.serving.imaging import DEFAULT_PREPROCESSING, Preprocessing
from classifier.store.layout import ModelStore

from helpers import ROOT
from helpers.photos import encode, jpeg, photo
from helpers.stores import small_version

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
