"""Real photographs (CC0, from scikit-image) and their encodings."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def photo(name: str) -> Image.Image:
    """A CC0 photograph shipped with scikit-image: chelsea, coffee, astronaut, rocket."""
    from skimage import data

    return Image.fromarray(getattr(data, name)())


def encode(image: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def jpeg(name: str, quality: int = 92) -> bytes:
    return encode(photo(name), "JPEG", quality=quality)


def big_jpeg(name: str = "astronaut", size: tuple[int, int] = (4000, 3000)) -> bytes:
    """A ~12 MP JPEG made by upscaling a real photo."""
    return encode(photo(name).resize(size, Image.Resampling.BICUBIC), "JPEG", quality=90)



def relative_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12))
