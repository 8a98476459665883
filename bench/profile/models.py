"""Several models in one process: what a loaded model takes, and whether two sessions taking turns fight.

1. Memory: the process's RSS before and after each of ``--loads`` loads of the store's current
   version through the runtime's own ``ModelManager.load`` (each session kept, each run once),
   against the bytes of ``model.onnx``: what the memory bound (``MODEL_MEMORY_MB``) counts a model as.
2. Turns: forward passes of two sessions of that model, one after the other (A, B, A, B, ...), as
   requests alternating between two models run, with ONNX Runtime's intra-op spinning on and off;
   and one session alone, both ways, as the single-model reference. Each variant runs in a
   fresh process (``--child``), the order rotated every round; the thread count is the runtime's
   plan (``classifier.serving.cpu.plan_threads``).

    python bench/profile/models.py [--store bench/.work/store] [--rounds 3] [--iters 20] [--loads 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
VARIANTS = {
    "one session, spinning": (1, True),
    "one session, no spinning": (1, False),
    "two sessions in turns, spinning": (2, True),
    "two sessions in turns, no spinning": (2, False),
}


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def memory(store: Path, loads: int) -> dict[str, Any]:
    import numpy as np

    from classifier.config import Settings
    from classifier.serving.manager import ModelManager

    manager = ModelManager(Settings(model_store=store))
    version = manager.store.current(manager.name)
    assert version is not None, f"no model published in {store}"
    onnx_mb = manager.store.manifest(manager.name, version)["artifacts"]["model.onnx"]["bytes"] / 2**20
    batch = np.zeros((1, 3, 224, 224), dtype=np.float32)
    kept, deltas = [], []
    for _ in range(loads):
        before = rss_mb()
        model = manager.load(version)
        model.backend.run(batch)
        kept.append(model)
        deltas.append(rss_mb() - before)
    return {"onnx_mb": onnx_mb, "rss_delta_mb": deltas}


def turns(store: Path, sessions: int, spin: bool, iters: int) -> dict[str, float]:
    import numpy as np

    from classifier.serving.backends.onnx_backend import OnnxBackend
    from classifier.serving.cpu import plan_threads

    threads = plan_threads().threads
    path = next((store / "models" / "resnet50" / "versions").iterdir()) / "model.onnx"
    backends = [OnnxBackend(path, threads=threads, spin=spin) for _ in range(sessions)]
    batch = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    for backend in backends:  # warm-up
        backend.run(batch)
    samples = []
    for i in range(iters * 2):
        backend = backends[i % sessions]
        start = time.perf_counter()
        backend.run(batch)
        samples.append((time.perf_counter() - start) * 1000)
    return {"p50": statistics.median(samples), "min": min(samples), "threads": threads}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=BENCH / ".work" / "store")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sessions, spin = VARIANTS[args.child]
        print(json.dumps(turns(args.store, sessions, spin, args.iters)))
        return 0

    print(f"host: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    used = memory(args.store, args.loads)
    print(f"\nmodel.onnx: {used['onnx_mb']:.1f} MB; RSS added by each load: "
          + ", ".join(f"{d:.1f}" for d in used["rss_delta_mb"]) + " MB")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            out = subprocess.run([sys.executable, __file__, "--store", str(args.store), "--iters", str(args.iters),
                                  "--child", name], capture_output=True, text=True, check=True)
            results[name].append(json.loads(out.stdout))
    reference = statistics.median(r["p50"] for r in results[names[0]])
    print(f"\nforward pass of one image, {results[names[0]][0]['threads']:.0f} intra-op threads, "
          f"{args.rounds} processes x {2 * args.iters} passes each")
    print("\n| variant | p50 ms (median of processes) | min ms | vs one session |\n|---|---:|---:|---:|")
    for name in names:
        p50 = statistics.median(r["p50"] for r in results[name])
        print(f"| {name} | {p50:.1f} | {min(r['min'] for r in results[name]):.1f} | {p50 / reference:.2f}x |")
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
