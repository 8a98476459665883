"""``batch DIR``: a local folder through the classify use case, without one HTTP request per image.

One JSON line per regular file under the folder (hidden files aside): ``source``, then
``record_id`` and ``predictions``, or an ``error`` with its code. What is an image is
decided by its bytes, never its name: a text file is an ``unsupported_media_type`` line,
a truncated JPEG an ``invalid_image`` one, an image without a suffix is classified.
``--skip-done`` skips a file whose sha256 the serving model version has already
classified (its line carries ``skipped`` and that record's id), so an interrupted run
can simply be run again, and a new version classifies everything anew.
Images go through ``Classifier`` a batch (``MAX_BATCH``) at a time, as a multipart
request's would.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from classifier.config import Settings
from classifier.errors import ClassifierError
from classifier.records import RecordStore
from classifier.serving.imaging import folder_files
from classifier.serving.manager import ModelManager
from classifier.serving.service import Classification, Classifier, ImageInput

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


def prediction_list(result: Classification) -> list[dict[str, Any]]:
    return [p.as_dict() for p in result.predictions]


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
        files = folder_files(root)
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
        version = self.classifier.manager.current().version if skip_done else ""
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
                lines[path]["error"] = exc.as_dict()
                continue
            done = self.records.done_record(hashlib.sha256(data).hexdigest(), version) if skip_done else None
            if done is not None:
                lines[path].update(skipped=f"already classified by {version}", record_id=done)
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
                lines[path]["error"] = answer.as_dict()
        counts.classified += len(results)
        counts.failed += sum(1 for line in lines.values() if "error" in line)
        yield from (lines[path] for path in paths)
