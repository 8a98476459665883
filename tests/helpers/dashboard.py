"""Helpers for the dashboard's tests: paths, its image's build context, the API's own answers,
the AppTest element tree."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block

from helpers import ROOT
from helpers.processes import LiveServer, child, free_port, wait_until

DASHBOARD = ROOT / "streamlit-docker"
APP = DASHBOARD / "streamlit_app.py"
DOCKERFILE = DASHBOARD / "Dockerfile"
# The allowlist of the image's build context (the repository root), for Docker and the CDK asset.
DOCKERIGNORE = DASHBOARD / "Dockerfile.dockerignore"
CHELSEA = DASHBOARD / "samples" / "chelsea.jpg"
COFFEE = DASHBOARD / "samples" / "coffee.jpg"

# `streamlit run` puts the app's folder on sys.path; the tests import its modules the same way.
if str(DASHBOARD) not in sys.path:
    sys.path.insert(0, str(DASHBOARD))


def files_under(root: Path) -> set[str]:
    """Every file below ``root``, as a relative POSIX path."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def stage_build_context(dest: Path) -> set[str]:
    """What a ``docker build -f streamlit-docker/Dockerfile .`` gets of the repository, copied to ``dest``.

    The copy is CDK's own (``FileSystem.copy_directory``, Docker's ignore rules), as
    it stages the image asset for a deploy; returns the staged files' paths.
    """
    from aws_cdk import CopyOptions, FileSystem, IgnoreMode

    rules = DOCKERIGNORE.read_text().splitlines()
    FileSystem.copy_directory(str(ROOT), str(dest), CopyOptions(exclude=rules, ignore_mode=IgnoreMode.DOCKER))
    return files_under(dest)


def large_photo(size: int = 2800) -> bytes:
    """A real photo as a PNG over the API's 4 MiB inline limit (and far under its 20 MiB S3 limit)."""
    from PIL import Image

    from helpers.photos import encode, photo

    data = encode(photo("astronaut").resize((size, size), Image.Resampling.BICUBIC), "PNG")
    assert 4 * 1024 * 1024 < len(data) < 20 * 1024 * 1024, len(data)
    return data


def api_classify(server: LiveServer, data: bytes, content_type: str = "image/jpeg") -> dict[str, Any]:
    """The API's own answer for ``data``: what the dashboard must show."""
    with server.client() as client:
        response = client.post("/classify", content=data, headers={"content-type": content_type})
    response.raise_for_status()
    return response.json()


def photo_bytes(path: Path = CHELSEA) -> bytes:
    return path.read_bytes()


def block(at: AppTest, key: str) -> Block:
    """The container made with ``st.container(key=key)``."""
    node = at.main.get_by_key(key)
    assert isinstance(node, Block), f"{key!r} is a {node.type}, not a container"
    return node


TEXT_ELEMENTS = {"markdown", "caption", "title", "header", "subheader", "error", "warning", "info", "success"}


def texts(node: AppTest | Block) -> str:
    """All the text (alerts, headings, captions, markdown) shown under ``node``, one per line."""
    root = node.main if isinstance(node, AppTest) else node
    return "\n".join(str(getattr(e, "value", "")) for e in root if e.type in TEXT_ELEMENTS)


def unescape(markdown: str) -> str:
    """The text a markdown string displays, for the backslash escapes the dashboard adds."""
    return re.sub(r"\\(.)", r"\1", markdown)


@contextmanager
def streamlit_dashboard(api_url: str, log_path: Path) -> Iterator[str]:
    """``streamlit run`` on a free loopback port against the API at ``api_url``; yields its URL.

    Started as ``make serve`` starts it (scripts/serve.sh): Streamlit's other settings
    come from streamlit-docker/.streamlit/config.toml, as in the image."""
    port = free_port()
    env = {**os.environ, "API_URL": api_url}
    env.pop("API_KEY", None)
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP),
           "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    url = f"http://127.0.0.1:{port}"
    with child(cmd, log_path, env=env, cwd=ROOT) as proc:
        wait_until(lambda: httpx.get(f"{url}/_stcore/health", timeout=5).status_code == 200,
                   proc, log_path, "streamlit")
        yield url
