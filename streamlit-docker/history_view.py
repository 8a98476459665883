"""The History tab: stored classifications, newest first, filtered and paged by ``next_cursor``."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import streamlit as st

from classifier.client.api import ClassificationPage, ClassifierClient, ClientClassification
from classifier.client.transport import RequestFailed

from api_errors import problem
from formatting import TIMES, show_error, when

PAGE_SIZES = [10, 20, 50, 100]


def _older(cursor: str) -> None:
    st.session_state.history_cursors.append(cursor)


def _newer() -> None:
    if len(st.session_state.history_cursors) > 1:
        st.session_state.history_cursors.pop()


def _first_page() -> None:
    st.session_state.history_cursors = [None]


@st.fragment
def history_tab(api: ClassifierClient) -> None:
    """``GET /classifications`` (or, with ``API_READ_ALL=1``, every caller's: ``GET /all/classifications``),
    newest first, paged by ``next_cursor``.

    A fragment: paging reruns only this view, not the classifications above.
    """
    cursors: list[str | None] = st.session_state.setdefault("history_cursors", [None])
    head, size_col, refresh_col = st.columns([4, 2, 1], vertical_alignment="bottom")
    head.subheader("Stored classifications", anchor=False)
    page_size = size_col.segmented_control("Rows per page", PAGE_SIZES, default=20, key="page_size",
                                           required=True, on_change=_first_page)
    refresh_col.button("Refresh", icon=":material/refresh:", on_click=_first_page, key="history_refresh")
    filters = history_filters()
    try:
        page: ClassificationPage = api.classifications(limit=int(page_size or 20), cursor=cursors[-1],
                                                       read_all=reads_all(), **filters)
    except RequestFailed as exc:
        show_error(problem(exc), context=" (history)")
        return
    if not page.items:
        st.info("No classifications stored yet." if len(cursors) == 1 else "No older classifications.",
                icon=":material/history:")
    else:
        st.dataframe(
            [history_row(record) for record in page.items],
            hide_index=True, width="stretch", key="history_table",
            column_config={
                "Top label": st.column_config.TextColumn(width="medium"),
                "Score": st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0),
                "Latency (ms)": st.column_config.NumberColumn(format="%.0f"),
                "Trained": st.column_config.CheckboxColumn(width="small"),
            },
        )
    newer_col, page_col, older_col = st.columns([1, 2, 1], vertical_alignment="center")
    newer_col.button("Newer", icon=":material/arrow_back:", on_click=_newer, disabled=len(cursors) == 1,
                     key="history_newer")
    page_col.caption(f"Page {len(cursors)} · {len(page.items)} record(s)", text_alignment="center")
    with older_col.container(horizontal=True, horizontal_alignment="right"):
        st.button("Older", icon=":material/arrow_forward:", icon_position="right", key="history_older",
                  on_click=_older, args=(page.next_cursor,), disabled=page.next_cursor is None)


def reads_all() -> bool:
    """Whether the history shows every caller's records (``API_READ_ALL``), not only this dashboard's own."""
    return os.environ.get("API_READ_ALL", "").strip().lower() in ("1", "true", "yes")


def history_filters() -> dict[str, Any]:
    """The History tab's filters (top-1 label, model version, a day range); changing one restarts paging."""
    label_col, version_col, days_col = st.columns([2, 3, 2], vertical_alignment="bottom")
    label = label_col.text_input("Top-1 label", key="filter_label", on_change=_first_page,
                                 placeholder="any").strip()
    version = version_col.text_input("Model version", key="filter_version", on_change=_first_page,
                                     placeholder="any, or e.g. 20261122T095500Z-e9c879a52177").strip()
    days = days_col.date_input("Days (UTC)", value=[], key="filter_days", on_change=_first_page)
    filters: dict[str, Any] = {"label": label or None, "model_version": version or None}
    if isinstance(days, tuple) and len(days) == 2:  # since the first day, until the day after the last
        filters["since"] = datetime.combine(days[0], datetime.min.time(), UTC)
        filters["until"] = datetime.combine(days[1], datetime.min.time(), UTC) + timedelta(days=1)
    return filters


def history_row(record: ClientClassification) -> dict[str, Any]:
    top = record["predictions"][0] if record.get("predictions") else {"label": "", "score": 0.0}
    model = record.get("model") or {}
    image = record.get("image") or {}
    return {
        "When": when(record.get("created_at", "")),
        "Top label": top["label"],
        "Score": top["score"],
        "Latency (ms)": (record.get("timing_ms") or {}).get("total"),
        "Image": f"{image.get('format', '?')} {image.get('width', '?')}{TIMES}{image.get('height', '?')}",
        "Model version": model.get("version", ""),
        "Trained": bool(model.get("trained")),
        "ID": record["id"],
    }
