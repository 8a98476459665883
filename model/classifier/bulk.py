"""Bulk classification, without one HTTP request per image.

Two ways, the same service code (``Classifier``, batches of up to ``MAX_BATCH``):

- a local folder, in this process: ``python -m classifier batch DIR --out results.jsonl``.
  One JSON line per file (``source``, then ``record_id`` and ``predictions``, or an
  ``error``); a bad file fails only its own line. ``--skip-done`` skips files whose
  sha256 already has a record, so an interrupted run can simply be run again.
- an S3 prefix, in AWS: ``python -m classifier batch s3://bucket/prefix`` starts the
  deployed state machine (a Step Functions Distributed Map over the prefix), follows it,
  and prints where its results are. Each of the Map's batches of keys is classified by
  ``handler`` below, a function from the same image as the API.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from classifier.config import Settings
from classifier.errors import ClassifierError, InvalidParameter
from classifier.evaluate import IMAGE_SUFFIXES
from classifier.records import RecordStore
from classifier.runtime import ModelManager
from classifier.s3_worker import S3Worker
from classifier.service import Classification, Classifier, ImageInput

log = logging.getLogger("classifier.bulk")

Progress = Callable[[int], None]  # called with the number of files just done


@dataclass
class Counts:
    files: int = 0
    classified: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        return self.classified / self.seconds if self.seconds else 0.0


def image_files(root: Path) -> list[Path]:
    """Every image under ``root`` (recursively, hidden files aside), in a stable order."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def prediction_list(result: Classification) -> list[dict[str, Any]]:
    return [p.as_dict() for p in result.predictions]


def error_of(error: ClassifierError) -> dict[str, str]:
    return {"code": error.code, "message": error.message}


@dataclass
class FolderBatch:
    """A local folder through the service, a batch at a time, one JSON line per file."""

    settings: Settings
    records: RecordStore
    classifier: Classifier = field(init=False)
    top_k: int = 5

    def __post_init__(self) -> None:
        self.classifier = Classifier(self.settings, ModelManager(self.settings), self.records)

    def run(self, root: Path, out: IO[str], *, skip_done: bool = False, progress: Progress | None = None) -> Counts:
        counts = Counts()
        started = time.perf_counter()
        files = image_files(root)
        counts.files = len(files)
        for start in range(0, len(files), self.settings.max_batch):
            batch = files[start:start + self.settings.max_batch]
            for line in self.classify(root, batch, skip_done, counts):
                out.write(json.dumps(line) + "\n")
            out.flush()
            if progress is not None:
                progress(len(batch))
        counts.seconds = time.perf_counter() - started
        return counts

    def classify(self, root: Path, paths: Sequence[Path], skip_done: bool, counts: Counts) -> Iterator[dict[str, Any]]:
        lines: dict[Path, dict[str, Any]] = {}
        images: list[tuple[Path, ImageInput]] = []
        for path in paths:
            source = path.relative_to(root).as_posix()
            lines[path] = {"source": source}
            try:
                data = path.read_bytes()
                image = ImageInput(data, source, self.settings.max_s3_image_bytes)
            except OSError as exc:
                lines[path]["error"] = {"code": "file_error", "message": f"cannot read {source}: {exc.strerror}"}
                continue
            except ClassifierError as exc:
                lines[path]["error"] = error_of(exc)
                continue
            if skip_done and self.records.has_image(hashlib.sha256(data).hexdigest()):
                lines[path]["skipped"] = "already classified"
                counts.skipped += 1
                continue
            images.append((path, image))
        answers = self.classifier.classify_each([image for _, image in images], k=self.top_k) if images else []
        results = [a for a in answers if isinstance(a, Classification)]
        self.records.put_many([r.as_dict() for r in results])
        for (path, _), answer in zip(images, answers, strict=True):
            if isinstance(answer, Classification):
                lines[path].update(record_id=answer.id, predictions=prediction_list(answer))
            else:
                lines[path]["error"] = error_of(answer)
        counts.classified += len(results)
        counts.failed += sum(1 for line in lines.values() if "error" in line)
        yield from (lines[path] for path in paths)


# --- the Step Functions batch worker ----------------------------------------------------------


class BatchWorker(S3Worker):
    """Classifies one batch of a Distributed Map: ``{"Items": [{"Key": ...}], "BatchInput": {"bucket": ...}}``."""

    def process(self, event: Mapping[str, Any]) -> dict[str, Any]:
        bucket, top_k, keys = self.read_event(event)
        results: list[dict[str, Any]] = []
        images: list[tuple[dict[str, Any], ImageInput]] = []
        for key in keys:
            result: dict[str, Any] = {"key": key}
            results.append(result)
            try:
                data = self.uploads.read(key, bucket=bucket)
                images.append((result, ImageInput(data, key, self.settings.max_s3_image_bytes,
                                                  {"s3_key": key, "s3_bucket": bucket})))
            except ClassifierError as exc:
                if exc.status >= 500:  # S3 unreachable: the Map's retry runs the batch again
                    raise
                result["error"] = error_of(exc)
        answers = self.classifier.classify_each([image for _, image in images], k=top_k) if images else []
        classified = [a for a in answers if isinstance(a, Classification)]
        self.records.put_many([c.as_dict() for c in classified])  # raises on failure: the batch is retried
        for (result, _), answer in zip(images, answers, strict=True):
            if isinstance(answer, Classification):
                top = answer.predictions[0]
                result.update(record_id=answer.id, label=top.label, score=top.score)
            else:
                result["error"] = error_of(answer)
        failed = sum(1 for r in results if "error" in r)
        log.info("batch classified", extra={"bucket": bucket, "items": len(keys), "classified": len(classified),
                                            "failed": failed})
        return {"items": len(keys), "classified": len(classified), "failed": failed, "results": results}

    @staticmethod
    def read_event(event: Mapping[str, Any]) -> tuple[str, int, list[str]]:
        """The bucket, top_k and keys of an ItemBatcher input; a malformed one is refused."""
        raw = event.get("BatchInput")
        batch_input: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
        bucket = batch_input.get("bucket")
        items = event.get("Items")
        if not isinstance(bucket, str) or not bucket or not isinstance(items, list):
            raise InvalidParameter('expected {"Items": [{"Key": ...}], "BatchInput": {"bucket": ...}}')
        top_k = batch_input.get("top_k", 5)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 20:
            raise InvalidParameter(f"BatchInput.top_k must be an integer from 1 to 20, got {top_k!r}")
        keys = [item.get("Key") for item in items if isinstance(item, dict)]
        if len(keys) != len(items) or not all(isinstance(k, str) and k for k in keys):
            raise InvalidParameter("every item needs a Key (as ItemReader's listObjectsV2 gives)")
        return bucket, top_k, [str(k) for k in keys]


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point of the bulk state machine's batches."""
    return BatchWorker.for_this_instance().process(event)


# --- starting and following the deployed state machine ------------------------------------------

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})
ARN_OUTPUT = "BulkStateMachineArn"


def state_machine_from_stack(stack: str) -> str:
    """The ``BulkStateMachineArn`` output of ``stack`` (``<name>-service-stack``)."""
    import boto3

    described = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    for output in described.get("Outputs", []):
        if output.get("OutputKey") == ARN_OUTPUT:
            return str(output["OutputValue"])
    raise LookupError(f"{stack} has no {ARN_OUTPUT} output: is the bulk switch on?")


def start_job(state_machine: str, bucket: str, prefix: str, top_k: int) -> str:
    import boto3

    payload = {"bucket": bucket, "prefix": prefix, "top_k": top_k}
    started = boto3.client("stepfunctions").start_execution(stateMachineArn=state_machine, input=json.dumps(payload))
    return str(started["executionArn"])


def follow(execution: str, *, poll_seconds: float = 5.0,
           on_progress: Callable[[Mapping[str, Any]], None] | None = None) -> dict[str, Any]:
    """Wait until the execution ends, reporting the Map Run's item counts as they move; its description."""
    import boto3

    sfn = boto3.client("stepfunctions")
    while True:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution)
        for run in sfn.list_map_runs(executionArn=execution).get("mapRuns", []):
            counts = sfn.describe_map_run(mapRunArn=run["mapRunArn"]).get("itemCounts") or {}
            if on_progress is not None and counts:
                on_progress(counts)
        if described["status"] in TERMINAL:
            return described
        time.sleep(poll_seconds)


def results_location(described: Mapping[str, Any]) -> str | None:
    """Where the Map's ResultWriter put the manifest of the results, from the execution's output."""
    try:
        output = json.loads(described.get("output") or "null")
        details = output["ResultWriterDetails"]
        return f"s3://{details['Bucket']}/{details['Key']}"
    except (TypeError, KeyError, ValueError):
        return None
