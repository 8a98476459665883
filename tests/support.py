"""Test helpers shared by the suites: real photos, a real server on loopback."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from classifier.fsio import sha256_file
from classifier.store import ModelStore, make_version

ROOT = Path(__file__).resolve().parents[1]


def photo(name: str) -> Image.Image:
    """A CC0 photograph shipped with scikit-image: chelsea, coffee, astronaut, rocket."""
    from skimage import data

    return Image.fromarray(getattr(data, name)())


def encode(image: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def jpeg(name: str, quality: int = 92) -> bytes:
    return encode(photo(name), "JPEG", quality=quality)


def big_jpeg(name: str = "astronaut", size: tuple[int, int] = (4000, 3000)) -> bytes:
    """A ~12 MP JPEG made by upscaling a real photo."""
    return encode(photo(name).resize(size, Image.Resampling.BICUBIC), "JPEG", quality=90)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    store: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)  # type: ignore[arg-type]

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a child process, killing it if it does not exit within 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen[bytes], log_path: Path, what: str,
               timeout: float = 120) -> None:
    """Poll ``ready()`` (a transport error counts as not ready) until it holds;
    fail with the process's log if it exits or the timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            if ready():
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not become ready:\n{log_path.read_text(errors='replace')}")
        time.sleep(0.2)


@contextmanager
def child(cmd: list[str], log_path: Path, **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A child process writing to ``log_path``, always stopped on exit."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **popen)
    try:
        yield proc
    finally:
        stop(proc)


@contextmanager
def live_server(store: Path, log_dir: Path, env: Mapping[str, str] | None = None,
                wait_for_model: bool = True) -> Iterator[LiveServer]:
    """``python -m classifier serve`` in a subprocess on a free loopback port."""
    port = free_port()
    log_path = log_dir / f"server-{port}.log"
    full_env = {**os.environ, "MODEL_REFRESH_SECONDS": "1", **(env or {})}
    cmd = [sys.executable, "-m", "classifier", "serve", "--store", str(store), "--port", str(port)]
    with child(cmd, log_path, env=full_env, cwd=log_dir) as proc:
        server = LiveServer(f"http://127.0.0.1:{port}", store, proc, log_path)
        accepted = {200} if wait_for_model else {200, 503}
        wait_until(lambda: httpx.get(f"{server.url}/health", timeout=5).status_code in accepted,
                   proc, log_path, "the server")
        yield server


def publish(store: Path, weights: str = "random") -> str:
    """Publish with the real CLI; return the new version id."""
    out = subprocess.run(
        [sys.executable, "-m", "classifier", "publish", "--store", str(store), "--weights", weights],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.split()[2]


def link_large(src: str, dst: str) -> None:
    """Hard-link the big immutable artifacts; copy the small files a test may edit."""
    if src.endswith((".onnx", ".safetensors")):
        os.link(src, dst)
    else:
        shutil.copyfile(src, dst)


def copy_store(src: Path, dst: Path) -> Path:
    """A private copy of a published store, cheap: model artifacts are hard links.
    Never edit an artifact in place in a copy: replace it (unlink, then write)."""
    shutil.copytree(src, dst, copy_function=link_large)
    return dst


def relative_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(float(np.abs(b).max()), 1e-12))


def export_version(store: ModelStore, version: str, dest: Path) -> Path:
    """Copy an installed version out, as a publisher would hand it over."""
    shutil.copytree(store.version_dir("resnet50", version), dest, copy_function=link_large)
    return dest


def with_new_identity(src: Path, dest: Path, created: str = "2030-01-01T00:00:00Z") -> Path:
    """The same artifacts re-labelled as a later version, plus a changed labels.json,
    so its content id differs (a stand-in for a newly trained model)."""
    shutil.copytree(src, dest, copy_function=link_large)
    manifest = json.loads((dest / "manifest.json").read_text())
    labels = json.loads((dest / "labels.json").read_text())
    labels[0] = labels[0] + " (v2)"
    (dest / "labels.json").write_text(json.dumps(labels))
    size, digest = sha256_file(dest / "labels.json")
    manifest["artifacts"]["labels.json"] = {"bytes": size, "sha256": digest}
    manifest["created_at"] = created
    manifest["version"] = make_version(manifest["artifacts"], datetime.fromisoformat(created))
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest
