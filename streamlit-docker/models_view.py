"""The dashboard's Models tab: every installed version, which one serves, and how each one scored.

Read-only on purpose: promoting a version is ``python -m classifier promote`` (with its
accuracy gate), not a button. The figures come from ``GET /model/versions`` and, for one
version, ``GET /model/versions/{version}/evaluation`` (the report ``evaluate`` saved).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import altair as alt
import streamlit as st

from classifier.client.api import ClassifierClient
from classifier.client.transport import RequestFailed

from api_errors import problem
from formatting import show_error

# The most classes a confusion heatmap shows (ImageNet's 1,000 would be unreadable): those
# with the most images.
HEATMAP_CLASSES = 30


def models_tab(api: ClassifierClient) -> None:
    try:
        listing = api.model_versions()
    except RequestFailed as exc:
        show_error(problem(exc), context=" (models)")
        return
    versions = listing.get("versions") or []
    st.caption(f"Versions of `{listing.get('name', '?')}`, the API's default model.")
    if not versions:
        st.info("No version is installed: `python -m classifier publish`.", icon=":material/inventory_2:")
        return
    st.dataframe([version_row(v) for v in versions], hide_index=True, width="stretch", key="versions_table",
                 column_config={"Top-1": st.column_config.ProgressColumn(format="percent", min_value=0.0,
                                                                         max_value=1.0),
                                "Current": st.column_config.CheckboxColumn(width="small")})
    st.caption("Promote a version with `python -m classifier promote VERSION --data DIR --min-top1 X`.")
    evaluated = [v["version"] for v in versions if v.get("evaluation")]
    if not evaluated:
        st.info("No version has been evaluated yet: `python -m classifier evaluate --data DIR`.",
                icon=":material/query_stats:")
        return
    chosen = st.selectbox("Evaluation of", evaluated, key="evaluation_version",
                          format_func=lambda v: f"{v} (current)" if v == listing.get("current") else v)
    try:
        report = api.evaluation(str(chosen))
    except RequestFailed as exc:
        show_error(problem(exc), context=" (evaluation)")
        return
    evaluation_view(report)


def version_row(version: Mapping[str, Any]) -> dict[str, Any]:
    evaluation = version.get("evaluation") or {}
    return {
        "Version": version["version"],
        "Current": bool(version.get("current")),
        "Architecture": version.get("architecture", "?"),
        "Precision": version.get("precision", "?"),
        "Derived from": version.get("derived_from") or "",
        "Labels": version.get("labels"),
        "Trained": "yes" if version.get("trained") else "no",
        "Size (MB)": round((version.get("bytes") or 0) / 1e6),
        "Top-1": evaluation.get("top1"),
        "Top-5": evaluation.get("top5"),
        "Images": evaluation.get("images"),
        "Created": str(version.get("created_at", "")).replace("T", " ").replace("Z", " UTC"),
        "Problem": version.get("problem", ""),
    }


def evaluation_view(report: Mapping[str, Any]) -> None:
    top1, top5, latency = report["top1"], report["top5"], report["latency_ms"]
    with st.container(key="evaluation-summary"):
        cols = st.columns(4)
        cols[0].metric("Top-1", f"{top1:.1%}", border=True)
        cols[1].metric("Top-5", f"{top5:.1%}", border=True)
        cols[2].metric("Images", str(report["images"]), border=True)
        cols[3].metric("Latency p50 / p95", f"{latency['p50']:.0f} / {latency['p95']:.0f} ms", border=True)
    agreement = report.get("agreement")
    if agreement:
        st.caption(f"Against `{agreement['version']}`: same top-1 on {agreement['top1']:.1%} of the images, "
                   f"top-5 overlap {agreement['top5_overlap']:.1%}.")
    st.caption(f"{report['precision']} on {report['backend']} · data `{report['data']['path']}` "
               f"({report['data']['images']} files, sha256 {report['data']['sha256'][:12]}…) · {report['created_at']}")
    st.altair_chart(per_class_chart(report["per_class"]), width="stretch")
    st.altair_chart(confusion_chart(report["confusion"], report["per_class"]), width="stretch")
    for error in report.get("errors") or []:
        st.warning(f"Skipped `{error['file']}`: {error['code']}", icon=":material/warning:")


def per_class_chart(per_class: Mapping[str, Mapping[str, Any]]) -> alt.Chart:
    rows = [{"label": label, "top1": row["top1"], "images": row["images"]} for label, row in per_class.items()]
    data = alt.Data(values=rows)  # type: ignore[no-untyped-call,unused-ignore]
    chart: alt.Chart = alt.Chart(data, title="Top-1 accuracy by class").mark_bar(cornerRadiusEnd=3).encode(
        y=alt.Y("label:N", sort="-x", title=None),
        x=alt.X("top1:Q", title="top-1", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        tooltip=["label:N", alt.Tooltip("top1:Q", format=".1%"), "images:Q"],
    ).properties(height=max(120, 22 * len(rows)))
    return chart


def confusion_chart(confusion: Mapping[str, Mapping[str, int]],
                    per_class: Mapping[str, Mapping[str, Any]]) -> alt.Chart:
    """The confusion matrix as a heatmap: rows the true class, columns the predicted one."""
    shown = sorted(per_class, key=lambda label: -per_class[label]["images"])[:HEATMAP_CLASSES]
    rows = [{"true": truth, "predicted": predicted, "images": count}
            for truth, cells in confusion.items() if truth in shown
            for predicted, count in cells.items()]
    data = alt.Data(values=rows)  # type: ignore[no-untyped-call,unused-ignore]
    title = "Confusion (true class by predicted class)" + (
        f", the {HEATMAP_CLASSES} largest classes" if len(per_class) > HEATMAP_CLASSES else "")
    chart: alt.Chart = alt.Chart(data, title=title).mark_rect().encode(
        y=alt.Y("true:N", title="true"), x=alt.X("predicted:N", title="predicted"),
        color=alt.Color("images:Q", scale=alt.Scale(scheme="blues")),
        tooltip=["true:N", "predicted:N", "images:Q"],
    ).properties(height=max(160, 24 * len(shown)))
    return chart

