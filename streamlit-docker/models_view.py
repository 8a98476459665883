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
# Charts are sized by their number of classes: a bar (a heatmap row) this many pixels per class.
BAR_STEP = 26
# A heatmap cell's side: large for a few classes, never below what a count or a label needs.
CELL_MAX, CELL_MIN, HEATMAP_SIDE = 56, 18, 600
# Up to this many classes, each heatmap cell shows its count and column labels stay horizontal.
ANNOTATED_CLASSES = 12
# Streamlit fits a chart's whole height (title and axes included) into the spec's height unless the
# spec says otherwise: a chart of three classes became a band a few pixels high. These charts
# take the page's width and the height their classes need.
FIT_WIDTH = alt.AutoSizeParams(type="fit-x", contains="padding")
OWN_SIZE = alt.AutoSizeParams(type="pad")
# From no image (near white) to the most (deep blue).
HEATMAP_COLOURS = ["#f8fafc", "#1e40af"]


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
    with st.container(key="per-class-chart"):
        st.altair_chart(per_class_chart(report["per_class"]), width="stretch")
    with st.container(key="confusion-chart"):
        st.altair_chart(confusion_chart(report["confusion"], report["per_class"]), width="content")
    for error in report.get("errors") or []:
        st.warning(f"Skipped `{error['file']}`: {error['code']}", icon=":material/warning:")


def per_class_chart(per_class: Mapping[str, Mapping[str, Any]]) -> alt.LayerChart:
    """A bar per class, best first, each labelled with its top-1 (so a 0% class still shows a value)."""
    rows = [{"label": label, "top1": row["top1"], "images": row["images"], "text": f"{row['top1']:.0%}"}
            for label, row in per_class.items()]
    data = alt.Data(values=rows)  # type: ignore[no-untyped-call,unused-ignore]
    base = alt.Chart(data).encode(
        y=alt.Y("label:N", sort=alt.EncodingSortField("top1", order="descending"), title=None,
                axis=alt.Axis(labelLimit=240, labelFontSize=13)),
        x=alt.X("top1:Q", title="top-1", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        tooltip=["label:N", alt.Tooltip("top1:Q", format=".1%"), "images:Q"],
    )
    bars = base.mark_bar(cornerRadiusEnd=3, size=BAR_STEP - 8)
    values = base.mark_text(align="left", dx=4, fontSize=12).encode(text="text:N")
    chart: alt.LayerChart = (bars + values).properties(
        title="Top-1 accuracy by class", height=alt.Step(BAR_STEP), autosize=FIT_WIDTH)
    return chart


def confusion_chart(confusion: Mapping[str, Mapping[str, int]],
                    per_class: Mapping[str, Mapping[str, Any]]) -> alt.LayerChart:
    """The confusion matrix as a square heatmap: rows the true class, columns the predicted one.

    Every shown class gets a row and a column (a class never predicted too), every cell a
    value (0 where no image fell), so the grid is whole; the colour legend counts images.
    """
    shown = sorted(per_class, key=lambda label: (-per_class[label]["images"], label))[:HEATMAP_CLASSES]
    predicted = sorted({p for truth in shown for p in confusion.get(truth, {})} - set(shown))
    columns = [*shown, *predicted]  # a predicted label outside the shown classes keeps its own column
    counts = {(truth, column): int(confusion.get(truth, {}).get(column, 0)) for truth in shown for column in columns}
    rows = [{"true": truth, "predicted": column, "images": count} for (truth, column), count in counts.items()]
    most = max(counts.values(), default=0)
    data = alt.Data(values=rows)  # type: ignore[no-untyped-call,unused-ignore]
    cell = max(CELL_MIN, min(CELL_MAX, HEATMAP_SIDE // max(len(shown), len(columns), 1)))
    few = max(len(shown), len(columns)) <= ANNOTATED_CLASSES
    title = "Confusion (true class by predicted class)" + (
        f", the {HEATMAP_CLASSES} largest classes" if len(per_class) > HEATMAP_CLASSES else "")
    base = alt.Chart(data).encode(
        y=alt.Y("true:N", title="true", sort=shown, axis=alt.Axis(labelLimit=200)),
        x=alt.X("predicted:N", title="predicted", sort=columns,
                axis=alt.Axis(labelAngle=0 if few else -45, labelLimit=120, orient="top")),
    )
    cells = base.mark_rect(stroke="white", strokeWidth=1).encode(
        color=alt.Color("images:Q", title="images", scale=alt.Scale(domain=[0, max(most, 1)], range=HEATMAP_COLOURS),
                        legend=alt.Legend(format="d", tickMinStep=1, gradientLength=max(60, min(200, cell * 3)))),
        tooltip=["true:N", "predicted:N", "images:Q"],
    )
    layers: list[alt.Chart] = [cells]
    if few:
        layers.append(base.mark_text(fontSize=12).encode(
            text="images:Q",
            color=alt.condition(alt.datum.images > most / 2, alt.value("white"), alt.value("#1f2937"))))
    chart: alt.LayerChart = alt.LayerChart(layer=layers).properties(
        title=title, width=alt.Step(cell), height=alt.Step(cell), autosize=OWN_SIZE)
    return chart
