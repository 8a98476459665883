"""Helpers for the dashboard's tests: paths, the API's own answers, the AppTest element tree."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block

from helpers import ROOT
from helpers.processes import LiveServer

DASHBOARD = ROOT / "streamlit-docker"
APP = DASHBOARD / "app.py"
CHELSEA = DASHBOARD / "samples" / "chelsea.jpg"
COFFEE = DASHBOARD / "samples" / "coffee.jpg"

# `streamlit run` puts app.py's folder on sys.path; the client tests import it the same way.
if str(DASHBOARD) not in sys.path:
    sys.path.insert(0, str(DASHBOARD))


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
