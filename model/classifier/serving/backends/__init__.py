"""Inference backends. Each is imported only when chosen, so the default
(onnx) process never imports torch, and importing this package imports
nothing heavy at all."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np


class Backend(Protocol):
    name: str
    num_classes: int

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Scores (N, classes) for a float32 batch laid out as the version's preprocessing says."""
        ...


def import_backend(kind: str) -> None:
    """Import backend ``kind``'s modules (numpy and onnxruntime, or torch) now, on the calling thread."""
    if kind == "onnx":
        import classifier.serving.backends.onnx_backend
    elif kind == "torch":
        import classifier.serving.backends.torch_backend  # noqa: F401
    else:
        raise ValueError(f"unknown backend {kind!r}")


def load_backend(kind: str, artifact: Path, *, threads: int, spin: bool = False,
                 input_shape: tuple[int, ...] = (3, 224, 224), architecture: str = "resnet50",
                 torchvision_kwargs: Mapping[str, Any] | None = None) -> Backend:
    """Build the backend ``kind`` from its artifact (model.onnx or weights.safetensors).

    ``input_shape`` is one image's tensor shape; ``architecture`` and ``torchvision_kwargs``
    (the manifest's) say which torchvision network the torch backend builds.
    """
    if kind == "onnx":
        from classifier.serving.backends.onnx_backend import OnnxBackend

        return OnnxBackend(artifact, threads=threads, spin=spin, input_shape=input_shape)
    if kind == "torch":
        from classifier.serving.backends.torch_backend import TorchBackend

        return TorchBackend(artifact, threads=threads, architecture=architecture, kwargs=torchvision_kwargs)
    raise ValueError(f"unknown backend {kind!r}")
