"""The bulk state machine's worker: one Distributed Map batch of S3 keys, classified into records.

``python -m classifier batch s3://bucket/prefix`` starts the deployed state machine
(``classifier.aws.bulk_jobs``); each of its Map's batches of keys (``ItemBatcher``) is
classified by ``handler`` below, a function from the same image as the API.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from classifier.aws.s3_worker import S3Worker
from classifier.errors import ClassifierError, InvalidParameter
from classifier.serving.service import Classification, ImageInput

log = logging.getLogger(__name__)



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
                result["error"] = exc.as_dict()
        answers = self.classifier.classify_each([image for _, image in images], k=top_k) if images else []
        classified = [a for a in answers if isinstance(a, Classification)]
        # Throttled records are deferred, not raised: the batch's images are never classified twice.
        # It raises only when the deferral place refuses too; then the Map retries the batch.
        self.records.put_many([c.as_dict() for c in classified])
        for (result, _), answer in zip(images, answers, strict=True):
            if isinstance(answer, Classification):
                top = answer.predictions[0]
                result.update(record_id=answer.id, label=top.label, score=top.score)
            else:
                result["error"] = answer.as_dict()
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
