"""Evaluate a version on a labelled data set before it serves: ``python -m classifier evaluate``.

The data set is an ImageFolder (``DIR/<label>/<image>``, as torchvision reads
it): each folder name must be one of the model's labels. The images go through
the serving pipeline itself (``Classifier`` with the same preprocessing, backend
and batching as a multipart request) with one version pinned, so the figures
are the ones that version would give in production. The report is kept in the
store (``models/<name>/evaluations/<version>/<data-sha256>.json``), keyed by a
digest of the data set, so ``promote`` can reuse it and ``models`` can show it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from classifier.config import Settings
from classifier.serving.imaging import sort_images
from classifier.serving.manager import LoadedModel, ModelManager
from classifier.serving.service import Classification, Classifier, FixedModel, ImageInput
from classifier.store.fsio import sha256_file
from classifier.store.layout import ModelStore
from classifier.store.manifest import precision

BATCH = 16  # the API's MAX_BATCH: a data set is classified as full multipart requests would be
TOP_K = 5

Progress = Callable[[int, int], None]


class EvaluationError(Exception):
    """The data set or the versions cannot be evaluated; the message says why."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str


@dataclass(frozen=True)
class DataSet:
    root: Path
    samples: tuple[Sample, ...]
    sha256: str  # of every file's relative path and content: a data set's identity
    ignored: Mapping[str, int] = field(default_factory=dict)  # files left out, by reason

    @classmethod
    def scan(cls, root: Path, labels: Sequence[str]) -> DataSet:
        """The images under ``root/<label>/``; a folder that is not one of ``labels`` is an error."""
        if not root.is_dir():
            raise EvaluationError(f"{root} is not a directory: expected DIR/<label>/<images>")
        known = set(labels)
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        unknown = [p.name for p in folders if p.name not in known]
        if unknown:
            raise EvaluationError(f"{root}: folder {unknown[0]!r} is not a label of this model"
                                  + (f" (nor are {len(unknown) - 1} more)" if len(unknown) > 1 else ""))
        candidates = [path for folder in folders for path in sorted(folder.iterdir()) if path.is_file()]
        images, ignored = sort_images(candidates, root)
        loose = sum(1 for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
        if loose:
            ignored["directly in DIR, not in a <label>/ folder"] = loose
        samples = [Sample(path, path.parent.name) for path in images]
        if not samples:
            raise EvaluationError(f"{root} holds no images in <label>/ folders")
        digest = hashlib.sha256()
        for sample in samples:
            digest.update(f"{sample.path.relative_to(root).as_posix()}\0{sha256_file(sample.path)[1]}\n".encode())
        return cls(root, tuple(samples), digest.hexdigest(), ignored)


@dataclass(frozen=True)
class Outcome:
    """One image's answer: the top-k labels, best first, and its share of the time."""

    sample: Sample
    top: tuple[str, ...]
    latency_ms: float


def evaluate(store: ModelStore, settings: Settings, version: str, data: DataSet, *,
             compare: str | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """The report of ``version`` on ``data`` (and its agreement with ``compare``), saved in the store."""
    name = settings.model_name
    model = load(store, settings, version)
    outcomes, errors = run(settings, model, data, progress)
    report = summarise(model, data, outcomes, errors)
    if compare is not None:
        other, _ = run(settings, load(store, settings, compare), data, None)
        report["agreement"] = {"version": compare, **agreement(outcomes, other)}
    store.save_evaluation(name, version, data.sha256, report)
    return report


def load(store: ModelStore, settings: Settings, version: str) -> LoadedModel:
    try:
        return ModelManager(settings, store).load(version)
    except Exception as exc:  # a missing or broken version: say which, and why
        raise EvaluationError(f"version {version} cannot be loaded: {exc}") from None


def run(settings: Settings, model: LoadedModel, data: DataSet,
        progress: Progress | None) -> tuple[list[Outcome], list[dict[str, str]]]:
    """Every sample through the serving pipeline, in batches; images it refuses become errors."""
    classifier = Classifier(settings, FixedModel(model), None)
    k = min(TOP_K, len(model.labels))
    outcomes: list[Outcome] = []
    errors: list[dict[str, str]] = []
    samples = list(data.samples)
    # One untimed batch first: ONNX Runtime sizes its buffers for a new batch shape on the first
    # run, which a long-running server has long paid.
    classifier.classify_each([ImageInput(s.path.read_bytes(), s.path.name) for s in samples[:BATCH]], k=k)
    for start in range(0, len(samples), BATCH):
        batch = samples[start:start + BATCH]
        images = [ImageInput(s.path.read_bytes(), s.path.name) for s in batch]
        answers = classifier.classify_each(images, k=k)
        # The time an image took in the batch it ran in (alone when its batch had a refused image).
        ran_in = len(batch) if all(isinstance(a, Classification) for a in answers) else 1
        for sample, answer in zip(batch, answers, strict=True):
            if isinstance(answer, Classification):
                outcomes.append(_outcome(sample, answer, ran_in))
            else:
                errors.append({"file": sample.path.relative_to(data.root).as_posix(), "code": answer.code,
                               "message": answer.message})
        if progress is not None:
            progress(min(start + BATCH, len(samples)), len(samples))
    return outcomes, errors


def _outcome(sample: Sample, result: Classification, batch_size: int) -> Outcome:
    timing = result.timing_ms
    return Outcome(sample, tuple(p.label for p in result.predictions),
                   timing["decode"] + timing["inference"] / batch_size)


def summarise(model: LoadedModel, data: DataSet, outcomes: Sequence[Outcome],
              errors: Sequence[dict[str, str]]) -> dict[str, Any]:
    n = len(outcomes)
    per_class: dict[str, dict[str, Any]] = {}
    confusion: dict[str, dict[str, int]] = {}
    for outcome in outcomes:
        truth, predicted = outcome.sample.label, outcome.top[0]
        row = per_class.setdefault(truth, {"images": 0, "correct": 0})
        row["images"] += 1
        row["correct"] += predicted == truth
        cells = confusion.setdefault(truth, {})
        cells[predicted] = cells.get(predicted, 0) + 1
    latencies = sorted(o.latency_ms for o in outcomes)
    return {
        "name": model.name,
        "version": model.version,
        "backend": model.backend.name,
        "precision": precision(model.manifest),
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data": {"path": str(data.root), "sha256": data.sha256, "images": len(data.samples),
                 "ignored": dict(data.ignored)},
        "images": n,
        "top1": _fraction(sum(o.top[0] == o.sample.label for o in outcomes), n),
        "top5": _fraction(sum(o.sample.label in o.top for o in outcomes), n),
        "per_class": {label: {"images": row["images"], "top1": _fraction(row["correct"], row["images"])}
                      for label, row in sorted(per_class.items())},
        "confusion": {truth: dict(sorted(cells.items())) for truth, cells in sorted(confusion.items())},
        "latency_ms": {"p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95)},
        "errors": list(errors),
    }


def agreement(ours: Sequence[Outcome], theirs: Sequence[Outcome]) -> dict[str, float]:
    """How often two versions give the same top-1, and how much their top-k lists overlap, on the same images."""
    by_path = {o.sample.path: o for o in theirs}
    pairs = [(o, by_path[o.sample.path]) for o in ours if o.sample.path in by_path]
    if not pairs:
        return {"images": 0, "top1": 0.0, "top5_overlap": 0.0}
    same = sum(a.top[0] == b.top[0] for a, b in pairs)
    overlap = sum(len(set(a.top) & set(b.top)) / max(len(a.top), len(b.top)) for a, b in pairs)
    return {"images": len(pairs), "top1": round(same / len(pairs), 6), "top5_overlap": round(overlap / len(pairs), 6)}


def _fraction(count: int, total: int) -> float:
    return round(count / total, 6) if total else 0.0


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return round(sorted_values[rank - 1], 2)
