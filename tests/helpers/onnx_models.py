"""Small ONNX image classifiers written with ``onnx.helper``, as a team bringing its own model would
hand one over: a convolution, a ReLU, a global average pool and a dense layer, with seeded weights.
The pooled features are centred on their mean over four real photos before the dense layer, so that
different photos get different answers (what every photo shares would otherwise decide the top-1).
Options make the shapes ``publish --onnx`` must refuse (an input that is not 4-D, one channel, an
output width that is not the label count) and the variants it must serve (NHWC, a fixed batch of 1,
probabilities instead of logits).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def tiny_classifier(path: Path, *, labels: int = 5, size: tuple[int, int] = (299, 299), layout: str = "NCHW",
                    channels: int = 3, batch: str | int = "batch", probabilities: bool = False,
                    flat_input: bool = False, seed: int = 0,
                    normalise: tuple[float, float, bool] = (0.5, 0.5, True)) -> Path:
    """Write the model to ``path`` and return it. ``normalise`` is the (mean, std, BGR?) its input is made
    with: the features are centred on real photos fed that way."""
    rng = np.random.default_rng(seed)
    height, width = size
    if flat_input:
        image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, channels * height * width])
    elif layout == "NHWC":
        image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, height, width, channels])
    else:
        image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, channels, height, width])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, labels])
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, channels, 7, 7)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "conv_b"),
        numpy_helper.from_array(rng.normal(0, 2.0, (8, labels)).astype(np.float32), "dense_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, labels).astype(np.float32), "dense_b"),
    ]
    nodes = []
    source = "image"
    if flat_input:
        weights.append(numpy_helper.from_array(np.array([-1, channels, height, width], dtype=np.int64), "shape"))
        nodes.append(helper.make_node("Reshape", ["image", "shape"], ["nchw"]))
        source = "nchw"
    elif layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]))
        source = "nchw"
    nodes += [
        helper.make_node("Conv", [source, "conv_w", "conv_b"], ["conv"], strides=[4, 4]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["features"]),
    ]
    if channels == 3 and not flat_input and batch in ("batch", 1):
        weights.append(numpy_helper.from_array(mean_features(nodes, weights, image, (height, width), layout,
                                                             normalise),
                                               "feature_mean"))
        nodes.append(helper.make_node("Sub", ["features", "feature_mean"], ["centred"]))
    else:  # the shapes publish refuses: never run on a photo
        nodes.append(helper.make_node("Identity", ["features"], ["centred"]))
    nodes.append(helper.make_node("Gemm", ["centred", "dense_w", "dense_b"], ["logits" if probabilities else "scores"]))
    if probabilities:
        nodes.append(helper.make_node("Softmax", ["logits"], ["scores"], axis=1))
    graph = helper.make_graph(nodes, "tiny-classifier", [image], [scores], initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tests")
    model.ir_version = 9
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def mean_features(nodes: list[onnx.NodeProto], weights: list[onnx.TensorProto], image: onnx.ValueInfoProto,
                  size: tuple[int, int], layout: str, normalise: tuple[float, float, bool]) -> np.ndarray:
    """The pooled features' mean over four real photos (resized to the input and normalised)."""
    import onnxruntime
    from PIL import Image

    from helpers.photos import photo

    features = helper.make_tensor_value_info("features", TensorProto.FLOAT, None)
    used = {name for node in nodes for name in node.input}
    graph = helper.make_graph(nodes, "features", [image], [features],
                              initializer=[w for w in weights if w.name in used])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    height, width = size
    batch = np.stack([np.asarray(photo(name).resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
                      for name in ("chelsea", "coffee", "astronaut", "rocket")]) / 255
    mean, std, bgr = normalise
    batch = (batch[..., ::-1] if bgr else batch) - mean
    batch /= std
    if layout != "NHWC":
        batch = batch.transpose(0, 3, 1, 2)
    rows = [session.run(None, {"image": np.ascontiguousarray(one[None])})[0][0] for one in batch]  # any batch axis
    return np.mean(rows, axis=0).astype(np.float32)


def broken_model(path: Path) -> Path:
    """A model the ONNX checker refuses: its node reads a tensor nothing defines."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 5])
    graph = helper.make_graph([helper.make_node("Relu", ["nowhere"], ["scores"])], "broken", [image], [scores])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    path.write_bytes(model.SerializeToString())
    return path


def write_labels(path: Path, count: int) -> Path:
    path.write_text(json.dumps([f"class {i}" for i in range(count)]))
    return path


def write_preprocessing(path: Path, **spec: object) -> Path:
    path.write_text(json.dumps(spec))
    return path
