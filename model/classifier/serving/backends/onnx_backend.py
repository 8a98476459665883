"""ONNX Runtime backend (the default): CPU provider, explicit thread counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort


class OnnxBackend:
    name = "onnx"

    def __init__(self, model: Path | bytes, *, threads: int, spin: bool = False,
                 input_shape: tuple[int, ...] = (3, 224, 224)) -> None:
        """``input_shape`` is one image's (the manifest's crop and layout): what a probe of a
        model whose output width is symbolic feeds it."""
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
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.output_name = self.session.get_outputs()[0].name
        # A model exported with a fixed batch of 1 (some exporters' default) runs a batch image by image.
        self.one_at_a_time = bool(model_input.shape) and model_input.shape[0] == 1
        classes = self.session.get_outputs()[0].shape[-1]
        if not isinstance(classes, int):  # a symbolic width: ask the model once
            classes = self.run(np.zeros((1, *input_shape), dtype=np.float32)).shape[-1]
        self.num_classes: int = classes

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The model's first output, (N, classes), for a float32 batch in the model's layout."""
        if self.one_at_a_time and len(batch) > 1:
            return np.concatenate([self.run(batch[i:i + 1]) for i in range(len(batch))])
        (logits,) = self.session.run([self.output_name], {self.input_name: batch})
        return np.asarray(logits, dtype=np.float32)
