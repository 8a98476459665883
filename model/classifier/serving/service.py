"""Classification as a use case: images in, ``Classification`` values (and stored records) out.

Independent of HTTP: the API, the S3 upload trigger and tests call it, and each
serialises the result itself (``Classification.as_dict`` is the record and
response shape in the README's "The HTTP API"). Each step is timed: decode (per image),
inference (per batch), total.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from classifier.config import Settings
from classifier.errors import ClassifierError, PayloadTooLarge
from classifier.records import RecordStore
from classifier.records.ids import new_record_id
from classifier.serving.imaging import ImageInfo, preprocess, stack
from classifier.serving.manager import LoadedModel

log = logging.getLogger(__name__)

UNTRAINED_WARNING = "untrained model: predictions are meaningless"


@dataclass(frozen=True)
class ImageInput:
    """One image to classify, admitted under the byte limit of the way it came in.

    ``extra`` is copied into its record (the S3 key it was read from, say).
    """

    data: bytes
    name: str | None = None
    max_bytes: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_bytes is not None and len(self.data) > self.max_bytes:
            raise PayloadTooLarge(f"{self.name or 'the image'} is {len(self.data)} bytes; "
                                  f"the limit is {self.max_bytes}")


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "index": self.index, "score": self.score}


@dataclass(frozen=True)
class Classification:
    """One image's answer: what the API returns and what is stored as its record."""

    id: str
    created_at: str
    model: Mapping[str, Any]
    predictions: Sequence[Prediction]
    image: ImageInfo
    timing_ms: Mapping[str, float]
    warning: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "created_at": self.created_at,
            "model": dict(self.model),
            "predictions": [p.as_dict() for p in self.predictions],
            "image": self.image.as_dict(),
            "timing_ms": dict(self.timing_ms),
        }
        if self.warning is not None:
            out["warning"] = self.warning
        out.update(self.extra)
        return out


class ModelSource(Protocol):
    """Where the classifier gets the model for a batch: ``ModelManager`` (a model name's current
    version, hot-swapped) or ``FixedModel`` (one version, for evaluation)."""

    def current(self) -> LoadedModel: ...


@dataclass(frozen=True)
class FixedModel:
    model: LoadedModel

    def current(self) -> LoadedModel:
        return self.model


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted.astype(np.float64))
    return exp / exp.sum(axis=1, keepdims=True)


def scores(outputs: np.ndarray, kind: str) -> np.ndarray:
    """Probabilities from a model's outputs: a softmax of logits; a model that answers
    probabilities (its manifest's ``output``) is taken at its word."""
    return softmax(outputs) if kind == "logits" else outputs.astype(np.float64)


def top_k(probs: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, highest first (stable on ties)."""
    return np.argsort(-probs, axis=1, kind="stable")[:, :k]


class Classifier:
    def __init__(self, settings: Settings, manager: ModelSource, records: RecordStore | None) -> None:
        self.settings = settings
        self.manager = manager
        self.records = records
        # One inference at a time per process, whatever the model: each already uses
        # every usable core, and two at once would only oversubscribe them.
        self._inference = threading.Lock()

    def classify(
        self,
        images: Sequence[ImageInput],
        *,
        k: int = 5,
        record_ids: Sequence[str] | None = None,
        store: bool = True,
        source: ModelSource | None = None,
    ) -> list[Classification]:
        """Classify ``images`` as one batch; store (unless ``store=False``) and return one result each.

        ``record_ids`` names the records (default: new time-ordered ids); the S3
        trigger passes its idempotent ones. With ``store=False`` the caller stores
        the records itself (the S3 trigger must know that a write failed).
        ``source`` is the model to use (another served model's slot); default: the
        classifier's own.
        """
        if record_ids is not None and len(record_ids) != len(images):
            raise ValueError(f"{len(record_ids)} record ids for {len(images)} images")
        start = time.perf_counter()
        model = (source or self.manager).current()
        tensors, infos, decode_ms = [], [], []
        for i, image in enumerate(images):
            t0 = time.perf_counter()
            try:
                tensor, info = preprocess(
                    image.data, model.preprocessing,
                    max_pixels=self.settings.max_image_pixels,
                    fast_jpeg=self.settings.fast_jpeg_decode,
                )
            except ClassifierError as exc:
                if len(images) > 1:
                    exc.message = f"{_which(i, image)}: {exc.message}"
                    exc.args = (exc.message,)
                raise
            tensors.append(tensor)
            infos.append(info)
            decode_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        with self._inference:
            logits = model.backend.run(stack(tensors))
        inference_ms = (time.perf_counter() - t0) * 1000
        probs = scores(logits, model.preprocessing.output)
        best = top_k(probs, min(k, probs.shape[1]))
        total_ms = (time.perf_counter() - start) * 1000

        results = []
        now = datetime.now(UTC)
        for i, (image, info) in enumerate(zip(images, infos, strict=True)):
            result = Classification(
                id=record_ids[i] if record_ids is not None else new_record_id(now),
                created_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                model=model.summary(),
                predictions=_predictions(model, probs[i], best[i]),
                image=info,
                timing_ms={"decode": round(decode_ms[i], 2), "inference": round(inference_ms, 2),
                           "total": round(total_ms, 2)},
                warning=None if model.trained else UNTRAINED_WARNING,
                extra=image.extra,
            )
            if store:
                self._store(result)
            results.append(result)
        log.info("classified", extra={
            "model_name": model.name, "model_version": model.version, "backend": model.backend.name,
            "images": len(images),
            "decode_ms": round(sum(decode_ms), 2), "inference_ms": round(inference_ms, 2),
            "total_ms": round(total_ms, 2), "record_ids": [r.id for r in results],
        })
        return results

    def classify_each(self, images: Sequence[ImageInput], *, k: int = 5,
                      record_ids: Sequence[str] | None = None) -> list[Classification | ClassifierError]:
        """One answer per image, never raising for a bad image: the batch runs as one inference, and
        when one of its images is refused, the others are classified one by one. Nothing is stored."""
        try:
            return list(self.classify(images, k=k, record_ids=record_ids, store=False))
        except ClassifierError as exc:
            if len(images) == 1 or exc.status >= 500:  # one image, or the model: nothing to single out
                if exc.status >= 500:
                    raise
                return [exc]
        answers: list[Classification | ClassifierError] = []
        for i, image in enumerate(images):
            ids = [record_ids[i]] if record_ids is not None else None
            try:
                answers.extend(self.classify([image], k=k, record_ids=ids, store=False))
            except ClassifierError as exc:
                if exc.status >= 500:
                    raise
                answers.append(exc)
        return answers

    def _store(self, result: Classification) -> None:
        assert self.records is not None
        try:
            self.records.put(result.as_dict())
        except Exception:  # the caller still gets its answer; the loss is logged
            log.exception("record write failed", extra={"record_id": result.id})


def _predictions(model: LoadedModel, probs: np.ndarray, best: np.ndarray) -> list[Prediction]:
    return [Prediction(model.labels[j], int(j), round(float(probs[j]), 6)) for j in best]


def _which(i: int, image: ImageInput) -> str:
    return f"image {i + 1} ({image.name})" if image.name else f"image {i + 1}"
