"""The cold-start floor of ``make bench``: the least a process can do to classify one photo with ONNX Runtime.

Imports onnxruntime, numpy and Pillow, builds a session on the run's ``model.onnx``
(the store's current version, so fp32 or int8 as the contender's store says) with
2 intra-op threads, and classifies the event's photo: no web layer, no logging, no
records, no checks. Our handler's cold start is measured against it, as a ratio.
"""

import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

_model = Path(os.environ["MODEL_STORE"], "models", os.environ.get("MODEL_NAME", "resnet50"))
_options = ort.SessionOptions()
_options.intra_op_num_threads = 2
session = ort.InferenceSession(str(_model / "versions" / (_model / "CURRENT").read_text().strip() / "model.onnx"),
                               _options, providers=["CPUExecutionProvider"])
_mean, _std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def handler(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    image = Image.open(io.BytesIO(base64.b64decode(event["body"]))).convert("RGB")
    image = image.resize((232 * image.width // min(image.size), 232 * image.height // min(image.size)),
                         Image.Resampling.BILINEAR)
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    x = (np.asarray(image.crop((left, top, left + 224, top + 224)), np.float32) / 255 - _mean) / _std
    (logits,) = session.run(None, {session.get_inputs()[0].name: x.transpose(2, 0, 1)[None]})
    return {"statusCode": 200, "body": json.dumps({"top5": np.argsort(logits[0])[::-1][:5].tolist()})}
