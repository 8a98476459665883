"""Model updates while serving: a new version is picked up without failing a
request, a corrupt one is refused while the old keeps serving, rollback works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from classifier.store.layout import ModelStore

from helpers.photos import jpeg
from helpers.processes import live_server
from helpers.stores import export_version, publish, with_new_identity

REFRESH_SECONDS = 1.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120) -> float:
    """Poll ``condition`` until it holds; return how long that took, or fail saying what never happened."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout}s")


def model_state(url: str) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(url + "/model", timeout=30).json()
    return state


def wait_for_version(url: str, version: str, timeout: float = 120) -> float:
    """Poll /model until it serves ``version``; return how long that took."""
    return wait_for(lambda: model_state(url).get("version") == version, f"{version} was not served", timeout)


class Hammer(threading.Thread):
    """Classifies a photo in a loop and remembers every status and model version."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.results: list[tuple[int, str | None]] = []
        self.data = jpeg("coffee")

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stop.is_set():
                r = client.post("/classify", content=self.data, headers={"content-type": "image/jpeg"})
                version = r.json().get("model", {}).get("version") if r.status_code == 200 else None
                self.results.append((r.status_code, version))


def cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "classifier", *args], check=True, capture_output=True, text=True)
    return out.stdout


def test_publish_corrupt_and_rollback_while_serving(store: Path, tmp_path: Path) -> None:
    models = ModelStore(store)
    v1 = models.current("resnet50")
    assert v1 is not None
    with live_server(store, tmp_path, env={"MODEL_REFRESH_SECONDS": str(REFRESH_SECONDS)}) as server:
        hammer = Hammer(server.url)
        hammer.start()
        try:
            # WHEN a new version is published while requests are being answered
            v2 = publish(store, "random")
            delay = wait_for_version(server.url, v2)
            print(f"new version served {delay:.2f}s after publish (refresh every {REFRESH_SECONDS}s)")
            # and the hammer's own requests have been answered by v2 a few times (none flips back)
            wait_for(lambda: [version for _, version in hammer.results].count(v2) >= 3,
                     "three classifications were not answered by v2")
        finally:
            hammer.stop.set()
            hammer.join(60)
        # THEN no request failed, and requests moved from v1 to v2 exactly once
        statuses = [status for status, _ in hammer.results]
        versions = [version for _, version in hammer.results]
        assert statuses and set(statuses) == {200}
        assert versions[0] == v1 and versions[-1] == v2
        switch = versions.index(v2)
        assert set(versions[:switch]) == {v1} and set(versions[switch:]) == {v2}

        # WHEN CURRENT points at a version whose model.onnx is corrupt (bit rot, bad copy)
        v3_dir = with_new_identity(export_version(models, v2, tmp_path / "v2"), tmp_path / "v3",
                                   created="2031-01-01T00:00:00Z")
        onnx = v3_dir / "model.onnx"
        data = bytearray(onnx.read_bytes())
        data[len(data) // 2] ^= 0xFF
        onnx.unlink()
        onnx.write_bytes(bytes(data))
        v3 = json.loads((v3_dir / "manifest.json").read_text())["version"]
        os.rename(v3_dir, models.version_dir("resnet50", v3))
        (store / "models" / "resnet50" / "CURRENT").write_text(v3 + "\n")
        # THEN it is refused: the old model keeps serving and /model says why
        refused = f"version {v3} could not be loaded"
        wait_for(lambda: refused in str(model_state(server.url).get("last_error")), f"{v3} was not refused", 60)
        state = model_state(server.url)
        assert state["state"] == "loaded" and state["version"] == v2
        assert "sha256" in str(state["last_error"])
        assert models.current("resnet50") == v3  # the refusal leaves CURRENT alone: it is the operator's
        ok = httpx.post(server.url + "/classify", content=jpeg("chelsea"), headers={"content-type": "image/jpeg"})
        assert ok.status_code == 200 and ok.json()["model"]["version"] == v2
        errors = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
        assert any(e["level"] == "ERROR" and e.get("model_version") == v3 for e in errors)

        # WHEN an operator rolls back (default: the version before current) twice
        assert v2 in cli("rollback", "--store", str(store))
        assert models.current("resnet50") == v2
        # THEN the server, which never stopped serving v2, reads the new CURRENT: v2 serves with
        # nothing wrong, and v3's refusal is no longer reported
        wait_for(lambda: model_state(server.url).get("last_error") is None, "v3's error was still reported", 60)
        assert model_state(server.url)["version"] == v2
        assert v1 in cli("rollback", "--store", str(store))
        # THEN the first version serves again
        wait_for_version(server.url, v1)
        listing = cli("models", "--store", str(store))
        assert f"* {v1}" in listing and v2 in listing and v3 in listing
