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

    python bench/profile/cold_ab.py --rounds 11 --int8 \\
        floor=floor ours=onnx 'ours-blas=onnx:OPENBLAS_NUM_THREADS=' 'before=onnx:PYTHONPATH=/tmp/rev/model'
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))

from run import WORKING_TREE_PACKAGE, Contender, child_env, spawn  # noqa: E402


def parse_variant(text: str) -> tuple[Contender, set[str]]:
    """``name=contender[:KEY=VALUE[,KEY=VALUE...]]``: the contender, and the variables it unsets (an empty
    VALUE). ``PYTHONPATH`` names another revision's package directory, which the trial must import."""
    name, _, rest = text.partition("=")
    kind, _, overrides = rest.partition(":")
    env = dict(item.split("=", 1) for item in overrides.split(",") if item)
    unset = {key for key, value in env.items() if value == ""}
    pythonpath = Path(env.pop("PYTHONPATH")) if env.get("PYTHONPATH") else None
    package = None if kind == "floor" else (pythonpath / "classifier" if pythonpath else WORKING_TREE_PACKAGE)
    return Contender(name, kind, package, pythonpath=pythonpath,
                     env=tuple((k, v) for k, v in env.items() if v != "")), unset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+", help="name=contender[:KEY=VALUE,...], the first is the reference")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--work", type=Path, default=BENCH / ".work", help="a bench run's work directory")
    parser.add_argument("--int8", action="store_true", help="serve the run's int8 store instead of fp32")
    args = parser.parse_args()

    store = args.work / ("store-int8" if args.int8 else "store-fp32")
    base = child_env(store, args.work / "baseline" / "resnet50.pth")
    photos = {size: args.work / "photos" / f"photo-{size}.jpg" for size in ("1mp", "12mp")}
    variants = [parse_variant(v) for v in args.variants]
    runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c, _ in variants}
    with tempfile.TemporaryDirectory() as scratch:
        for turn in range(args.rounds):
            k = turn % len(variants)
            for contender, unset in variants[k:] + variants[:k]:
                env = {key: value for key, value in base.items() if key not in unset}
                runs[contender.name].append(spawn(contender, env, photos, Path(scratch)))

    def p50(name: str, figure: Any) -> float:
        return statistics.median(figure(run) for run in runs[name])

    reference = variants[0][0].name
    ref_wall = p50(reference, lambda r: r["cold"]["total_ms"])
    ref_cpu = p50(reference, lambda r: r["rusage"]["cpu_ms"])
    print(f"{args.rounds} rounds, {store.name}, load average {os.getloadavg()[0]:.2f} at the end")
    print("| variant | p50 (ms) | min (ms) | CPU p50 (ms) | p50 ÷ first | CPU ÷ first | import + init | first invoke |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for contender, _ in variants:
        name = contender.name
        wall, cpu = p50(name, lambda r: r["cold"]["total_ms"]), p50(name, lambda r: r["rusage"]["cpu_ms"])
        fastest = min(r["cold"]["total_ms"] for r in runs[name])
        print(f"| {name} | {wall:.1f} | {fastest:.1f} | {cpu:.0f} | {wall / ref_wall:.3f}x | {cpu / ref_cpu:.3f}x "
              f"| {p50(name, lambda r: r['cold']['import_init_ms']):.1f} "
              f"| {p50(name, lambda r: r['cold']['first_invoke_ms']):.1f} |")


if __name__ == "__main__":
    main()
