"""What the functions S3 invokes share: classify images read from S3 into records.

The classify-on-upload trigger (``classifier.aws.upload_classifier.UploadWorker``) and the bulk
state machine's batches (``classifier.aws.bulk_worker.BatchWorker``) each build one per Lambda
instance, so the model stays loaded across events.
"""

from __future__ import annotations

from typing import Self

from classifier.aws.uploads import Uploads
from classifier.config import Settings
from classifier.observability import logs
from classifier.records import RecordStore, open_record_store
from classifier.serving.manager import ModelManager
from classifier.serving.service import Classifier


class S3Worker:
    def __init__(self, settings: Settings, *, manager: ModelManager | None = None,
                 records: RecordStore | None = None, uploads: Uploads | None = None) -> None:
        self.settings = settings
        self.records = records or open_record_store(settings)
        self.uploads = uploads or Uploads(settings)
        self.classifier = Classifier(settings, manager or ModelManager(settings), self.records)

    @classmethod
    def for_this_instance(cls) -> Self:
        """The one worker of this Lambda instance, made on its first event (logging set up then)."""
        logs.configure()
        worker = _instances.get(cls)
        if worker is None:
            worker = _instances[cls] = cls(Settings.from_env())
        assert isinstance(worker, cls)
        return worker


_instances: dict[type[S3Worker], S3Worker] = {}
