"""Cold starts of variants side by side: what one change to the init phase moves.

Each variant is a contender of ``make bench`` (``onnx`` for our handler, ``floor`` for
bench/floor.py) with environment overrides, for example the run's store with a
setting changed, or ``PYTHONPATH`` pointing at another revision's package
(``git archive REV model/classifier | tar -x -C DIR``, then byte-compile it). Every
round spawns ``bench/trial.py`` once per variant, the order rotated each round, so
the machine's load hits all of them alike; it prints, per variant, the p50 and the
minimum of spawn-to-first-200, the p50 of CPU time (all threads), each ratio to the
first variant, and the trial's phases.

It needs the store, photos and int8 store of a bench run (``bench/.work``, made by
``python bench/run.py``). The inference function's settings (``LAMBDA_SETTINGS``) are
applied first, as in ``make bench``; a variant's own overrides win.

    python bench/profile/cold_ab.py --rounds 11 \\
        floor=floor ours=onnx 'ours-blas=onnx:OPENBLAS_NUM_THREADS=' --int8
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
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))

from run import LAMBDA_SETTINGS  # noqa: E402


def parse_variant(text: str) -> tuple[str, str, dict[str, str]]:
    """``name=contender[:KEY=VALUE[,KEY=VALUE...]]``; an empty VALUE removes the variable."""
    name, _, rest = text.partition("=")
    contender, _, overrides = rest.partition(":")
    env = dict(item.split("=", 1) for item in overrides.split(",") if item)
    return name, contender, env


def spawn(contender: str, env: dict[str, str], work: Path, result: Path) -> tuple[dict[str, Any], float]:
    """One fresh trial process; its cold-start phases and its CPU time in ms."""
    photos = work / "photos"
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(BENCH / "trial.py"), "--contender", contender,
                             "--photo-1mp", str(photos / "photo-1mp.jpg"),
                             "--photo-12mp", str(photos / "photo-12mp.jpg"),
                             "--result", str(result), "--t0", repr(t0)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=result.parent)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{contender} trial failed (exit {os.waitstatus_to_exitcode(status)})")
    cold: dict[str, Any] = json.loads(result.read_text())["cold"]
    result.unlink()
    return cold, (usage.ru_utime + usage.ru_stime) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", help="name=contender[:KEY=VALUE,...], the first is the reference")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--work", type=Path, default=BENCH / ".work", help="a bench run's work directory")
    parser.add_argument("--int8", action="store_true", help="serve the run's int8 store instead of fp32")
    args = parser.parse_args()

    store = args.work / ("store-int8" if args.int8 else "store-fp32")
    base = {k: v for k, v in os.environ.items() if k != "BACKEND"}
    base.update(LAMBDA_SETTINGS, MODEL_STORE=str(store), MODEL_NAME="resnet50",
                BASELINE_WEIGHTS=str(args.work / "baseline" / "resnet50.pth"))
    variants = [parse_variant(v) for v in args.variants]
    wall: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    phases: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in variants}
    with tempfile.TemporaryDirectory() as scratch:
        result = Path(scratch) / "result.json"
        for turn in range(args.rounds):
            k = turn % len(variants)
            for name, contender, overrides in variants[k:] + variants[:k]:
                env = {**base, **overrides}
                env = {key: value for key, value in env.items() if value != ""}
                cold, cpu_ms = spawn(contender, env, args.work, result)
                wall[name].append(cold["total_ms"])
                cpu[name].append(cpu_ms)
                phases[name].append(cold)
    reference = variants[0][0]
    ref_wall, ref_cpu = statistics.median(wall[reference]), statistics.median(cpu[reference])
    print(f"{args.rounds} rounds, {store.name}, load average {os.getloadavg()[0]:.2f} at the end")
    print("| variant | p50 (ms) | min (ms) | CPU p50 (ms) | p50 ÷ first | CPU ÷ first | import + init | first invoke |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, _, _ in variants:
        p50, cpu50 = statistics.median(wall[name]), statistics.median(cpu[name])
        init = statistics.median(p["import_init_ms"] for p in phases[name])
        first = statistics.median(p["first_invoke_ms"] for p in phases[name])
        print(f"| {name} | {p50:.1f} | {min(wall[name]):.1f} | {cpu50:.0f} | {p50 / ref_wall:.3f}x "
              f"| {cpu50 / ref_cpu:.3f}x | {init:.1f} | {first:.1f} |")


if __name__ == "__main__":
    main()
