"""What commands print: a progress bar on stderr, the classify table, the evaluation report."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from classifier.client.api import Outcome


class Progress:
    """A tqdm bar on stderr for several files (with images/s), when tqdm is installed and stderr is a terminal."""

    def __init__(self, total: int, what: str | None = None, *, enabled: bool = True) -> None:
        self.bar: Any = None
        if total < 2 or not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:  # a plain install of the runtime package: no bar, no complaint
            return
        # disable=None: tqdm turns itself off when stderr is not a terminal.
        self.bar = tqdm(total=total, unit="img", desc=what, disable=None, leave=False)

    def update(self, count: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def advance_to(self, done: int, _total: int) -> None:
        """A progress callback (done of total) for the library's long loops."""
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def write(self, message: str) -> None:
        """A message on stderr that does not tear the bar."""
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def format_table(results: Sequence[Outcome]) -> str:
    """FILE, LABEL, SCORE, LATENCY, MODEL: one row per file (an error fills the rest of its row)."""
    from classifier.client.transport import RequestFailed

    header = ("FILE", "LABEL", "SCORE", "LATENCY", "MODEL")
    rows: list[tuple[str, ...]] = []
    for r in results:
        if r.error is not None or r.result is None:
            err = r.error or RequestFailed(None, "error", "no result")
            rows.append((r.name, f"ERROR {err.status or '-'} {err.code}: {err.message}"))
            continue
        predictions = r.result.get("predictions")
        label, score = (predictions[0]["label"], predictions[0]["score"]) if predictions else ("-", 0.0)
        model = r.result.get("model") or {}
        version = str(model.get("version", "-")) + ("" if model.get("trained", True) else " (untrained)")
        rows.append((r.name, str(label), f"{float(score):.4f}", f"{r.latency_ms:.0f} ms", version))
    widths = [max([len(header[i])] + [len(row[i]) for row in rows if len(row) == len(header)])
              for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        if len(row) < len(header):  # an error row: the message spans the remaining columns
            lines.append(f"{row[0]:{widths[0]}}  {row[1]}")
        else:
            cells = [f"{cell:{widths[i]}}" if i < len(widths) else cell for i, cell in enumerate(row)]
            cells[2] = f"{row[2]:>{widths[2]}}"
            cells[3] = f"{row[3]:>{widths[3]}}"
            lines.append("  ".join(cells))
    return "\n".join(lines)


def format_evaluation(report: dict[str, Any]) -> str:
    lines = [f"{report['name']} {report['version']} ({report['precision']}, {report['backend']}) on "
             f"{report['data']['path']}: {report['images']} images",
             f"  top-1 {report['top1']:.4f}   top-5 {report['top5']:.4f}   latency per image p50 "
             f"{report['latency_ms']['p50']:.1f} ms, p95 {report['latency_ms']['p95']:.1f} ms"]
    if "agreement" in report:
        agreement = report["agreement"]
        lines.append(f"  against {agreement['version']}: same top-1 on {agreement['top1']:.4f}, "
                     f"top-5 overlap {agreement['top5_overlap']:.4f}")
    width = max(len(label) for label in report["per_class"])
    lines.append(f"  {'CLASS':{width}}  IMAGES  TOP-1")
    for label, row in report["per_class"].items():
        lines.append(f"  {label:{width}}  {row['images']:6}  {row['top1']:.4f}")
    for error in report["errors"]:
        lines.append(f"  skipped {error['file']}: {error['code']}: {error['message']}")
    return "\n".join(lines)
