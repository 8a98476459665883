"""The naive pipeline that the common "ResNet-50 on Lambda" samples use: the baseline of ``make bench``.

Deliberately written the way those samples are, not tuned: import torch and
torchvision at module level, ``resnet50()`` (randomly initialised, then
overwritten), ``load_state_dict(torch.load(path))``, ``weights.transforms()``
and a forward pass under ``torch.no_grad()``; torch's default thread settings.
The model loads at import time, as a Lambda sample's init phase does.

It takes the same API Gateway REST (v1) event as our handler (base64 image
body) and answers ``{"statusCode": 200, "body": <top-5 JSON>}``, so the bench
drives both the same way.

    BASELINE_WEIGHTS=bench/.work/baseline/resnet50.pth python bench/baseline.py PHOTO [--repeat N]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
import torchvision
from PIL import Image
from torchvision.models import ResNet50_Weights, resnet50

WEIGHTS_PATH = os.environ.get("BASELINE_WEIGHTS", "resnet50.pth")

weights = ResNet50_Weights.IMAGENET1K_V2
model = resnet50()
model.load_state_dict(torch.load(WEIGHTS_PATH))
model.eval()
preprocess = weights.transforms()
categories: list[str] = list(weights.meta["categories"])


def predict(images: Sequence[bytes], k: int = 5) -> list[list[dict[str, Any]]]:
    """Top-k predictions for each image, run as one batch."""
    batch = torch.stack([preprocess(Image.open(io.BytesIO(data)).convert("RGB")) for data in images])
    with torch.no_grad():
        logits = model(batch)
    probs = logits.softmax(dim=1)
    scores, indices = probs.topk(k, dim=1)
    return [
        [{"label": categories[int(i)], "index": int(i), "score": float(s)} for s, i in zip(row_s, row_i, strict=True)]
        for row_s, row_i in zip(scores, indices, strict=True)
    ]


def handler(event: dict[str, Any], context: object = None) -> dict[str, Any]:
    """Lambda entry point for an API Gateway REST event carrying one image."""
    body = event.get("body") or ""
    data = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("latin-1")
    predictions = predict([data])[0]
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"predictions": predictions}),
        "isBase64Encoded": False,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photo", help="an image file")
    parser.add_argument("--repeat", type=int, default=1, help="classify it this many times (a warm loop)")
    args = parser.parse_args(argv)
    with open(args.photo, "rb") as f:
        data = f.read()
    for _ in range(args.repeat):
        start = time.perf_counter()
        top = predict([data])[0]
        elapsed = (time.perf_counter() - start) * 1000
        print(json.dumps({"ms": round(elapsed, 2), "top1": top[0]}))
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, threads {torch.get_num_threads()}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
