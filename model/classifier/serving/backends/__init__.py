"""Inference backends. Each is imported only when chosen, so the default
(onnx) process never imports torch, and importing this package imports
nothing heavy at all."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np


class Backend(Protocol):
    name: str
    num_classes: int

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits (N, classes) for a float32 NCHW batch."""
        ...


def import_backend(kind: str) -> None:
    """Import backend ``kind``'s modules (numpy and onnxruntime, or torch) now, on the calling thread."""
    if kind == "onnx":
        import classifier.serving.backends.onnx_backend
    elif kind == "torch":
        import classifier.serving.backends.torch_backend  # noqa: F401
    else:
        raise ValueError(f"unknown backend {kind!r}")


def load_backend(kind: str, artifact: Path, *, threads: int, spin: bool = False) -> Backend:
    """Build the backend ``kind`` from its artifact (model.onnx or weights.safetensors)."""
    if kind == "onnx":
        from classifier.serving.backends.onnx_backend import OnnxBackend

        return OnnxBackend(artifact, threads=threads, spin=spin)
    if kind == "torch":
        from classifier.serving.backends.torch_backend import TorchBackend

        return TorchBackend(artifact, threads=threads)
    raise ValueError(f"unknown backend {kind!r}")
