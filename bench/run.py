"""``make bench``: our Lambda handler against the naive torchvision pipeline, in one run.

Contenders, on the same photos, the same store on local disk and the same
environment (thread settings included):

- ``baseline``: ``bench/baseline.py``, what the common samples do;
- ``onnx`` and ``torch``: our handler, ``classifier.handler.handler`` of the
  working tree, invoked with an API Gateway REST (v1) event (base64 body),
  ``BACKEND=onnx|torch``;
- with ``--against REV``, ``ours@REV``: the same handler (onnx) from
  ``model/classifier`` as it was at git revision REV (``git archive`` into
  ``<work>/against/``, put on PYTHONPATH ahead of the installed package), so
  the summary can show ours ÷ ours@REV: a refactor's "no regression", an
  optimisation's gain, from one run.

Every measurement runs in a fresh child process (``bench/trial.py``), one at a
time, the contenders' order rotated every round; a first, unrecorded round
warms the page cache for all of them. Figures: cold start (spawn to first 200),
warm latency p50/p95 for a ~1 MP photo and a 12 MP JPEG, the raw model forward
(the floor), batch-8 throughput, peak RSS (VmHWM), and the installed size of the
runtime requirements with and without torch (``bench/install_size.py``).
Every trial reports which ``classifier`` package it imported, and the run stops
if that is not the one its contender stands for.

Results: the full report in ``<out>/results.json`` (``<out>`` defaults to
``<work>``, which git ignores), the summary in markdown in ``--summary``
(default ``<out>/results.md``; ``make bench`` writes the committed
``bench/results.md``) and on stdout.

    python bench/run.py [--quick] [--against REV] [--out DIR] [--summary FILE] [--store DIR] [--work DIR]

``--quick`` runs every step once with a handful of repetitions and takes the
install sizes from the cache (or leaves them out): it proves the bench works,
its numbers mean little. The machine is shared and noisy: read medians and ratios.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from report import get, ratio, render

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import assets  # noqa: E402
import costs  # noqa: E402
import install_size  # noqa: E402

CHILD_TIMEOUT = 900
WORKING_TREE_PACKAGE = ROOT / "model" / "classifier"


@dataclass(frozen=True)
class Contender:
    """One column of the report: what ``trial.py`` runs, and which ``classifier`` it must import."""

    name: str  # the report's key
    kind: str  # trial.py --contender: baseline | onnx | torch
    package: Path | None = None  # the classifier package its trial must import (None: none at all)
    pythonpath: Path | None = None  # put ahead of the installed package (an archived revision)
    store: Path | None = None  # a store of its own (the int8 version); None: the run's store
    int8: bool = False  # serves the int8 version (its store is set once that version exists: ensure_int8_store)
    env: tuple[tuple[str, str], ...] = ()  # environment variables of its own
    cold: bool = True  # takes part in the cold-start-only rounds
    warm: bool = True  # takes part in the warm rounds


BASELINE = Contender("baseline", "baseline")
OURS = (Contender("onnx", "onnx", WORKING_TREE_PACKAGE), Contender("torch", "torch", WORKING_TREE_PACKAGE))
# Our handler on the onnx backend serving the int8 version `quantize` derives from the run's fp32 one.
INT8 = Contender("int8", "onnx", WORKING_TREE_PACKAGE, int8=True)
MAIN = (BASELINE, *OURS, INT8)  # the main table's columns; ours@REV has its own table
# The cold-start floor (bench/floor.py) on the same fp32 and int8 models: our cold start is read as a ratio to it.
FLOORS = (Contender("floor", "floor", warm=False), Contender("floor-int8", "floor", int8=True, warm=False))
# A 1,769 MB Lambda (one vCPU: the thread plan gives it one thread), for the cost table's rows; warm rounds only.
ONE_VCPU_ENV = (("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1769"),)
ONE_VCPU = (Contender("onnx-1vcpu", "onnx", WORKING_TREE_PACKAGE, env=ONE_VCPU_ENV, cold=False),
            Contender("int8-1vcpu", "onnx", WORKING_TREE_PACKAGE, int8=True, env=ONE_VCPU_ENV, cold=False))
# The cost table's rows: (model, memory MB, contender). 3,008 MB is measured as the run's 2 threads.
COST_ROWS = (("resnet50 fp32", 3008, "onnx"), ("resnet50 int8", 3008, "int8"),
             ("resnet50 fp32", 1769, "onnx-1vcpu"), ("resnet50 int8", 1769, "int8-1vcpu"))


@dataclass(frozen=True)
class Plan:
    cold_rounds: int  # cold-start-only processes per contender (warm rounds add theirs)
    warm_rounds: int  # processes per contender that also run the warm loop
    iters: int  # timed warm rounds per process (each: forward, 1 MP, 12 MP)
    warmup: int
    batch_iters: int
    throwaway: bool  # an unrecorded first round that warms the page cache


FULL = Plan(cold_rounds=5, warm_rounds=3, iters=15, warmup=3, batch_iters=5, throwaway=True)
# One cold-start-only process each, so that cold start CPU time is measured too.
QUICK = Plan(cold_rounds=1, warm_rounds=1, iters=2, warmup=1, batch_iters=1, throwaway=False)


# -- statistics -------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a real sample)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 2),
        "p95": round(percentile(values, 95), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def ensure_store(store: Path) -> str:
    """Publish an untrained ResNet-50 into ``store`` unless one is current there; return its version."""
    current = store / "models" / "resnet50" / "CURRENT"
    if not current.exists():
        log(f"publishing an untrained resnet50 into {store} (latency does not depend on weight values)")
        subprocess.run([sys.executable, "-m", "classifier", "publish", "--store", str(store), "--weights", "random"],
                       check=True, stdout=subprocess.DEVNULL)
    return current.read_text().strip()


def ensure_int8_store(store: Path, work: Path, version: str) -> Path:
    """A store beside ``store`` whose current version is the int8 one derived from ``version``."""
    target = work / "store-int8"
    models = target / "models" / "resnet50"
    current = models / "CURRENT"
    if current.exists():
        manifest = json.loads((models / "versions" / current.read_text().strip() / "manifest.json").read_text())
        if manifest.get("derived_from") == version:
            return target
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(store / "models", target / "models", copy_function=os.link)
    log(f"quantizing {version} into {target} (int8)")
    # --force: the bench measures int8's speed, and on untrained weights its drift from fp32 means nothing.
    subprocess.run([sys.executable, "-m", "classifier", "quantize", "--store", str(target), "--version", version,
                    "--force"], check=True, stdout=subprocess.DEVNULL)
    return target


def ensure_assets(store: Path, work: Path, version: str) -> dict[str, Path]:
    photos = assets.make_photos(work / "photos")
    weights = work / "baseline" / assets.BASELINE_WEIGHTS
    stamp = weights.with_suffix(".version")
    if not weights.exists() or not stamp.exists() or stamp.read_text() != version:
        log("writing the baseline's resnet50.pth from the published weights.safetensors")
        subprocess.run([sys.executable, str(BENCH / "assets.py"), "--store", str(store), "--work", str(work)],
                       check=True)
        stamp.write_text(version)
    return {**photos, "weights": weights}


def photo_facts(path: Path) -> dict[str, Any]:
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        fmt = image.format
    return {"file": path.name, "format": fmt, "width": width, "height": height,
            "megapixels": round(width * height / 1e6, 2), "bytes": path.stat().st_size}


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem_gb = round(mem_kb / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory_gb": mem_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": versions(),
        "thread_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "INFERENCE_THREADS",
                                                     "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")},
    }


def git(*args: str) -> str:
    """Output of a git command in this checkout ("" when it fails)."""
    try:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def runtime_revision() -> dict[str, Any]:
    """The commit the runtime was measured at, and whether model/ had uncommitted changes."""
    return {"commit": git("rev-parse", "HEAD") or None, "model_dirty": bool(git("status", "--porcelain", "model"))}


def archived_runtime(rev: str, work: Path) -> tuple[Contender, dict[str, Any]]:
    """``model/classifier`` as it was at ``rev``, extracted under ``<work>/against``: the contender ours@REV."""
    # A commit (the usual case) or any tree git can name.
    resolved = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}") or git(
        "rev-parse", "--verify", "--quiet", f"{rev}^{{tree}}")
    if not resolved:
        raise SystemExit(f"--against {rev}: not a git revision of {ROOT}")
    if git("ls-tree", "-d", "--name-only", resolved, "model/classifier") != "model/classifier":
        raise SystemExit(f"--against {rev}: revision {resolved[:12]} has no model/classifier, "
                         "so there is no runtime to measure at it")
    target = work.resolve() / "against" / resolved
    shutil.rmtree(target, ignore_errors=True)  # never measure a stale or half-written copy
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", resolved, "model/classifier"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    contender = Contender(f"ours@{rev}", "onnx", target / "model" / "classifier", target / "model")
    return contender, {"rev": rev, "resolved": resolved, "contender": contender.name,
                       "package": str(contender.package)}


def versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in ("torch", "torchvision", "onnxruntime", "numpy", "pillow", "starlette", "mangum"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# -- children ---------------------------------------------------------------------
def spawn(contender: Contender, env: dict[str, str], photos: dict[str, Path], scratch: Path, *,
          iters: int = 0, warmup: int = 0, batch_iters: int = 0) -> dict[str, Any]:
    """Run one trial process; return its result plus the kernel's rusage of it."""
    slug = contender.name.replace("/", "_")
    result_path = scratch / f"{slug}-{time.monotonic_ns()}.json"
    log_path = scratch / f"{slug}.log"
    if contender.pythonpath is not None:
        env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(contender.pythonpath),
                                                                  env.get("PYTHONPATH")]))}
    if contender.store is not None:
        env = {**env, "MODEL_STORE": str(contender.store)}
    env = {**env, **dict(contender.env)}
    args = [sys.executable, str(BENCH / "trial.py"), "--contender", contender.kind,
            "--photo-1mp", str(photos["1mp"]), "--photo-12mp", str(photos["12mp"]),
            "--result", str(result_path), "--iters", str(iters), "--warmup", str(warmup),
            "--batch-iters", str(batch_iters)]
    with open(log_path, "ab") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen([*args, "--t0", repr(t0)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=scratch)
        deadline = t0 + CHILD_TIMEOUT
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, rusage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or not result_path.exists():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{contender.name} trial failed (exit {proc.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(result_path.read_text())
    result_path.unlink()
    check_provenance(contender, result.get("classifier_file"))
    result["rusage"] = {"cpu_ms": (rusage.ru_utime + rusage.ru_stime) * 1000, "maxrss_kb": rusage.ru_maxrss}
    return result


def check_provenance(contender: Contender, classifier_file: str | None) -> None:
    """Stop unless the trial imported the classifier package its contender stands for."""
    imported = Path(classifier_file).resolve().parent if classifier_file else None
    expected = contender.package.resolve() if contender.package else None
    if imported != expected:
        raise RuntimeError(f"{contender.name} trial imported classifier from {imported}, not {expected}")


def byte_compile(contenders: Sequence[Contender]) -> None:
    """Compile each contender's classifier package, and bench/'s scripts, to .pyc beside their sources.

    The Lambda image byte-compiles the package (model/Dockerfile), and the venv's packages are compiled
    at install; a working tree is not, and with PYTHONDONTWRITEBYTECODE set every trial would compile
    it from source again, a cost no deployment pays. .pyc files beside the sources are read whatever
    PYTHONDONTWRITEBYTECODE says (git and the image's build context ignore them)."""
    import compileall

    for package in {c.package for c in contenders if c.package is not None}:
        compileall.compile_dir(package, quiet=1)
    compileall.compile_dir(BENCH, maxlevels=0, quiet=1)


# The inference function's settings (lambda_docker/inference.py) that change what a process does
# at init, given to every contender, the floor too: the bench measures the handler as Lambda runs
# it. No rollout is judged in process (the function's store is read-only), so the first load does not
# wait for the judge; numpy's OpenBLAS starts no spinning threads (docs/performance.md).
# tests/infra/test_service_stack.py checks these against the synthesized function.
LAMBDA_SETTINGS = {"ROLLOUT_JUDGE_SECONDS": "0", "OPENBLAS_NUM_THREADS": "1",
                   # EMF metric lines as in Lambda: the cost table counts the log bytes they add.
                   "POWERTOOLS_METRICS_NAMESPACE": "Classifier"}


def child_env(store: Path, weights: Path) -> dict[str, str]:
    """The same environment for every contender; only BACKEND (set by trial.py) and, for an archived
    revision, PYTHONPATH differ."""
    env = dict(os.environ)
    env.pop("BACKEND", None)
    env.update(LAMBDA_SETTINGS)
    env.update(MODEL_STORE=str(store), MODEL_NAME="resnet50", BASELINE_WEIGHTS=str(weights))
    return env


def rotated(items: Sequence[Contender], turn: int) -> list[Contender]:
    k = turn % len(items)
    return [*items[k:], *items[:k]]


def collect(plan: Plan, contenders: Sequence[Contender], env: dict[str, str], photos: dict[str, Path],
            scratch: Path) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in contenders}
    turn = 0
    if plan.throwaway:
        log("throwaway round (warms the page cache for every contender)")
        for contender in contenders:
            spawn(contender, env, photos, scratch)
    cold = [c for c in contenders if c.cold]
    for r in range(plan.cold_rounds):
        log(f"cold round {r + 1}/{plan.cold_rounds}")
        for contender in rotated(cold, turn):
            runs[contender.name].append(spawn(contender, env, photos, scratch))
        turn += 1
    warm = [c for c in contenders if c.warm]
    for r in range(plan.warm_rounds):
        log(f"warm round {r + 1}/{plan.warm_rounds}")
        for contender in rotated(warm, turn):
            runs[contender.name].append(spawn(contender, env, photos, scratch, iters=plan.iters,
                                              warmup=plan.warmup, batch_iters=plan.batch_iters))
        turn += 1
    return runs


# -- figures ----------------------------------------------------------------------
def figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    cold = [r["cold"]["total_ms"] for r in runs]
    warm = [r for r in runs if "warm" in r]
    batched = [r for r in runs if "batch" in r]
    out: dict[str, Any] = {
        "cold_ms": summary(cold),
        # CPU time of the cold-start-only processes (user + sys, all threads): less sensitive than wall
        # time to other processes on a shared machine.
        "cold_cpu_ms": summary([r["rusage"]["cpu_ms"] for r in runs if "warm" not in r]),
        "cold_phases_ms": {
            phase: round(statistics.median(r["cold"][phase] for r in runs), 1)
            for phase in ("interpreter_ms", "setup_ms", "import_init_ms", "first_invoke_ms")
        },
        "model_load_ms": summary([r["model_load_ms"] for r in runs if r.get("model_load_ms") is not None]),
        "peak_rss_mb": {
            step: round(statistics.median(r["rss_kb"][step]["VmHWM"] for r in runs if step in r["rss_kb"]) / 1024, 1)
            for step in ("after_cold", "after_warm", "after_batch") if any(step in r["rss_kb"] for r in runs)
        },
    }
    if warm:
        out["warm_ms"] = {name: summary([x for r in warm for x in r["warm"][name]])
                          for name in ("1mp", "12mp", "forward")}
        out["threads"] = warm[0].get("threads")
        logged = [r["log_bytes_per_request"] for r in warm if "log_bytes_per_request" in r]
        if logged:
            out["log_bytes_per_request"] = round(statistics.median(logged), 1)
        timing: dict[str, dict[str, float]] = {}
        for name in ("1mp", "12mp"):
            rows = [t for r in warm for t in r.get("server_timing", {}).get(name, [])]
            if rows:
                timing[name] = {k: round(statistics.median(t[k] for t in rows), 2) for k in rows[0]}
        if timing:
            out["server_timing_ms"] = timing
    if batched:
        size = batched[0]["batch"]["size"]
        e2e = summary([x for r in batched for x in r["batch"]["end_to_end"]])
        fwd = summary([x for r in batched for x in r["batch"]["forward"]])
        out["batch"] = {
            "size": size,
            "end_to_end_ms": e2e,
            "forward_ms": fwd,
            "images_per_s": round(size / e2e["p50"] * 1000, 2),
            "forward_images_per_s": round(size / fwd["p50"] * 1000, 2),
        }
    return out


def both(fig: dict[str, Any], ours: tuple[str, ...], theirs: tuple[str, ...]) -> tuple[float | None, float | None]:
    """The ratio of medians (what a target or a comparison states) and of minimums (a cross-check less
    sensitive to noise) of two figures with a summary each."""
    return (ratio(get(fig, *ours, "p50"), get(fig, *theirs, "p50")),
            ratio(get(fig, *ours, "min"), get(fig, *theirs, "min")))


def targets(fig: dict[str, dict[str, Any]], sizes: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The issue's targets: ratios measured in this run, and whether each holds."""
    rows: list[dict[str, Any]] = []

    def add(figure: str, contender: str, value: float | None, limit: float, against: str,
            best: float | None = None) -> None:
        rows.append({"figure": figure, "contender": contender, "against": against, "ratio": value, "limit": limit,
                     "pass": None if value is None else value <= limit, "ratio_of_minimums": best})

    base = fig["baseline"]
    p50, best = both(fig, ("onnx", "cold_ms"), ("baseline", "cold_ms"))
    add("cold start", "onnx", p50, 0.2, "baseline cold start", best)
    for backend in ("onnx", "torch"):
        p50, best = both(fig, (backend, "warm_ms", "1mp"), (backend, "warm_ms", "forward"))
        add("warm 1 MP p50", backend, p50, 1.25, f"raw forward ({backend})", best)
    # Against the baseline, the targets are for the default (onnx) backend: the
    # torch backend runs the very same torch forward as the baseline, so its
    # ratios are in the main table, for information.
    p50, best = both(fig, ("onnx", "warm_ms", "1mp"), ("baseline", "warm_ms", "1mp"))
    add("warm 1 MP p50", "onnx", p50, 0.6, "baseline warm 1 MP", best)
    p50, best = both(fig, ("onnx", "warm_ms", "12mp"), ("baseline", "warm_ms", "12mp"))
    add("warm 12 MP p50", "onnx", p50, 0.35, "baseline warm 12 MP", best)
    add("peak RSS", "onnx",
        ratio(get(fig, "onnx", "peak_rss_mb", "after_warm"), get(base, "peak_rss_mb", "after_warm")), 0.45,
        "baseline peak RSS")
    # int8 (issue 12): against fp32 on the same backend, and against the naive baseline
    p50, best = both(fig, ("int8", "warm_ms", "1mp"), ("onnx", "warm_ms", "1mp"))
    add("warm 1 MP p50", "int8", p50, 0.5, "fp32 (onnx) warm 1 MP", best)
    p50, best = both(fig, ("int8", "warm_ms", "1mp"), ("baseline", "warm_ms", "1mp"))
    add("warm 1 MP p50", "int8", p50, 0.3, "baseline warm 1 MP", best)
    p50, best = both(fig, ("int8", "cold_ms"), ("onnx", "cold_ms"))
    add("cold start", "int8", p50, 0.6, "fp32 (onnx) cold start", best)
    add("peak RSS", "int8",
        ratio(get(fig, "int8", "peak_rss_mb", "after_warm"), get(fig, "onnx", "peak_rss_mb", "after_warm")), 0.5,
        "fp32 (onnx) peak RSS")
    # The cold start at its floor (bench/floor.py on the same model), both precisions.
    for ours, floor in (("onnx", "floor"), ("int8", "floor-int8")):
        if floor in fig:
            p50, best = both(fig, (ours, "cold_ms"), (floor, "cold_ms"))
            add("cold start", ours, p50, 1.15, f"the floor ({floor}) cold start", best)
    onnx_size = get(sizes or {}, "variants", "onnx", "bytes")
    for variant in ("torch-cpu", "torch-cuda"):
        other = get(sizes or {}, "variants", variant, "bytes")
        if other is not None or variant == "torch-cpu":
            add("install size", "onnx", ratio(onnx_size, other), 0.25, f"{variant} variant")
    return rows


# The figures ours ÷ ours@REV is given for: (key, label, where figures() keeps it, digits). All are times
# or memory, so below 1.00x ours is the faster or smaller.
BEFORE_AFTER = (
    ("cold_start", "cold start to first 200, p50 (ms)", ("cold_ms",), 0),
    ("cold_start_cpu", "cold start CPU time, p50 (ms)", ("cold_cpu_ms",), 0),
    ("warm_1mp", "warm ~1 MP photo, p50 (ms)", ("warm_ms", "1mp"), 1),
    ("warm_12mp", "warm 12 MP JPEG, p50 (ms)", ("warm_ms", "12mp"), 1),
    ("forward", "raw model forward, batch 1, p50 (ms)", ("warm_ms", "forward"), 1),
    ("batch_8", "batch-8 request, end to end, p50 (ms)", ("batch", "end_to_end_ms"), 1),
    ("peak_rss", "peak RSS serving 1 MP + 12 MP (MB)", ("peak_rss_mb", "after_warm"), 0),
)


def before_after(fig: dict[str, dict[str, Any]], ours: str, theirs: str) -> list[dict[str, Any]]:
    """ours ÷ theirs for every figure of BEFORE_AFTER, as ratios of medians (and of minimums)."""
    rows = []
    for key, label, path, digits in BEFORE_AFTER:
        if isinstance(get(fig, ours, *path), dict):  # a summary of samples
            values = (get(fig, ours, *path, "p50"), get(fig, theirs, *path, "p50"))
            p50, best = both(fig, (ours, *path), (theirs, *path))
        else:  # peak RSS: already a median over processes, no minimum kept
            values = (get(fig, ours, *path), get(fig, theirs, *path))
            p50, best = ratio(*values), None
        rows.append({"figure": key, "label": label, "digits": digits, "ours": values[0], "theirs": values[1],
                     "ratio": p50, "ratio_of_minimums": best})
    return rows


def cost_report(fig: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The cost table (bench/costs.py) from this run's warm p50s and logged bytes: its rows and its markdown."""
    measurements = []
    for model, memory_mb, name in COST_ROWS:
        p50, logged = get(fig, name, "warm_ms", "1mp", "p50"), get(fig, name, "log_bytes_per_request")
        threads = get(fig, name, "threads", "threads")
        if p50 is not None and logged is not None:
            measurements.append(costs.Measurement(model, memory_mb, int(threads or 0), p50, logged))
    return costs.report(measurements)


# -- report -----------------------------------------------------------------------
def write_report(report: dict[str, Any], results: Path, markdown: str, summary: Path) -> None:
    """The full report (JSON) and its markdown summary, each where it goes; the summary printed too."""
    for path in (results, summary):
        path.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=1) + "\n")
    summary.write_text(markdown)
    print(markdown)
    log(f"wrote {results} and {summary}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short pass: proves the bench runs")
    parser.add_argument("--work", type=Path, default=BENCH / ".work", help="store, photos, venvs, caches")
    parser.add_argument("--out", type=Path, default=None, help="where results.json goes (default: <work>)")
    parser.add_argument("--summary", type=Path, default=None,
                        help="the markdown summary (default: <out>/results.md; make bench: bench/results.md)")
    parser.add_argument("--against", metavar="REV", default=None,
                        help="also measure model/classifier as it was at git revision REV, as contender ours@REV")
    parser.add_argument("--store", type=Path, default=None,
                        help="an existing store with a published resnet50 (default: <work>/store)")
    parser.add_argument("--remeasure-install", action="store_true", help="ignore the install-size cache")
    parser.add_argument("--skip-install", action="store_true", help="leave the install sizes out")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    out = args.out or args.work
    contenders: list[Contender] = [*MAIN, *FLOORS, *ONE_VCPU]
    against: dict[str, Any] | None = None
    if args.against is not None:  # before anything slow: a bad revision fails at once
        contender, against = archived_runtime(args.against, args.work)
        # Right after onnx, so that the two processes being compared run next to each other in most
        # rounds (a rotation keeps the order), under the same load from the rest of the machine.
        contenders.insert(contenders.index(OURS[0]) + 1, contender)
    started = time.monotonic()
    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    load_start = os.getloadavg()[0]

    args.work.mkdir(parents=True, exist_ok=True)
    store = (args.store or args.work / "store").resolve()
    version = ensure_store(store)
    if args.store is None:  # our handler stores a record per request: keep the bench's own store small
        for path in store.glob("records.sqlite3*"):
            path.unlink()
    files = ensure_assets(store, args.work.resolve(), version)
    int8_store = ensure_int8_store(store, args.work.resolve(), version)
    contenders = [replace(c, store=int8_store) if c.int8 else c for c in contenders]
    photos = {"1mp": files["1mp"], "12mp": files["12mp"]}
    env = child_env(store, files["weights"])
    byte_compile(contenders)

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        runs = collect(plan, contenders, env, photos, Path(tmp))

    sizes = None
    if not args.skip_install:
        sizes = install_size.run(args.work, force=args.remeasure_install, only_cached=args.quick)

    fig = {c.name: figures(runs[c.name]) for c in contenders}
    if against is not None:
        against["comparison"] = before_after(fig, "onnx", against["contender"])
    report: dict[str, Any] = {
        "schema": 3,  # 2: contenders beyond the three, "against"; 3: the floors, 1-vCPU rows, "costs"
        "mode": "quick" if args.quick else "full",
        "command": shlex.join(["python", "bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "started_at": started_at,
        "duration_s": round(time.monotonic() - started, 1),
        "load_average": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "machine": machine(),
        "runtime": runtime_revision(),
        "against": against,
        "plan": asdict(plan),
        "model": {"store": str(store), "version": version, "weights": "random (untrained)"},
        "photos": {name: photo_facts(path) for name, path in photos.items()},
        "figures": fig,
        "install_size": sizes,
        "targets": targets(fig, sizes),
        "costs": cost_report(fig),
        "raw": runs,
    }
    write_report(report, out / "results.json", render(report), args.summary or out / "results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
