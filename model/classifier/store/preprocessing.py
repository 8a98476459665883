"""What a version's manifest may say about its input: the keys of ``preprocessing``, their defaults and bounds.

A model's input is made from an image in this order: the shorter side resized to ``resize``
(``interpolation``), a centre crop of ``crop`` (an int, or ``[height, width]``), every 8-bit
level times ``scale``, then ``- mean`` and ``/ std`` per channel, the channels in
``channel_order``, laid out as ``layout``. ``output`` says whether the model answers logits (the
service applies a softmax) or probabilities (used as they are). ``mean`` and ``std`` are given in
the model's own channel order (for a BGR model: blue first).

Every value is bounded, because a manifest is a file whoever may publish writes: a ``resize`` of
100000 would make every request allocate tens of GB. The same check runs when a version is
published, when it is installed (``validate_manifest``, which the installer calls) and when it
is loaded to serve (``classifier.serving.imaging.Preprocessing.from_manifest``).

Standard library only: the installer Lambda's zip holds this package.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

REQUIRED = ("resize", "crop", "mean", "std")
DEFAULTS: dict[str, Any] = {
    "interpolation": "bilinear",
    "scale": 1 / 255,
    "channel_order": "RGB",
    "layout": "NCHW",
    "output": "logits",
}
KEYS = ("resize", "crop", "interpolation", "mean", "std", "scale", "channel_order", "layout", "output")
CHOICES: dict[str, tuple[str, ...]] = {
    "interpolation": ("bilinear", "bicubic", "nearest"),
    "channel_order": ("RGB", "BGR"),
    "layout": ("NCHW", "NHWC"),
    "output": ("logits", "probabilities"),
}
# Sides, in pixels: from a small CIFAR-style input to twice the largest torchvision preset
# (EfficientNet-B7's 600, ViT-H/14's 518). A 1024 x 1024 float32 input is 12 MB an image.
MIN_SIDE, MAX_SIDE = 8, 1024
# mean and std are in the units of a level times scale: up to 255 for scale 1 (Caffe's BGR means).
MAX_ABS_MEAN = 1000.0
MIN_STD, MAX_STD = 1e-4, 1000.0
MIN_SCALE, MAX_SCALE = 1e-6, 1.0


class PreprocessingError(ValueError):
    """A preprocessing section that cannot be served; the message names the key and the bound."""


def normalize_preprocessing(spec: Any) -> dict[str, Any]:
    """``spec`` checked and completed with the defaults: every key of ``KEYS``, in that order.

    Raises ``PreprocessingError`` for a missing required key, an unknown key, a value of the
    wrong type or outside its bounds.
    """
    if not isinstance(spec, Mapping):
        raise PreprocessingError("preprocessing must be a JSON object")
    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        raise PreprocessingError(f"preprocessing has an unknown key {unknown[0]!r} (the keys are {', '.join(KEYS)})")
    for key in REQUIRED:
        if key not in spec:
            raise PreprocessingError(f"preprocessing is missing {key!r}")
    out: dict[str, Any] = {**DEFAULTS, **spec}
    out["resize"] = _side("resize", out["resize"])
    crop = out["crop"]
    if isinstance(crop, (list, tuple)):
        if len(crop) != 2:
            raise PreprocessingError(f"preprocessing crop must be an integer or [height, width], got {crop!r}")
        out["crop"] = [_side("crop", side) for side in crop]
    else:
        out["crop"] = _side("crop", crop)
    out["mean"] = _triple("mean", out["mean"], -MAX_ABS_MEAN, MAX_ABS_MEAN)
    out["std"] = _triple("std", out["std"], MIN_STD, MAX_STD)
    out["scale"] = _number("scale", out["scale"], MIN_SCALE, MAX_SCALE)
    for key, choices in CHOICES.items():
        value = out[key]
        if key == "interpolation" and isinstance(value, str):
            value = value.lower()
        if key in ("channel_order", "layout") and isinstance(value, str):
            value = value.upper()
        if value not in choices:
            raise PreprocessingError(f"preprocessing {key} must be one of {', '.join(choices)}, got {out[key]!r}")
        out[key] = value
    return {key: out[key] for key in KEYS}


def crop_size(spec: Mapping[str, Any]) -> tuple[int, int]:
    """(height, width) of a normalised spec's crop: the model's input size."""
    crop = spec["crop"]
    return (int(crop[0]), int(crop[1])) if isinstance(crop, (list, tuple)) else (int(crop), int(crop))


def input_shape(crop: tuple[int, int], layout: str) -> tuple[int, int, int]:
    """One image's tensor shape: (3, height, width), or (height, width, 3) for NHWC."""
    height, width = crop
    return (height, width, 3) if layout == "NHWC" else (3, height, width)


def spec_input_shape(spec: Mapping[str, Any]) -> tuple[int, int, int]:
    """``input_shape`` of a normalised spec (its crop and layout)."""
    return input_shape(crop_size(spec), spec["layout"])


def _side(key: str, value: Any) -> int:
    if not _is_int(value) or not MIN_SIDE <= value <= MAX_SIDE:
        raise PreprocessingError(f"preprocessing {key} must be an integer from {MIN_SIDE} to {MAX_SIDE} pixels, "
                                 f"got {value!r}")
    return int(value)


def _number(key: str, value: Any, low: float, high: float) -> float:
    if not (_is_int(value) or isinstance(value, float)) or not math.isfinite(value) or not low <= value <= high:
        raise PreprocessingError(f"preprocessing {key} must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _triple(key: str, value: Any, low: float, high: float) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise PreprocessingError(f"preprocessing {key} must be a list of 3 numbers (one per channel), got {value!r}")
    return [_number(key, item, low, high) for item in value]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
