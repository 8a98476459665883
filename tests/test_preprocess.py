"""Preprocessing equals torchvision's ResNet50_Weights.IMAGENET1K_V2.transforms()."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from torchvision.models import ResNet50_Weights

from classifier.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType
from classifier.imaging import DEFAULT_PREPROCESSING, Preprocessing, preprocess

from helpers.photos import big_jpeg, encode, jpeg, photo

SPEC = Preprocessing.from_manifest(DEFAULT_PREPROCESSING)
REFERENCE = ResNet50_Weights.IMAGENET1K_V2.transforms()


def reference(data: bytes) -> np.ndarray:
    return REFERENCE(Image.open(io.BytesIO(data)).convert("RGB")).numpy()


def ours(data: bytes, fast: bool = False) -> np.ndarray:
    return preprocess(data, SPEC, max_pixels=10**9, fast_jpeg=fast)[0]


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut", "rocket"])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF"])
def test_tensor_equals_torchvision(name: str, fmt: str) -> None:
    # GIVEN a real photo in each accepted format
    data = encode(photo(name), fmt, **({"quality": 92} if fmt in ("JPEG", "WEBP") else {}))
    # WHEN preprocessed by us (fast JPEG path off) and by torchvision
    # THEN the input tensors agree to 1e-5
    got, want = ours(data), reference(data)
    assert got.shape == want.shape == (3, 224, 224)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_portrait_and_tiny_images_follow_torchvision_sizes() -> None:
    # Non-square, portrait, and smaller-than-target images take every branch of the resize maths.
    base = photo("coffee")
    for size in [(300, 451), (233, 500), (100, 80), (224, 224), (232, 700)]:
        data = encode(base.resize(size), "PNG")
        np.testing.assert_allclose(ours(data), reference(data), rtol=0, atol=1e-5)


def test_fast_jpeg_decode_deviation_is_small() -> None:
    # GIVEN a 12 MP JPEG, where DCT-scaled decoding kicks in (1/8 scale)
    data = big_jpeg("astronaut")
    exact, fast = ours(data, fast=False), ours(data, fast=True)
    # THEN the fast path really differs (it decoded at reduced scale)...
    diff = np.abs(fast - exact)
    assert diff.max() > 0
    # ...but only slightly. Measured on this photo: mean |diff| 0.0105 (in
    # normalised units, ~0.6 grey levels), p99 0.070, max 0.175.
    print(f"fast JPEG decode: mean |diff| {diff.mean():.4f}, p99 {np.quantile(diff, 0.99):.4f}, max {diff.max():.4f}")
    assert diff.mean() < 0.03
    assert np.quantile(diff, 0.99) < 0.15


def test_fast_jpeg_never_decodes_below_resize_target() -> None:
    # A JPEG just over 2x the target is decoded at 1/2 scale at most, keeping >= 232 px.
    img = photo("chelsea").resize((930, 470))
    data = encode(img, "JPEG", quality=95)
    fast = ours(data, fast=True)
    # with the shorter side kept >= 232, the result stays close to the exact path
    assert np.abs(fast - ours(data)).mean() < 0.03


def test_exif_orientation_is_applied() -> None:
    # GIVEN a photo stored sideways with EXIF orientation 6 (rotate 90 CW to display)
    upright = photo("chelsea")
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "PNG", exif=exif.tobytes())
    tensor, info = preprocess(data, SPEC, max_pixels=10**9, fast_jpeg=False)
    # THEN the reported size is the displayed one and the tensor matches the upright photo
    assert (info.width, info.height) == upright.size
    np.testing.assert_allclose(tensor, reference(encode(upright, "PNG")), rtol=0, atol=1e-5)
    assert np.abs(tensor - reference(data)).mean() > 0.1  # torchvision alone ignores EXIF


@pytest.mark.parametrize(
    "mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16", "I", "1", "F"],
)
def test_every_mode_becomes_rgb(mode: str) -> None:
    # GIVEN a real photo converted to each PIL mode
    img = photo("coffee")
    if mode == "I;16":
        converted = Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257)
    elif mode == "F":
        converted = Image.fromarray(np.asarray(img.convert("L"), dtype=np.float32) / 255.0)
    else:
        converted = img.convert(mode)
    fmt = {"CMYK": "JPEG", "F": "TIFF", "I": "TIFF"}.get(mode, "PNG")
    data = encode(converted, fmt)
    tensor, _ = preprocess(data, SPEC, max_pixels=10**9, fast_jpeg=False)
    assert tensor.shape == (3, 224, 224)
    assert np.isfinite(tensor).all()
    # 16-bit and float greys land on the same 8-bit scale as the original grey photo
    if mode in ("I;16", "F", "I", "L"):
        grey = reference(encode(img.convert("L").convert("RGB"), "PNG"))
        np.testing.assert_allclose(tensor, grey, atol=0.05)


def test_transparent_pixels_are_composited_on_white() -> None:
    rgba = Image.new("RGBA", (300, 300), (0, 0, 0, 0))  # fully transparent black
    tensor = ours(encode(rgba, "PNG"))
    white = ours(encode(Image.new("RGB", (300, 300), "white"), "PNG"))
    np.testing.assert_allclose(tensor, white, atol=1e-6)


def test_gif_uses_first_frame() -> None:
    frames = [photo("chelsea").convert("P"), Image.new("P", (451, 300), 0)]
    data = io.BytesIO()
    frames[0].save(data, "GIF", save_all=True, append_images=frames[1:])
    tensor, info = preprocess(data.getvalue(), SPEC, max_pixels=10**9, fast_jpeg=False)
    assert info.format == "GIF"
    assert tensor.std() > 0.1  # the photo frame, not the blank second frame


def test_rejections() -> None:
    with pytest.raises(UnsupportedMediaType):
        ours(b"%PDF-1.7 not an image at all")
    with pytest.raises(UnsupportedMediaType):  # a real image format we do not accept
        ours(encode(photo("chelsea"), "PPM"))
    with pytest.raises(InvalidImage):
        ours(jpeg("chelsea")[:5000])  # truncated
    with pytest.raises(ImageTooLarge):
        preprocess(encode(Image.new("L", (5000, 5000)), "PNG"), SPEC, max_pixels=20_000_000, fast_jpeg=True)
