"""Image decoding and preprocessing (classifier.serving.imaging) equal torchvision's transforms:
ResNet50_Weights.IMAGENET1K_V2.transforms() on real photos in every format and mode, and any
manifest's preprocessing against torchvision's own pipeline."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.models import ResNet50_Weights
from torchvision.transforms import functional

from classifier.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType
from classifier.serving.imaging import DEFAULT_PREPROCESSING, ImageInfo, Preprocessing, preprocess

from helpers.photos import big_jpeg, encode, jpeg, photo

SPEC = Preprocessing.from_manifest(DEFAULT_PREPROCESSING)
REFERENCE = ResNet50_Weights.IMAGENET1K_V2.transforms()


def reference(data: bytes) -> np.ndarray:
    return REFERENCE(Image.open(io.BytesIO(data)).convert("RGB")).numpy()


def ours(data: bytes, fast: bool = False) -> np.ndarray:
    return preprocess(data, SPEC, max_pixels=10**9, fast_jpeg=fast)[0]


@pytest.mark.parametrize("name", ["chelsea", "coffee", "astronaut", "rocket"])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_tensor_equals_torchvision(name: str, fmt: str) -> None:
    # GIVEN a real photo in each accepted format (GIF: Pillow quantises it to a 256-colour palette)
    image = photo(name)
    data = encode(image, fmt, **({"quality": 92} if fmt in ("JPEG", "WEBP") else {}))
    # WHEN preprocessed by us (fast JPEG path off) and by torchvision
    got, info = preprocess(data, SPEC, max_pixels=10**9, fast_jpeg=False)
    want = reference(data)
    # THEN the input tensors agree to 1e-5
    assert got.shape == want.shape == (3, 224, 224)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # AND the image is reported as stored: its format, and its size (no EXIF rotation here)
    assert info.format == fmt
    assert (info.width, info.height) == image.size


def test_portrait_and_tiny_images_follow_torchvision_sizes() -> None:
    # Non-square, portrait, and smaller-than-target images take every branch of the resize maths.
    base = photo("coffee")
    for size in [(300, 451), (233, 500), (100, 80), (224, 224), (232, 700)]:
        data = encode(base.resize(size), "PNG")
        tensor, info = preprocess(data, SPEC, max_pixels=10**9, fast_jpeg=False)
        np.testing.assert_allclose(tensor, reference(data), rtol=0, atol=1e-5)
        assert (info.width, info.height) == size


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


@pytest.mark.parametrize(("mode", "fmt"), [("L", "PNG"), ("P", "PNG"), ("P", "GIF"), ("RGBA", "PNG"),
                                           ("LA", "PNG"), ("CMYK", "JPEG"), ("CMYK", "TIFF"), ("1", "PNG")])
def test_opaque_modes_equal_torchvision_on_convert_rgb(mode: str, fmt: str) -> None:
    # GIVEN a real photo stored in each PIL mode (opaque: any alpha is 255)
    data = encode(photo("coffee").convert(mode), fmt)
    assert Image.open(io.BytesIO(data)).mode == mode  # the file really holds that mode
    # WHEN preprocessed
    tensor, _ = preprocess(data, SPEC, max_pixels=10**9, fast_jpeg=False)
    # THEN it equals torchvision's transforms on PIL's own Image.convert("RGB")
    np.testing.assert_allclose(tensor, reference(data), rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_deep_greys_land_on_the_8_bit_scale(mode: str) -> None:
    # GIVEN the grey photo at 16 bits, as 32-bit integers and as floats in 0..1
    grey = photo("coffee").convert("L")
    if mode == "I;16":
        converted = Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257)
    elif mode == "F":
        converted = Image.fromarray(np.asarray(grey, dtype=np.float32) / 255.0)
    else:
        converted = grey.convert(mode)
    data = encode(converted, "PNG" if mode == "I;16" else "TIFF")
    tensor, _ = preprocess(data, SPEC, max_pixels=10**9, fast_jpeg=False)
    # THEN it is the 8-bit grey photo's tensor (torchvision alone would clip these to white)
    np.testing.assert_allclose(tensor, reference(encode(grey.convert("RGB"), "PNG")), atol=0.05)


def on_white(rgb: np.ndarray, alpha: np.ndarray) -> Image.Image:
    """``rgb`` (H, W, 3) composited over white with ``alpha`` (H, W), both uint8: the "over" operator."""
    a = alpha.astype(np.float64)[..., None] / 255.0
    out = rgb.astype(np.float64) * a + 255.0 * (1.0 - a)
    return Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8), "RGB")


def alpha_ramp(size: tuple[int, int]) -> np.ndarray:
    """An alpha channel from fully transparent (left) to opaque (right)."""
    width, height = size
    return np.tile(np.linspace(0, 255, width).round().astype(np.uint8), (height, 1))


# One 8-bit grey level in normalised units is 1 / 255 / std ~ 0.017: the tolerance allows the
# compositing to round one level differently; black under the transparent pixels is ~2 away.
ONE_LEVEL = 0.02


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_partial_alpha_is_composited_on_white(mode: str) -> None:
    # GIVEN a photo whose alpha ramps from transparent to opaque
    colour = photo("chelsea") if mode == "RGBA" else photo("chelsea").convert("L").convert("RGB")
    alpha = alpha_ramp(colour.size)
    image = colour.convert(mode[:-1])
    image.putalpha(Image.fromarray(alpha, "L"))
    data = encode(image, "PNG")
    assert Image.open(io.BytesIO(data)).mode == mode
    # THEN the tensor is torchvision's on the photo laid over white, not on the colours under the alpha
    tensor, _ = preprocess(data, SPEC, max_pixels=10**9, fast_jpeg=False)
    np.testing.assert_allclose(tensor, reference(encode(on_white(np.asarray(colour), alpha), "PNG")),
                               rtol=0, atol=ONE_LEVEL)


def test_palette_transparency_is_white() -> None:
    # GIVEN a palette photo whose most used colour is declared transparent (PNG tRNS)
    palette = photo("coffee").convert("P")
    indices = np.asarray(palette)
    transparent = int(np.bincount(indices.ravel()).argmax())
    data = encode(palette, "PNG", transparency=transparent)
    assert Image.open(io.BytesIO(data)).info["transparency"] == transparent
    # THEN exactly those pixels become white; the others keep their palette colour
    rgb = np.asarray(palette.convert("RGB"))
    alpha = np.where(indices == transparent, 0, 255).astype(np.uint8)
    tensor, _ = preprocess(data, SPEC, max_pixels=10**9, fast_jpeg=False)
    np.testing.assert_allclose(tensor, reference(encode(on_white(rgb, alpha), "PNG")), rtol=0, atol=1e-5)
    assert np.abs(tensor - reference(data)).max() > 1  # PIL's convert("RGB") alone keeps the hidden colour


def test_transparent_pixels_are_composited_on_white() -> None:
    rgba = Image.new("RGBA", (300, 300), (0, 0, 0, 0))  # fully transparent black
    tensor = ours(encode(rgba, "PNG"))
    white = ours(encode(Image.new("RGB", (300, 300), "white"), "PNG"))
    np.testing.assert_allclose(tensor, white, atol=1e-6)


def test_gif_uses_first_frame() -> None:
    # GIVEN a two-frame GIF whose frames are different photos
    first, second = photo("chelsea").convert("P"), photo("coffee").resize((451, 300)).convert("P")
    buffer = io.BytesIO()
    first.save(buffer, "GIF", save_all=True, append_images=[second])
    data = buffer.getvalue()
    animation = Image.open(io.BytesIO(data))
    assert animation.n_frames == 2
    animation.seek(1)
    second_decoded = REFERENCE(animation.convert("RGB")).numpy()
    # WHEN preprocessed
    tensor, info = preprocess(data, SPEC, max_pixels=10**9, fast_jpeg=False)
    # THEN it is the first frame's tensor, far from the second's
    assert info.format == "GIF"
    assert (info.width, info.height) == (451, 300)
    np.testing.assert_allclose(tensor, REFERENCE(first.convert("RGB")).numpy(), rtol=0, atol=1e-5)
    assert np.abs(tensor - second_decoded).mean() > 0.3


def test_rejections() -> None:
    with pytest.raises(UnsupportedMediaType):
        ours(b"%PDF-1.7 not an image at all")
    with pytest.raises(UnsupportedMediaType):  # a real image format we do not accept
        ours(encode(photo("chelsea"), "PPM"))
    with pytest.raises(InvalidImage):
        ours(jpeg("chelsea")[:5000])  # truncated
    with pytest.raises(ImageTooLarge):
        preprocess(encode(Image.new("L", (5000, 5000)), "PNG"), SPEC, max_pixels=20_000_000, fast_jpeg=True)



@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_the_pixel_limit_admits_exactly_its_count(fmt: str) -> None:
    # GIVEN a real photo of 451 x 300 = 135,300 pixels
    data = encode(photo("chelsea"), fmt)
    pixels = 451 * 300
    # THEN a limit of exactly its pixel count admits it (the limit is "at most")
    tensor, info = preprocess(data, SPEC, max_pixels=pixels, fast_jpeg=False)
    assert (info.width, info.height) == (451, 300) and tensor.shape == (3, 224, 224)
    # AND a limit one pixel lower refuses it, naming both counts
    with pytest.raises(ImageTooLarge) as refused:
        preprocess(data, SPEC, max_pixels=pixels - 1, fast_jpeg=False)
    assert refused.value.message == f"the image has 451x300 = {pixels} pixels; the limit is {pixels - 1}"

# --- the manifest's preprocessing, read inside each test -----------------------------------------
# Tests above build their ``Preprocessing`` when the module is imported; mutation testing
# (``make mutation``) imports test modules before it switches a mutant on, so these call
# ``from_manifest`` inside the test, and compare its table with torchvision's own normalisation
# of every 8-bit level.

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
    assert (prep.resize, prep.crop) == (spec["resize"], (spec["crop"], spec["crop"]))
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
    assert Preprocessing.from_manifest({**OTHER, "interpolation": interpolation}).resample == Image.Resampling.BILINEAR
    assert Preprocessing.from_manifest({k: v for k, v in OTHER.items() if k != "interpolation"}).resample \
        == Image.Resampling.BILINEAR


@pytest.mark.parametrize("interpolation", ["lanczos", "box", None, 2])
def test_an_interpolation_torchvision_presets_do_not_use_is_refused(interpolation: object) -> None:
    with pytest.raises(ValueError, match="^preprocessing interpolation must be one of bilinear, bicubic, nearest, "
                                         f"got {interpolation!r}$"):
        Preprocessing.from_manifest({**OTHER, "interpolation": interpolation})


@pytest.mark.parametrize("mode", ["bicubic", "nearest"])
def test_other_interpolations_equal_torchvision(mode: str) -> None:
    # GIVEN torchvision's Resize in that mode (EfficientNet's and Swin's presets are bicubic)
    reference = transforms.Compose([
        transforms.Resize(256, interpolation=transforms.InterpolationMode(mode), antialias=True),
        transforms.CenterCrop(224), transforms.PILToTensor(),
        transforms.ConvertImageDtype(torch.float32), transforms.Normalize(OTHER["mean"], OTHER["std"]),
    ])
    spec = Preprocessing.from_manifest({**OTHER, "resize": 256, "crop": 224, "interpolation": mode})
    for name in ("chelsea", "rocket"):
        data = encode(photo(name), "PNG")
        # WHEN a photo is preprocessed by both, THEN the tensors agree to 1e-5
        got, _ = preprocess(data, spec, max_pixels=10**9, fast_jpeg=False)
        want = reference(Image.open(io.BytesIO(data)).convert("RGB")).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_a_rectangular_crop_bgr_nhwc_and_another_scale_are_followed() -> None:
    # GIVEN a model that takes a 160x240 crop of a 200-pixel resize, BGR, laid out NHWC, with levels
    # scaled to [0, 2] and normalised by mean 1, std 1 (so its input spans -1..1); mean and std are
    # in the model's (BGR) channel order
    spec = {"resize": 200, "crop": [160, 240], "interpolation": "bicubic", "mean": [1.0, 0.9, 0.8],
            "std": [1.0, 0.5, 0.25], "scale": 2 / 255, "channel_order": "BGR", "layout": "NHWC"}
    prep = Preprocessing.from_manifest(spec)
    assert prep.input_shape == (160, 240, 3)
    # AND torchvision's pipeline on the same photo, channels flipped and moved last by hand
    data = encode(photo("astronaut").resize((300, 451)), "PNG")
    rgb = transforms.Compose([
        transforms.Resize(200, interpolation=transforms.InterpolationMode.BICUBIC, antialias=True),
        transforms.CenterCrop((160, 240)), transforms.PILToTensor(),
    ])(Image.open(io.BytesIO(data)).convert("RGB")).to(torch.float32)
    bgr = rgb.flip(0) * (2 / 255)
    want = ((bgr - torch.tensor(spec["mean"]).view(3, 1, 1)) / torch.tensor(spec["std"]).view(3, 1, 1))
    # WHEN preprocessed by us, THEN the tensors agree (to float32 rounding)
    got, _ = preprocess(data, prep, max_pixels=10**9, fast_jpeg=False)
    assert got.shape == (160, 240, 3) and got.flags.c_contiguous
    np.testing.assert_allclose(got, want.permute(1, 2, 0).numpy(), rtol=0, atol=1e-5)


def test_a_crop_larger_than_the_image_is_padded_as_torchvision_pads() -> None:
    spec = {**OTHER, "resize": 64, "crop": [96, 80]}
    reference = transforms.Compose([
        transforms.Resize(64, antialias=True), transforms.CenterCrop((96, 80)), transforms.PILToTensor(),
        transforms.ConvertImageDtype(torch.float32), transforms.Normalize(OTHER["mean"], OTHER["std"]),
    ])
    data = encode(photo("coffee").resize((90, 70)), "PNG")
    got, _ = preprocess(data, Preprocessing.from_manifest(spec), max_pixels=10**9, fast_jpeg=False)
    want = reference(Image.open(io.BytesIO(data)).convert("RGB")).numpy()
    assert got.shape == (3, 96, 80)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("key", "value"), [("resize", 100_000), ("crop", 4096), ("crop", [224, 0]),
                                            ("std", [0.2, 0.0, 0.2]), ("scale", 255)])
def test_a_manifest_out_of_bounds_is_refused_before_any_image(key: str, value: object) -> None:
    # A manifest anybody with inbox access could write: refused when the version is loaded.
    with pytest.raises(ValueError, match=f"^preprocessing {key} must be"):
        Preprocessing.from_manifest({**OTHER, key: value})


def test_image_facts_as_the_api_reports_them() -> None:
    info = ImageInfo(format="PNG", width=640, height=480, sha256="ab" * 32)
    assert info.as_dict() == {"format": "PNG", "width": 640, "height": 480, "sha256": "ab" * 32}


def test_a_folder_sorts_images_by_bytes_or_name_and_counts_what_it_ignores(tmp_path: Path) -> None:
    # GIVEN a photo without a suffix, one named .jfif, a broken .jpg, a text file and a hidden file
    from classifier.serving.imaging import ignored_text, sort_images

    (tmp_path / "IMG_0001").write_bytes(jpeg("chelsea"))
    (tmp_path / "scan.jfif").write_bytes(jpeg("coffee"))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("a note")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    # WHEN the folder is sorted
    images, ignored = sort_images(sorted(tmp_path.iterdir()), tmp_path)
    # THEN the photos are taken whatever their name, the broken .jpg too (to be reported as an error),
    # and the rest is counted with its reason
    assert sorted(p.name for p in images) == ["IMG_0001", "broken.jpg", "scan.jfif"]
    assert ignored == {"hidden": 1, "not an image (neither its name nor its bytes)": 1}
    assert ignored_text(ignored) == "ignored 2 files: 1 hidden, 1 not an image (neither its name nor its bytes)"
    assert ignored_text({}) == ""
