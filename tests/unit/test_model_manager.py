"""The model manager (``classifier.serving.manager.ModelManager``) in process, on an injected clock.

What docs/architecture.md promises of the serving model: ``CURRENT`` is re-read at most every
``MODEL_REFRESH_SECONDS``; a version that fails to load is retried only after a back-off (a new
``CURRENT`` at once); requests keep being served on the old model while a new one loads; and a
version is verified before it serves: its labels, the model's output width, the backend's
artifact, and (unless ``VERIFY_ON_LOAD=0``) every sha256.
"""

from __future__ import annotations

import json
import linecache
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from classifier.config import Settings
from classifier.errors import ModelUnavailable
from classifier.serving import manager as runtime
from classifier.serving import preload
from classifier.serving.manager import ModelManager
from classifier.store.layout import ModelStore

from helpers.stores import derive_version, export_version, with_new_identity

NAME = "resnet50"
# Nothing here should wait this long; it only stops a deadlock from hanging the suite.
DEADLOCK_GUARD_SECONDS = 120


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def manager_for(store: Path, clock: Clock, **settings: Any) -> ModelManager:
    return ModelManager(Settings(model_store=store, **settings), clock=clock)


def install(store: Path, source: Path, *, current: bool = True) -> str:
    return ModelStore(store).install_dir(source, make_current=current)


def newer_version(store: Path, tmp_path: Path, created: str = "2030-01-01T00:00:00Z", **changes: Any) -> Path:
    """A version directory derived from the store's current one (not installed)."""
    models = ModelStore(store)
    current = models.current(NAME)
    assert current is not None
    exported = export_version(models, current, tmp_path / f"export-{created}")
    if not changes:
        return with_new_identity(exported, tmp_path / f"v-{created}", created=created)
    return derive_version(exported, tmp_path / f"v-{created}", created=created, **changes)


def set_current(store: Path, version: str) -> None:
    # What an operator's rollback or another publisher's flip looks like to a running server.
    (store / "models" / NAME / "CURRENT").write_text(f"{version}\n")


# -- when CURRENT is read -----------------------------------------------------------------


def test_current_is_reread_at_most_every_refresh_seconds(store: Path, tmp_path: Path) -> None:
    # GIVEN a manager serving v1, re-reading CURRENT every 30 s
    clock = Clock()
    manager = manager_for(store, clock, refresh_seconds=30.0)
    v1 = manager.current().version
    # WHEN v2 is published a moment later
    v2 = install(store, newer_version(store, tmp_path))
    clock.now += 29.9
    # THEN v1 still serves until 30 s have passed since the last read, and v2 from then on
    assert manager.current().version == v1
    clock.now += 0.1
    assert manager.current().version == v2
    # AND a forced refresh (GET /model, /health) reads CURRENT whatever the clock says
    set_current(store, v1)
    manager.refresh(force=True)
    assert manager.current().version == v1


def test_a_version_that_fails_to_load_is_retried_after_a_back_off(store: Path, tmp_path: Path) -> None:
    # GIVEN a manager that reads CURRENT on every request (MODEL_REFRESH_SECONDS=0: the back-off is 1 s)
    clock = Clock()
    manager = manager_for(store, clock, refresh_seconds=0.0)
    v1 = manager.current().version
    # WHEN CURRENT names v2 while its model.onnx cannot be read (a transient EFS error)
    v2 = install(store, newer_version(store, tmp_path), current=False)
    onnx = ModelStore(store).version_dir(NAME, v2) / "model.onnx"
    onnx.rename(tmp_path / "away.onnx")
    set_current(store, v2)
    # THEN v1 keeps serving and the manager says why
    assert manager.current().version == v1
    assert manager.last_error is not None and v2 in manager.last_error and "missing" in manager.last_error
    # AND once the file is back, v2 is not tried again before the back-off has passed ...
    (tmp_path / "away.onnx").rename(onnx)
    clock.now += 0.9
    assert manager.current().version == v1
    # ... and is loaded after it
    clock.now += 0.1
    assert manager.current().version == v2
    assert manager.last_error is None


def test_a_new_current_is_tried_without_waiting_for_the_back_off(store: Path, tmp_path: Path) -> None:
    clock = Clock()
    manager = manager_for(store, clock, refresh_seconds=0.0)
    v1 = manager.current().version
    broken = install(store, newer_version(store, tmp_path, label_count=7), current=False)
    set_current(store, broken)
    assert manager.current().version == v1 and broken in str(manager.last_error)
    # the operator publishes a fixed version straight away
    fixed = install(store, newer_version(store, tmp_path, created="2031-01-01T00:00:00Z"))
    clock.now += 0.1
    assert manager.current().version == fixed


# With a refresh period, later requests skip the check until it is due; with none, each one
# checks, finds the load's lock taken, and serves on what is loaded.
@pytest.mark.parametrize("refresh_seconds", [30.0, 0.0])
def test_requests_are_served_on_the_old_model_while_a_load_runs(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refresh_seconds: float,
) -> None:
    # GIVEN v1 serving, and a load of v2 held inside the backend's construction
    clock = Clock()
    manager = manager_for(store, clock, refresh_seconds=refresh_seconds)
    v1 = manager.current().version
    v2 = install(store, newer_version(store, tmp_path))
    loading, release = threading.Event(), threading.Event()
    real_load_backend = runtime.load_backend

    def held_load_backend(*args: Any, **kwargs: Any) -> Any:
        loading.set()
        assert release.wait(DEADLOCK_GUARD_SECONDS), "the test never released the load"
        return real_load_backend(*args, **kwargs)

    monkeypatch.setattr(runtime, "load_backend", held_load_backend)
    clock.now += 30
    served: dict[str, str] = {}
    loader = threading.Thread(target=lambda: served.update(loader=manager.current().version))
    loader.start()
    assert loading.wait(DEADLOCK_GUARD_SECONDS)
    # WHEN another request comes in during the load
    other = threading.Thread(target=lambda: served.update(other=manager.current().version))
    other.start()
    other.join(DEADLOCK_GUARD_SECONDS)
    # THEN it was answered on v1 without waiting for the load to finish
    finished_during_load = not other.is_alive()
    release.set()
    loader.join(DEADLOCK_GUARD_SECONDS)
    other.join(DEADLOCK_GUARD_SECONDS)
    assert finished_during_load and served["other"] == v1
    # AND the request that loaded v2 is served on it, as is everything after
    assert served["loader"] == v2 and manager.current().version == v2


def blocked_on_a_lock_in(thread: threading.Thread, code: Any) -> bool:
    """Wait until ``thread`` sits in ``code`` on a line that acquires a lock (it is waiting for it, or
    about to); False if the thread ends first or never gets there."""
    deadline = time.monotonic() + DEADLOCK_GUARD_SECONDS
    while thread.is_alive() and time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident or -1)
        if frame is not None and frame.f_code is code and \
                ".acquire(" in linecache.getline(code.co_filename, frame.f_lineno):
            return True
        time.sleep(0.005)
    return False


def test_without_a_model_a_request_waits_for_the_load(tmp_path: Path, store: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # On a cold start there is no old model to serve: a request waits for the first load.
    clock = Clock()
    manager = manager_for(store, clock)
    loading, release = threading.Event(), threading.Event()
    real_load_backend = runtime.load_backend

    def held_load_backend(*args: Any, **kwargs: Any) -> Any:
        loading.set()
        assert release.wait(DEADLOCK_GUARD_SECONDS)
        return real_load_backend(*args, **kwargs)

    monkeypatch.setattr(runtime, "load_backend", held_load_backend)
    first = manager.load_in_background()
    assert loading.wait(DEADLOCK_GUARD_SECONDS)
    # WHEN a request comes in while the first load is held
    served: list[str] = []
    failed: list[BaseException] = []

    def request() -> None:
        try:
            served.append(manager.current().version)
        except BaseException as exc:  # reported below
            failed.append(exc)

    thread = threading.Thread(target=request)
    thread.start()
    # THEN it reaches the load's lock and waits there: it has not answered (nor failed) before the load ends
    waiting = blocked_on_a_lock_in(thread, ModelManager.refresh.__code__)
    answered_during_load = list(served) + list(failed)
    release.set()
    first.join(DEADLOCK_GUARD_SECONDS)
    thread.join(DEADLOCK_GUARD_SECONDS)
    assert waiting and answered_during_load == []
    # AND once the load is done, it is answered on the loaded model
    assert failed == [] and served == [ModelStore(store).current(NAME)]


# -- what a version must be to serve ------------------------------------------------------

REFUSALS = [
    # labels.json holds 1000 labels, the manifest says 7
    ("label count", {"label_count": 7}, {}, "labels.json does not hold 7 labels"),
    # 999 labels, consistently listed, for a model with 1000 outputs
    ("output width", {"labels": [f"class {i}" for i in range(999)]}, {}, "model has 1000 outputs for 999 labels"),
    # an onnx-only version served by the torch backend
    ("missing torch artifact", {"drop": ("weights.safetensors",)}, {"backend": "torch"},
     "has no weights.safetensors for the torch backend"),
]


@pytest.mark.parametrize(("case", "changes", "settings", "reason"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_a_version_that_cannot_serve_is_refused(store: Path, tmp_path: Path, case: str, changes: dict[str, Any],
                                                settings: dict[str, Any], reason: str) -> None:
    # GIVEN CURRENT naming a version the store accepts (it is self-consistent) but cannot be served
    bad = install(store, newer_version(store, tmp_path, **changes))
    # WHEN a manager starts on it
    manager = manager_for(store, Clock(), **settings)
    # THEN requests get 503 model_unavailable, saying which version and why
    with pytest.raises(ModelUnavailable) as refused:
        manager.current()
    assert bad in refused.value.message and reason in refused.value.message
    assert manager.describe()["state"] == "unavailable" and reason in str(manager.describe()["last_error"])


def test_a_refused_version_leaves_the_old_one_serving(store: Path, tmp_path: Path) -> None:
    clock = Clock()
    manager = manager_for(store, clock, refresh_seconds=1.0)
    v1 = manager.current().version
    bad = install(store, newer_version(store, tmp_path, labels=["cat", "dog"]))
    clock.now += 1
    assert manager.current().version == v1
    assert f"version {bad} could not be loaded" in str(manager.last_error)
    assert "model has 1000 outputs for 2 labels" in str(manager.last_error)


def tampered_labels(store: Path, version: str) -> str:
    """Rewrite the first label of an installed version, keeping the file's size; return the new label."""
    path = ModelStore(store).version_dir(NAME, version) / "labels.json"
    data = bytearray(path.read_bytes())
    first = data.index(b'"') + 1  # the first character of the first label
    data[first] = ord("Z") if data[first] != ord("Z") else ord("Y")
    path.unlink()  # a private copy: break the hard link, never edit the shared file
    path.write_bytes(bytes(data))
    return str(json.loads(data)[0])


def test_verify_on_load_hashes_every_artifact(store: Path) -> None:
    version = ModelStore(store).current(NAME)
    assert version is not None
    tampered_labels(store, version)
    with pytest.raises(ModelUnavailable, match=r"labels\.json sha256 does not match the manifest"):
        manager_for(store, Clock()).current()


def test_verify_on_load_off_checks_sizes_only(store: Path) -> None:
    # VERIFY_ON_LOAD=0 skips hashing (a faster cold start on a store one trusts) ...
    version = ModelStore(store).current(NAME)
    assert version is not None
    label = tampered_labels(store, version)
    settings = Settings.from_env({"MODEL_STORE": str(store), "VERIFY_ON_LOAD": "0"})
    assert settings.verify_on_load is False
    loaded = ModelManager(settings, clock=Clock()).current()
    assert loaded.version == version and loaded.labels[0] == label
    # ... but a file of the wrong size is still refused
    path = ModelStore(store).version_dir(NAME, version) / "labels.json"
    path.write_bytes(path.read_bytes() + b" ")
    with pytest.raises(ModelUnavailable, match=r"labels\.json has \d+ bytes, the manifest says"):
        ModelManager(settings, clock=Clock()).current()


# -- the cold start's preload (classifier.serving.preload) ----------------------------------------


def refuse_own_builds(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Make the manager's own backend build fail the test; the artifacts it was asked for."""
    asked: list[Path] = []

    def own_build(kind: str, artifact: Path, **kwargs: Any) -> Any:
        asked.append(artifact)
        raise AssertionError(f"the manager built {artifact} itself")

    monkeypatch.setattr(runtime, "load_backend", own_build)
    return asked


def test_the_first_load_serves_the_preloaded_session(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the session of the current version started building before the manager existed
    settings = Settings(model_store=store)
    early = preload.start(settings)
    assert early is not None
    # WHEN the manager's first load runs, unable to build a session of its own
    asked = refuse_own_builds(monkeypatch)
    manager = ModelManager(settings, clock=Clock())
    manager.load_in_background(early).join(DEADLOCK_GUARD_SECONDS)
    # THEN the version serves, on the preloaded session, verified as any load is
    loaded = manager.current()
    assert asked == [] and loaded.version == ModelStore(store).current(NAME)
    assert loaded.backend.num_classes == len(loaded.labels) == 1000
    # AND the session is taken once: a second claim gets nothing
    assert early.claim(early.artifact, threads=early.threads, spin=early.spin) is None


def test_a_preloaded_version_that_fails_its_checks_never_serves(store: Path) -> None:
    # GIVEN a current version whose labels were altered after publishing (same size, other bytes)
    version = ModelStore(store).current(NAME)
    assert version is not None
    tampered_labels(store, version)
    settings = Settings(model_store=store)
    early = preload.start(settings)
    assert early is not None  # the session builds: the model file itself is intact
    # WHEN the manager's first load takes it
    manager = ModelManager(settings, clock=Clock())
    manager.load_in_background(early).join(DEADLOCK_GUARD_SECONDS)
    # THEN the version is refused as it would be without a preload
    with pytest.raises(ModelUnavailable, match=r"labels\.json sha256 does not match the manifest"):
        manager.current()
    assert manager.loaded is None


def test_a_preload_of_a_version_no_longer_current_is_left_unclaimed(
        store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the session of v1 building, and v2 made current before the manager's first load
    settings = Settings(model_store=store)
    early = preload.start(settings)
    assert early is not None
    v2 = install(store, newer_version(store, tmp_path))
    built: list[Path] = []
    real_load_backend = runtime.load_backend

    def own_build(kind: str, artifact: Path, **kwargs: Any) -> Any:
        built.append(artifact)
        return real_load_backend(kind, artifact, **kwargs)

    monkeypatch.setattr(runtime, "load_backend", own_build)
    # WHEN the manager loads
    manager = ModelManager(settings, clock=Clock())
    manager.load_in_background(early).join(DEADLOCK_GUARD_SECONDS)
    # THEN it serves v2 on a session it built from v2's file, not v1's preloaded one
    assert manager.current().version == v2
    assert built == [ModelStore(store).version_dir(NAME, v2) / "model.onnx"]


def test_a_preload_whose_build_failed_raises_the_builds_error(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a current model file of the right size that ONNX Runtime cannot read, with hashing off
    version = ModelStore(store).current(NAME)
    assert version is not None
    path = ModelStore(store).version_dir(NAME, version) / "model.onnx"
    size = path.stat().st_size
    path.unlink()  # a private copy: break the hard link, never edit the shared file
    path.write_bytes(b"\xff" * size)
    settings = Settings(model_store=store, verify_on_load=False)
    early = preload.start(settings)
    assert early is not None
    # WHEN the manager's first load claims its session (and may not build one itself)
    asked = refuse_own_builds(monkeypatch)
    manager = ModelManager(settings, clock=Clock())
    manager.load_in_background(early).join(DEADLOCK_GUARD_SECONDS)
    # THEN the load fails with the preload's build error, as its own build would have, and nothing serves
    with pytest.raises(ModelUnavailable, match=rf"version {version} could not be loaded: .*ONNXRuntimeError"):
        manager.current()
    assert asked == [] and manager.loaded is None


def test_there_is_nothing_to_preload_without_an_onnx_current_version(tmp_path: Path, store: Path) -> None:
    assert preload.start(Settings(model_store=tmp_path / "empty")) is None
    assert preload.start(Settings(model_store=store, backend="torch")) is None
