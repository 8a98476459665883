"""PyTorch backend: torchvision's resnet50 with weights from safetensors.

The module is built on the ``meta`` device, so no time is spent initialising
25 M parameters randomly only to overwrite them, and the safetensors tensors are
assigned in place (no pickle: a shared volume should never hold code).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import load_file
from torchvision.models import resnet50


class TorchBackend:
    name = "torch"

    def __init__(self, weights: Path | bytes, *, threads: int) -> None:
        torch.set_num_threads(threads)
        # may only be set once per process, before any parallel work
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
        state = load_file(weights) if isinstance(weights, Path) else load_safetensors(weights)
        num_classes = self.num_classes = int(state["fc.weight"].shape[0])
        with torch.device("meta"):
            model = resnet50(weights=None, num_classes=num_classes)
        model.load_state_dict(state, strict=True, assign=True)
        self.model = model.eval()

    def run(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = self.model(torch.from_numpy(batch))
        return logits.numpy().astype(np.float32, copy=False)
