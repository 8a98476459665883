"""The serving model: loaded once per process, hot-swapped when CURRENT changes.

``ModelManager.current()`` is called by every request. It re-reads ``CURRENT``
at most every ``refresh_seconds``; when the version changed it loads and
verifies the new one *before* swapping the reference, so requests in flight
finish on the old model, and a broken version leaves the old one serving.
Only one request pays for a load; the others keep using the old model.

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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from classifier.config import Settings
from classifier.errors import ModelUnavailable
from classifier.serving.backends import Backend, load_backend
from classifier.serving.cpu import plan_threads
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

if TYPE_CHECKING:
    from classifier.serving.imaging import Preprocessing

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


class ModelManager:
    def __init__(
        self,
        settings: Settings,
        store: ModelStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.store = store or ModelStore(settings.model_store)
        self.plan = plan_threads(settings.threads)
        self.threads = self.plan.threads
        self._clock = clock
        self._loaded: LoadedModel | None = None
        self._lock = threading.Lock()
        self._next_check = 0.0
        self._failed: tuple[str, float] | None = None  # (version, retry after)
        self.last_error: str | None = None

    # -- public ----------------------------------------------------------------
    def load_in_background(self) -> threading.Thread:
        """Start the first load now, on a thread; ``current()`` waits for it."""
        # Not a daemon: a process that exits during the load (a script that only
        # imports the handler) waits for it rather than aborting inside ORT.
        thread = threading.Thread(target=self.refresh, name="model-load")
        thread.start()
        return thread

    def current(self) -> LoadedModel:
        """The model to serve this request with; raises ``ModelUnavailable``."""
        self.refresh()
        loaded = self._loaded
        if loaded is None:
            raise ModelUnavailable(self.last_error or "no model is loaded")
        return loaded

    @property
    def loaded(self) -> LoadedModel | None:
        return self._loaded

    def refresh(self, force: bool = False) -> None:
        """Load the version named by CURRENT if it changed (rate-limited)."""
        now = self._clock()
        if not force and self._loaded is not None and now < self._next_check:
            return
        # With a model loaded, a concurrent request does not wait for a load
        # in progress: it serves on the old model. Without one it must wait.
        if not self._lock.acquire(blocking=self._loaded is None or force):
            return
        try:
            if not force and self._loaded is not None and now < self._next_check:
                return
            self._next_check = now + self.settings.refresh_seconds
            self._refresh_locked(now)
        finally:
            self._lock.release()

    def describe(self) -> dict[str, Any]:
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
        return state

    # -- internals -------------------------------------------------------------
    def _refresh_locked(self, now: float) -> None:
        name = self.settings.model_name
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
            new = self.load(version)
        except Exception as exc:  # a broken version must never take the service down
            self._fail(version, f"version {version} could not be loaded: {exc}", now)
            return
        self._loaded = new
        self._failed = None
        self.last_error = None
        log.info(
            "model loaded",
            extra={"model_version": version, "previous_version": loaded.version if loaded else None,
                   "backend": new.backend.name, "load_ms": round(new.load_ms, 1), "threads": self.threads},
        )

    def _fail(self, version: str | None, message: str, now: float) -> None:
        self.last_error = message
        if version is not None:
            # Retry a broken version only occasionally (it may have been a
            # transient EFS error); a new CURRENT is tried immediately.
            self._failed = (version, now + max(self.settings.refresh_seconds, 1.0))
        log.error(message, extra={"model_version": version,
                                  "serving_version": self._loaded.version if self._loaded else None})

    def load(self, version: str) -> LoadedModel:
        """Load and verify ``version``; the current model is untouched on failure."""
        from classifier.serving.imaging import Preprocessing

        start = time.perf_counter()
        name = self.settings.model_name
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
            preprocessing = Preprocessing.from_manifest(manifest["preprocessing"])
        except ValueError as exc:
            raise IntegrityError(f"{where}: {exc}") from None
        artifact = BACKEND_ARTIFACT[backend_kind]
        expected = manifest["artifacts"]
        if artifact not in expected:
            raise IntegrityError(f"{where} has no {artifact} for the {backend_kind} backend")
        verify = self.settings.verify_on_load
        check_artifact(vdir / "labels.json", expected["labels.json"], where, hash_it=verify)
        labels = json.loads((vdir / "labels.json").read_bytes())
        if not isinstance(labels, list) or len(labels) != manifest["labels"]["count"]:
            raise IntegrityError(f"{where}: labels.json does not hold {manifest['labels']['count']} labels")
        # Hash the (large) artifact on a second thread while the backend builds
        # from the same file: the page cache serves both reads, hashlib and
        # ONNX Runtime release the GIL, so verification costs ~no extra time.
        # The backend is only returned, and so only ever serves, if it matches.
        with ThreadPoolExecutor(1, thread_name_prefix="model-verify") as pool:
            verified = pool.submit(check_artifact, vdir / artifact, expected[artifact], where, hash_it=verify)
            try:
                backend = load_backend(backend_kind, vdir / artifact, threads=self.threads, spin=self.plan.spin,
                                       input_shape=preprocessing.input_shape, architecture=architecture(manifest),
                                       torchvision_kwargs=_torchvision_kwargs(manifest))
            finally:
                verified.result()  # raises IntegrityError on a mismatch
        # The output width is checked from the graph's metadata, not by a
        # warm-up forward pass: ONNX Runtime's first run is no slower than the
        # next (measured), so a probe would only add a forward pass to every cold
        # start. Publishing already ran the model on a real photo.
        if backend.num_classes != len(labels):
            raise IntegrityError(f"{where}: model has {backend.num_classes} outputs for {len(labels)} labels")
        _release_free_memory()
        return LoadedModel(name, version, manifest, labels, preprocessing, backend,
                           (time.perf_counter() - start) * 1000)


def _torchvision_kwargs(manifest: dict[str, Any]) -> Any:
    """The builder arguments a torchvision version recorded (None for a manifest from before they were)."""
    recorded = manifest.get("torchvision")
    return recorded.get("kwargs") if isinstance(recorded, dict) else None
