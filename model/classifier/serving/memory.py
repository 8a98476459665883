"""The bound on the memory the loaded models of one process take (``MODEL_MEMORY_MB``).

A slot (``classifier.serving.manager.ModelManager``) reserves room for a version
before it loads it. When the models loaded, plus the loads in progress, plus this
one would pass the bound, the least recently used models of *other* slots are
unloaded first; once the load is done the bound is checked again (loads that ran
at the same time may each have found nothing yet to unload). A slot that is
loading or checking its ``CURRENT`` at that moment is passed over (its lock is
taken), so no request waits on another model here and none fails: a request
already serving on an unloaded model holds its own reference and finishes on it,
and the next request for that model loads it again.

A model counts as its backend artifact's size (``model.onnx`` or
``weights.safetensors``), which the manifest states before the load starts; what a
session really holds is measured in docs/architecture.md. A single model larger
than the bound still loads (everything else is unloaded first): refusing it would
make it unservable.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from classifier.serving.manager import ModelManager

log = logging.getLogger(__name__)


class MemoryBudget:
    """Keeps the models of a set of slots within ``limit_bytes`` (None: no bound) by unloading the least
    recently used."""

    def __init__(self, limit_bytes: int | None, slots: Sequence[ModelManager] = ()) -> None:
        self.limit_bytes = limit_bytes
        self._slots: list[ModelManager] = list(slots)
        self._reserved: dict[int, int] = {}  # id(slot) -> bytes of the load it is running
        self._lock = threading.Lock()

    def track(self, slot: ModelManager) -> None:
        """Count ``slot``'s model against the bound (and let the bound unload it)."""
        with self._lock:
            self._slots.append(slot)

    def in_use(self) -> int:
        """Bytes of the loaded models and of the loads in progress."""
        with self._lock:
            return self._in_use()

    @contextlib.contextmanager
    def reserve(self, slot: ModelManager, nbytes: int) -> Iterator[None]:
        """Room for ``slot`` to load ``nbytes`` more, held until the load ends (loaded or refused)."""
        with self._lock:
            if self.limit_bytes is not None:
                self._make_room(slot, nbytes)
            self._reserved[id(slot)] = nbytes
        try:
            yield
        finally:
            with self._lock:
                self._reserved.pop(id(slot), None)

    def settle(self, slot: ModelManager) -> None:
        """``slot`` has just loaded a model: unload others until the models are within the bound again."""
        if self.limit_bytes is None:
            return
        with self._lock:
            if self._make_room(slot, 0) > self.limit_bytes:
                log.warning("models over their memory bound", extra={
                    "model_name": slot.name, "bytes_in_use": self._in_use(), "bytes_limit": self.limit_bytes})

    def _in_use(self) -> int:
        loaded = sum(model.memory_bytes for slot in self._slots if (model := slot.loaded) is not None)
        return loaded + sum(self._reserved.values())

    def _make_room(self, slot: ModelManager, nbytes: int) -> int:
        """Unload other slots' models, least recently used first, until ``nbytes`` more fit; the bytes
        that would then be in use."""
        assert self.limit_bytes is not None
        in_use = self._in_use()
        # The slot loading is not its own victim (a hot swap keeps the old version serving until
        # the new one is ready).
        for victim in sorted((s for s in self._slots if s is not slot and s.loaded is not None),
                             key=lambda s: s.last_used):
            if in_use + nbytes <= self.limit_bytes:
                break
            dropped = victim.unload_if_idle()
            if dropped is not None:
                in_use -= dropped.memory_bytes
        return in_use + nbytes
