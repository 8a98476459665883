"""What a model's versions look like to a reader: one summary for ``models`` and ``GET /model/versions``.

Standard library only, as the rest of the store: the ``models`` command needs no web framework.
"""

from __future__ import annotations

from typing import Any

from classifier.store.layout import ModelStore
from classifier.store.manifest import architecture, precision

# What a listing shows of each version's latest evaluation (the whole report is
# ``ModelStore.latest_evaluation``, and GET /model/versions/{version}/evaluation).
EVALUATION_SUMMARY = ("created_at", "images", "top1", "top5", "latency_ms", "data", "agreement")


def version_summaries(store: ModelStore, name: str) -> dict[str, Any]:
    """``{"name", "current", "versions": [...]}``, newest version first, each with its latest evaluation.

    Raises ``StoreError`` when the store cannot be read (an invalid ``CURRENT``, say).
    """
    versions = []
    for info in reversed(store.list(name)):
        entry: dict[str, Any] = {"version": info.version, "current": info.current}
        if info.manifest is None:
            entry["problem"] = info.problem
        else:
            manifest = info.manifest
            report = store.latest_evaluation(name, info.version)
            entry.update(
                created_at=manifest["created_at"], source=manifest["source"], architecture=architecture(manifest),
                trained=bool(manifest["trained"]),
                precision=precision(manifest), derived_from=manifest.get("derived_from"),
                labels=manifest["labels"]["count"],
                bytes=sum(a["bytes"] for a in manifest["artifacts"].values()),
                evaluation=None if report is None else {
                    key: report[key] for key in EVALUATION_SUMMARY if key in report},
            )
        versions.append(entry)
    current = next((v["version"] for v in versions if v["current"]), None)
    return {"name": name, "current": current, "versions": versions}
