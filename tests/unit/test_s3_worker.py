"""The functions S3 invokes keep one worker per Lambda instance (classifier.aws.s3_worker): made from
the environment on the first event, then reused, so the model is loaded once and the record store
opened once; each kind of worker (upload trigger, bulk batches) has its own."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from classifier.aws import s3_worker
from classifier.aws.bulk_worker import BatchWorker
from classifier.aws.s3_worker import S3Worker
from classifier.aws.upload_classifier import UploadWorker
from classifier.config import Settings
from classifier.records.sqlite import SqliteRecordStore
from classifier.serving.manager import ModelManager


@pytest.fixture
def new_instance(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A fresh Lambda instance: no worker made yet, MODEL_STORE in the environment, no records table.
    The logging that the first event configures is undone afterwards."""
    monkeypatch.setattr(s3_worker, "_instances", {})
    monkeypatch.setenv("MODEL_STORE", str(tmp_path / "store"))
    for key in ("RECORDS_TABLE", "RECORDS_DB", "UPLOADS_BUCKET"):
        monkeypatch.delenv(key, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield tmp_path / "store"
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_one_worker_per_instance_and_kind(new_instance: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # WHEN events arrive one after another on the same instance
    first = BatchWorker.for_this_instance()
    monkeypatch.setenv("MODEL_STORE", "/elsewhere")  # read once, on the first event
    again = BatchWorker.for_this_instance()
    upload = UploadWorker.for_this_instance()
    # THEN every batch is handled by the worker the first one made, with the settings of that moment
    assert again is first and type(first) is BatchWorker
    assert first.settings.model_store == new_instance
    # AND the upload trigger has its own worker, reused in turn
    assert type(upload) is UploadWorker and upload is not first
    assert UploadWorker.for_this_instance() is upload
    # AND the first event set up the JSON log lines
    assert any(type(h.formatter).__name__ == "LambdaPowertoolsFormatter" for h in logging.getLogger().handlers)


def test_a_worker_classifies_into_its_own_record_store(new_instance: Path) -> None:
    # The classifier writes to the store the worker holds: one opened per instance, SQLite by default
    worker = BatchWorker.for_this_instance()
    assert isinstance(worker.records, SqliteRecordStore)
    assert worker.records.path == new_instance / "records.sqlite3"
    assert worker.classifier.records is worker.records
    assert isinstance(worker.classifier.manager, ModelManager) and worker.classifier.manager.loaded is None


def test_parts_given_to_a_worker_are_the_ones_it_uses(tmp_path: Path) -> None:
    settings = Settings(model_store=tmp_path / "store")
    manager = ModelManager(settings)
    records = SqliteRecordStore(tmp_path / "records.sqlite3")
    worker = S3Worker(settings, manager=manager, records=records)
    assert worker.classifier.manager is manager and worker.classifier.records is records is worker.records
    assert worker.uploads.bucket is None  # UPLOADS_BUCKET unset in these settings
