"""The installer Lambda handler against a real S3 API (moto's server) with a directory standing in for EFS."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from classifier.lifecycle import publish_s3 as publish
from classifier.lifecycle.publish import PublishRequest
from classifier.store import installer
from classifier.store.inbox import ManifestKey
from classifier.store.layout import ModelStore

from helpers.aws import new_bucket, point_boto3_at, s3_client
from helpers.inbox import s3_event, tiny_version, tree, upload_version
from helpers.stores import copy_store


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """A fresh inbox bucket, and the environment pointing boto3 at it."""
    point_boto3_at(monkeypatch, s3_endpoint)
    return s3_client(s3_endpoint), new_bucket(s3_endpoint, "inbox")


@pytest.fixture
def efs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelStore:
    """An empty directory standing in for the EFS store (MODEL_STORE, as in the Lambda)."""
    root = tmp_path / "efs"
    root.mkdir()
    monkeypatch.setenv("MODEL_STORE", str(root))
    return ModelStore(root)


@pytest.fixture
def serving_efs(published_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelStore:
    """The EFS store with the published version current, as a deployed service has it."""
    root = copy_store(published_store, tmp_path / "serving-efs")
    monkeypatch.setenv("MODEL_STORE", str(root))
    return ModelStore(root)


def manifest_key(manifest: dict[str, Any], prefix: str = "") -> ManifestKey:
    return ManifestKey(prefix, manifest["name"], manifest["version"])


def test_installs_a_model_published_with_publish_s3(
    bucket: tuple[Any, str], efs: ModelStore, published_store: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN the published ResNet-50 uploaded by `publish --s3` (its build replaced by the
    # already-built version, so the upload and the key layout are the real ones)
    _, name = bucket
    published = ModelStore(published_store)
    version = published.current("resnet50")
    assert version is not None

    def already_built(weights: str, workdir: Path, model_name: str = "resnet50",
                      labels_file: Path | None = None) -> dict[str, Any]:
        source = published.version_dir(model_name, version)
        for item in source.iterdir():
            os.link(item, workdir / item.name)
        return published.manifest(model_name, version)

    monkeypatch.setattr("classifier.lifecycle.publish_s3.build_version", already_built)
    manifest = publish.publish_to_s3(f"s3://{name}/releases", PublishRequest(weights="random"))

    # WHEN S3 reports the manifest's arrival
    result = installer.handler(s3_event("eventbridge", name, manifest_key(manifest, "releases/").key))

    # THEN that version is installed, intact, and current
    (outcome,) = result["results"]
    assert outcome["status"] == "installed", outcome
    assert efs.current("resnet50") == version
    assert efs.verify("resnet50", version) == published.manifest("resnet50", version)
    assert not list(efs.model_dir("resnet50").glob(".staging-*"))


def test_install_only_then_promotion_through_the_inbox(
    bucket: tuple[Any, str], serving_efs: ModelStore, published_store: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a serving store, and a new version uploaded by `publish --s3 --no-activate`
    s3, name = bucket
    serving = serving_efs.current("resnet50")
    manifest = tiny_version(published_store, tmp_path / "v", seed="install-only")
    monkeypatch.setattr("classifier.lifecycle.publish_s3.build_version",
                        lambda weights, workdir, *_: _linked(tmp_path / "v", workdir))
    publish.publish_to_s3(f"s3://{name}/releases", PublishRequest(weights="random"), activate=False)
    head = s3.head_object(Bucket=name, Key=manifest_key(manifest, "releases/").key)
    assert head["Metadata"] == {"activate": "false"}

    # WHEN the installer sees the manifest
    (installed,) = installer.handler(s3_event("eventbridge", name, manifest_key(manifest, "releases/").key))["results"]
    # THEN the version is installed, verified, and CURRENT still names the serving version
    assert (installed["status"], installed["current"]) == ("installed", False)
    assert manifest["version"] in serving_efs.versions("resnet50")
    assert serving_efs.current("resnet50") == serving

    # WHEN `promote --s3` writes the promotion object and the installer sees it
    key = publish.promote_in_inbox(f"s3://{name}/releases", "resnet50", manifest["version"])
    assert key == "releases/models/resnet50/CURRENT"
    (promoted,) = installer.handler(s3_event("eventbridge", name, key))["results"]
    # THEN the store's CURRENT switches to it
    assert (promoted["status"], promoted["version"], promoted["previous"]) == ("promoted", manifest["version"], serving)
    assert serving_efs.current("resnet50") == manifest["version"]


def test_a_promotion_of_a_version_not_installed_is_refused(
    bucket: tuple[Any, str], serving_efs: ModelStore,
) -> None:
    s3, name = bucket
    serving = serving_efs.current("resnet50")
    s3.put_object(Bucket=name, Key="models/resnet50/CURRENT", Body=b"20300101T000000Z-0123456789ab\n")
    (outcome,) = installer.handler(s3_event("eventbridge", name, "models/resnet50/CURRENT"))["results"]
    assert outcome["status"] == "refused" and "not installed" in outcome["reason"]
    assert serving_efs.current("resnet50") == serving
    s3.put_object(Bucket=name, Key="models/resnet50/CURRENT", Body=b"../../etc/passwd")
    (outcome,) = installer.handler(s3_event("eventbridge", name, "models/resnet50/CURRENT"))["results"]
    assert outcome["status"] == "refused" and serving_efs.current("resnet50") == serving


def test_promote_s3_refuses_a_version_the_inbox_does_not_hold(bucket: tuple[Any, str]) -> None:
    _, name = bucket
    with pytest.raises(publish.PublishError, match="publish 20300101T000000Z-0123456789ab there first"):
        publish.promote_in_inbox(f"s3://{name}", "resnet50", "20300101T000000Z-0123456789ab")


def _linked(source: Path, workdir: Path) -> dict[str, Any]:
    for item in source.iterdir():
        os.link(item, workdir / item.name)
    manifest: dict[str, Any] = json.loads((source / "manifest.json").read_text())
    return manifest


@pytest.mark.parametrize("kind", ["eventbridge", "notification", "manual"])
def test_accepts_every_event_shape(
    kind: str, bucket: tuple[Any, str], efs: ModelStore, published_store: Path, tmp_path: Path,
) -> None:
    # EventBridge (deployed), S3 notification records (URL-encoded keys), and a manual re-run payload.
    s3, name = bucket
    manifest = tiny_version(published_store, tmp_path / "v")
    target = manifest_key(manifest, "team a/")  # a space: encoded as '+' in notifications
    upload_version(s3, name, tmp_path / "v", target.version_prefix)

    result = installer.handler(s3_event(kind, name, target.key))

    assert result["results"][0]["status"] == "installed"
    assert efs.current("resnet50") == manifest["version"]


@pytest.mark.parametrize("key", [
    "models/resnet50/20261122T100000Z-0123456789ab/model.onnx",
    "models/resnet50/manifest.json",
    "uploads/cat.jpg",
    "manifest.json",
])
def test_ignores_keys_that_are_not_version_manifests(key: str, bucket: tuple[Any, str], efs: ModelStore) -> None:
    # Artifacts landing, or anything else in the bucket, start nothing.
    _, name = bucket
    result = installer.handler(s3_event("eventbridge", name, key))
    assert result["results"][0]["status"] == "ignored"
    assert tree(efs.root) == {}


def test_refuses_an_incomplete_upload_and_changes_nothing(
    bucket: tuple[Any, str], serving_efs: ModelStore, published_store: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a manifest whose model.onnx never made it to the bucket
    s3, name = bucket
    manifest = tiny_version(published_store, tmp_path / "v")
    target = manifest_key(manifest)
    upload_version(s3, name, tmp_path / "v", target.version_prefix, skip=("model.onnx",))
    before = tree(serving_efs.root)

    # WHEN the installer runs
    with caplog.at_level(logging.INFO):
        result = installer.handler(s3_event("eventbridge", name, target.key))

    # THEN it refuses, says what is missing, and the store is exactly as it was
    (outcome,) = result["results"]
    assert outcome["status"] == "refused"
    assert "incomplete upload" in outcome["reason"] and "model.onnx" in outcome["reason"]
    refusals = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(refusals) == 1 and "model.onnx" in refusals[0].getMessage()
    assert tree(serving_efs.root) == before


def test_refuses_a_manifest_whose_preprocessing_is_out_of_bounds(
    bucket: tuple[Any, str], serving_efs: ModelStore, published_store: Path, tmp_path: Path,
) -> None:
    # GIVEN a complete upload whose manifest asks for a 100000-pixel resize (each request would
    # allocate tens of GB); written by hand, as an inbox writer could, not by publish
    s3, name = bucket
    manifest = tiny_version(published_store, tmp_path / "v")
    manifest["preprocessing"]["resize"] = 100_000
    (tmp_path / "v" / "manifest.json").write_text(json.dumps(manifest))
    target = manifest_key(manifest)
    upload_version(s3, name, tmp_path / "v", target.version_prefix)
    before = tree(serving_efs.root)
    # WHEN the installer runs
    (outcome,) = installer.handler(s3_event("eventbridge", name, target.key))["results"]
    # THEN the install is refused with the key and its bound, and the store is exactly as it was
    assert outcome["status"] == "refused", outcome
    assert "preprocessing resize must be an integer from 8 to 1024 pixels, got 100000" in outcome["reason"]
    assert tree(serving_efs.root) == before


# Run as the installer runs in Lambda, in its own process: print the handler's result as JSON.
RUN_INSTALLER = ("import json, sys; from classifier.store import installer; "
                 "print('RESULT', json.dumps(installer.handler(json.load(sys.stdin))))")


def test_in_lambda_a_refusal_is_one_json_log_line(
    bucket: tuple[Any, str], efs: ModelStore, published_store: Path, tmp_path: Path,
) -> None:
    # What CloudWatch receives: JSON lines, the refusal at ERROR with its reason and object.
    s3, name = bucket
    manifest = tiny_version(published_store, tmp_path / "v")
    target = manifest_key(manifest)
    upload_version(s3, name, tmp_path / "v", target.version_prefix, skip=("labels.json",))
    env = {**os.environ, "AWS_LAMBDA_FUNCTION_NAME": "demo-installer"}
    out = subprocess.run([sys.executable, "-c", RUN_INSTALLER],
                         input=json.dumps(s3_event("eventbridge", name, target.key)),
                         env=env, capture_output=True, text=True, check=True).stdout.splitlines()
    entries = [json.loads(line) for line in out if line.startswith("{")]
    (refusal,) = [e for e in entries if e["level"] == "ERROR"]
    assert refusal["message"].startswith("install refused: incomplete upload")
    assert refusal["object"] == f"s3://{name}/{target.key}" and "labels.json" in refusal["reason"]
    assert json.loads(out[-1].removeprefix("RESULT "))["results"][0]["status"] == "refused"


def test_refuses_a_sha256_mismatch_without_touching_current(
    bucket: tuple[Any, str], serving_efs: ModelStore, published_store: Path, tmp_path: Path,
) -> None:
    # GIVEN an upload whose model.onnx has the right size but other bytes than the manifest says
    s3, name = bucket
    manifest = tiny_version(published_store, tmp_path / "v")
    onnx = tmp_path / "v" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes().replace(b"seed a", b"seed X"))
    target = manifest_key(manifest)
    upload_version(s3, name, tmp_path / "v", target.version_prefix)
    current = serving_efs.current("resnet50")
    before = tree(serving_efs.root)

    # WHEN the installer runs
    result = installer.handler(s3_event("eventbridge", name, target.key))

    # THEN nothing is installed: same CURRENT, no new version, no staging left behind
    (outcome,) = result["results"]
    assert outcome["status"] == "refused"
    assert "sha256" in outcome["reason"]
    assert serving_efs.current("resnet50") == current
    assert tree(serving_efs.root) == before


def test_refuses_a_manifest_filed_under_another_version(
    bucket: tuple[Any, str], efs: ModelStore, published_store: Path, tmp_path: Path,
) -> None:
    # The key and the manifest must agree on name and version.
    s3, name = bucket
    tiny_version(published_store, tmp_path / "v")
    wrong = ManifestKey("", "resnet50", "20200101T000000Z-000000000000")
    upload_version(s3, name, tmp_path / "v", wrong.version_prefix)

    result = installer.handler(s3_event("eventbridge", name, wrong.key))

    assert result["results"][0]["status"] == "refused"
    assert "sits under" in result["results"][0]["reason"]
    assert efs.current("resnet50") is None


def test_redelivery_makes_an_installed_version_current_again(
    bucket: tuple[Any, str], efs: ModelStore, published_store: Path, tmp_path: Path,
) -> None:
    # Versions are content-addressed: a re-sent manifest flips CURRENT back without a download.
    s3, name = bucket
    first = tiny_version(published_store, tmp_path / "v1", seed="1")
    second = tiny_version(published_store, tmp_path / "v2", seed="2")
    for manifest, source in ((first, tmp_path / "v1"), (second, tmp_path / "v2")):
        upload_version(s3, name, source, manifest_key(manifest).version_prefix)
        installer.handler(s3_event("eventbridge", name, manifest_key(manifest).key))
    assert efs.current("resnet50") == second["version"]

    result = installer.handler(s3_event("eventbridge", name, manifest_key(first).key))

    assert result["results"][0]["status"] == "already-installed"
    assert efs.current("resnet50") == first["version"]
    assert efs.versions("resnet50") == sorted([first["version"], second["version"]])


def test_removes_the_staging_directory_of_a_crashed_install(
    bucket: tuple[Any, str], efs: ModelStore, published_store: Path, tmp_path: Path,
) -> None:
    # A staging directory older than any install could run is debris; a fresh one is left alone.
    s3, name = bucket
    stale = efs.model_dir("resnet50") / ".staging-0123456789abcdef"
    fresh = efs.model_dir("resnet50") / ".staging-fedcba9876543210"
    for path in (stale, fresh):
        path.mkdir(parents=True)
        (path / "model.onnx").write_bytes(b"partial")
    hours_ago = time.time() - 2 * installer.STALE_STAGING_SECONDS
    os.utime(stale, (hours_ago, hours_ago))
    manifest = tiny_version(published_store, tmp_path / "v")
    upload_version(s3, name, tmp_path / "v", manifest_key(manifest).version_prefix)

    installer.handler(s3_event("eventbridge", name, manifest_key(manifest).key))

    assert not stale.exists()
    assert fresh.exists()


def test_s3_failures_raise_so_lambda_retries(
    s3_endpoint: str, efs: ModelStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not a refusal: a missing bucket (or throttling, or a timeout) may pass; the event is retried.
    point_boto3_at(monkeypatch, s3_endpoint)
    event = s3_event("eventbridge", "no-such-bucket", "models/resnet50/20261122T100000Z-0123456789ab/manifest.json")
    with pytest.raises(ClientError):
        installer.handler(event)


def test_results_are_json_for_the_lambda_runtime(bucket: tuple[Any, str], efs: ModelStore) -> None:
    # The handler's return value is what Lambda records for an async invocation.
    _, name = bucket
    result = installer.handler(s3_event("manual", name, "uploads/cat.jpg"))
    assert json.loads(json.dumps(result)) == result


# -- uploads the installer refuses before it touches the store -------------------------------

def uploaded_tiny_version(bucket: tuple[Any, str], published_store: Path,
                          workdir: Path) -> tuple[dict[str, Any], ManifestKey]:
    """A small valid version uploaded whole, as ``publish --s3`` leaves it: its manifest and key."""
    s3, name = bucket
    manifest = tiny_version(published_store, workdir)
    target = manifest_key(manifest)
    upload_version(s3, name, workdir, target.version_prefix)
    return manifest, target


def test_refuses_an_artifact_of_another_size_than_the_manifest_says(
    bucket: tuple[Any, str], efs: ModelStore, published_store: Path, tmp_path: Path,
) -> None:
    # GIVEN an upload whose model.onnx in the bucket is longer than its manifest entry
    s3, name = bucket
    manifest, target = uploaded_tiny_version(bucket, published_store, tmp_path / "v")
    declared = manifest["artifacts"]["model.onnx"]["bytes"]
    s3.put_object(Bucket=name, Key=target.artifact_key("model.onnx"),
                  Body=(tmp_path / "v" / "model.onnx").read_bytes() + b"tail")
    # WHEN the installer runs
    (outcome,) = installer.handler(s3_event("eventbridge", name, target.key))["results"]
    # THEN it refuses from the sizes S3 reports, naming both, before it stages anything: the empty
    # store gets no models/ (the store's own check after the download refuses too, with the same
    # words, but only once the artifacts are downloaded into a staging directory)
    assert outcome["status"] == "refused"
    assert outcome["reason"] == (f"resnet50 {manifest['version']}: model.onnx has {declared + 4} bytes, "
                                 f"the manifest says {declared}")
    assert tree(efs.root) == {}


MANIFEST_KEY = "models/resnet50/20261122T100000Z-0123456789ab/manifest.json"


@pytest.mark.parametrize(("case", "body", "reason"), [
    ("deleted since the event", None, f"/{MANIFEST_KEY} no longer exists"),
    ("over 1 MiB", b"{" + b" " * installer.MAX_MANIFEST_BYTES + b"}", "manifest.json is 1048578 bytes; "
                                                                     "a manifest is a few KB"),
    ("not JSON", b"name: resnet50\n", "manifest.json is not valid JSON"),
    ("JSON, not an object", b'["resnet50"]', "manifest.json is not a JSON object"),
])
def test_refuses_a_manifest_it_cannot_use(case: str, body: bytes | None, reason: str, bucket: tuple[Any, str],
                                          serving_efs: ModelStore, caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN an event for a manifest that is gone from the bucket, too large, or not a JSON object
    s3, name = bucket
    if body is not None:
        s3.put_object(Bucket=name, Key=MANIFEST_KEY, Body=body)
    before = tree(serving_efs.root)
    # WHEN the installer runs
    with caplog.at_level(logging.INFO):
        (outcome,) = installer.handler(s3_event("eventbridge", name, MANIFEST_KEY))["results"]
    # THEN it is a refusal with its reason (not an exception Lambda would retry), logged once at ERROR
    assert outcome["status"] == "refused", outcome
    assert reason in outcome["reason"]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"install refused: {outcome['reason']}"]
    assert tree(serving_efs.root) == before


def test_a_store_it_cannot_write_is_refused_with_the_access_points_error(
    bucket: tuple[Any, str], published_store: Path, tmp_path: Path,
) -> None:
    # GIVEN an EFS store whose models/ the function's user may not write: the access point's POSIX
    # user does not own it (here: models/ is read-only, and a root test run drops the capabilities
    # that let root write anyway, so the kernel refuses as it refuses the access point's user)
    _, target = uploaded_tiny_version(bucket, published_store, tmp_path / "v")
    efs = tmp_path / "efs"
    (efs / "models").mkdir(parents=True)
    (efs / "models").chmod(0o555)
    unprivileged = (["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]
                    if os.geteuid() == 0 else [])
    # WHEN the installer runs
    done = subprocess.run([*unprivileged, sys.executable, "-c", RUN_INSTALLER],
                          input=json.dumps(s3_event("eventbridge", bucket[1], target.key)),
                          env={**os.environ, "MODEL_STORE": str(efs)}, capture_output=True, text=True, timeout=120)
    (efs / "models").chmod(0o755)
    # THEN the install is refused, not retried: the reason carries the PermissionError and says what to fix
    assert done.returncode == 0, done.stderr
    (outcome,) = json.loads(done.stdout.splitlines()[-1].removeprefix("RESULT "))["results"]
    assert outcome["status"] == "refused"
    assert outcome["reason"].startswith("cannot write the model store ([Errno 13] Permission denied: ")
    assert str(efs / "models") in outcome["reason"]
    assert outcome["reason"].endswith("; the installer's EFS access point must own models/")
    assert list((efs / "models").iterdir()) == []
