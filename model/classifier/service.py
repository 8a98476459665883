"""Classification as a use case: images in, predictions and stored records out.

Independent of HTTP: the API, the S3 upload trigger and tests call it.
Each step is timed: decode (per image), inference (per batch), total.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from classifier.config import Settings
from classifier.errors import ClassifierError, PayloadTooLarge
from classifier.imaging import preprocess, stack
from classifier.records import RecordStore, new_record_id
from classifier.runtime import LoadedModel, ModelManager

log = logging.getLogger(__name__)

UNTRAINED_WARNING = "untrained model: predictions are meaningless"


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    return exp / exp.sum(axis=1, keepdims=True)


def top_k(probs: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, highest first (stable on ties)."""
    return np.argsort(-probs, axis=1, kind="stable")[:, :k]


class Classifier:
    def __init__(self, settings: Settings, manager: ModelManager, records: RecordStore) -> None:
        self.settings = settings
        self.manager = manager
        self.records = records
        # One inference at a time per process: each already uses every usable
        # core, and two at once would only oversubscribe them.
        self._inference = threading.Lock()

    def classify(
        self,
        images: Sequence[bytes],
        *,
        k: int = 5,
        names: Sequence[str | None] | None = None,
        extra: dict[str, Any] | None = None,
        max_bytes: int | None = None,
        store: bool = True,
    ) -> list[dict[str, Any]]:
        """Classify ``images`` as one batch; store and return one result per image.

        ``max_bytes`` is the per-image limit (default ``MAX_IMAGE_BYTES``; images
        read from S3 pass ``MAX_S3_IMAGE_BYTES``). With ``store=False`` the
        caller stores the records itself (the S3 trigger must know a write failed).
        """
        start = time.perf_counter()
        limit = self.settings.max_image_bytes if max_bytes is None else max_bytes
        uploads_help = self.settings.uploads_bucket and limit < self.settings.max_s3_image_bytes
        hint = " (use POST /uploads for larger images)" if uploads_help else ""
        for i, data in enumerate(images):
            if len(data) > limit:
                raise PayloadTooLarge(
                    f"{_which(i, names, len(images))} is {len(data)} bytes; the limit is {limit}{hint}"
                )
        model = self.manager.current()
        tensors, infos, decode_ms = [], [], []
        for i, data in enumerate(images):
            t0 = time.perf_counter()
            try:
                tensor, info = preprocess(
                    data, model.preprocessing,
                    max_pixels=self.settings.max_image_pixels,
                    fast_jpeg=self.settings.fast_jpeg_decode,
                )
            except ClassifierError as exc:
                if len(images) > 1:
                    exc.message = f"{_which(i, names, len(images))}: {exc.message}"
                    exc.args = (exc.message,)
                raise
            tensors.append(tensor)
            infos.append(info)
            decode_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        with self._inference:
            logits = model.backend.run(stack(tensors))
        inference_ms = (time.perf_counter() - t0) * 1000
        probs = softmax(logits)
        best = top_k(probs, min(k, probs.shape[1]))
        total_ms = (time.perf_counter() - start) * 1000

        results = []
        for i, info in enumerate(infos):
            result = self._result(model, probs[i], best[i], info.as_dict(), {
                "decode": round(decode_ms[i], 2),
                "inference": round(inference_ms, 2),
                "total": round(total_ms, 2),
            })
            if extra:
                result.update(extra)
            if store:
                self._store(result)
            results.append(result)
        log.info("classified", extra={
            "model_version": model.version, "backend": model.backend.name, "images": len(images),
            "decode_ms": round(sum(decode_ms), 2), "inference_ms": round(inference_ms, 2),
            "total_ms": round(total_ms, 2), "record_ids": [r["id"] for r in results],
        })
        return results

    def _result(self, model: LoadedModel, probs: np.ndarray, best: np.ndarray,
                image: dict[str, Any], timing: dict[str, float]) -> dict[str, Any]:
        now = datetime.now(UTC)
        result: dict[str, Any] = {
            "id": new_record_id(now),
            "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "model": model.summary(),
            "predictions": [
                {"label": model.labels[j], "index": int(j), "score": round(float(probs[j]), 6)}
                for j in best
            ],
            "image": image,
            "timing_ms": timing,
        }
        if not model.trained:
            result["warning"] = UNTRAINED_WARNING
        return result

    def _store(self, result: dict[str, Any]) -> None:
        try:
            self.records.put(result)
        except Exception:  # the caller still gets its answer; the loss is logged
            log.exception("record write failed", extra={"record_id": result["id"]})


def _which(i: int, names: Sequence[str | None] | None, count: int) -> str:
    if count <= 1:
        return "the image"
    name = names[i] if names and i < len(names) and names[i] else None
    return f"image {i + 1} ({name})" if name else f"image {i + 1}"
