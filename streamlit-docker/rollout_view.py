"""The dashboard's Rollout tab: a running rollout's current version and candidate side by side.

Read-only, as the Models tab: a rollout is started, promoted and aborted with
``python -m classifier rollout ...`` (or by its own guards). Everything comes from
``GET /model``'s ``rollout``: the rollout, its candidate's state, and, where the API
keeps the evidence (a local server), the requests, errors, latency and agreement of
each side and the verdict so far. An API in AWS keeps none: its judge reads CloudWatch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from classifier.client.api import ModelState
from classifier.client.transport import RequestFailed

from api_errors import problem
from formatting import TIMES, md, show_error, when

START_HINT = ("No rollout is running. Put a new version in front of some traffic, or in the shadow of all of it: "
              "`python -m classifier rollout start VERSION --canary 10` or `--shadow 100`.")
AWS_HINT = ("This API keeps no rollout evidence (its records are in DynamoDB): the rollout judge weighs the "
            "CloudWatch metrics. See `python -m classifier rollout status --s3 s3://<InboxBucket>` and the "
            "CloudWatch dashboard's rollout row.")


def rollout_tab(model: ModelState | None, model_error: RequestFailed | None) -> None:
    if model is None:
        show_error(problem(model_error or RequestFailed(None, "no_answer", "the API gave no answer")),
                   context=" (rollout)")
        return
    rollout = model.get("rollout")
    if not rollout:
        st.info(START_HINT, icon=":material/alt_route:")
        return
    with st.container(key="rollout-header"):
        st.subheader(f"{rollout['mode'].capitalize()} {rollout['percent']}% · candidate `{rollout['candidate']}`",
                     anchor=False)
    guards = rollout.get("guards") or {}
    st.caption(
        f"Beside `{rollout['current']}` since {when(rollout['started_at'])} · "
        f"auto-promote {'on' if rollout.get('auto_promote') else 'off'} · guards: after "
        f"{guards.get('min_requests')} candidate requests, error rate ≤ {guards.get('max_error_rate')}, "
        f"p95 ≤ {guards.get('max_latency_ratio')}{TIMES} current"
        + (f", top-1 agreement ≥ {guards.get('min_agreement')}" if rollout["mode"] == "shadow" else "")
    )
    if rollout.get("candidate_state") != "loaded":
        st.warning(f"**The candidate is not serving**: {md(rollout.get('problem') or 'not loaded yet')}",
                   icon=":material/hourglass_empty:")
    verdict = rollout.get("verdict")
    evidence = rollout.get("evidence")
    if verdict is None or evidence is None:
        st.info(AWS_HINT, icon=":material/cloud:")
        return
    with st.container(key="rollout-verdict"):
        shown = f"**Verdict: {md(verdict)}**  \n{md(rollout.get('reason', ''))}"
        if verdict.startswith("breached"):
            st.error(shown, icon=":material/block:")
        elif verdict == "ready":
            st.success(shown, icon=":material/check_circle:")
        else:
            st.info(shown, icon=":material/pending:")
    st.dataframe([side_row(name, evidence[name]) for name in ("current", "candidate")], hide_index=True,
                 width="stretch", key="rollout_table",
                 column_config={"Error rate": st.column_config.NumberColumn(format="percent"),
                                "p50 (ms)": st.column_config.NumberColumn(format="%.1f"),
                                "p95 (ms)": st.column_config.NumberColumn(format="%.1f")})
    if rollout["mode"] == "shadow":
        agreement = evidence.get("agreement")
        with st.container(key="rollout-agreement"):
            st.metric("Top-1 agreement", "-" if agreement is None else f"{agreement:.1%}", border=True,
                      help=f"{evidence['agreed']} of {evidence['compared']} images answered by both versions")


def side_row(side: str, found: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "Side": side,
        "Version": found["version"],
        "Role": found["role"],
        "Requests": found["requests"],
        "Errors": found["errors"],
        "Error rate": found["error_rate"],
        "p50 (ms)": found["p50_ms"],
        "p95 (ms)": found["p95_ms"],
    }
