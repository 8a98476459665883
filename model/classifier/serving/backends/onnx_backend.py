"""ONNX Runtime backend (the default): CPU provider, explicit thread counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort


class OnnxBackend:
    name = "onnx"

    def __init__(self, model: Path | bytes, *, threads: int, spin: bool = False) -> None:
        options = ort.SessionOptions()
        # One request runs at a time per Lambda instance: all usable cores go
        # to the operators of a single graph (intra-op), none to running
        # independent nodes in parallel (inter-op), which ResNet lacks anyway.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Idle pool threads busy-wait for the next operator only when the thread
        # plan says so (classifier.serving.cpu, Settings.spinning: off by default);
        # otherwise they steal the CPU that another session or request waits for.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
        # Pack the convolution weights on the intra-op pool, not one thread
        # (docs/performance.md).
        options.add_session_config_entry("session.prepack.enable_parallel", "1")
        # From a path, ORT reads the file itself: no 100 MB Python bytes object
        # lives beside ORT's own copy of the weights (peak memory).
        source = str(model) if isinstance(model, Path) else model
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        classes = self.session.get_outputs()[0].shape[-1]
        if not isinstance(classes, int):  # a symbolic width: ask the model once
            classes = self.run(np.zeros((1, 3, 224, 224), dtype=np.float32)).shape[-1]
        self.num_classes: int = classes

    def run(self, batch: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run(None, {self.input_name: batch})
        return np.asarray(logits, dtype=np.float32)
