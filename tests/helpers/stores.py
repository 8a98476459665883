"""Model stores for tests: publish with the real CLI, copy cheaply, derive new versions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from classifier.store.fsio import sha256_file
from classifier.store.layout import ModelStore
from classifier.store.manifest import make_version


def publish(store: Path, weights: str = "random") -> str:
    """Publish with the real CLI; return the new version id."""
    out = subprocess.run(
        [sys.executable, "-m", "classifier", "publish", "--store", str(store), "--weights", weights],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.split()[2]


def link_large(src: str, dst: str) -> None:
    """Hard-link the big immutable artifacts; copy the small files a test may edit."""
    if src.endswith((".onnx", ".safetensors")):
        os.link(src, dst)
    else:
        shutil.copyfile(src, dst)


def copy_store(src: Path, dst: Path) -> Path:
    """A private copy of a published store, cheap: model artifacts are hard links.
    Never edit an artifact in place in a copy: replace it (unlink, then write)."""
    shutil.copytree(src, dst, copy_function=link_large)
    return dst


def export_version(store: ModelStore, version: str, dest: Path) -> Path:
    """Copy an installed version out, as a publisher would hand it over."""
    shutil.copytree(store.version_dir("resnet50", version), dest, copy_function=link_large)
    return dest


def with_new_identity(src: Path, dest: Path, created: str = "2030-01-01T00:00:00Z") -> Path:
    """The same artifacts re-labelled as a later version, plus a changed labels.json,
    so its content id differs (a stand-in for a newly trained model)."""
    labels = json.loads((src / "labels.json").read_text())
    return derive_version(src, dest, labels=[labels[0] + " (v2)", *labels[1:]], created=created)


def derive_version(src: Path, dest: Path, *, labels: list[str] | None = None, label_count: int | None = None,
                   drop: tuple[str, ...] = (), created: str = "2030-01-01T00:00:00Z") -> Path:
    """A new, self-consistent version made from the one in ``src``: another ``labels.json``
    (and ``labels.count``, unless ``label_count`` says otherwise), artifacts dropped, its own id.
    The store installs it as it is; whether it can be served is for the loader to say."""
    shutil.copytree(src, dest, copy_function=link_large)
    manifest = json.loads((dest / "manifest.json").read_text())
    if labels is not None:
        (dest / "labels.json").write_text(json.dumps(labels))
        size, digest = sha256_file(dest / "labels.json")
        manifest["artifacts"]["labels.json"] = {"bytes": size, "sha256": digest}
        manifest["labels"]["count"] = len(labels)
    if label_count is not None:
        manifest["labels"]["count"] = label_count
    for artifact in drop:
        (dest / artifact).unlink()
        del manifest["artifacts"][artifact]
    manifest["created_at"] = created
    manifest["version"] = make_version(manifest["artifacts"], datetime.fromisoformat(created))
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def add_model(store: Path, name: str, labels: list[str] | None = None) -> str:
    """Another model in ``store``, named ``name``: the published ResNet-50's artifacts (hard links) with labels
    of its own (by default ``"<name> <i>"``), its version current. Called again with other labels, a new
    version of it. Return the version id."""
    models = ModelStore(store)
    source = models.current("resnet50")
    assert source is not None
    count = json.loads((models.version_dir("resnet50", source) / "manifest.json").read_text())["labels"]["count"]
    staging = store / f".adding-{name}"
    derive_version(models.version_dir("resnet50", source), staging,
                   labels=labels or [f"{name} {i}" for i in range(count)])
    manifest = json.loads((staging / "manifest.json").read_text())
    manifest["name"] = name
    (staging / "manifest.json").write_text(json.dumps(manifest))
    models.versions_dir(name).mkdir(parents=True, exist_ok=True)
    staging.rename(models.version_dir(name, manifest["version"]))
    (models.model_dir(name) / "CURRENT").write_text(f"{manifest['version']}\n")
    return str(manifest["version"])


def stored_records(store: Path) -> dict[str, dict[str, Any]]:
    """Every record in a store's SQLite file, read with sqlite3 alone (not the code under test), by id."""
    import sqlite3

    path = store / "records.sqlite3"
    if not path.exists():
        return {}
    with sqlite3.connect(path) as db:
        return {row[0]: json.loads(row[1]) for row in db.execute("SELECT id, body FROM records")}


def small_version(dest: Path, *, seed: str = "a", created: str = "2026-11-22T10:00:00Z",
                  name: str = "resnet50", **fields: Any) -> dict[str, Any]:
    """A valid version of a few hundred bytes (a stand-in model.onnx and three labels) written to
    ``dest``, for tests of the store itself, which moves and verifies bytes and never runs a model."""
    from classifier.serving.imaging import DEFAULT_PREPROCESSING

    dest.mkdir(parents=True)
    (dest / "model.onnx").write_bytes(f"a stand-in for an ONNX model, seed {seed}\n".encode() * 8)
    (dest / "labels.json").write_text(json.dumps(["tabby", "wallet", "rocket"]))
    artifacts = {}
    for artifact in ("model.onnx", "labels.json"):
        size, digest = sha256_file(dest / artifact)
        artifacts[artifact] = {"bytes": size, "sha256": digest}
    manifest = {
        "name": name, "version": make_version(artifacts, datetime.fromisoformat(created)),
        "architecture": "resnet50", "created_at": created, "source": "random", "trained": False,
        "preprocessing": DEFAULT_PREPROCESSING, "labels": {"count": 3}, "artifacts": artifacts, **fields,
    }
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return manifest
