"""Classification as a use case: images in, ``Classification`` values (and stored records) out.

Independent of HTTP: the API, the S3 upload trigger and tests call it, and each
serialises the result itself (``Classification.as_dict`` is the record and
response shape in the README's "The HTTP API"). Each step is timed: decode (per image),
inference (per batch), total.

During a rollout (``classifier.serving.rollout_slot``) a request is first routed:
``classify_routed`` answers with the model its ``Route`` names, counts the request in
the rollout's evidence, and, when the candidate shadows it, returns the shadow run
for the caller to start once the answer is on its way (the API: after the response
is sent; ``classify``: at once). The shadow run stores the records, each with the
candidate's answer under ``shadow``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from classifier.config import Settings
from classifier.errors import ClassifierError, ImageTooLarge, PayloadTooLarge
from classifier.observability import metrics
from classifier.records import RecordStore
from classifier.records.ids import new_record_id
from classifier.serving.imaging import ImageInfo, open_image, preprocess, stack
from classifier.serving.manager import LoadedModel
from classifier.serving.rollout_slot import Route
from classifier.store.rollout import SHADOW_ROLE

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
    # Who asked for it (classifier.aws.principals); None: no identity (a local server, a folder batch).
    owner: str | None = None

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
        if self.owner is not None:
            out["owner"] = self.owner
        return out


class ModelSource(Protocol):
    """Where the classifier gets the model for a batch: ``ModelManager`` (a model name's current
    version, hot-swapped, and a rollout's candidate) or ``FixedModel`` (one version, for evaluation)."""

    def current(self) -> LoadedModel: ...

    def route(self, routing_key: str | None) -> Route: ...


@dataclass(frozen=True)
class FixedModel:
    model: LoadedModel

    def current(self) -> LoadedModel:
        return self.model

    def route(self, routing_key: str | None) -> Route:
        return Route(self.model)


# A rollout's records and evidence, to complete once the answer has been given.
ShadowRun = Callable[[], None]


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

    def route(self, routing_key: str | None, source: ModelSource | None = None) -> Route:
        """Where a request goes (``ModelSource.route`` of ``source``, default the classifier's own model):
        decided before classifying, so a failure is counted against the version it was meant for."""
        return (source or self.manager).route(routing_key)

    def classify(
        self,
        images: Sequence[ImageInput],
        *,
        k: int = 5,
        record_ids: Sequence[str] | None = None,
        store: bool = True,
        source: ModelSource | None = None,
        owner: str | None = None,
        route: Route | None = None,
    ) -> list[Classification]:
        """Classify ``images`` as one batch; store (unless ``store=False``) and return one result each.

        ``record_ids`` names the records (default: new time-ordered ids); the S3
        trigger passes its idempotent ones. With ``store=False`` the caller stores
        the records itself (the S3 trigger must know that a write failed).
        ``source`` is the model to use (another served model's slot); default: the
        classifier's own. ``owner`` is the caller the records belong to. ``route``
        (default: ``source``'s current version, outside any rollout) is ``route()``'s
        answer; a shadow run it calls for runs before this returns. A batch whose
        images hold more than ``MAX_REQUEST_PIXELS`` between them is refused (413)
        before any is decoded.
        """
        route = route or Route((source or self.manager).current())
        results, shadow = self.classify_routed(images, route, k=k, record_ids=record_ids, store=store, owner=owner)
        if shadow is not None:
            shadow()
        return results

    def classify_routed(
        self,
        images: Sequence[ImageInput],
        route: Route,
        *,
        k: int = 5,
        record_ids: Sequence[str] | None = None,
        store: bool = True,
        owner: str | None = None,
    ) -> tuple[list[Classification], ShadowRun | None]:
        """Classify with the model ``route`` names; return the results and, when the candidate shadows
        this request, the shadow run, which stores the records (unless ``store=False``): run it once
        the answer is given."""
        if record_ids is not None and len(record_ids) != len(images):
            raise ValueError(f"{len(record_ids)} record ids for {len(images)} images")
        start = time.perf_counter()
        self.check_pixel_budget(images)
        model = route.model
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
        try:
            with self._inference:
                # The rollout's evidence compares the model's own run, without the wait for the lock
                # (a shadow run of the request before may hold it); the answer's timing includes the wait.
                ran = time.perf_counter()
                logits = model.backend.run(stack(tensors))
                run_ms = (time.perf_counter() - ran) * 1000
        except Exception:
            self._evidence(route, role=route.role, version=model.version, ok=False, latency_ms=None)
            raise
        inference_ms = (time.perf_counter() - t0) * 1000
        self._evidence(route, role=route.role, version=model.version, ok=True, latency_ms=run_ms)
        probs = scores(logits, model.preprocessing.output)
        best = top_k(probs, min(k, probs.shape[1]))
        total_ms = (time.perf_counter() - start) * 1000

        results = []
        now = datetime.now(UTC)
        summary = route.summary()
        for i, (image, info) in enumerate(zip(images, infos, strict=True)):
            result = Classification(
                id=record_ids[i] if record_ids is not None else new_record_id(now),
                created_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                model=summary,
                predictions=_predictions(model, probs[i], best[i]),
                image=info,
                timing_ms={"decode": round(decode_ms[i], 2), "inference": round(inference_ms, 2),
                           "total": round(total_ms, 2)},
                warning=None if model.trained else UNTRAINED_WARNING,
                extra=image.extra,
                owner=owner,
            )
            results.append(result)
        log.info("classified", extra={
            "model_name": model.name, "model_version": model.version, "backend": model.backend.name,
            "images": len(images),
            "decode_ms": round(sum(decode_ms), 2), "inference_ms": round(inference_ms, 2),
            "total_ms": round(total_ms, 2), "record_ids": [r.id for r in results],
            **({"role": route.role, "rollout_id": route.rollout.id} if route.rollout else {}),
        })
        if route.shadow is not None:
            return results, lambda: self._shadow(route, images, tensors, results, k=k, store=store)
        if store:
            for result in results:
                self._store(result)
        return results, None

    def classify_each(self, images: Sequence[ImageInput], *, k: int = 5, record_ids: Sequence[str] | None = None,
                      owner: str | None = None) -> list[Classification | ClassifierError]:
        """One answer per image, never raising for a bad image: the batch runs as one inference, and
        when one of its images is refused (or together they are over the pixel budget), the others
        are classified one by one. Nothing is stored."""
        try:
            return list(self.classify(images, k=k, record_ids=record_ids, store=False, owner=owner))
        except ClassifierError as exc:
            if len(images) == 1 or exc.status >= 500:  # one image, or the model: nothing to single out
                if exc.status >= 500:
                    raise
                return [exc]
        answers: list[Classification | ClassifierError] = []
        for i, image in enumerate(images):
            ids = [record_ids[i]] if record_ids is not None else None
            try:
                answers.extend(self.classify([image], k=k, record_ids=ids, store=False, owner=owner))
            except ClassifierError as exc:
                if exc.status >= 500:
                    raise
                answers.append(exc)
        return answers

    def check_pixel_budget(self, images: Sequence[ImageInput]) -> None:
        """Refuse (413 ``image_too_large``) a batch over ``MAX_REQUEST_PIXELS`` in total, from the image
        headers alone: decoding is what costs, so nothing is decoded first. An image whose header
        cannot be read counts for nothing here; preprocessing then refuses it with its own error."""
        budget = self.settings.max_request_pixels
        total = 0
        for image in images:
            try:
                width, height = open_image(image.data, max_pixels=self.settings.max_image_pixels).size
            except ClassifierError:
                continue
            total += width * height
        if total > budget:
            raise ImageTooLarge(f"the {len(images)} images hold {total} pixels between them; the limit per "
                                f"request is {budget} (MAX_REQUEST_PIXELS): send them in smaller batches")

    def _shadow(self, route: Route, images: Sequence[ImageInput], tensors: Sequence[np.ndarray],
                results: Sequence[Classification], *, k: int, store: bool) -> None:
        """Run the candidate on the same images, after the current model answered: its answer and
        whether its top-1 agrees go into each record (stored here), the evidence and the metrics."""
        candidate, current = route.shadow, route.model
        assert candidate is not None
        shadowed: list[Classification] = list(results)
        try:
            if candidate.manifest["preprocessing"] != current.manifest["preprocessing"]:  # another input size, say
                tensors = [preprocess(image.data, candidate.preprocessing, max_pixels=self.settings.max_image_pixels,
                                      fast_jpeg=self.settings.fast_jpeg_decode)[0] for image in images]
            with self._inference:
                t0 = time.perf_counter()
                logits = candidate.backend.run(stack(tensors))
                inference_ms = (time.perf_counter() - t0) * 1000
            probs = scores(logits, candidate.preprocessing.output)
            best = top_k(probs, min(k, probs.shape[1]))
            agrees = [int(best[i][0]) == result.predictions[0].index for i, result in enumerate(results)]
            shadowed = [replace(result, extra={**result.extra, "shadow": {
                "version": candidate.version,
                "predictions": [p.as_dict() for p in _predictions(candidate, probs[i], best[i])],
                "agrees_top1": agrees[i],
                "inference_ms": round(inference_ms, 2),
            }}) for i, result in enumerate(results)]
            self._evidence(route, role=SHADOW_ROLE, version=candidate.version, ok=True, latency_ms=inference_ms,
                           compared=len(agrees), agreed=sum(agrees))
            metrics.record_shadow(model_version=candidate.version, inference_ms=inference_ms, agreements=agrees)
        except Exception as exc:  # the candidate's failure is evidence, never the caller's problem
            log.exception("shadow run failed", extra={"model_version": candidate.version})
            shadowed = [replace(result, extra={**result.extra, "shadow": {
                "version": candidate.version, "error": f"{type(exc).__name__}: {exc}"[:500]}}) for result in results]
            self._evidence(route, role=SHADOW_ROLE, version=candidate.version, ok=False, latency_ms=None)
            metrics.record_shadow(model_version=candidate.version, inference_ms=None, agreements=[])
        finally:
            if store:
                for result in shadowed:
                    self._store(result)

    @staticmethod
    def _evidence(route: Route, **kwargs: Any) -> None:
        if route.slot is not None:
            route.slot.record(route, **kwargs)

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
