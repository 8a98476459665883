"""A cold start's first move: build the default model's ONNX Runtime session while the runtime imports.

``classifier.handler`` calls ``start`` right after reading its settings, before the
rest of the runtime (the model slots, the web layer, Powertools) is imported: the
session build releases the GIL and runs on its own thread while those imports hold it
(docs/performance.md, "Cold start at its floor").

The default model's slot takes the session at its first load (``Preload.claim``),
after the load's own checks (the manifest, the preprocessing's bounds, the artifact's
size and sha256) and only if it was built from the very file, with the very threads,
that load would have used: nothing is served from a session the checks did not pass.
When ``CURRENT`` moved meanwhile, or the backend is torch, or no version is current,
there is no preload (or it is left unclaimed) and the slot builds its own, as it would
have without one.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from classifier.config import Settings
from classifier.serving.cpu import serving_plan
from classifier.store.layout import ModelStore
from classifier.store.manifest import BACKEND_ARTIFACT, StoreError
from classifier.store.preprocessing import normalize_preprocessing, spec_input_shape

if TYPE_CHECKING:
    from classifier.serving.backends.onnx_backend import OnnxBackend


class Preload:
    """One ONNX Runtime session being built on a thread, for whoever claims it with the same arguments."""

    def __init__(self, artifact: Path, *, threads: int, spin: bool, shape: tuple[int, ...]) -> None:
        # numpy and onnxruntime are imported here, on the calling thread: imports hold the GIL.
        from classifier.serving.backends.onnx_backend import OnnxBackend

        self.artifact, self.threads, self.spin = artifact, threads, spin
        self._backend: OnnxBackend | None = None
        self._error: Exception | None = None
        self._claimed = False
        # Not a daemon: a process that exits during the build waits for it rather than aborting inside ORT.
        self._thread = threading.Thread(target=self._build, args=(OnnxBackend, shape), name="model-preload")
        self._thread.start()

    def _build(self, backend: type[OnnxBackend], shape: tuple[int, ...]) -> None:
        try:
            self._backend = backend(self.artifact, threads=self.threads, spin=self.spin, input_shape=shape)
        except Exception as exc:  # raised to the load that claims it, as its own build would have
            self._error = exc

    def claim(self, artifact: Path, *, threads: int, spin: bool) -> OnnxBackend | None:
        """The session built from ``artifact`` with these threads, once it is built; None if it was built
        for other arguments or was claimed already. Raises what the build raised."""
        if self._claimed or (artifact, threads, spin) != (self.artifact, self.threads, self.spin):
            return None
        self._claimed = True
        self._thread.join()
        backend, error, self._backend, self._error = self._backend, self._error, None, None
        if error is not None:
            raise error
        return backend


def start(settings: Settings) -> Preload | None:
    """Start building the session of ``MODEL_NAME``'s current version (the onnx backend); None when there
    is nothing to build now: the slot's load then finds out why and says so."""
    if settings.backend != "onnx":
        return None
    store, name = ModelStore(settings.model_store), settings.model_name
    try:
        version = store.current(name)
        if version is None:
            return None
        spec = normalize_preprocessing(store.manifest(name, version)["preprocessing"])
    except (StoreError, OSError, ValueError, KeyError, TypeError):
        return None
    plan = serving_plan(settings)
    return Preload(store.version_dir(name, version) / BACKEND_ARTIFACT["onnx"], threads=plan.threads,
                   spin=plan.spin, shape=spec_input_shape(spec))
