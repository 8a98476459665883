"""The bench's summary in markdown: the main table, the targets and the before/after table.

``bench/run.py`` measures; this module only renders its report (``results.json``).
"""

from __future__ import annotations

from typing import Any

MAIN_COLUMNS = ("baseline", "onnx", "torch", "int8")
BASELINE = "baseline"


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


# -- setup ------------------------------------------------------------------------
def get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def render(report: dict[str, Any]) -> str:
    fig = report["figures"]
    sizes = report.get("install_size")
    cols = list(MAIN_COLUMNS)

    def row(label: str, values: list[str], ratios: list[str]) -> str:
        return "| " + " | ".join([label, *values, *ratios]) + " |"

    def line(label: str, path: tuple[str, ...], digits: int = 0, invert: bool = False) -> str:
        values = [get(fig[c], *path) for c in cols]
        base = values[0]
        rats = []
        for v in values[1:]:
            rats.append(fmt_ratio(ratio(base, v) if invert else ratio(v, base)))
        return row(label, [fmt(v, digits) for v in values], rats)

    n_cold = get(fig, "onnx", "cold_ms", "n")
    n_warm = get(fig, "onnx", "warm_ms", "1mp", "n")
    lines = [
        "| figure | baseline | ours, onnx | ours, torch | ours, onnx int8 | onnx ÷ baseline | torch ÷ baseline "
        "| int8 ÷ baseline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        line(f"cold start to first 200, p50 (ms, n={n_cold})", ("cold_ms", "p50")),
        line("cold start CPU time, p50 (ms)", ("cold_cpu_ms", "p50")),
        line(f"warm ~1 MP photo, p50 (ms, n={n_warm})", ("warm_ms", "1mp", "p50"), 1),
        line("warm ~1 MP photo, p95 (ms)", ("warm_ms", "1mp", "p95"), 1),
        line("warm 12 MP JPEG, p50 (ms)", ("warm_ms", "12mp", "p50"), 1),
        line("warm 12 MP JPEG, p95 (ms)", ("warm_ms", "12mp", "p95"), 1),
        line("raw model forward, batch 1, p50 (ms)", ("warm_ms", "forward", "p50"), 1),
        line("batch-8 request, end to end (images/s)", ("batch", "images_per_s"), 1),
        line("batch-8 raw forward (images/s)", ("batch", "forward_images_per_s"), 1),
        line("peak RSS after cold start (MB)", ("peak_rss_mb", "after_cold")),
        line("peak RSS serving 1 MP + 12 MP (MB)", ("peak_rss_mb", "after_warm")),
        line("peak RSS incl. batch-8 (MB)", ("peak_rss_mb", "after_batch")),
    ]
    if sizes:
        v = sizes["variants"]
        onnx_mb = v["onnx"]["bytes"] / 1e6
        for variant in ("torch-cpu", "torch-cuda"):
            if variant in v:
                other_mb = v[variant]["bytes"] / 1e6
                lines.append(f"| installed size, runtime requirements (MB), torch column = {variant} | - | "
                             f"{onnx_mb:,.0f} | {other_mb:,.0f} | - | {onnx_mb / other_mb:.2f}x of {variant} | - | - |")
    out = ["| target (this run) | measured (ratio of p50s) | limit | result | cross-check: ratio of minimums |",
           "|---|---:|---:|---|---:|"]
    for t in report["targets"]:
        verdict = "n/a" if t["pass"] is None else ("PASS" if t["pass"] else "FAIL")
        measured = f"{t['ratio']:.2f}x" if t["ratio"] is not None else "not measured"
        best = fmt_ratio(t.get("ratio_of_minimums"))
        out.append(f"| {t['figure']}, {t['contender']} ÷ {t['against']} | {measured} | ≤ {t['limit']}x | {verdict} "
                   f"| {best} |")
    timing_rows = []
    for c in (c for c in fig if c != BASELINE):
        for name in ("1mp", "12mp"):
            t = get(fig, c, "server_timing_ms", name)
            if t:
                timing_rows.append(f"| {c} | {name} | {fmt(t.get('decode'), 1)} | {fmt(t.get('inference'), 1)} | "
                                   f"{fmt(t.get('total'), 1)} |")
    phases = ["| contender | interpreter | bench setup | import + init | of which model load | first invoke |",
              "|---|---:|---:|---:|---:|---:|"]
    for c in fig:
        p = fig[c]["cold_phases_ms"]
        load = get(fig[c], "model_load_ms", "p50")
        phases.append(f"| {c} | {p['interpreter_ms']:.0f} | {p['setup_ms']:.0f} | {p['import_init_ms']:.0f} | "
                      f"{fmt(load) if load is not None else 'in import'} | {p['first_invoke_ms']:.0f} |")
    m = report["machine"]
    text = [
        "# `make bench` results",
        "",
        f"Command: `{report['command']}` ({report['mode']} mode), {report['started_at']}, "
        f"{report['duration_s']:.0f} s.",
        f"Machine: {m['cpu']}, {m['cpus_usable']} usable CPUs, {m['memory_gb']} GB, {m['os']}, "
        f"Python {m['python']}; load average {report['load_average']['start']} at start, "
        f"{report['load_average']['end']} at end (a shared machine: read medians and ratios).",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v) + ".",
        f"Runtime measured: model/classifier at commit {str(report['runtime']['commit'])[:12]}"
        + (" with uncommitted changes." if report["runtime"]["model_dirty"] else "."),
        "Photos: " + "; ".join(f"{k}: {p['width']}x{p['height']} {p['format']}, {p['bytes']:,} bytes"
                               for k, p in report["photos"].items()) + ".",
        "",
        *lines,
        "",
        *out,
        "",
        *render_floor(fig),
        *(report.get("costs") or {}).get("markdown", []),
        *render_before_after(report.get("against")),
        "Cold start phases, p50 (ms):",
        "",
        *phases,
        "",
    ]
    if timing_rows:
        text += ["Our handler's own timing_ms, p50 (ms):", "",
                 "| backend | photo | decode + preprocess | inference | total |", "|---|---|---:|---:|---:|",
                 *timing_rows, ""]
    if sizes:
        note = "cached from " + sizes["measured_at"] if sizes.get("cached") else "measured in this run"
        text += [f"Install sizes ({note}): files pip adds to a fresh venv's site-packages.", ""]
        for name, variant in sizes["variants"].items():
            biggest = ", ".join(f"{x['name']} {x['bytes'] / 1e6:.0f}" for x in variant["largest"][:6])
            text.append(f"- {name}: {variant['bytes'] / 1e6:,.1f} MB in {variant['files']:,} files "
                        f"(largest, MB: {biggest})")
        text.append("")
    else:
        text += ["Install sizes: not measured in this run (quick mode without a cache).", ""]
    return "\n".join(text)


def render_floor(fig: dict[str, Any]) -> list[str]:
    """Our cold start against the floor (bench/floor.py) on the same model, fp32 and int8."""
    rows = []
    for ours, floor, label in (("onnx", "floor", "fp32"), ("int8", "floor-int8", "int8")):
        if floor not in fig or ours not in fig:
            continue
        mine, theirs = get(fig[ours], "cold_ms", "p50"), get(fig[floor], "cold_ms", "p50")
        best = ratio(get(fig[ours], "cold_ms", "min"), get(fig[floor], "cold_ms", "min"))
        cpu = ratio(get(fig[ours], "cold_cpu_ms", "p50"), get(fig[floor], "cold_cpu_ms", "p50"))
        rows.append(f"| {label} | {fmt(mine)} | {fmt(theirs)} | {fmt_ratio(ratio(mine, theirs))} | "
                    f"{fmt_ratio(best)} | {fmt_ratio(cpu)} |")
    if not rows:
        return []
    return ["Cold start, spawn to first 200, against the floor (bench/floor.py: onnxruntime, numpy and Pillow "
            "imported, a 2-thread session on the same model.onnx, one photo classified):", "",
            "| model | ours, p50 (ms) | floor, p50 (ms) | ours ÷ floor | ratio of minimums | ratio of CPU time |",
            "|---|---:|---:|---:|---:|---:|", *rows, ""]


def render_before_after(against: dict[str, Any] | None) -> list[str]:
    """The ours ÷ ours@REV table, when the run had an --against contender."""
    if not against:
        return []
    name = against["contender"]
    lines = [
        f"Before/after: ours (onnx, model/classifier of the working tree) against {name} (model/classifier "
        f"at {against['resolved'][:12]}, archived), in the same rounds with the same store, photos and "
        f"environment. Below 1.00x, ours is the faster or smaller.",
        "",
        f"| figure | ours | {name} | ours ÷ {name} (ratio of p50s) | cross-check: ratio of minimums |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in against["comparison"]:
        lines.append(f"| {r['label']} | {fmt(r['ours'], r['digits'])} | {fmt(r['theirs'], r['digits'])} | "
                     f"{fmt_ratio(r['ratio'])} | {fmt_ratio(r['ratio_of_minimums'])} |")
    return [*lines, ""]


# -- main -------------------------------------------------------------------------
