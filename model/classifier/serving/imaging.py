"""Decode and preprocess images exactly as torchvision's classification transforms do.

Reference: a torchvision weights' ``transforms()``, e.g.
``ResNet50_Weights.IMAGENET1K_V2.transforms()``, i.e. ``ImageClassification(crop_size=224,
resize_size=232)``: shorter side resized to 232 with PIL bilinear (PIL always antialiases),
centre crop 224, scale to [0, 1], normalise with the ImageNet mean/std, NCHW float32. The
parameters come from the version's manifest (``classifier.store.preprocessing`` defines and
bounds them): another resize, crop, interpolation, scale, channel order or layout is served as
its manifest says.

Additions a service needs: EXIF orientation, every PIL mode mapped to RGB
(palette, alpha, greyscale, CMYK, 16-bit, float), pixel limits against
decompression bombs, and an optional reduced-scale JPEG decode.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from classifier.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType
from classifier.store.preprocessing import crop_size, input_shape, normalize_preprocessing

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
# The file names those formats go by (what torchvision's ImageFolder takes, as far as we decode it).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})

# The ImageNet channel statistics used by every torchvision classification
# model (torchvision/transforms/_presets.py, ImageClassification defaults).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DEFAULT_PREPROCESSING: dict[str, Any] = {
    "resize": 232,
    "crop": 224,
    "mean": list(IMAGENET_MEAN),
    "std": list(IMAGENET_STD),
    "interpolation": "bilinear",
}

# Truncated files must fail loudly, not decode as grey padding.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# We check the pixel count ourselves (MAX_IMAGE_PIXELS) before decoding; PIL's
# own bomb check would otherwise warn or raise with a different message.
Image.MAX_IMAGE_PIXELS = None

_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)


# PIL's filters for the manifest's interpolation names: what torchvision's Resize uses on a PIL
# image (torchvision.transforms.functional.pil_modes_mapping). PIL always antialiases when it
# downsamples with bilinear or bicubic, as torchvision's antialias=True presets do.
RESAMPLING = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class Preprocessing:
    """A version's preprocessing, checked and ready to apply (``from_manifest``)."""

    resize: int
    crop: tuple[int, int]  # (height, width)
    mean: np.ndarray  # (3, 1, 1) float32, in the model's channel order
    std: np.ndarray
    # (3, 256) float32: the model's input value of every 8-bit level, per model channel,
    # computed with torchvision's float32 operations, so a table lookup gives
    # bit-identical results faster than the arithmetic on every pixel (docs/performance.md).
    table: np.ndarray
    resample: Image.Resampling = Image.Resampling.BILINEAR
    # The image channel (R=0, G=1, B=2) that feeds each model channel.
    channels: tuple[int, int, int] = (0, 1, 2)
    layout: str = "NCHW"
    output: str = "logits"

    @classmethod
    def from_manifest(cls, spec: Mapping[str, Any]) -> Preprocessing:
        """Check ``spec`` (a manifest's ``preprocessing``) against its bounds and build it;
        raises ``PreprocessingError`` (a ``ValueError``) for one that cannot be served."""
        spec = normalize_preprocessing(spec)
        mean = np.asarray(spec["mean"], dtype=np.float32).reshape(3, 1, 1)
        std = np.asarray(spec["std"], dtype=np.float32).reshape(3, 1, 1)
        # torchvision's convert_image_dtype divides by 255 (not multiplies by 1/255): dividing by
        # the scale's reciprocal keeps the default bit-identical to it.
        levels = np.arange(256, dtype=np.float32).reshape(1, 1, 256) / np.float32(1.0 / spec["scale"])
        table = np.ascontiguousarray(((levels - mean) / std).reshape(3, 256), dtype=np.float32)
        return cls(resize=spec["resize"], crop=crop_size(spec), mean=mean, std=std, table=table,
                   resample=RESAMPLING[spec["interpolation"]],
                   channels=(2, 1, 0) if spec["channel_order"] == "BGR" else (0, 1, 2),
                   layout=spec["layout"], output=spec["output"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One image's tensor shape: (3, height, width), or (height, width, 3) for NHWC."""
        return input_shape(self.crop, self.layout)


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {"format": self.format, "width": self.width, "height": self.height, "sha256": self.sha256}


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Identify ``data`` without decoding pixels; enforce format and pixel limits."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except UnidentifiedImageError:
        raise UnsupportedMediaType(
            "not a supported image: send JPEG, PNG, WebP, GIF, BMP or TIFF"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:  # recognised but broken header
        raise InvalidImage(f"the image header could not be read: {exc}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImage("the image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"the image has {width}x{height} = {width * height} pixels; the limit is {max_pixels}"
        )
    return image


def oriented_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) as displayed, after the EXIF orientation is applied."""
    width, height = image.size
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a malformed EXIF block is ignored, as exif_transpose does
        orientation = 1
    return (height, width) if orientation in _TRANSPOSED_ORIENTATIONS else (width, height)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        array = np.asarray(image, dtype=np.float32)
        if mode == "F":
            # Float images are conventionally 0..1; otherwise assume 0..255.
            scale = 255.0 if float(array.max(initial=0.0)) <= 1.0 else 1.0
        elif mode.startswith("I;16") or float(array.max(initial=0.0)) > 255:
            scale = 255.0 / 65535.0
        else:
            scale = 1.0
        grey = np.clip(array * scale + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        # Composite transparent pixels onto white: the colour stored under
        # alpha=0 is arbitrary (often black) and would mislead the model.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """torchvision's ``_compute_resized_output_size`` for a single int: shorter side -> size."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def preprocess(
    data: bytes, spec: Preprocessing, *, max_pixels: int, fast_jpeg: bool
) -> tuple[np.ndarray, ImageInfo]:
    """Decode ``data`` and return the model's float32 input tensor (``spec.input_shape``) and image facts."""
    image = open_image(data, max_pixels=max_pixels)
    fmt = image.format or "unknown"
    width, height = oriented_size(image)
    try:
        if fast_jpeg and fmt in ("JPEG", "MPO") and image.mode in ("RGB", "L", "CMYK"):
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (DCT scaling) while the
            # shorter side stays at or above the resize target, so the bilinear
            # resize that follows still downsamples.
            scale = spec.resize / min(image.size)
            if scale < 1:
                target = (int(image.size[0] * scale) + 1, int(image.size[1] * scale) + 1)
                image.draft(image.mode if image.mode != "CMYK" else "RGB", target)
        image = ImageOps.exif_transpose(image)
        image = to_rgb(image)
        new_w, new_h = resized_size(image.width, image.height, spec.resize)
        if (new_w, new_h) != image.size:
            image = image.resize((new_w, new_h), spec.resample)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImage(f"the image could not be decoded (truncated or corrupt): {exc}") from None
    tensor = crop_and_normalize(image, spec)
    info = ImageInfo(fmt, width, height, hashlib.sha256(data).hexdigest())
    return tensor, info


def crop_and_normalize(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """torchvision's ``center_crop`` + ``pil_to_tensor`` + ``convert_image_dtype`` + ``normalize``,
    then the manifest's channel order and layout."""
    crop_h, crop_w = spec.crop
    width, height = image.size
    if width < crop_w or height < crop_h:  # torchvision pads with zeros; so do we
        padded = Image.new("RGB", (max(width, crop_w), max(height, crop_h)))
        padded.paste(image, ((max(width, crop_w) - width) // 2, (max(height, crop_h) - height) // 2))
        image, (width, height) = padded, padded.size
    top = round((height - crop_h) / 2.0)
    left = round((width - crop_w) / 2.0)
    pixels = np.asarray(image.crop((left, top, left + crop_w, top + crop_h)))  # (crop_h, crop_w, 3) uint8
    tensor = np.empty((3, crop_h, crop_w), dtype=np.float32)
    for channel, source in enumerate(spec.channels):
        np.take(spec.table[channel], pixels[:, :, source], out=tensor[channel])
    if spec.layout == "NHWC":
        return np.ascontiguousarray(tensor.transpose(1, 2, 0))
    return tensor


def stack(tensors: Sequence[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(np.stack(tensors), dtype=np.float32)


def folder_files(root: Path) -> list[Path]:
    """Every regular file under ``root`` (recursively, hidden files and folders aside), in a stable order.

    Whether each is an image is for its bytes to say (``preprocess``), not its name: ``IMG_0001``
    and ``photo.jfif`` are images, a ``notes.txt`` is not, and each gets its answer.
    """
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def is_image_file(path: Path) -> bool:
    """Whether ``path``'s bytes open as a supported image (its header only: no pixels are decoded)."""
    try:
        with Image.open(path, formats=SUPPORTED_FORMATS):
            return True
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return False


def sort_images(paths: Iterable[Path], root: Path) -> tuple[list[Path], dict[str, int]]:
    """The images among ``paths`` (hidden files aside), and how many files were ignored, by reason:
    what ``evaluate`` and ``quantize`` say of a folder.

    A file is taken when its bytes open as an image (``IMG_0001``, ``scan.jfif``) or its name says
    it is one: a broken ``.jpg`` is then an error in the report, not silently left out.
    """
    images: list[Path] = []
    ignored: dict[str, int] = {}
    for path in paths:
        reason = None
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            reason = "hidden"
        elif path.suffix.lower() not in IMAGE_SUFFIXES and not is_image_file(path):
            reason = "not an image (neither its name nor its bytes)"
        if reason is None:
            images.append(path)
        else:
            ignored[reason] = ignored.get(reason, 0) + 1
    return images, ignored


def ignored_text(ignored: Mapping[str, int]) -> str:
    """``"ignored 3 files: 2 not an image (by its bytes), 1 hidden"``, or "" when none was."""
    total = sum(ignored.values())
    if not total:
        return ""
    return f"ignored {total} file{'s' if total != 1 else ''}: " + ", ".join(
        f"{count} {reason}" for reason, count in sorted(ignored.items(), key=lambda kv: -kv[1]))
