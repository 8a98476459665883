"""ONNX Runtime backend (the default): CPU provider, explicit thread counts."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort


class OnnxBackend:
    name = "onnx"

    def __init__(self, model: bytes, *, threads: int) -> None:
        options = ort.SessionOptions()
        # One request runs at a time per Lambda instance: all usable cores go
        # to the operators of a single graph (intra-op), none to running
        # independent nodes in parallel (inter-op), which ResNet lacks anyway.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run(None, {self.input_name: batch})
        return np.asarray(logits, dtype=np.float32)
