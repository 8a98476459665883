"""imaging.py's rules that test_preprocess.py cannot reach under mutation testing.

test_preprocess.py builds its ``Preprocessing`` once, when the module is imported: mutmut
imports test modules before it switches a mutant on, so a broken ``from_manifest`` never
reached those tests. Here it is called inside each test, and its table is compared with
torchvision's own normalisation of every 8-bit level.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import functional

from classifier.serving.imaging import DEFAULT_PREPROCESSING, ImageInfo, Preprocessing, preprocess

from helpers.photos import jpeg

# Another model's preprocessing: every value differs from the default, so none is read by accident.
OTHER = {"resize": 256, "crop": 192, "mean": [0.5, 0.25, 0.125], "std": [0.2, 0.4, 0.8], "interpolation": "bilinear"}


@pytest.mark.parametrize("spec", [DEFAULT_PREPROCESSING, OTHER], ids=["imagenet", "other"])
def test_the_lookup_table_is_torchvisions_normalisation_of_every_level(spec: dict[str, Any]) -> None:
    # GIVEN every 8-bit level in each channel, normalised as ResNet50_Weights' transforms() does
    # (convert_image_dtype, then normalize)
    levels = torch.arange(256, dtype=torch.uint8).expand(3, 1, 256).contiguous()
    scaled = functional.convert_image_dtype(levels, torch.float32)
    want = functional.normalize(scaled, mean=spec["mean"], std=spec["std"]).reshape(3, 256).numpy()
    # WHEN the manifest's preprocessing is read
    prep = Preprocessing.from_manifest(spec)
    # THEN its table holds exactly those values, and the sizes and statistics are the manifest's
    assert prep.table.dtype == np.float32 and prep.table.flags.c_contiguous
    np.testing.assert_array_equal(prep.table, want)
    assert (prep.resize, prep.crop) == (spec["resize"], spec["crop"])
    np.testing.assert_array_equal(prep.mean.ravel(), np.float32(spec["mean"]))
    np.testing.assert_array_equal(prep.std.ravel(), np.float32(spec["std"]))
    assert prep.mean.shape == prep.std.shape == (3, 1, 1)


def test_a_manifest_preprocessing_reaches_the_tensor() -> None:
    # GIVEN another model's preprocessing, and torchvision's pipeline built from the same values
    reference = transforms.Compose([
        transforms.Resize(OTHER["resize"], interpolation=transforms.InterpolationMode.BILINEAR, antialias=True),
        transforms.CenterCrop(OTHER["crop"]), transforms.PILToTensor(),
        transforms.ConvertImageDtype(torch.float32), transforms.Normalize(OTHER["mean"], OTHER["std"]),
    ])
    data = jpeg("chelsea")
    # WHEN a photo is preprocessed with it
    tensor, info = preprocess(data, Preprocessing.from_manifest(OTHER), max_pixels=10**9, fast_jpeg=False)
    # THEN its crop size and statistics shaped the tensor, and the facts are the photo's
    want = reference(Image.open(io.BytesIO(data)).convert("RGB")).numpy()
    assert tensor.shape == want.shape == (3, 192, 192)
    np.testing.assert_allclose(tensor, want, rtol=0, atol=1e-5)
    assert info.as_dict() == {"format": "JPEG", "width": 451, "height": 300,
                              "sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize("interpolation", ["bilinear", "BiLinear"])
def test_bilinear_is_accepted_in_any_case_and_by_default(interpolation: str) -> None:
    assert Preprocessing.from_manifest({**OTHER, "interpolation": interpolation}).crop == 192
    assert Preprocessing.from_manifest({k: v for k, v in OTHER.items() if k != "interpolation"}).crop == 192


@pytest.mark.parametrize("interpolation", ["bicubic", "nearest", None])
def test_another_interpolation_is_refused(interpolation: str | None) -> None:
    with pytest.raises(ValueError, match=f"^unsupported interpolation {interpolation!r}$"):
        Preprocessing.from_manifest({**OTHER, "interpolation": interpolation})


def test_image_facts_as_the_api_reports_them() -> None:
    info = ImageInfo(format="PNG", width=640, height=480, sha256="ab" * 32)
    assert info.as_dict() == {"format": "PNG", "width": 640, "height": 480, "sha256": "ab" * 32}
