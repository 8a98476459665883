"""One served model: loaded once per process, hot-swapped when its CURRENT changes.

A ``ModelManager`` is the slot of one model name. ``current()`` is called by every
request for that model. It re-reads ``CURRENT`` at most every ``refresh_seconds``;
when the version changed it loads and verifies the new one *before* swapping the
reference, so requests in flight finish on the old model, and a broken version
leaves the old one serving. Only one request pays for a load; the others keep
using the old model. A process serving several models has one slot per model
(``classifier.serving.registry``), which may unload a slot's model to keep the
models within their memory bound: the slot then loads it again on its next request.

A cold start overlaps the model load with the web framework's imports:
``load_in_background`` starts the first load on a thread before ``api`` is
imported. Reading and hashing the artifact and building the ONNX Runtime
session release the GIL, so they run while the main thread imports the web layer
(Starlette, Mangum).
This module imports nothing heavy itself (numpy, PIL and the backend are
imported by the loading thread).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from classifier.config import Settings
from classifier.errors import ModelUnavailable
from classifier.serving.backends import Backend, import_backend, load_backend
from classifier.serving.cpu import ThreadPlan, plan_threads
from classifier.serving.rollout_slot import RolloutSlot, Route
from classifier.store.layout import ModelStore
from classifier.store.manifest import (
    BACKEND_ARTIFACT,
    ONNX_ARCHITECTURE,
    IntegrityError,
    StoreError,
    architecture,
    check_artifact,
    precision,
)
from classifier.store.preprocessing import normalize_preprocessing, spec_input_shape

if TYPE_CHECKING:
    from pathlib import Path

    from classifier.serving.imaging import Preprocessing
    from classifier.serving.preload import Preload

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    manifest: dict[str, Any]
    labels: list[str]
    preprocessing: Preprocessing
    backend: Backend
    load_ms: float
    # What the model holds in memory, as the memory bound counts it: its backend artifact's size
    # (docs/architecture.md, "Several models").
    memory_bytes: int = 0
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def trained(self) -> bool:
        return bool(self.manifest.get("trained"))

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "backend": self.backend.name, "trained": self.trained}


def _release_free_memory() -> None:
    """Return the heap ORT freed while building a session to the OS (glibc only).

    Building a session allocates transient copies of the weights; glibc keeps
    the freed pages, which would otherwise count against the Lambda's memory.
    ``CDLL(None)`` is the process's own symbol table, where glibc's
    ``malloc_trim`` already is: ``ctypes.util.find_library`` would start a
    subprocess (``ldconfig -p``) on every load to find the same library.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        ctypes.CDLL(None).malloc_trim(0)


def artifact_bytes(manifest: dict[str, Any], backend_kind: str) -> int:
    """The size of the artifact ``backend_kind`` serves a version from: what a loaded model is counted as."""
    artifact = manifest["artifacts"].get(BACKEND_ARTIFACT[backend_kind])
    return int(artifact["bytes"]) if artifact else 0


class MemoryAdmission(Protocol):
    """The models' memory bound, as a slot meets it: room before a load, the bound again after."""

    def reserve(self, slot: ModelManager, nbytes: int) -> AbstractContextManager[None]:
        """Make room for ``nbytes`` more (unloading other slots' models) for as long as the load runs."""
        ...

    def settle(self, slot: ModelManager) -> None:
        """``slot`` loaded a model: unload others' until the bound holds again."""
        ...


class ModelManager:
    """The slot of one model name: its loaded version, hot-swapped on its own CURRENT."""

    def __init__(
        self,
        settings: Settings,
        store: ModelStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        name: str | None = None,
        plan: ThreadPlan | None = None,
        memory: MemoryAdmission | None = None,
    ) -> None:
        self.settings = settings
        self.name = name or settings.model_name
        self.store = store or ModelStore(settings.model_store)
        self.plan = plan or plan_threads(settings.threads, spinning=settings.spinning)
        self.threads = self.plan.threads
        self._clock = clock
        self._memory = memory
        self._preload: Preload | None = None  # the cold start's session, for the first load (load_in_background)
        self._loaded: LoadedModel | None = None
        # Held while CURRENT is checked and a version loads, and by whoever unloads the model.
        self._lock = threading.Lock()
        self._next_check = 0.0
        self._failed: tuple[str, float] | None = None  # (version, retry after)
        self.last_error: str | None = None
        # When a request last asked for this model: the memory bound unloads the least recent first.
        self.last_used = clock()
        # A running rollout's candidate, loaded beside the current version (classifier.serving.rollout_slot),
        # within the same memory bound.
        self.rollout = RolloutSlot(self.name, self.store, settings, self._admitted_load)

    # -- public ----------------------------------------------------------------
    def load_in_background(self, preload: Preload | None = None) -> threading.Thread:
        """Start the first load now, on a thread; ``current()`` waits for it.

        ``preload`` is the session ``classifier.serving.preload.start`` began building
        before this module was imported: the load takes it if it was built for the
        version it loads, once that version passed its checks. The backend's modules
        (numpy, onnxruntime) are imported here, on the calling thread, before the
        thread starts. Imports hold the GIL: done on the thread, they would take turns
        with the caller's own imports (the web layer). Nothing else the load needs is
        imported before the build starts: the imaging module (Pillow, hashlib) is
        imported by the caller's web layer meanwhile (docs/performance.md, "Cold start
        at its floor")."""
        self._preload = preload
        import_backend(self.settings.backend)

        # Not a daemon: a process that exits during the load (a script that only
        # imports the handler) waits for it rather than aborting inside ORT.
        thread = threading.Thread(target=self.refresh, name="model-load")
        thread.start()
        return thread

    def current(self) -> LoadedModel:
        """The model to serve this request with; raises ``ModelUnavailable``.

        The model returned serves the whole request, even if the slot swaps or
        unloads it meanwhile: the request holds its own reference.
        """
        self.last_used = self._clock()
        loaded = self.refresh()
        if loaded is None:
            raise ModelUnavailable(self.last_error or "no model is loaded")
        return loaded

    def route(self, routing_key: str | None) -> Route:
        """Where a request goes: the current version, or during a rollout the candidate (canary) or the
        current version with the candidate in its shadow; raises ``ModelUnavailable`` as ``current()``."""
        return self.rollout.route(self.current(), routing_key)

    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    @property
    def memory_bytes(self) -> int:
        """What this slot's models hold, as the memory bound counts it: the current version and a
        rollout's candidate beside it."""
        loaded, candidate = self._loaded, self.rollout.candidate
        return (loaded.memory_bytes if loaded else 0) + (candidate.memory_bytes if candidate else 0)

    def refresh(self, force: bool = False) -> LoadedModel | None:
        """Load the version named by CURRENT if it changed (rate-limited); the model serving now, if any."""
        now = self._clock()
        loaded = self._loaded
        if not force and loaded is not None and now < self._next_check:
            return loaded
        # With a model loaded, a concurrent request does not wait for a load
        # in progress: it serves on the old model. Without one it must wait.
        if not self._lock.acquire(blocking=loaded is None or force):
            return loaded
        try:
            loaded = self._loaded  # another request may have loaded it, or the memory bound unloaded it
            if not force and loaded is not None and now < self._next_check:
                return loaded
            self._next_check = now + self.settings.refresh_seconds
            self._refresh_locked(now)
            return self._loaded
        finally:
            self._lock.release()

    def unload_if_idle(self) -> LoadedModel | None:
        """Drop the loaded model unless a load or a check of CURRENT is running; the model dropped, if any.

        Requests serving on it keep their reference and finish on it; its memory is
        freed when the last of them does.
        """
        if not self._lock.acquire(blocking=False):
            return None
        try:
            dropped, self._loaded = self._loaded, None
            self.rollout.unload()  # a candidate never serves without its current version
        finally:
            self._lock.release()
        if dropped is not None:
            log.info("model unloaded", extra={"model_name": self.name, "model_version": dropped.version,
                                              "reason": "memory bound"})
        return dropped

    def describe(self) -> dict[str, Any]:
        """``GET /model``'s answer: the load state, and the loaded version's manifest."""
        loaded = self._loaded
        state: dict[str, Any] = {
            "state": "loaded" if loaded else "unavailable",
            "backend": self.settings.backend,
            "threads": self.threads,
            "spinning": self.plan.spin,
            "cpu_share": self.plan.share,
            "refresh_seconds": self.settings.refresh_seconds,
            "last_error": self.last_error,
        }
        if loaded:
            state.update(
                name=loaded.name,
                version=loaded.version,
                trained=loaded.trained,
                loaded_at=loaded.loaded_at,
                load_ms=round(loaded.load_ms, 1),
                manifest=loaded.manifest,
            )
        rollout = self.rollout.describe()
        if rollout is not None:
            state["rollout"] = rollout
        return state

    # -- internals -------------------------------------------------------------
    def _refresh_locked(self, now: float) -> None:
        # The judge first: a promotion it makes is served from this refresh on.
        self.rollout.judge_if_due(now)
        self._refresh_current(now)
        self.rollout.refresh(self._loaded)
        if self._memory is not None and self.rollout.candidate is not None:
            self._memory.settle(self)  # the candidate counts too: others' models may have to go

    def _refresh_current(self, now: float) -> None:
        name = self.name
        try:
            version = self.store.current(name)
        except (StoreError, OSError) as exc:
            self._fail(None, f"cannot read {name}/CURRENT: {exc}", now)
            return
        if version is None:
            self.last_error = f"no model named {name!r} is published in the store"
            return
        loaded = self._loaded
        if loaded is not None and loaded.version == version:
            # CURRENT names the serving version again (say, rolled back after a refused one):
            # an earlier failure no longer describes the service.
            self._failed = None
            self.last_error = None
            return
        if self._failed and self._failed[0] == version and now < self._failed[1]:
            return
        try:
            # A rollout's promoted candidate is loaded already: it serves without a second load.
            new = self.rollout.adopt(version) or self._admitted_load(version)
        except Exception as exc:  # a broken version must never take the service down
            self._fail(version, f"version {version} could not be loaded: {exc}", now)
            return
        self._loaded = new
        self._failed = None
        self.last_error = None
        if self._memory is not None:
            self._memory.settle(self)
        log.info(
            "model loaded",
            extra={"model_name": name, "model_version": version,
                   "previous_version": loaded.version if loaded else None,
                   "backend": new.backend.name, "load_ms": round(new.load_ms, 1), "threads": self.threads},
        )

    def _admitted_load(self, version: str) -> LoadedModel:
        """``load``, within the memory bound when the slot has one."""
        if self._memory is None:
            return self.load(version)
        nbytes = artifact_bytes(self.store.manifest(self.name, version), self.settings.backend)
        with self._memory.reserve(self, nbytes):
            return self.load(version)

    def _fail(self, version: str | None, message: str, now: float) -> None:
        self.last_error = message
        if version is not None:
            # Retry a broken version only occasionally (it may have been a
            # transient EFS error); a new CURRENT is tried immediately.
            self._failed = (version, now + max(self.settings.refresh_seconds, 1.0))
        log.error(message, extra={"model_name": self.name, "model_version": version,
                                  "serving_version": self._loaded.version if self._loaded else None})

    def load(self, version: str) -> LoadedModel:
        """Load and verify ``version``; the current model is untouched on failure."""
        start = time.perf_counter()
        name = self.name
        backend_kind = self.settings.backend
        manifest = self.store.manifest(name, version)
        vdir = self.store.version_dir(name, version)
        where = f"{name} {version}"
        if backend_kind != "onnx" and precision(manifest) == "int8":
            raise IntegrityError(f"{where} is an int8 version: only the onnx backend serves int8 models "
                                 "(set BACKEND=onnx, or make an fp32 version current)")
        if backend_kind != "onnx" and architecture(manifest) == ONNX_ARCHITECTURE:
            raise IntegrityError(f"{where} was published from an ONNX file: only the onnx backend serves it "
                                 "(set BACKEND=onnx, or make a version built from torchvision current)")
        # The preprocessing is checked against its bounds before anything large is read: a version
        # whose manifest asks for a 100000-pixel resize is refused here, not at its first request.
        try:
            spec = normalize_preprocessing(manifest["preprocessing"])
        except ValueError as exc:
            raise IntegrityError(f"{where}: {exc}") from None
        artifact = BACKEND_ARTIFACT[backend_kind]
        expected = manifest["artifacts"]
        if artifact not in expected:
            raise IntegrityError(f"{where} has no {artifact} for the {backend_kind} backend")
        # Verify the (large) artifact and the labels on a second thread while the
        # backend builds from the same file: the page cache serves both reads, hashlib
        # and ONNX Runtime release the GIL, so verification costs ~no extra time, and
        # the build starts at once. The backend is only returned, and so only ever
        # serves, if both match.
        preload, self._preload = self._preload, None
        with ThreadPoolExecutor(1, thread_name_prefix="model-verify") as pool:
            verified = pool.submit(self._verified_labels, vdir, manifest, artifact, where)
            try:
                backend = (preload and preload.claim(vdir / artifact, threads=self.threads, spin=self.plan.spin)) \
                    or load_backend(backend_kind, vdir / artifact, threads=self.threads, spin=self.plan.spin,
                                    input_shape=spec_input_shape(spec),
                                    architecture=architecture(manifest),
                                    torchvision_kwargs=_torchvision_kwargs(manifest))
            finally:
                labels = verified.result()  # raises IntegrityError on a mismatch
        from classifier.serving.imaging import Preprocessing  # imported by the web layer meanwhile

        preprocessing = Preprocessing.from_manifest(spec)
        # The output width is checked from the graph's metadata, not by a
        # warm-up forward pass: ONNX Runtime's first run is no slower than the
        # next (measured), so a probe would only add a forward pass to every cold
        # start. Publishing already ran the model on a real photo.
        if backend.num_classes != len(labels):
            raise IntegrityError(f"{where}: model has {backend.num_classes} outputs for {len(labels)} labels")
        _release_free_memory()
        return LoadedModel(name, version, manifest, labels, preprocessing, backend,
                           (time.perf_counter() - start) * 1000, artifact_bytes(manifest, backend_kind))

    def _verified_labels(self, vdir: Path, manifest: dict[str, Any], artifact: str, where: str) -> list[str]:
        """Check the backend's artifact and labels.json against the manifest; the labels."""
        expected, verify = manifest["artifacts"], self.settings.verify_on_load
        check_artifact(vdir / artifact, expected[artifact], where, hash_it=verify)
        check_artifact(vdir / "labels.json", expected["labels.json"], where, hash_it=verify)
        labels = json.loads((vdir / "labels.json").read_bytes())
        if not isinstance(labels, list) or len(labels) != manifest["labels"]["count"]:
            raise IntegrityError(f"{where}: labels.json does not hold {manifest['labels']['count']} labels")
        return labels


def _torchvision_kwargs(manifest: dict[str, Any]) -> Any:
    """The builder arguments a torchvision version recorded (None for a manifest from before they were)."""
    recorded = manifest.get("torchvision")
    return recorded.get("kwargs") if isinstance(recorded, dict) else None
