"""ONNX Runtime's spinning, on against off, measured where it matters (part of ``make bench``).

After every ``run`` ONNX Runtime's intra-op pool threads busy-wait for the next
operator for a while ("spinning"). With one session serving one request at a
time, on cores of its own, that saves a wake-up per operator. With two
sessions in one process taking turns (several models, a canary, a shadow), or
concurrent requests, or fewer cores than threads, the spinning threads of one
session take the CPU the other needs. Two measurements, each setting in fresh
processes, the settings alternated every round so that the machine's load hits
both alike:

- ``alternating``: two sessions (the run's fp32 and int8 versions) built with
  the same thread count, run in turn on the same 1 MP photo, ``--iters``
  times each; every call timed. Also each session alone, as the reference.
- ``server``: ``python -m classifier serve`` with ``INFERENCE_SPINNING=on|off``
  under ``bench/load.py``'s load (Locust, headless; ``--users`` users for
  ``--seconds``): throughput, p50 and p99, errors.

Sessions are built by the runtime's own ``OnnxBackend``, so the setting
measured is the one the runtime applies.

    python bench/spinning.py [--rounds 2] [--iters 40] [--users 8] [--seconds 20] [--skip-server]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

SETTINGS = ("on", "off")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank (every figure is a real sample)."""
    ordered = sorted(values)
    return ordered[max(1, -(-len(ordered) * q // 100)) - 1] if ordered else float("nan")


def stats(samples: Sequence[float], wall_s: float) -> dict[str, float]:
    return {"n": len(samples), "p50": round(statistics.median(samples), 2), "p99": round(percentile(samples, 99), 2),
            "calls_per_s": round(len(samples) / wall_s, 2)}


# -- the alternating sessions, in a child process ----------------------------------------------------
def alternating_child(models: list[Path], photo: Path, threads: int, spin: bool, iters: int) -> dict[str, Any]:
    """Each session alone, then the sessions in turn: per-call times (ms)."""
    import numpy as np

    from classifier.serving.backends.onnx_backend import OnnxBackend
    from classifier.serving.imaging import Preprocessing, preprocess

    # Both versions share the fp32 one's preprocessing (int8 is derived from it).
    manifest = json.loads((models[0].parent / "manifest.json").read_text())
    spec = Preprocessing.from_manifest(manifest["preprocessing"])
    tensor, _ = preprocess(photo.read_bytes(), spec, max_pixels=10**9, fast_jpeg=True)
    batch = np.ascontiguousarray(tensor[None])
    sessions = [OnnxBackend(model, threads=threads, spin=spin) for model in models]
    for session in sessions:  # first runs allocate their buffers
        session.run(batch)
    out: dict[str, Any] = {}
    for i, session in enumerate(sessions):
        samples = []
        start = time.perf_counter()
        for _ in range(iters):
            t = time.perf_counter()
            session.run(batch)
            samples.append((time.perf_counter() - t) * 1000)
        out[f"alone_{i}"] = stats(samples, time.perf_counter() - start)
    turns: list[list[float]] = [[] for _ in sessions]
    start = time.perf_counter()
    for _ in range(iters):
        for i, session in enumerate(sessions):
            t = time.perf_counter()
            session.run(batch)
            turns[i].append((time.perf_counter() - t) * 1000)
    wall = time.perf_counter() - start
    for i, samples in enumerate(turns):
        out[f"turns_{i}"] = stats(samples, wall)
    out["turns_all"] = stats([s for samples in turns for s in samples], wall)
    return out


def run_alternating(models: list[Path], photo: Path, threads: int, rounds: int, iters: int,
                    scratch: Path) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SETTINGS}
    for r in range(rounds):
        for setting in (SETTINGS if r % 2 == 0 else SETTINGS[::-1]):
            result = scratch / f"alternating-{setting}-{r}.json"
            subprocess.run([sys.executable, __file__, "--child", "--models", *map(str, models), "--photo", str(photo),
                            "--threads", str(threads), "--spin", setting, "--iters", str(iters),
                            "--result", str(result)], check=True)
            runs[setting].append(json.loads(result.read_text()))
    return runs


# -- the local server under load ---------------------------------------------------------------------
def run_server(store: Path, rounds: int, users: int, seconds: int, scratch: Path,
               work: Path) -> dict[str, list[dict[str, Any]]]:
    import load

    photos = load.load_photos(work)
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SETTINGS}
    for r in range(rounds):
        for setting in (SETTINGS if r % 2 == 0 else SETTINGS[::-1]):
            env = {"INFERENCE_SPINNING": setting}
            with load.local_server(store, env=env) as server:
                result = load.run_locust(server.url, users=users, seconds=seconds,
                                         out=scratch / f"server-{setting}-{r}", photos=photos)
                result["server_rss_mb"] = server.rss_mb()
            runs[setting].append(result)
    return runs


def median_of(runs: list[dict[str, Any]], *path: str) -> float | None:
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            values.append(float(value))
    return round(statistics.median(values), 2) if values else None


def summarise(alternating: dict[str, list[dict[str, Any]]] | None,
              server: dict[str, list[dict[str, Any]]] | None) -> dict[str, Any]:
    """Medians over rounds for each setting, and on ÷ off."""
    out: dict[str, Any] = {}
    if alternating:
        rows = {}
        for key in ("alone_0", "alone_1", "turns_0", "turns_1", "turns_all"):
            for figure in ("p50", "p99", "calls_per_s"):
                on, off = median_of(alternating["on"], key, figure), median_of(alternating["off"], key, figure)
                rows[f"{key}.{figure}"] = {"on": on, "off": off,
                                           "on_over_off": round(on / off, 3) if on and off else None}
        out["alternating"] = rows
    if server:
        rows = {}
        for figure in ("requests_per_s", "p50_ms", "p95_ms", "p99_ms", "failures"):
            on, off = median_of(server["on"], figure), median_of(server["off"], figure)
            rows[figure] = {"on": on, "off": off, "on_over_off": round(on / off, 3) if on and off else None}
        out["server"] = rows
    return out


def render(summary: dict[str, Any], facts: dict[str, Any]) -> str:
    lines = [f"Spinning on ÷ off ({facts['when']}, {facts['cpu']}, {facts['threads']} intra-op threads; "
             f"medians over {facts['rounds']} rounds, the settings alternated):", ""]
    names = facts["models"]
    if "alternating" in summary:
        lines += ["| two sessions in one process | on | off | on ÷ off |", "|---|---:|---:|---:|"]
        labels = {"alone_0": f"{names[0]} alone", "alone_1": f"{names[-1]} alone",
                  "turns_0": f"{names[0]}, taking turns", "turns_1": f"{names[-1]}, taking turns"}
        for key, label in labels.items():
            for figure in ("p50", "p99"):
                row = summary["alternating"][f"{key}.{figure}"]
                lines.append(f"| {label}, {figure} (ms) | {row['on']} | {row['off']} | {row['on_over_off']}x |")
        row = summary["alternating"]["turns_all.calls_per_s"]
        lines.append(f"| taking turns, forwards/s | {row['on']} | {row['off']} | {row['on_over_off']}x |")
        lines.append("")
    if "server" in summary:
        lines += [f"| local server, {facts['users']} users for {facts['seconds']} s | on | off | on ÷ off |",
                  "|---|---:|---:|---:|"]
        for figure, label in (("requests_per_s", "requests/s"), ("p50_ms", "p50 (ms)"), ("p95_ms", "p95 (ms)"),
                              ("p99_ms", "p99 (ms)"), ("failures", "unexpected answers")):
            row = summary["server"][figure]
            ratio = f"{row['on_over_off']}x" if row["on_over_off"] is not None else "-"
            lines.append(f"| {label} | {row['on']} | {row['off']} | {ratio} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=BENCH / ".work")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--iters", type=int, default=40)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--skip-server", action="store_true")
    parser.add_argument("--summary", type=Path, default=None, help="also write the markdown here")
    # One child: --child --models A [B] --photo P --spin on|off --result FILE
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--models", type=Path, nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--photo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--spin", choices=SETTINGS, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        out = alternating_child(args.models, args.photo, args.threads, args.spin == "on", args.iters)
        args.result.write_text(json.dumps(out))
        return 0

    import assets
    from run import ensure_int8_store, ensure_store, machine

    work = args.work.resolve()
    store = work / "store"
    version = ensure_store(store)
    int8_store = ensure_int8_store(store, work, version)
    models = [store / "models" / "resnet50" / "versions" / version / "model.onnx"]
    int8_version = (int8_store / "models" / "resnet50" / "CURRENT").read_text().strip()
    models.append(int8_store / "models" / "resnet50" / "versions" / int8_version / "model.onnx")
    photo = assets.make_photos(work / "photos")["1mp"]
    with tempfile.TemporaryDirectory(prefix="spinning-") as tmp:
        alternating = run_alternating(models, photo, args.threads, args.rounds, args.iters, Path(tmp))
        server = None if args.skip_server else run_server(store, args.rounds, args.users, args.seconds, Path(tmp),
                                                          work)
    summary = summarise(alternating, server)
    facts = {"when": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()), "cpu": machine()["cpu"],
             "threads": args.threads, "rounds": args.rounds, "users": args.users, "seconds": args.seconds,
             "models": ["fp32", "int8"], "load_average": os.getloadavg()[0]}
    report = {"facts": facts, "summary": summary, "alternating": alternating, "server": server}
    (work / "spinning.json").write_text(json.dumps(report, indent=1) + "\n")
    markdown = render(summary, facts)
    if args.summary:
        args.summary.write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
