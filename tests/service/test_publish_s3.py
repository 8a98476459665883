"""`python -m classifier publish --s3`: uploads to the model inbox, artifacts first and the manifest last.

The model build itself (torch, ONNX export) is the local publish's business
and is tested there; here ``build_version`` is replaced by a small valid
version so that each test costs milliseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from classifier.__main__ import main
from classifier.lifecycle import publish_s3 as publish
from classifier.lifecycle.publish import PublishRequest
from classifier.store import installer
from classifier.store.inbox import ManifestKey, parse_manifest_key
from classifier.store.layout import ModelStore

from helpers.aws import new_bucket, point_boto3_at, s3_client
from helpers.inbox import s3_event, tiny_version
from helpers.onnx_models import tiny_classifier, write_labels, write_preprocessing


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    point_boto3_at(monkeypatch, s3_endpoint)
    return s3_client(s3_endpoint), new_bucket(s3_endpoint, "inbox")


@pytest.fixture
def small_build(published_store: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the torch build with a tiny valid version; record the weights asked for."""
    calls: list[str] = []

    def build_version(request: PublishRequest, workdir: Path) -> dict[str, Any]:
        calls.append(str(request.weights))
        assert request.model_name() == "resnet50"
        return tiny_version(published_store, workdir)

    monkeypatch.setattr("classifier.lifecycle.publish_s3.build_version", build_version)
    return calls


@pytest.fixture
def upload_order(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys boto3 uploads, in the order the uploads complete."""
    import boto3.s3.transfer

    order: list[str] = []
    real_upload = boto3.s3.transfer.S3Transfer.upload_file

    def recording_upload(self: Any, filename: str, bucket: str, key: str, *args: Any, **kwargs: Any) -> None:
        real_upload(self, filename, bucket, key, *args, **kwargs)
        order.append(key)

    monkeypatch.setattr(boto3.s3.transfer.S3Transfer, "upload_file", recording_upload)
    return order


def test_uploads_artifacts_first_and_the_manifest_last(
    bucket: tuple[Any, str], small_build: list[str], upload_order: list[str],
) -> None:
    # The installer starts on the manifest: by then every artifact is in the bucket.
    s3, name = bucket
    manifest = publish.publish_to_s3(f"s3://{name}/team/releases/", PublishRequest(weights="random"))
    target = ManifestKey("team/releases/", "resnet50", manifest["version"])
    assert upload_order[-1] == target.key
    assert sorted(upload_order[:-1]) == sorted(target.artifact_key(a) for a in manifest["artifacts"])
    listed = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=name)["Contents"]}
    assert {k: listed[k] for k in upload_order[:-1]} == {
        target.artifact_key(a): meta["bytes"] for a, meta in manifest["artifacts"].items()
    }


def test_cli_publish_s3_to_a_bucket_root(
    bucket: tuple[Any, str], small_build: list[str], capsys: pytest.CaptureFixture[str],
) -> None:
    # `python -m classifier publish --s3 s3://bucket` puts the version under models/<name>/<version>/.
    s3, name = bucket
    assert main(["publish", "--s3", f"s3://{name}", "--weights", "random"]) == 0
    assert small_build == ["random"]
    out = capsys.readouterr().out
    assert out.startswith("uploaded resnet50 ") and f"s3://{name}" in out
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]]
    manifests = [parse_manifest_key(k) for k in keys if parse_manifest_key(k)]
    assert len(manifests) == 1 and manifests[0] is not None and manifests[0].prefix == ""


def test_a_missing_bucket_fails_before_the_build(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, small_build: list[str], capsys: pytest.CaptureFixture[str],
) -> None:
    # Minutes of export should not end in a typo'd bucket name.
    point_boto3_at(monkeypatch, s3_endpoint)
    assert main(["publish", "--s3", "s3://no-such-inbox", "--weights", "random"]) == 2
    assert small_build == []
    err = capsys.readouterr().err
    assert "error:" in err and "no-such-inbox" in err and "InboxBucket" in err


def test_an_onnx_file_goes_through_the_inbox_as_a_torchvision_model_does(
    bucket: tuple[Any, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a bring-your-own ONNX classifier with its labels and preprocessing (no build replaced: it is small)
    s3, name = bucket
    onnx_file = tiny_classifier(tmp_path / "defects.onnx", labels=4, size=(160, 160))
    # WHEN it is published to the inbox with the CLI
    assert main(["publish", "--s3", f"s3://{name}/team", "--onnx", str(onnx_file), "--labels",
                 str(write_labels(tmp_path / "labels.json", 4)), "--preprocessing",
                 str(write_preprocessing(tmp_path / "prep.json", resize=180, crop=160, mean=[0.5] * 3, std=[0.5] * 3,
                                         channel_order="BGR"))]) == 0
    assert capsys.readouterr().out.startswith("uploaded defects ")
    # THEN its manifest lands last, under its file's name, and the installer puts it on the volume as it is
    (key,) = [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"] if o["Key"].endswith("manifest.json")]
    target = parse_manifest_key(key)
    assert target is not None and target.name == "defects"
    efs = ModelStore(tmp_path / "efs")
    monkeypatch.setenv("MODEL_STORE", str(efs.root))
    (outcome,) = installer.handler(s3_event("eventbridge", name, key))["results"]
    assert outcome["status"] == "installed", outcome
    manifest = efs.verify("defects", target.version)
    assert efs.current("defects") == target.version and manifest["architecture"] == "onnx"
    assert (efs.version_dir("defects", target.version) / "model.onnx").read_bytes() == onnx_file.read_bytes()
