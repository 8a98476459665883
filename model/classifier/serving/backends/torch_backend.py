"""PyTorch backend: the version's torchvision architecture with weights from safetensors.

The module is built on the ``meta`` device (where the architecture allows it), so no time is
spent initialising millions of parameters randomly only to overwrite them, and the safetensors
tensors are assigned in place (no pickle: a shared volume should never hold code). Which
network is built is the manifest's: its ``architecture`` and ``torchvision.kwargs``
(``classifier.serving.backends.torchvision_models`` checks them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import load_file

from classifier.serving.backends import torchvision_models


class TorchBackend:
    name = "torch"

    def __init__(self, weights: Path | bytes, *, threads: int, architecture: str = "resnet50",
                 kwargs: Mapping[str, Any] | None = None) -> None:
        torch.set_num_threads(threads)
        # may only be set once per process, before any parallel work
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
        state = load_file(weights) if isinstance(weights, Path) else load_safetensors(weights)
        if kwargs is None:  # a manifest from before builder arguments were recorded
            kwargs = {"num_classes": torchvision_models.head_width(architecture, state, {})}
        args = torchvision_models.check_kwargs(kwargs)
        self.model = torchvision_models.load(architecture, args, state)
        self.num_classes: int = args["num_classes"]

    def run(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = self.model(torch.from_numpy(batch))
        return logits.numpy().astype(np.float32, copy=False)
