"""``make serve`` (scripts/serve.sh) never publishes over a store that has a model: it serves what is current."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from classifier.store.layout import ModelStore

from helpers import ROOT
from helpers.processes import free_port, wait_until
from helpers.stores import copy_store, small_version

NAME = "resnet50"
SCRIPT = ROOT / "scripts" / "serve.sh"


def add_old_versions(store: Path, tmp_path: Path, count: int) -> list[str]:
    """``count`` small versions from 2020 beside the current one, each with an evaluation, none current.

    Moved into place by rename, as an install ends (without its fsyncs: a thousand would take long)."""
    models = ModelStore(store)
    models.versions_dir(NAME).mkdir(parents=True, exist_ok=True)
    versions = []
    for i in range(count):
        created = f"2020-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"
        manifest = small_version(tmp_path / "old" / str(i), seed=str(i), created=created)
        os.rename(tmp_path / "old" / str(i), models.version_dir(NAME, manifest["version"]))
        models.save_evaluation(NAME, manifest["version"], f"{i:064x}",
                               {"created_at": created, "top1": 0.5, "images": 2,
                                "data": {"path": str(tmp_path / "data"), "sha256": f"{i:064x}", "images": 2}})
        versions.append(manifest["version"])
    return sorted(versions)


@contextmanager
def serve_script(store: Path, log_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """scripts/serve.sh as ``make serve`` runs it, with unbuffered Python (Docker's, CI's and IDEs' habit),
    the API alone on a free port; stopped with its children (its own process group)."""
    port = free_port()
    env = {**os.environ, "PY": sys.executable, "STORE": str(store), "PORT": str(port), "DASHBOARD": "0",
           "PYTHONUNBUFFERED": "1", "MODEL_REFRESH_SECONDS": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["bash", str(SCRIPT)], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                start_new_session=True)
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_a_restart_serves_the_current_model_of_a_store_of_many_versions(published_store: Path,
                                                                        tmp_path: Path) -> None:
    # GIVEN a store of 1,000 versions whose current one is a real model, listed first by `models`
    store = copy_store(published_store, tmp_path / "store")
    models = ModelStore(store)
    current = models.current(NAME)
    assert current is not None
    add_old_versions(store, tmp_path, 1000)
    versions, history = models.versions(NAME), models.history(NAME)
    # WHEN `make serve` starts over it with PYTHONUNBUFFERED=1
    log_path = tmp_path / "serve.log"
    with serve_script(store, log_path) as (proc, url):
        wait_until(lambda: httpx.get(f"{url}/health", timeout=5).status_code == 200, proc, log_path,
                   "scripts/serve.sh", timeout=300)
        served = httpx.get(f"{url}/model", timeout=30).json()
    # THEN it serves that version, and published nothing: no new version, CURRENT and its history untouched
    log = log_path.read_text(errors="replace")
    assert served["version"] == current, log
    assert models.versions(NAME) == versions and models.current(NAME) == current
    assert models.history(NAME) == history
    assert f"Serving {current}, the current version in {store}" in log and "publishing" not in log


@pytest.mark.parametrize("damage", ["no current version", "a CURRENT that names no version"])
def test_a_store_with_versions_but_no_usable_current_is_not_published_into(tmp_path: Path, damage: str) -> None:
    # GIVEN a store holding versions but nothing current, or a CURRENT that cannot be read
    store = tmp_path / "store"
    versions = add_old_versions(store, tmp_path, 3)
    if damage == "a CURRENT that names no version":
        (store / "models" / NAME / "CURRENT").write_text("garbage\n")
    # WHEN `make serve` starts
    log_path = tmp_path / "serve.log"
    with serve_script(store, log_path) as (proc, _):
        code = proc.wait(120)
    # THEN it stops with the reason and publishes nothing
    log = log_path.read_text(errors="replace")
    assert code == 2, log
    assert ModelStore(store).versions(NAME) == versions and "publishing" not in log
    assert "Not serving: the store needs a decision first" in log
    reason = ("holds 3 version(s) of resnet50 but none is current" if damage == "no current version"
              else "CURRENT holds an invalid version 'garbage'")
    assert reason in log
