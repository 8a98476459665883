"""Inference backends. Each is imported only when chosen, so the default
(onnx) process never imports torch."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    name: str

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits (N, classes) for a float32 NCHW batch."""
        ...


def load_backend(kind: str, artifact: bytes, *, threads: int) -> Backend:
    """Build the backend ``kind`` from its artifact's bytes (model.onnx or weights.safetensors)."""
    if kind == "onnx":
        from classifier.backends.onnx_backend import OnnxBackend

        return OnnxBackend(artifact, threads=threads)
    if kind == "torch":
        from classifier.backends.torch_backend import TorchBackend

        return TorchBackend(artifact, threads=threads)
    raise ValueError(f"unknown backend {kind!r}")
