"""Stores for rollout tests: a current version, a candidate with the same labels, one with other labels."""

from __future__ import annotations

from pathlib import Path

from classifier.store.layout import ModelStore
from classifier.store.rollout import RolloutStore

from helpers.stores import derive_version, small_version

NAME = "resnet50"


class Versions:
    """A store holding a current version, a candidate with the same labels, and one with other labels."""

    def __init__(self, root: Path) -> None:
        self.store = ModelStore(root / "store")
        self.current = self._install(root / "v1", "v1", "2026-11-22T10:00:00Z", current=True)
        self.candidate = self._install(root / "v2", "v2", "2026-11-23T10:00:00Z")
        # Same count, other classes: installed as it was published, refused by start.
        relabelled = derive_version(root / "v1", root / "v3", labels=["cat", "purse", "spaceship"],
                                    created="2026-11-24T10:00:00Z")
        self.relabelled = self.store.install_dir(relabelled, make_current=False)
        self.rollouts = RolloutStore(self.store)

    def _install(self, where: Path, seed: str, created: str, current: bool = False) -> str:
        small_version(where, seed=seed, created=created)
        return self.store.install_dir(where, make_current=current)
