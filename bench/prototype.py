"""Measure candidate tuning changes to ``model/classifier`` without editing it.

Each variant is a patched copy of the runtime package under
``<work>/proto/<variant>/classifier``, put first on PYTHONPATH of the trial
processes (``bench/trial.py``, the same driver ``make bench`` uses), so the
whole handler is measured as in the bench: cold start, warm 1 MP / 12 MP,
raw forward, peak and steady RSS. The variants are cumulative, in the order of
``STEPS``, so each row shows what one more change moves; the baseline runs in
the same rounds, so ratios are from this run. A patch whose target text is not
found (the runtime changed) stops the run with the file and the text.

    python bench/prototype.py [--cold-rounds 4] [--warm-rounds 2] [--iters 10]
"""

from __future__ import annotations

import argparse
import compileall
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import run as bench  # noqa: E402


@dataclass(frozen=True)
class Step:
    name: str
    why: str
    patches: list[tuple[str, str, str]] = field(default_factory=list)  # (file, old, new)
    compile: bool = False
    optimized_model: bool = False
    env: dict[str, str] = field(default_factory=dict)


PATH_LOAD = Step(
    "onnx: hash while streaming, give ORT the path",
    "no 100 MB Python bytes copy beside ORT's own (peak RSS), no separate read",
    [("runtime.py",
      """        data = read_verified(vdir / artifact, manifest["artifacts"][artifact], where, verify)
        backend = load_backend(backend_kind, data, threads=self.threads)
        del data
""",
      """        if backend_kind == "onnx":
            _verify_streaming(vdir / artifact, manifest["artifacts"][artifact], where, verify)
            backend = load_backend(backend_kind, str(vdir / artifact), threads=self.threads)  # type: ignore[arg-type]
        else:
            data = read_verified(vdir / artifact, manifest["artifacts"][artifact], where, verify)
            backend = load_backend(backend_kind, data, threads=self.threads)
            del data
"""),
     ("runtime.py",
      """class ModelManager:""",
      """def _verify_streaming(path: Any, expected: dict[str, Any], where: str, verify: bool) -> None:
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise IntegrityError(f"{where}: {path.name} is missing") from None
    if size != expected["bytes"]:
        raise IntegrityError(f"{where}: {path.name} has {size} bytes, manifest says {expected['bytes']}")
    if verify and digest.hexdigest() != expected["sha256"]:
        raise IntegrityError(f"{where}: {path.name} sha256 does not match the manifest")


class ModelManager:""")],
)

MALLOC_TRIM = Step(
    "malloc_trim(0) after a load",
    "glibc keeps ~130 MB that ORT freed while building the session; give it back (steady RSS)",
    [("runtime.py",
      """        self._loaded = new
        self._failed = None
""",
      """        self._loaded = new
        self._failed = None
        _release_free_heap()
"""),
     ("runtime.py",
      """class ModelManager:""",
      """def _release_free_heap() -> None:
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class ModelManager:""")],
)

NO_SPIN = Step(
    "ORT intra-op spinning off",
    "idle pool threads stop busy-waiting for work and burning the vCPUs the Python thread needs",
    [("backends/onnx_backend.py",
      """        options.log_severity_level = 3
""",
      """        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
""")],
)

OPTIMIZED = Step(
    "pre-optimised model (ORT ENABLE_ALL, saved at publish), loaded with optimisations off",
    "session creation skips graph optimisation and its transient weight copies; CPU-specific (NCHWc)",
    [("backends/onnx_backend.py",
      """        self.session = ort.InferenceSession(""",
      """        if isinstance(model, str) and os.path.exists(model.replace("model.onnx", "model.optimized.onnx")):
            model = model.replace("model.onnx", "model.optimized.onnx")
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        self.session = ort.InferenceSession("""),
     ("backends/onnx_backend.py", "import numpy as np\n", "import os\n\nimport numpy as np\n")],
    optimized_model=True,
)

PARALLEL_PREPACK = Step(
    "ORT parallel weight prepacking",
    "session.prepack.enable_parallel=1: the intra-op pool packs the conv weights at load, not one thread",
    [("backends/onnx_backend.py",
      """        options.log_severity_level = 3
""",
      """        options.log_severity_level = 3
        options.add_session_config_entry("session.prepack.enable_parallel", "1")
""")],
)

COMPILED = Step("byte-compiled package", "the image copies classifier/ as source and PYTHONDONTWRITEBYTECODE=1 "
                "stops Python caching it, so every cold start compiles it", compile=True)

CONCURRENT_VERIFY = Step(
    "sha256 of model.onnx in a thread while ORT builds the session",
    "hashlib releases the GIL: the 100 MB hash overlaps session creation on the second vCPU; a mismatch "
    "still refuses the version (the session is dropped)",
    [("runtime.py",
      """            _verify_streaming(vdir / artifact, manifest["artifacts"][artifact], where, verify)
            backend = load_backend(backend_kind, str(vdir / artifact), threads=self.threads)  # type: ignore[arg-type]
""",
      """            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(1) as pool:
                check = pool.submit(_verify_streaming, vdir / artifact, manifest["artifacts"][artifact], where, verify)
                backend = load_backend(backend_kind, str(vdir / artifact), threads=self.threads)  # type: ignore
                check.result()  # raises IntegrityError on a mismatch; the new session is dropped
""")],
)

ONE_THREAD = Step(
    "1 intra-op thread (INFERENCE_THREADS=1)",
    "the CPU share this process really gets here (2 cores, load ~4) is about one core; 2 threads stall "
    "at every operator's barrier when the other is descheduled (as in a Lambda below 3,538 MB)",
    env={"INFERENCE_THREADS": "1"},
)

# ONE_THREAD and NO_SPIN help only when the process gets less CPU than it sees (a shared machine, a Lambda
# below 3,538 MB); pass --steps to choose, e.g. --steps compiled path trim prepack verify optimized.
STEP_NAMES = {"compiled": COMPILED, "path": PATH_LOAD, "trim": MALLOC_TRIM, "nospin": NO_SPIN,
              "prepack": PARALLEL_PREPACK, "verify": CONCURRENT_VERIFY, "onethread": ONE_THREAD,
              "optimized": OPTIMIZED}
STEPS = [COMPILED, PATH_LOAD, MALLOC_TRIM, NO_SPIN, PARALLEL_PREPACK, ONE_THREAD, OPTIMIZED]


# The runtime the patches were written against (the Core commit). The core owner applies the chosen
# changes in model/classifier, after which the patches no longer apply to the working tree.
BASE_REV = "179da43e44efc971dddd28fbf50562c93805a397"


def export_package(rev: str, target: Path) -> Path:
    """``model/classifier`` at ``rev`` (or the working tree for ``worktree``) copied to ``target``."""
    if rev == "worktree":
        shutil.copytree(ROOT / "model" / "classifier", target / "model" / "classifier",
                        ignore=shutil.ignore_patterns("__pycache__"))
    else:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "model/classifier"], check=True,
                                 capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(target, filter="data")
    return target / "model" / "classifier"


def build_variants(work: Path, store: Path, steps: Sequence[Step] = tuple(STEPS), rev: str = BASE_REV,
                   worktree: bool = False) -> dict[str, dict[str, Any]]:
    """Patched package copies (cumulative) and the store each variant reads."""
    proto = work / "proto"
    shutil.rmtree(proto, ignore_errors=True)
    source = export_package(rev, proto / "source")
    variants: dict[str, dict[str, Any]] = {}
    if worktree:
        target = proto / "worktree" / "classifier"
        shutil.copytree(export_package("worktree", proto / "worktree-source"), target)
        variants["model/classifier as in the working tree now"] = {
            "pythonpath": str(target.parent), "store": str(store), "env": {},
            "why": "the runtime with whatever tuning is already applied (uncommitted included)"}
    applied: list[Step] = []
    for i, step in enumerate([None, *steps]):
        if step is not None:
            applied.append(step)
        label = f"runtime at {rev[:7]}" if step is None else f"+ {step.name}"
        target = proto / f"v{i}" / "classifier"
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        for s in applied:
            for file, old, new in s.patches:
                path = target / file
                text = path.read_text()
                if old not in text:
                    raise SystemExit(f"prototype {s.name!r}: {file} no longer contains:\n{old}")
                path.write_text(text.replace(old, new, 1))
        if any(s.compile for s in applied):
            compileall.compile_dir(str(target), quiet=1)
        uses_optimized = any(s.optimized_model for s in applied)
        env: dict[str, str] = {}
        for s in applied:
            env.update(s.env)
        variants[label] = {"pythonpath": str(target.parent), "store": str(optimized_store(work, store)
                                                                          if uses_optimized else store),
                           "env": env, "why": step.why if step else f"model/classifier at {rev}"}
    return variants


def optimized_store(work: Path, store: Path) -> Path:
    """A hard-linked copy of the store whose current version also holds model.optimized.onnx."""
    import onnxruntime as ort

    target = work / "proto" / "store-optimized"
    if not target.exists():
        shutil.copytree(store, target, copy_function=os.link, ignore=shutil.ignore_patterns("records"))
    version = (target / "models" / "resnet50" / "CURRENT").read_text().strip()
    version_dir = target / "models" / "resnet50" / "versions" / version
    optimized = version_dir / "model.optimized.onnx"
    if not optimized.exists():
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(optimized)
        options.log_severity_level = 3
        ort.InferenceSession(str(version_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=BENCH / ".work")
    parser.add_argument("--cold-rounds", type=int, default=4)
    parser.add_argument("--warm-rounds", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--rev", default=BASE_REV, help="git revision of model/classifier to patch, or 'worktree'")
    parser.add_argument("--worktree", action="store_true", help="also measure model/classifier as it is now")
    parser.add_argument("--steps", nargs="+", choices=list(STEP_NAMES), default=None,
                        help="cumulative steps in this order (default: %(default)s = all but verify)")
    args = parser.parse_args(argv)
    work = args.work.resolve()
    store = work / "store"
    version = bench.ensure_store(store)
    files = bench.ensure_assets(store, work, version)
    photos = {"1mp": files["1mp"], "12mp": files["12mp"]}
    variants = build_variants(work, store, [STEP_NAMES[n] for n in args.steps] if args.steps else STEPS,
                              rev=args.rev, worktree=args.worktree)
    contenders = list(variants) + ([] if args.no_baseline else ["baseline"])
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}

    def env_for(contender: str) -> dict[str, str]:
        env = bench.child_env(store, files["weights"])
        if contender != "baseline":
            env["MODEL_STORE"] = variants[contender]["store"]
            env["PYTHONPATH"] = variants[contender]["pythonpath"]
            env.update(variants[contender]["env"])
        return env

    def kind(contender: str) -> str:
        return "baseline" if contender == "baseline" else "onnx"

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="proto-") as tmp:
        scratch = Path(tmp)
        for c in contenders:  # throwaway: page cache
            bench.spawn(kind(c), env_for(c), photos, scratch)
        for r in range(args.cold_rounds + args.warm_rounds):
            warm = r >= args.cold_rounds
            print(f"[proto] round {r + 1}/{args.cold_rounds + args.warm_rounds} ({'warm' if warm else 'cold'})",
                  file=sys.stderr, flush=True)
            for c in bench.rotated(contenders, r):
                result = bench.spawn(kind(c), env_for(c), photos, scratch,
                                     iters=args.iters if warm else 0, warmup=2 if warm else 0)
                if c != "baseline" and variants[c]["pythonpath"] not in str(result.get("module_file")):
                    raise SystemExit(f"{c}: imported {result.get('module_file')}, not the patched copy")
                runs[c].append(result)

    figs = {c: bench.figures(runs[c]) for c in contenders}
    base = figs.get("baseline")
    lines = [
        f"Prototype run: {args.cold_rounds} cold + {args.warm_rounds} warm processes per variant "
        f"({args.iters} timed rounds each), {time.monotonic() - started:.0f} s, "
        f"load average {os.getloadavg()[0]:.1f} at end. Variants are cumulative.",
        "",
        "| variant | cold p50 ms | cold CPU ms | import+init ms | first invoke ms | warm 1 MP p50 | forward p50 | "
        "1 MP / forward | warm 12 MP p50 | peak RSS MB | RSS after warm MB | cold / baseline | RSS / baseline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in contenders:
        f = figs[c]
        steady = statistics.median(r["rss_kb"]["after_warm"]["VmRSS"] for r in runs[c] if "after_warm" in r["rss_kb"])
        cold_ratio = bench.ratio(f["cold_ms"]["p50"], base["cold_ms"]["p50"]) if base else None
        rss_ratio = bench.ratio(f["peak_rss_mb"]["after_warm"], base["peak_rss_mb"]["after_warm"]) if base else None
        w = f["warm_ms"]
        lines.append(
            f"| {c} | {f['cold_ms']['p50']:.0f} | {bench.fmt(f['cold_cpu_ms'].get('p50'))} | "
            f"{f['cold_phases_ms']['import_init_ms']:.0f} | {f['cold_phases_ms']['first_invoke_ms']:.0f} | "
            f"{w['1mp']['p50']:.1f} | {w['forward']['p50']:.1f} | {w['1mp']['p50'] / w['forward']['p50']:.2f} | "
            f"{w['12mp']['p50']:.1f} | {f['peak_rss_mb']['after_warm']:.0f} | {steady / 1024:.0f} | "
            f"{bench.fmt(cold_ratio, 2)} | {bench.fmt(rss_ratio, 2)} |")
    lines += ["", "Why each step:", ""] + [f"- {c}: {v['why']}" for c, v in variants.items()]
    text = "\n".join(lines)
    (work / "prototype.md").write_text(text + "\n")
    (work / "prototype.json").write_text(json.dumps({"figures": figs, "variants": variants}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
