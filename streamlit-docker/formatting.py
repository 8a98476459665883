"""How the dashboard shows text it did not write: API data as literal markdown, scores, times, errors."""

from __future__ import annotations

import re

import streamlit as st

from api_errors import Problem

TIMES = "\N{MULTIPLICATION SIGN}"


def md(text: object) -> str:
    """``text`` shown literally in Streamlit markdown (labels and API messages are data, not markup)."""
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~$:])", r"\\\1", str(text))


def percent(score: float) -> str:
    if score >= 0.1:
        return f"{score:.1%}"
    return f"{score:.2%}" if score >= 0.0001 else "<0.01%"


def when(timestamp: str) -> str:
    return timestamp.replace("T", " ").replace("Z", " UTC").replace("+00:00", " UTC")


def show_error(shown: Problem, *, context: str = "") -> None:
    st.error(f"**{md(shown.headline)}**{md(context)}  \n{md(shown.detail)}  \n`{shown.reference}`",
             icon=":material/error:")
