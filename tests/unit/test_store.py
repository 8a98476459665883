"""The versioned model store: atomic install, integrity checks, CURRENT, rollback."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import shutil
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from classifier.store.history import HISTORY, Switch, local_actor
from classifier.store.layout import CURRENT, EVALUATIONS, ModelStore, iter_staging_dirs
from classifier.store.manifest import (
    MANIFEST,
    IntegrityError,
    ModelNotFound,
    StoreError,
    artifacts_digest,
    check_artifact,
    check_name,
    check_version,
    make_version,
    precision,
    validate_manifest,
)

from helpers.stores import export_version, small_version, with_new_identity

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
    assert switched(models.rollback(NAME)) == v1 and models.current(NAME) == v1
    assert switched(models.rollback(NAME, to=v2)) == v2 and models.current(NAME) == v2
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
    assert models.current(NAME) == v2 and models.history(NAME)[-1].version == v2


def test_invalid_names_and_missing_things(tmp_path: Path) -> None:
    models = ModelStore(tmp_path)
    assert models.current(NAME) is None and models.versions(NAME) == []
    with pytest.raises(StoreError):
        models.current("../etc")
    with pytest.raises(ModelNotFound):
        models.rollback(NAME)
    with pytest.raises(StoreError):
        models.rollback(NAME, to="not-a-version")


# -- small versions: the store's own rules, without a real model -------------------------------


def install_small(models: ModelStore, folder: Path, **version: Any) -> str:
    """Write a small version into ``folder`` and install it (and make it current); return its id."""
    small_version(folder, **version)
    return models.install_dir(folder)


def valid_manifest(tmp_path: Path) -> dict[str, Any]:
    return small_version(tmp_path / "valid")


def edited(manifest: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``manifest`` with the field at ``path`` ("artifacts/model.onnx/sha256") set, or removed (DELETE)."""
    copy = json.loads(json.dumps(manifest))
    *parents, last = path.split("/")
    node = copy
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return copy


DELETE = object()
ONNX_SHA = "artifacts/model.onnx/sha256"
INVALID_MANIFESTS = [
    *[(f"no {field}", field, DELETE, f"manifest is missing required field '{field}'")
      for field in ("name", "version", "artifacts", "preprocessing", "labels", "trained", "source")],
    ("a malformed name", "name", "ResNet 50", "manifest has an invalid model name 'ResNet 50'"),
    ("a name that is not text", "name", 50, "manifest has an invalid model name 50"),
    ("a malformed version", "version", "v2", "manifest has an invalid version 'v2'"),
    ("a version that is not text", "version", 2, "manifest has an invalid version 2"),
    ("no artifacts", "artifacts", {}, "manifest lists no artifacts"),
    ("artifacts that are a list", "artifacts", ["model.onnx"], "manifest lists no artifacts"),
    ("an unknown artifact", "artifacts/model.pt", {"bytes": 1, "sha256": "0" * 64},
     "manifest lists an unknown artifact 'model.pt'"),
    ("a size that is not a number", "artifacts/model.onnx/bytes", "336",
     "manifest entry for model.onnx needs 'bytes' and 'sha256'"),
    ("no sha256", ONNX_SHA, DELETE, "manifest entry for model.onnx needs 'bytes' and 'sha256'"),
    ("a sha256 that is not text", ONNX_SHA, 7, "manifest entry for model.onnx needs 'bytes' and 'sha256'"),
    ("a short sha256", ONNX_SHA, "a" * 63, "manifest entry for model.onnx needs 'bytes' and 'sha256'"),
    ("an upper-case sha256", ONNX_SHA, "A" * 64, "manifest entry for model.onnx needs 'bytes' and 'sha256'"),
    ("a sha256 with a newline", ONNX_SHA, "a" * 64 + "\n", "manifest entry for model.onnx needs 'bytes' and 'sha256'"),
    ("an entry that is not an object", "artifacts/model.onnx", "big",
     "manifest entry for model.onnx needs 'bytes' and 'sha256'"),
    ("no model file", "artifacts/model.onnx", DELETE,
     "manifest needs labels.json and model.onnx or weights.safetensors"),
    ("no labels file", "artifacts/labels.json", DELETE,
     "manifest needs labels.json and model.onnx or weights.safetensors"),
    *[(f"no preprocessing {key}", f"preprocessing/{key}", DELETE, f"manifest preprocessing is missing '{key}'")
      for key in ("resize", "crop", "mean", "std")],
    ("labels that are a number", "labels", 1000, "manifest needs labels.count"),
    ("no label count", "labels/count", DELETE, "manifest needs labels.count"),
    ("a label count that is text", "labels/count", "1000", "manifest needs labels.count"),
    ("no labels at all", "labels/count", 0, "manifest needs labels.count"),
    ("an unknown precision", "precision", "fp16", "manifest precision must be one of fp32, int8, got 'fp16'"),
    ("derived from a non-version", "derived_from", "yesterday",
     "manifest derived_from is not a version id: 'yesterday'"),
    ("derived from a number", "derived_from", 3, "manifest derived_from is not a version id: 3"),
]


@pytest.mark.parametrize(("case", "path", "value", "message"), INVALID_MANIFESTS, ids=[c[0] for c in INVALID_MANIFESTS])
def test_invalid_manifests_are_refused(tmp_path: Path, case: str, path: str, value: Any, message: str) -> None:
    manifest = edited(valid_manifest(tmp_path), path, value)
    if path.startswith("artifacts/") and case in ("no model file", "no labels file"):
        # the version id must still name the remaining artifacts, or that is reported first
        manifest["version"] = manifest["version"][:-12] + artifacts_digest(manifest["artifacts"])
    with pytest.raises(IntegrityError) as refused:
        validate_manifest(manifest)
    assert str(refused.value) == message


def test_a_version_id_must_name_its_artifacts(tmp_path: Path) -> None:
    manifest = valid_manifest(tmp_path)
    # the same artifacts under another version's content id, and another artifact under this id
    for changed in (edited(manifest, "version", manifest["version"][:-12] + "0123456789ab"),
                    edited(manifest, ONNX_SHA, "b" * 64)):
        with pytest.raises(IntegrityError, match="does not match the sha256 of its artifacts"):
            validate_manifest(changed)


def test_valid_manifests_pass(tmp_path: Path) -> None:
    manifest = valid_manifest(tmp_path)
    validate_manifest(manifest)
    validate_manifest(edited(manifest, "labels/count", 1))
    validate_manifest(edited(edited(manifest, "precision", "int8"), "derived_from", manifest["version"]))
    # a torch-only version: weights.safetensors and labels.json, no model.onnx
    torch_only = edited(edited(manifest, "artifacts/weights.safetensors", manifest["artifacts"]["model.onnx"]),
                        "artifacts/model.onnx", DELETE)
    torch_only["version"] = torch_only["version"][:-12] + artifacts_digest(torch_only["artifacts"])
    validate_manifest(torch_only)
    assert precision(manifest) == "fp32" and precision(edited(manifest, "precision", "int8")) == "int8"


def test_version_ids_are_utc_time_and_content(tmp_path: Path) -> None:
    artifacts = {"model.onnx": {"bytes": 3, "sha256": "a" * 64}, "labels.json": {"bytes": 2, "sha256": "b" * 64}}
    # the content id, computed here by docs/architecture.md's rule: names and sha256 in name order
    content = hashlib.sha256(f"labels.json\0{'b' * 64}\nmodel.onnx\0{'a' * 64}\n".encode()).hexdigest()[:12]
    paris = datetime(2026, 11, 22, 11, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    assert make_version(artifacts, paris) == f"20261122T100005Z-{content}"
    # a day, a month and a year boundary in UTC: New Year's Eve in New York is New Year's Day in UTC
    new_york = datetime(2026, 12, 31, 19, 30, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert make_version(artifacts, new_york) == f"20270101T003000Z-{content}"
    assert check_version(make_version(artifacts, paris)) == make_version(artifacts, paris)


@pytest.mark.parametrize("name", ["resnet50", "a", "0", "resnet50-ft_2", "a" * 64])
def test_model_names_that_are_accepted(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "ResNet50", "-resnet", "_resnet", "a" * 65, "res net", "../etc", "res/net",
                                  "resnet50\n"])
def test_model_names_that_are_refused(name: str) -> None:
    with pytest.raises(StoreError) as refused:
        check_name(name)
    assert str(refused.value) == f"invalid model name {name!r}: use 1-64 lowercase letters, digits, '-' or '_'"


@pytest.mark.parametrize("version", ["20261122T100000Z-0123456789a", "20261122T100000Z-0123456789ABC",
                                     "20261122T100000-0123456789ab", "2026-11-22T10:00:00Z-0123456789ab",
                                     "20261122T100000Z-0123456789ab\n", "x20261122T100000Z-0123456789ab"])
def test_version_ids_that_are_refused(version: str) -> None:
    with pytest.raises(StoreError) as refused:
        check_version(version)
    assert str(refused.value) == f"invalid version {version!r}: expected <yyyymmddThhmmssZ>-<12 hex>"


def test_listing_shows_versions_oldest_first_and_skips_what_is_not_one(tmp_path: Path) -> None:
    # GIVEN three versions installed out of time order, a staging directory, and stray entries
    models = ModelStore(tmp_path / "store")
    created = ["2026-11-22T10:00:00Z", "2025-01-01T00:00:00Z", "2026-12-31T23:59:59Z"]
    versions = [install_small(models, tmp_path / f"v{i}", seed=str(i), created=c) for i, c in enumerate(created)]
    models.set_current(NAME, versions[0], reason="promote")
    (models.versions_dir(NAME) / "notes").mkdir()
    (models.models_dir / "Not A Model").mkdir()
    with models.stage(NAME):
        # THEN the listing is oldest first, marks CURRENT, and shows neither staging nor strays
        assert models.versions(NAME) == sorted(versions) == [versions[1], versions[0], versions[2]]
        assert models.names() == [NAME]
    infos = models.list(NAME)
    assert [(i.version, i.current, i.problem) for i in infos] == [(v, v == versions[0], None) for v in sorted(versions)]
    assert all(i.name == NAME and i.manifest is not None and i.manifest["version"] == i.version for i in infos)
    assert list(iter_staging_dirs(models, NAME)) == []
    assert ModelStore(tmp_path / "nowhere").names() == []


def test_a_damaged_version_is_listed_with_its_problem(tmp_path: Path) -> None:
    models = ModelStore(tmp_path / "store")
    good = install_small(models, tmp_path / "good")
    bad = install_small(models, tmp_path / "bad", seed="b", created="2027-01-01T00:00:00Z")
    (models.version_dir(NAME, bad) / MANIFEST).write_text("{not json")
    infos = {i.version: i for i in models.list(NAME)}
    assert infos[good].problem is None and infos[good].manifest is not None
    assert infos[bad].manifest is None and infos[bad].current
    assert infos[bad].problem is not None and infos[bad].problem.startswith(
        f"{NAME} {bad}: manifest.json is not valid JSON (")


def test_manifests_must_be_where_they_say(tmp_path: Path) -> None:
    models = ModelStore(tmp_path / "store")
    version = install_small(models, tmp_path / "v")
    other = small_version(tmp_path / "other", seed="other", created="2027-01-01T00:00:00Z")
    with pytest.raises(ModelNotFound, match=re.escape(f"model {NAME} has no version {other['version']}")):
        models.manifest(NAME, other["version"])
    # a manifest copied into another version's directory
    (models.version_dir(NAME, version) / MANIFEST).write_text(json.dumps(other))
    with pytest.raises(IntegrityError) as refused:
        models.manifest(NAME, version)
    assert str(refused.value) == f"{NAME} {version}: manifest names {NAME} {other['version']}"


def test_current_must_name_a_version(tmp_path: Path) -> None:
    models = ModelStore(tmp_path / "store")
    assert models.current(NAME) is None
    version = install_small(models, tmp_path / "v")
    (models.model_dir(NAME) / CURRENT).write_text(f"  {version}\n\n")
    assert models.current(NAME) == version  # surrounding whitespace is not part of it
    (models.model_dir(NAME) / CURRENT).write_text("../../etc/passwd\n")
    with pytest.raises(IntegrityError) as refused:
        models.current(NAME)
    assert str(refused.value) == f"{NAME}/CURRENT holds an invalid version '../../etc/passwd'"


def test_verify_checks_each_listed_artifact(tmp_path: Path) -> None:
    models = ModelStore(tmp_path / "store")
    manifest = small_version(tmp_path / "v")
    version = models.install_dir(tmp_path / "v")
    vdir = models.version_dir(NAME, version)
    (vdir / "model.onnx").write_bytes(b"x" * manifest["artifacts"]["model.onnx"]["bytes"])  # same size, other bytes
    # only the artifacts asked for are checked
    assert models.verify(NAME, version, ["labels.json"]) == models.manifest(NAME, version)
    with pytest.raises(IntegrityError) as refused:
        models.verify(NAME, version)
    assert str(refused.value) == f"{NAME} {version}: model.onnx sha256 does not match the manifest"
    with pytest.raises(IntegrityError) as refused:
        models.verify(NAME, version, ["weights.safetensors"])
    assert str(refused.value) == f"{NAME} {version}: weights.safetensors is not listed in the manifest"


def test_check_artifact_without_hashing_checks_the_size(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"12345")
    check_artifact(path, {"bytes": 5, "sha256": "0" * 64}, "here", hash_it=False)
    with pytest.raises(IntegrityError) as refused:
        check_artifact(path, {"bytes": 5, "sha256": "0" * 64}, "here")
    assert str(refused.value) == "here: model.onnx sha256 does not match the manifest"
    with pytest.raises(IntegrityError) as refused:
        check_artifact(path, {"bytes": 6, "sha256": "0" * 64}, "here", hash_it=False)
    assert str(refused.value) == "here: model.onnx has 5 bytes, the manifest says 6"
    with pytest.raises(IntegrityError) as refused:
        check_artifact(tmp_path / "gone.onnx", {"bytes": 6, "sha256": "0" * 64}, "here", hash_it=False)
    assert str(refused.value) == "here: gone.onnx is missing (partial version)"


def test_installing_without_making_current_and_what_commit_keeps(tmp_path: Path) -> None:
    models = ModelStore(tmp_path / "store")
    first = install_small(models, tmp_path / "a")
    second_manifest = small_version(tmp_path / "b", seed="b", created="2027-01-01T00:00:00Z")
    (tmp_path / "b" / "notes.txt").write_text("not an artifact")
    # an artifact and a stray file in the staging directory: only the listed artifacts are kept
    with models.stage(NAME) as staged:
        for item in (tmp_path / "b").iterdir():
            shutil.copyfile(item, staged.path / item.name)
        assert staged.commit(second_manifest, make_current=False) == second_manifest["version"]
    assert models.current(NAME) == first
    vdir = models.version_dir(NAME, second_manifest["version"])
    assert sorted(p.name for p in vdir.iterdir()) == ["labels.json", MANIFEST, "model.onnx"]
    assert json.loads((vdir / MANIFEST).read_text()) == second_manifest
    assert list(iter_staging_dirs(models, NAME)) == []


def test_a_staged_version_for_another_model_is_refused(tmp_path: Path) -> None:
    models = ModelStore(tmp_path / "store")
    manifest = small_version(tmp_path / "v", name="other-model")
    with models.stage(NAME) as staged:
        with pytest.raises(IntegrityError) as refused:
            staged.commit(manifest)
        assert str(refused.value) == f"manifest names model other-model, not {NAME}"
    assert list(iter_staging_dirs(models, NAME)) == [] and models.versions(NAME) == []


def test_a_missing_artifact_is_named_and_nothing_installed(tmp_path: Path) -> None:
    models = ModelStore(tmp_path / "store")
    manifest = small_version(tmp_path / "v")
    (tmp_path / "v" / "labels.json").unlink()
    with pytest.raises(IntegrityError) as refused:
        models.install_dir(tmp_path / "v")
    assert str(refused.value) == f"{NAME} {manifest['version']}: missing labels.json (partial upload)"
    assert models.versions(NAME) == [] and list(iter_staging_dirs(models, NAME)) == []


def switched(switch: Switch | None) -> str | None:
    """The version a switch made current."""
    return None if switch is None else switch.version


def test_rollback_refusals(tmp_path: Path) -> None:
    models = ModelStore(tmp_path / "store")
    with pytest.raises(ModelNotFound) as refused:
        models.rollback(NAME)
    assert str(refused.value) == f"model {NAME} has no current version to roll back from"
    only = install_small(models, tmp_path / "v")
    with pytest.raises(ModelNotFound) as refused:
        models.rollback(NAME)
    assert str(refused.value) == (f"model {NAME}: {only} is the first version that served; nothing served before "
                                  "it (pass --to VERSION to choose one)")
    missing = "20200101T000000Z-0123456789ab"
    with pytest.raises(ModelNotFound) as refused:
        models.rollback(NAME, to=missing)
    assert str(refused.value) == f"model {NAME} has no version {missing}"
    # --to the current version changes nothing, and records nothing
    assert models.rollback(NAME, to=only) is None and models.current(NAME) == only
    assert [s.version for s in models.history(NAME)] == [only]
    assert not (models.models_dir / "other").exists()


def install_dated(models: ModelStore, tmp_path: Path, *dates: str, make_current: bool = True) -> list[str]:
    """Small versions created on ``dates`` (ids sort by them), installed in that order."""
    versions = []
    for date in dates:
        small_version(tmp_path / date[:10], seed=date, created=date)
        versions.append(models.install_dir(tmp_path / date[:10], make_current=make_current))
    return versions


def test_rollback_returns_to_the_version_that_served_before_not_the_one_made_before(tmp_path: Path) -> None:
    # GIVEN the user's story: fp32 published, an int8 derived from it and made current, the fp32
    # promoted back, then a restart that published another version over it
    models = ModelStore(tmp_path / "store")
    fp32, int8, restart = install_dated(models, tmp_path, "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z",
                                        "2026-03-01T00:00:00Z", make_current=False)
    models.set_current(NAME, fp32, reason="publish", actor="alice@laptop")
    models.set_current(NAME, int8, reason="quantize", actor="alice@laptop")
    models.set_current(NAME, fp32, reason="promote", actor="alice@laptop")
    models.set_current(NAME, restart, reason="publish", actor="make-serve@laptop")
    # WHEN the user rolls back
    switch = models.rollback(NAME, actor="alice@laptop")
    # THEN the fp32 version they promoted serves again (not int8, the version created before the restart's)
    assert switch is not None and (switch.previous, switch.version) == (restart, fp32)
    assert models.current(NAME) == fp32
    # AND the rollback is recorded, with what it undid
    history = models.history(NAME)
    assert [(s.n, s.reason, s.previous, s.version) for s in history] == [
        (1, "publish", None, fp32), (2, "quantize", fp32, int8), (3, "promote", int8, fp32),
        (4, "publish", fp32, restart), (5, "rollback", restart, fp32)]
    assert history[-1].undoes == 4 and history[-1].actor == "alice@laptop"
    assert [s.actor for s in history[:4]] == ["alice@laptop"] * 3 + ["make-serve@laptop"]


def test_repeated_rollbacks_walk_back_one_switch_at_a_time(tmp_path: Path) -> None:
    # Undo, as in an editor: each rollback reverts the newest switch not yet reverted, so a second
    # rollback goes further back instead of bouncing forth to the version just left.
    models = ModelStore(tmp_path / "store")
    a, b, c = install_dated(models, tmp_path, "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")
    models.set_current(NAME, a, reason="promote")  # a -> b -> c -> a
    assert [switched(models.rollback(NAME)) for _ in range(3)] == [c, b, a]
    with pytest.raises(ModelNotFound, match=f"{a} is the first version that served"):
        models.rollback(NAME)
    assert models.current(NAME) == a
    assert [s.undoes for s in models.history(NAME)] == [None, None, None, None, 4, 3, 2]


def test_rollback_after_a_chosen_version_or_a_hand_edited_current(tmp_path: Path) -> None:
    models = ModelStore(tmp_path / "store")
    a, b, c = install_dated(models, tmp_path, "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")
    # rollback --to a version, then rollback: back to the version --to left
    assert switched(models.rollback(NAME, to=a)) == a
    assert switched(models.rollback(NAME)) == c
    # CURRENT written by hand (or a switch that died between CURRENT and the history): rollback
    # returns to the version the history last made current, the one that served before
    (models.model_dir(NAME) / CURRENT).write_text(f"{a}\n")
    switch = models.rollback(NAME)
    assert switch is not None and (switch.previous, switch.version, switch.undoes) == (a, c, None)
    # and the recorded switches are still undone in order afterwards
    assert switched(models.rollback(NAME)) == b


def test_rollback_without_a_recorded_switch_asks_for_a_version(tmp_path: Path) -> None:
    # A store that predates the history: rollback does not guess from version ids.
    models = ModelStore(tmp_path / "store")
    a, b = install_dated(models, tmp_path, "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")
    (models.model_dir(NAME) / HISTORY).unlink()
    with pytest.raises(ModelNotFound, match=r"no switch of CURRENT is recorded.*pass --to VERSION"):
        models.rollback(NAME)
    assert models.current(NAME) == b
    assert switched(models.rollback(NAME, to=a)) == a
    assert [(s.n, s.previous, s.version) for s in models.history(NAME)] == [(1, b, a)]


def test_every_way_of_switching_is_recorded_and_a_no_op_is_not(tmp_path: Path) -> None:
    models = ModelStore(tmp_path / "store")
    a, b = install_dated(models, tmp_path, "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", make_current=False)
    assert models.history(NAME) == [] and models.current(NAME) is None
    first = models.set_current(NAME, a, reason="promote", actor="ci@runner")
    assert first is not None and (first.n, first.previous, first.version, first.actor) == (1, None, a, "ci@runner")
    assert models.set_current(NAME, a, reason="promote") is None  # already current
    with models.stage(NAME) as staged:  # what the installer does: stage, then commit
        for item in (tmp_path / "2026-02-01").iterdir():
            shutil.copyfile(item, staged.path / item.name)
        staged.commit(models.manifest(NAME, b), reason="publish", actor="installer (s3://inbox/models/x)")
    last = models.history(NAME)[-1]
    assert (last.n, last.reason, last.previous, last.version, last.actor) == (
        2, "publish", a, b, "installer (s3://inbox/models/x)")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", last.at)
    # a switch with no actor is the local user's; a reason must be a word
    assert models.set_current(NAME, a, reason="promote") is not None
    assert models.history(NAME)[-1].actor == local_actor() != ""
    with pytest.raises(ValueError, match="invalid reason"):
        models.set_current(NAME, b, reason="Promote it!")
    assert models.current(NAME) == a


def test_a_damaged_history_is_reported_not_guessed_past(tmp_path: Path) -> None:
    models = ModelStore(tmp_path / "store")
    _, b = install_dated(models, tmp_path, "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")
    path = models.model_dir(NAME) / HISTORY
    path.write_text(path.read_text() + '{"n": 3, "to": "../etc"}\n')
    with pytest.raises(IntegrityError, match=r"line 3 is not a switch of CURRENT \('to' is '../etc'"):
        models.rollback(NAME)
    assert models.current(NAME) == b


def test_the_history_keeps_its_last_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("classifier.store.history.MAX_ENTRIES", 3)
    models = ModelStore(tmp_path / "store")
    a, b = install_dated(models, tmp_path, "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")
    for version in (a, b, a, b):
        models.set_current(NAME, version, reason="promote")
    assert [s.n for s in models.history(NAME)] == [4, 5, 6]


def test_a_reader_never_sees_a_partial_history(tmp_path: Path) -> None:
    # GIVEN a writer switching back and forth as fast as it can
    models = ModelStore(tmp_path / "store")
    a, b = install_dated(models, tmp_path, "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")
    done = threading.Event()

    def switch_back_and_forth() -> None:
        try:
            for i in range(60):
                models.set_current(NAME, (a, b)[i % 2], reason="promote")
        finally:
            done.set()

    writer = threading.Thread(target=switch_back_and_forth)
    writer.start()
    # WHEN another reads the history all the while
    lengths = []
    while not done.is_set():
        lengths.append(len(models.history(NAME)))  # raises on a torn line
    writer.join()
    # THEN every read was whole: never shorter than the one before, and the last is complete
    assert len(lengths) > 10 and lengths == sorted(lengths)
    assert len(models.history(NAME)) == 62


def test_switches_from_many_threads_chain(tmp_path: Path) -> None:
    # Each switch's "from" is the "to" of the one before: none was lost between read and write.
    models = ModelStore(tmp_path / "store")
    versions = install_dated(models, tmp_path, "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z",
                             "2026-03-01T00:00:00Z")
    threads = [threading.Thread(target=lambda v=v: [models.set_current(NAME, v, reason="promote")
                                                     for _ in range(20)]) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    history = models.history(NAME)
    assert [s.n for s in history] == list(range(1, len(history) + 1))
    assert all(later.previous == earlier.version for earlier, later in itertools.pairwise(history))
    assert history[-1].version == models.current(NAME)


def test_evaluations_are_kept_per_version_and_data_set(tmp_path: Path) -> None:
    models = ModelStore(tmp_path / "store")
    version = install_small(models, tmp_path / "v")
    assert models.latest_evaluation(NAME, version) is None
    older = {"created_at": "2026-11-22T10:00:00Z", "top1": 0.5}
    newer = {"created_at": "2026-11-23T10:00:00Z", "top1": 0.7}
    path = models.save_evaluation(NAME, version, "a" * 64, older)
    assert path == store_path(models, version, "a" * 64)
    models.save_evaluation(NAME, version, "b" * 64, newer)
    assert models.evaluation(NAME, version, "a" * 64) == older and models.evaluation(NAME, version, "c" * 64) is None
    # not inside the version's own directory: versions are immutable once installed
    assert not (models.version_dir(NAME, version) / EVALUATIONS).exists()
    # the latest is the newest by created_at; an unreadable or non-object report is skipped
    (path.parent / f"{'c' * 64}.json").write_text("{broken")
    (path.parent / f"{'d' * 64}.json").write_text('["not", "a", "report"]')
    assert models.latest_evaluation(NAME, version) == newer
    # and a report without a created_at (written by hand, or by an old evaluator) is never the latest
    models.save_evaluation(NAME, version, "e" * 64, {"top1": 0.9})
    assert models.latest_evaluation(NAME, version) == newer
    for digest in ("A" * 64, "a" * 63, "../" + "a" * 61):
        with pytest.raises(StoreError) as refused:
            models.save_evaluation(NAME, version, digest, older)
        assert str(refused.value) == f"invalid data set digest {digest!r}"


def store_path(models: ModelStore, version: str, digest: str) -> Path:
    return models.root / "models" / NAME / "evaluations" / version / f"{digest}.json"
