"""The versioned model store: atomic install, integrity checks, CURRENT, rollback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classifier.store import (
    IntegrityError,
    ModelNotFound,
    ModelStore,
    StoreError,
    iter_staging_dirs,
)

from helpers.stores import export_version, with_new_identity

NAME = "resnet50"


def test_published_layout_matches_the_contract(published_store: Path) -> None:
    store = ModelStore(published_store)
    version = store.current(NAME)
    assert version is not None
    vdir = published_store / "models" / NAME / "versions" / version
    assert sorted(p.name for p in vdir.iterdir()) == ["labels.json", "manifest.json", "model.onnx",
                                                      "weights.safetensors"]
    assert (published_store / "models" / NAME / "CURRENT").read_text() == f"{version}\n"
    manifest = store.verify(NAME, version)
    assert manifest["source"] == "random" and manifest["trained"] is False
    assert manifest["preprocessing"]["resize"] == 232 and manifest["preprocessing"]["crop"] == 224
    assert manifest["labels"]["count"] == 1000 == len(json.loads((vdir / "labels.json").read_text()))
    for artifact, meta in manifest["artifacts"].items():
        assert meta["bytes"] == (vdir / artifact).stat().st_size


def test_install_and_rollback(store: Path, tmp_path: Path) -> None:
    # GIVEN a store with one version, and a newer version handed over by a publisher
    models = ModelStore(store)
    v1 = models.current(NAME)
    assert v1 is not None
    newer = with_new_identity(export_version(models, v1, tmp_path / "v1"), tmp_path / "v2")
    # WHEN it is installed
    v2 = models.install_dir(newer)
    # THEN it is current, listed after v1, and intact
    assert v2 != v1 and models.current(NAME) == v2
    assert models.versions(NAME) == [v1, v2]
    models.verify(NAME, v2)
    # AND rollback restores v1, then --to can go forward again
    assert models.rollback(NAME) == v1 and models.current(NAME) == v1
    assert models.rollback(NAME, to=v2) == v2 and models.current(NAME) == v2
    # No staging directory is left behind
    assert list(iter_staging_dirs(models, NAME)) == []


def test_reinstalling_the_same_version_is_a_no_op(store: Path, tmp_path: Path) -> None:
    models = ModelStore(store)
    v1 = models.current(NAME)
    assert v1 is not None
    assert models.install_dir(export_version(models, v1, tmp_path / "again")) == v1
    assert models.versions(NAME) == [v1]


def test_partial_version_is_refused_and_changes_nothing(store: Path, tmp_path: Path) -> None:
    models = ModelStore(store)
    v1 = models.current(NAME)
    assert v1 is not None
    newer = with_new_identity(export_version(models, v1, tmp_path / "v1"), tmp_path / "v2")
    (newer / "model.onnx").unlink()  # an interrupted upload
    with pytest.raises(IntegrityError, match=r"model\.onnx"):
        models.install_dir(newer)
    assert models.current(NAME) == v1 and models.versions(NAME) == [v1]
    assert list(iter_staging_dirs(models, NAME)) == []


def test_corrupt_artifact_is_refused(store: Path, tmp_path: Path) -> None:
    models = ModelStore(store)
    v1 = models.current(NAME)
    assert v1 is not None
    newer = with_new_identity(export_version(models, v1, tmp_path / "v1"), tmp_path / "v2")
    data = bytearray((newer / "labels.json").read_bytes())
    data[10] ^= 0xFF  # same size, different bytes
    (newer / "labels.json").write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        models.install_dir(newer)
    assert models.current(NAME) == v1 and models.versions(NAME) == [v1]


def test_set_current_refuses_a_damaged_version(store: Path, tmp_path: Path) -> None:
    # A version damaged after install (e.g. by an operator) cannot be made current.
    models = ModelStore(store)
    v1 = models.current(NAME)
    assert v1 is not None
    v2 = models.install_dir(with_new_identity(export_version(models, v1, tmp_path / "v1"), tmp_path / "v2"))
    labels = models.version_dir(NAME, v1) / "labels.json"
    content = labels.read_bytes()
    labels.unlink()  # break the hard link before editing
    labels.write_bytes(content[:-1])
    with pytest.raises(IntegrityError, match="bytes"):
        models.rollback(NAME)
    assert models.current(NAME) == v2


def test_invalid_names_and_missing_things(tmp_path: Path) -> None:
    models = ModelStore(tmp_path)
    assert models.current(NAME) is None and models.versions(NAME) == []
    with pytest.raises(StoreError):
        models.current("../etc")
    with pytest.raises(ModelNotFound):
        models.rollback(NAME)
    with pytest.raises(StoreError):
        models.rollback(NAME, to="not-a-version")
