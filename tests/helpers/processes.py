"""Child processes that tests start: a free port, waiting until one answers, a real API server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


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


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 180) -> None:
    """Poll ``condition()`` until it holds; fail the test (saying ``what`` was awaited) after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout}s")


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
