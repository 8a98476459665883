"""Switches of CURRENT from several processes at once (installer invocations, a promotion beside a
publish): the history loses none, in the order they happened."""

from __future__ import annotations

import itertools
import multiprocessing
from pathlib import Path

from classifier.store.layout import ModelStore

from helpers.stores import small_version

NAME = "resnet50"
SWITCHES_EACH = 100


def switch_repeatedly(root: str, version: str, start: multiprocessing.synchronize.Event) -> None:
    start.wait(60)
    models = ModelStore(root)
    for _ in range(SWITCHES_EACH):
        models.set_current(NAME, version, reason="promote")


def test_switches_from_many_processes_chain(tmp_path: Path) -> None:
    # GIVEN three versions, and a process per version switching to it over and over, all at once
    models = ModelStore(tmp_path / "store")
    versions = []
    for i, date in enumerate(("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z")):
        small_version(tmp_path / str(i), seed=date, created=date)
        versions.append(models.install_dir(tmp_path / str(i), make_current=False))
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [context.Process(target=switch_repeatedly, args=(str(models.root), v, start)) for v in versions]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0, 0, 0]
    # THEN every recorded switch starts where the one before ended, numbered without a gap,
    # and the last one is what CURRENT says
    history = models.history(NAME)
    assert len(history) >= len(versions)
    assert [s.n for s in history] == list(range(1, len(history) + 1))
    assert all(later.previous == earlier.version for earlier, later in itertools.pairwise(history))
    assert history[0].previous is None and history[-1].version == models.current(NAME)
