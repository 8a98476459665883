"""How the dashboard shows text it did not write: API data as literal markdown, scores, times, errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import streamlit as st

from api_errors import Problem

TIMES = "\N{MULTIPLICATION SIGN}"
# torchvision's builder names as people write them; any other architecture is shown as its builder name.
ARCHITECTURES = {"resnet50": "ResNet-50", "resnet18": "ResNet-18", "resnet101": "ResNet-101",
                 "mobilenet_v3_large": "MobileNetV3-Large", "efficientnet_b0": "EfficientNet-B0",
                 "vit_b_16": "ViT-B/16", "convnext_tiny": "ConvNeXt-Tiny"}


def served_model(model: Mapping[str, Any] | None) -> tuple[str, str]:
    """What to call the served model: (the page's title, a phrase for sentences).

    A model named after its architecture (torchvision's resnet50, as published by default)
    is "ResNet-50"; one with a name of its own is that name, said with what it is underneath:
    ("flowers image classifier", "flowers (a ResNet-50 with 3 labels)"). Without a loaded model:
    the API's, generically.
    """
    if not model or not model.get("name"):
        return "Image classifier", "the model the API serves"
    name = str(model["name"])
    manifest = model.get("manifest") or {}
    architecture = str(manifest.get("architecture") or "")
    known_as = ARCHITECTURES.get(architecture, architecture)
    if not architecture or name == architecture:
        return f"{known_as or name} image classifier", known_as or name
    labels = (manifest.get("labels") or {}).get("count")
    about = f"a {known_as}" + (f" with {labels} labels" if labels else "")
    return f"{name} image classifier", f"{name} ({about})"


def md(text: object) -> str:
    """``text`` shown literally in Streamlit markdown (labels and API messages are data, not markup)."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~$:])", r"\\\1", str(text))


def percent(score: float) -> str:
    if score >= 0.1:
        return f"{score:.1%}"
    return f"{score:.2%}" if score >= 0.0001 else "<0.01%"


def when(timestamp: str) -> str:
    return timestamp.replace("T", " ").replace("Z", " UTC").replace("+00:00", " UTC")


def show_error(shown: Problem, *, context: str = "") -> None:
    st.error(f"**{md(shown.headline)}**{md(context)}  \n{md(shown.detail)}  \n`{shown.reference}`",
             icon=":material/error:")
