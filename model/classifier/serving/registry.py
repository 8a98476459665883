"""The models one process serves (``MODELS``): a slot each, made on first use, sharing one memory bound.

``MODELS`` lists names, or is ``*`` for every model of the store; ``MODEL_NAME`` is
the default model (``POST /classify``) and always among them. Each name gets a
``ModelManager`` (its slot: loaded once, hot-swapped on its own ``CURRENT``) when
first asked for, and a model loads on its first request; only the default model
loads at start-up. The slots share a ``MemoryBudget`` (``MODEL_MEMORY_MB``) and one
thread plan: with more than one model possible, sessions are built with spinning
off (``classifier.serving.cpu.plan_threads``).

This is the seam for anything that serves more than one version of a name (a
rollout's candidate): it belongs in the name's slot, which the registry owns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from classifier.config import MODEL_NAME_RE, MiB, Settings
from classifier.errors import NotFound
from classifier.serving.cpu import serving_plan
from classifier.serving.manager import ModelManager
from classifier.serving.memory import MemoryBudget
from classifier.store.layout import ModelStore
from classifier.store.manifest import StoreError, precision


class ModelRegistry:
    """The served models by name; ``default`` is ``MODEL_NAME``'s slot."""

    def __init__(self, settings: Settings, store: ModelStore | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.store = store or ModelStore(settings.model_store)
        self._clock = clock
        self.plan = serving_plan(settings)
        limit = settings.model_memory_mb
        self.memory = MemoryBudget(None if limit is None else limit * MiB)
        self._slots: dict[str, ModelManager] = {}
        self._lock = threading.Lock()
        self.default = self._slot(settings.model_name)

    def names(self) -> list[str]:
        """The names served: ``MODELS`` as listed (the default model first), or the store's models for ``*``."""
        if not self.settings.every_model:
            listed = self.settings.served_models
            return [self.settings.model_name, *(name for name in listed if name != self.settings.model_name)]
        try:
            stored = self.store.names()
        except OSError:
            stored = []
        return [self.settings.model_name, *(name for name in stored if name != self.settings.model_name)]

    def slot(self, name: str) -> ModelManager:
        """The slot of a served model; 404 ``not_found`` for any other name."""
        if not self.serves(name):
            raise NotFound(f"no model named {name[:100]!r} is served here (GET /models lists them)")
        return self._slot(name)

    def serves(self, name: str) -> bool:
        if name == self.settings.model_name or name in self._slots:
            return True
        if not self.settings.every_model:
            return name in self.settings.served_models
        # Every model of the store, one published since start-up too (GET /models lists the same).
        return MODEL_NAME_RE.fullmatch(name) is not None and self.store.model_dir(name).is_dir()

    def summaries(self) -> list[dict[str, Any]]:
        """``GET /models``: each served model's version, architecture, precision, label count, load state.

        A loaded model is described by the version it serves; another by the version its
        ``CURRENT`` names (what its first request would load). Nothing is loaded here.
        """
        return [self._summary(name) for name in self.names()]

    def _summary(self, name: str) -> dict[str, Any]:
        slot = self._slots.get(name)
        loaded = slot.loaded if slot is not None else None
        entry: dict[str, Any] = {"name": name, "version": None, "architecture": None, "precision": None,
                                 "labels": None, "loaded": loaded is not None}
        try:
            if loaded is not None:
                version, manifest = loaded.version, loaded.manifest
            else:
                current = self.store.current(name)
                if current is None:
                    return {**entry, "problem": "no version is published"}
                version, manifest = current, self.store.manifest(name, current)
        except (StoreError, OSError) as exc:
            return {**entry, "problem": str(exc)}
        return {**entry, "version": version, "architecture": manifest.get("architecture"),
                "precision": precision(manifest), "labels": manifest["labels"]["count"]}

    def _slot(self, name: str) -> ModelManager:
        with self._lock:
            slot = self._slots.get(name)
            if slot is None:
                slot = ModelManager(self.settings, self.store, self._clock, name=name, plan=self.plan,
                                    memory=self.memory)
                self.memory.track(slot)
                self._slots[name] = slot
            return slot
