"""The versioned model store: the layout on EFS (or a local directory).

::

    <root>/models/<name>/versions/<version>/   immutable once installed
        manifest.json, model.onnx, weights.safetensors, labels.json
    <root>/models/<name>/CURRENT               one line: the active version
    <root>/models/<name>/history.jsonl         every switch of CURRENT (classifier.store.history)
    <root>/models/<name>/evaluations/<version>/<data-sha256>.json
                                               ``evaluate`` reports (never inside versions/)

Installing is atomic: artifacts are written into a hidden staging directory
beside ``versions/``, fsynced, verified against the manifest's sizes and
sha256, and only then renamed into ``versions/<version>``; ``CURRENT`` is
replaced by write-temp + fsync + rename. A reader never sees a half-written
version or pointer.

Every switch of ``CURRENT`` (publish, promote, rollback, quantize, the installer)
goes through ``ModelStore.set_current``, which records it in the model's history
(who, when, from, to, why) under a lock, so that ``rollback`` can undo the last
switch rather than guess from version ids.

This module uses only the standard library: the installer Lambda (a plain
Python zip) and the CLI share it.
"""

from __future__ import annotations

import builtins  # ``list`` in the class body is ModelStore.list
import fcntl
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classifier.store.fsio import fsync_dir, fsync_file, write_atomic
from classifier.store.history import (
    HISTORY,
    ROLLBACK,
    Switch,
    check_reason,
    new_switch,
    read_history,
    undo_target,
    write_history,
)
from classifier.store.manifest import (
    MANIFEST,
    NAME_RE,
    VERSION_RE,
    IntegrityError,
    ModelNotFound,
    StoreError,
    check_artifact,
    check_name,
    check_version,
    validate_manifest,
)

CURRENT = "CURRENT"
EVALUATIONS = "evaluations"
_STAGING_PREFIX = ".staging-"
# Held while CURRENT and the history change: two switches at once (two installer
# invocations, a promotion beside a publish) must not lose one history entry.
_SWITCH_LOCK = ".switch.lock"
# POSIX locks exclude other processes, not other threads of this one.
_THREAD_LOCK = threading.Lock()


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    current: bool
    manifest: dict[str, Any] | None
    problem: str | None = None


class ModelStore:
    """Versioned models under ``<root>/models``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.models_dir = self.root / "models"

    # -- paths -------------------------------------------------------------
    def model_dir(self, name: str) -> Path:
        return self.models_dir / check_name(name)

    def versions_dir(self, name: str) -> Path:
        return self.model_dir(name) / "versions"

    def version_dir(self, name: str, version: str) -> Path:
        return self.versions_dir(name) / check_version(version)

    # -- reading -----------------------------------------------------------
    def names(self) -> list[str]:
        if not self.models_dir.is_dir():
            return []
        return sorted(p.name for p in self.models_dir.iterdir() if NAME_RE.fullmatch(p.name))

    def versions(self, name: str) -> list[str]:
        """Installed versions, oldest first (version ids sort by time)."""
        vdir = self.versions_dir(name)
        if not vdir.is_dir():
            return []
        return sorted(p.name for p in vdir.iterdir() if VERSION_RE.fullmatch(p.name))

    def current(self, name: str) -> str | None:
        """The active version named by ``CURRENT``, or None if nothing is published."""
        try:
            text = (self.model_dir(name) / CURRENT).read_text().strip()
        except FileNotFoundError:
            return None
        if not VERSION_RE.fullmatch(text):
            raise IntegrityError(f"{name}/CURRENT holds an invalid version {text!r}")
        return text

    def manifest(self, name: str, version: str) -> dict[str, Any]:
        path = self.version_dir(name, version) / MANIFEST
        try:
            manifest = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise ModelNotFound(f"model {name} has no version {version}") from None
        except ValueError as exc:
            raise IntegrityError(f"{name} {version}: manifest.json is not valid JSON ({exc})") from None
        validate_manifest(manifest)
        if manifest["name"] != name or manifest["version"] != version:
            raise IntegrityError(
                f"{name} {version}: manifest names {manifest['name']} {manifest['version']}"
            )
        return manifest

    def verify(self, name: str, version: str, artifacts: list[str] | None = None) -> dict[str, Any]:
        """Check sizes and sha256 of a version's artifacts; return its manifest."""
        manifest = self.manifest(name, version)
        vdir = self.version_dir(name, version)
        for artifact in artifacts or sorted(manifest["artifacts"]):
            check_artifact(vdir / artifact, manifest["artifacts"].get(artifact), f"{name} {version}")
        return manifest

    def list(self, name: str) -> list[VersionInfo]:
        current = self.current(name)
        infos = []
        for version in self.versions(name):
            try:
                manifest: dict[str, Any] | None = self.manifest(name, version)
                problem = None
            except StoreError as exc:
                manifest, problem = None, str(exc)
            infos.append(VersionInfo(name, version, version == current, manifest, problem))
        return infos

    # -- evaluations -------------------------------------------------------
    def evaluations_dir(self, name: str, version: str) -> Path:
        return self.model_dir(name) / EVALUATIONS / check_version(version)

    def save_evaluation(self, name: str, version: str, data_sha256: str, report: Mapping[str, Any]) -> Path:
        """Keep ``report`` as the evaluation of ``version`` on the data set ``data_sha256`` (atomic)."""
        if not re.fullmatch(r"[0-9a-f]{64}", data_sha256):
            raise StoreError(f"invalid data set digest {data_sha256!r}")
        folder = self.evaluations_dir(name, version)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{data_sha256}.json"
        write_atomic(path, json.dumps(report, indent=1).encode() + b"\n")
        return path

    def evaluation(self, name: str, version: str, data_sha256: str) -> dict[str, Any] | None:
        """The saved report of ``version`` on that data set, if any."""
        return _read_report(self.evaluations_dir(name, version) / f"{data_sha256}.json")

    def latest_evaluation(self, name: str, version: str) -> dict[str, Any] | None:
        """The most recent saved report of ``version``, on any data set."""
        folder = self.evaluations_dir(name, version)
        reports = [r for p in (folder.glob("*.json") if folder.is_dir() else ()) if (r := _read_report(p))]
        return max(reports, key=lambda r: str(r.get("created_at", "")), default=None)

    # -- writing -----------------------------------------------------------
    def stage(self, name: str) -> StagedVersion:
        """Start installing a version: write artifacts into ``staged.path``, then ``commit``."""
        vdir = self.versions_dir(name)
        vdir.mkdir(parents=True, exist_ok=True)
        import secrets  # imported where used: off the cold start's path (docs/performance.md)

        path = self.model_dir(name) / f"{_STAGING_PREFIX}{secrets.token_hex(8)}"
        path.mkdir()
        return StagedVersion(self, name, path)

    def install_dir(self, source: Path, *, make_current: bool = True, reason: str = "publish",
                    actor: str | None = None) -> str:
        """Install the version in ``source`` (manifest.json + artifacts); return its id.

        With ``make_current`` it becomes current, recorded in the history with ``reason`` and ``actor``."""
        import shutil  # imported where used: off the cold start's path (docs/performance.md)

        manifest = json.loads((source / MANIFEST).read_bytes())
        validate_manifest(manifest)
        with self.stage(manifest["name"]) as staged:
            for artifact in manifest["artifacts"]:
                if (source / artifact).exists():  # a missing one is reported by commit
                    shutil.copyfile(source / artifact, staged.path / artifact)
            return staged.commit(manifest, make_current=make_current, reason=reason, actor=actor)

    def history(self, name: str) -> builtins.list[Switch]:
        """Every recorded switch of ``CURRENT``, oldest first (``classifier.store.history``)."""
        return read_history(self.model_dir(name) / HISTORY)

    def labels(self, name: str, version: str) -> builtins.list[str]:
        """A version's labels, in index order (a clear error for an unknown or damaged version)."""
        self.manifest(name, version)
        path = self.version_dir(name, version) / "labels.json"
        try:
            labels = json.loads(path.read_bytes())
        except (FileNotFoundError, ValueError) as exc:
            raise IntegrityError(f"{name} {version}: labels.json cannot be read ({exc})") from None
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise IntegrityError(f"{name} {version}: labels.json is not a list of labels")
        return labels

    def set_current(self, name: str, version: str, *, reason: str, actor: str | None = None) -> Switch | None:
        """Make ``version`` current after checking that it is complete and intact, and record the switch.

        The one way ``CURRENT`` changes: ``reason`` says which command switched (``publish``,
        ``promote``, ``quantize``, ...), ``actor`` who did (default: ``user@host`` of this process).
        Returns the recorded switch, or None when ``version`` was current already.
        """
        check_reason(reason)
        self.verify(name, version)  # before the lock: hashing the artifacts takes a while
        with self._switch_lock(name):
            return self._switch_locked(name, version, reason=reason, actor=actor)

    def rollback(self, name: str, to: str | None = None, *, actor: str | None = None) -> Switch | None:
        """Undo the last switch of ``CURRENT`` (``classifier.store.history.undo_target``), or make ``to`` current.

        Returns the recorded switch (None when ``to`` is current already). Refused when
        nothing is current, when no recorded switch is left to undo, or when ``to`` is not
        installed or not intact.
        """
        if to is not None and check_version(to) not in self.versions(name):
            raise ModelNotFound(f"model {name} has no version {to}")
        if self.current(name) is None:
            raise ModelNotFound(f"model {name} has no current version to roll back from")
        with self._switch_lock(name):
            undoes = None
            if to is None:
                current = self.current(name)
                if current is None:  # removed by hand since the check above
                    raise ModelNotFound(f"model {name} has no current version to roll back from")
                to, undoes = undo_target(self.history(name), current, name)
            self.verify(name, to)
            return self._switch_locked(name, to, reason=ROLLBACK, actor=actor, undoes=undoes)

    def _switch_locked(self, name: str, version: str, *, reason: str, actor: str | None,
                       undoes: int | None = None) -> Switch | None:
        """Point ``CURRENT`` at ``version`` and record it; the caller holds the lock and has verified it."""
        previous = self.current(name)
        if previous == version:
            return None
        history = self.history(name)
        switch = new_switch(history, previous=previous, version=version, reason=reason, actor=actor, undoes=undoes)
        # CURRENT first: it is what serves. Should the process die before the history is
        # written, rollback sees a CURRENT the history did not make, and returns to the
        # version the history last made current: the one that served before.
        write_atomic(self.model_dir(name) / CURRENT, f"{version}\n".encode())
        write_history(self.model_dir(name) / HISTORY, [*history, switch])
        return switch

    @contextmanager
    def _switch_lock(self, name: str) -> Iterator[None]:
        """An exclusive POSIX lock on the model's lock file (NFS, and so EFS, honours it)."""
        with _THREAD_LOCK, open(self.model_dir(name) / _SWITCH_LOCK, "a") as lock:
            fcntl.lockf(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(lock, fcntl.LOCK_UN)


def _read_report(path: Path) -> dict[str, Any] | None:
    try:
        report = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    return report if isinstance(report, dict) else None


class StagedVersion:
    """A version being installed; discarded unless ``commit`` succeeds."""

    def __init__(self, store: ModelStore, name: str, path: Path) -> None:
        self.store = store
        self.name = name
        self.path = path
        self._done = False

    def commit(self, manifest: Mapping[str, Any], *, make_current: bool = True, reason: str = "publish",
               actor: str | None = None) -> str:
        """Verify, rename into ``versions/`` and, with ``make_current``, switch to it (``set_current``)."""
        validate_manifest(manifest)
        if manifest["name"] != self.name:
            raise IntegrityError(f"manifest names model {manifest['name']}, not {self.name}")
        version: str = manifest["version"]
        where = f"{self.name} {version}"
        present = {p.name for p in self.path.iterdir()} - {MANIFEST}
        missing = set(manifest["artifacts"]) - present
        if missing:
            raise IntegrityError(f"{where}: missing {', '.join(sorted(missing))} (partial upload)")
        for artifact, expected in manifest["artifacts"].items():
            fsync_file(self.path / artifact)
            check_artifact(self.path / artifact, expected, where)
        for extra in present - set(manifest["artifacts"]):
            (self.path / extra).unlink()
        write_atomic(self.path / MANIFEST, json.dumps(manifest, indent=2).encode() + b"\n")
        fsync_dir(self.path)

        target = self.store.version_dir(self.name, version)
        if target.exists():
            # Versions are content-addressed: the same id means the same bytes,
            # so re-publishing is a no-op (but still verify what is there).
            self.store.verify(self.name, version)
            self.discard()
        else:
            os.rename(self.path, target)
            fsync_dir(target.parent)
        self._done = True
        if make_current:
            self.store.set_current(self.name, version, reason=reason, actor=actor)
        return version

    def discard(self) -> None:
        import shutil  # imported where used: off the cold start's path (docs/performance.md)

        shutil.rmtree(self.path, ignore_errors=True)
        self._done = True

    def __enter__(self) -> StagedVersion:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._done:
            self.discard()


def iter_staging_dirs(store: ModelStore, name: str) -> Iterator[Path]:
    """Leftover staging directories (from a crashed install), for cleanup."""
    mdir = store.model_dir(name)
    if mdir.is_dir():
        yield from (p for p in mdir.iterdir() if p.name.startswith(_STAGING_PREFIX))
