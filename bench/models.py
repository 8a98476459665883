"""``make bench``: the model table, one row per architecture and precision, in one run.

For ResNet-50, MobileNetV3-Large, EfficientNet-B0, ConvNeXt-Tiny and ViT-B/16 (``--archs`` for
others): parameters, ONNX size, cold start (spawn to first 200), warm p50 of a ~1 MP JPEG through
the whole handler, peak RSS, fp32 and int8, beside each architecture's published ImageNet top-1
(torchvision's weights metadata, ``DEFAULT`` weights: read, not measured here).

Pretrained weights cannot be downloaded here, and latency and memory do not depend on weight
values; but whether int8 keeps a model's answers does. So each architecture is published from
weights written like the tests' (``tests/helpers/weights.py``: seeded, batch-norm statistics from
real photos, a rescaled head), and ``quantize --force`` derives its int8 version: the table gives
quantize's verdict (what it measured against fp32, and what it does with the int8 version
without ``--force``) beside the int8 figures.

Every measurement runs in a fresh process (``bench/trial.py``, the main bench's, with the 1 MP
photo only), one at a time, contenders rotated every round after an unrecorded round that warms
the page cache. Each process serves one model with one ONNX Runtime session, so no two sessions
share a process. Results: ``<work>/models.json`` (every sample; ``models[*].warm_1mp_ms.p50`` is
the warm p50 per architecture and precision) and a markdown summary (``--summary``; ``make bench``
writes the committed ``bench/results-models.md``).

    python bench/models.py [--quick] [--archs resnet50 vit_b_16 ...] [--work DIR] [--summary FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import assets  # noqa: E402
import costs  # noqa: E402
from run import CHILD_TIMEOUT, log, machine, runtime_revision, summary, write_report  # noqa: E402

ARCHS = ("resnet50", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny", "vit_b_16")
# Bump when the weights recipe changes: the published versions are reused across runs otherwise.
WEIGHTS_RECIPE = "calibrated-v1"
# What quantize measured of each int8 version (its manifest's verification), reported beside it.
QUANTIZE_FIGURES = ("relative_error_vs_fp32", "top1_agreement_with_fp32", "forward_time_ratio")


@dataclass(frozen=True)
class Plan:
    rounds: int  # processes per contender, each a cold start then the warm loop
    iters: int  # timed warm rounds per process (each: the raw forward and the 1 MP photo)
    warmup: int
    throwaway: bool


FULL = Plan(rounds=3, iters=10, warmup=2, throwaway=True)
QUICK = Plan(rounds=1, iters=2, warmup=1, throwaway=False)


@dataclass(frozen=True)
class Contender:
    arch: str
    precision: str  # fp32 | int8
    store: Path

    @property
    def key(self) -> str:
        return f"{self.arch}/{self.precision}"


def cpu_features() -> list[str]:
    """The vector instructions int8 speed depends on, as /proc/cpuinfo lists them."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    have = set(flags.split(":", 1)[1].split())
    return [flag for flag in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if flag in have]


def published_top1(arch: str) -> dict[str, Any]:
    """What torchvision's metadata says of the architecture's DEFAULT weights (read, not measured)."""
    import torchvision.models

    weights = torchvision.models.get_model_weights(arch).DEFAULT
    metrics = weights.meta.get("_metrics", {}).get("ImageNet-1K", {})
    return {"weights": weights.name, "params": weights.meta.get("num_params"), "top1": metrics.get("acc@1"),
            "gflops": weights.meta.get("_ops")}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "classifier", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"python -m classifier {shlex.join(args)} failed:\n{done.stderr[-3000:]}")
    return done


def ensure_versions(store: Path, work: Path, arch: str) -> dict[str, Any]:
    """The arch's fp32 version in ``store`` (published from calibrated weights) and its int8 one
    (``quantize --force``), each made once per weights recipe; returns their ids and quantize's verdict."""
    record = work / "versions" / f"{arch}.json"
    if record.exists():
        known = json.loads(record.read_text())
        models = store / "models" / arch / "versions"
        if known.get("recipe") == WEIGHTS_RECIPE and all((models / known[p]).is_dir() for p in ("fp32", "int8")):
            known["quantize"] = {key: known["quantize"].get(key) for key in QUANTIZE_FIGURES}
            return dict(known)
    sys.path.insert(0, str(ROOT / "tests"))
    import torch

    from helpers.weights import calibrated

    log(f"{arch}: writing calibrated weights, publishing, quantizing (once per recipe)")
    checkpoint = work / "weights" / f"{arch}.pth"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(calibrated(arch).state_dict(), checkpoint)
    shutil.rmtree(store / "models" / arch, ignore_errors=True)
    run_cli("publish", "--store", str(store), "--arch", arch, "--weights", str(checkpoint))
    fp32 = (store / "models" / arch / "CURRENT").read_text().strip()
    run_cli("quantize", "--store", str(store), "--name", arch, "--version", fp32, "--no-activate", "--force")
    (int8,) = {p.name for p in (store / "models" / arch / "versions").iterdir()} - {fp32}
    manifest = json.loads((store / "models" / arch / "versions" / int8 / "manifest.json").read_text())
    verification = manifest["verification"]
    known = {"recipe": WEIGHTS_RECIPE, "fp32": fp32, "int8": int8,
             "quantize": {key: verification.get(key) for key in QUANTIZE_FIGURES}}
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(known, indent=1))
    return known


def precision_stores(store: Path, work: Path, versions: dict[str, dict[str, Any]]) -> dict[str, Path]:
    """Two views of the same versions (hard links): in one every CURRENT names the fp32 version, in
    the other the int8 one; a trial serves MODEL_NAME=<arch> from one of them."""
    out = {}
    for precision in ("fp32", "int8"):
        target = work / f"store-{precision}"
        shutil.rmtree(target, ignore_errors=True)
        for arch, known in versions.items():
            source = store / "models" / arch / "versions" / known[precision]
            dest = target / "models" / arch / "versions" / known[precision]
            shutil.copytree(source, dest, copy_function=os.link)
            (target / "models" / arch / "CURRENT").write_text(known[precision] + "\n")
        out[precision] = target
    return out


def spawn(contender: Contender, photos: dict[str, Path], scratch: Path, plan: Plan, *, measured: bool
          ) -> dict[str, Any]:
    """One trial process: a cold start, then (when ``measured``) the warm loop on the 1 MP photo."""
    result_path = scratch / f"{contender.arch}-{contender.precision}-{time.monotonic_ns()}.json"
    log_path = scratch / f"{contender.arch}-{contender.precision}.log"
    # EMF metric lines as in Lambda (the CDK app sets the namespace): the cost rows count the bytes logged.
    env = {**os.environ, "MODEL_STORE": str(contender.store), "MODEL_NAME": contender.arch,
           "POWERTOOLS_METRICS_NAMESPACE": "Classifier"}
    env.pop("BACKEND", None)
    args = [sys.executable, str(BENCH / "trial.py"), "--contender", "onnx", "--photo-1mp", str(photos["1mp"]),
            "--photo-12mp", str(photos["12mp"]), "--result", str(result_path), "--steps", "forward,1mp",
            "--iters", str(plan.iters if measured else 0), "--warmup", str(plan.warmup)]
    with open(log_path, "ab") as out:
        t0 = time.monotonic()
        done = subprocess.run([*args, "--t0", repr(t0)], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=scratch,
                              timeout=CHILD_TIMEOUT, check=False)
    if done.returncode != 0 or not result_path.exists():
        raise RuntimeError(f"{contender.key} trial failed (exit {done.returncode}):\n"
                           f"{log_path.read_text(errors='replace')[-3000:]}")
    result: dict[str, Any] = json.loads(result_path.read_text())
    result_path.unlink()
    if result.get("precision") != contender.precision:
        raise RuntimeError(f"{contender.key} trial served a {result.get('precision')} version")
    return result


def collect(plan: Plan, contenders: Sequence[Contender], photos: dict[str, Path],
            scratch: Path) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {c.key: [] for c in contenders}
    if plan.throwaway:
        log("throwaway round (warms the page cache for every contender)")
        for contender in contenders:
            spawn(contender, photos, scratch, plan, measured=False)
    for r in range(plan.rounds):
        log(f"round {r + 1}/{plan.rounds}")
        k = r % len(contenders)
        for contender in [*contenders[k:], *contenders[:k]]:
            runs[contender.key].append(spawn(contender, photos, scratch, plan, measured=True))
    return runs


def figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "cold_ms": summary([r["cold"]["total_ms"] for r in runs]),
        "warm_1mp_ms": summary([x for r in runs for x in r["warm"]["1mp"]]),
        "forward_ms": summary([x for r in runs for x in r["warm"]["forward"]]),
        "model_load_ms": summary([r["model_load_ms"] for r in runs if r.get("model_load_ms") is not None]),
        "peak_rss_mb": round(statistics.median(r["rss_kb"]["after_warm"]["VmHWM"] for r in runs) / 1024, 1),
        "threads": runs[0].get("threads"),
        "log_bytes_per_request": round(statistics.median(r["log_bytes_per_request"] for r in runs), 1),
    }


# The memory size a row is priced at: the host's own thread plan (2 threads on this 2-core machine) stands
# for a 3,008 MB function's ~1.7 vCPUs, as bench/run.py's 3,008 MB rows do (bench/costs.py says how).
PRICED_MEMORY_MB = 3008


def cost_report(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The cost table (bench/costs.py) of every architecture and precision, from this run's warm p50s."""
    measurements = [costs.Measurement(f"{row['arch']} {row['precision']}", PRICED_MEMORY_MB,
                                      int((row["figures"]["threads"] or {}).get("threads") or 0),
                                      row["figures"]["warm_1mp_ms"]["p50"], row["figures"]["log_bytes_per_request"])
                    for row in rows]
    return costs.report(measurements)


def verdict(arch: str, figures: dict[str, Any]) -> str:
    """What ``quantize`` without ``--force`` does with this int8 version, by its own rules and figures."""
    from classifier.lifecycle.quantize import drift_problems, transformer_problem

    measured = (f"relative error {figures['relative_error_vs_fp32']}, top-1 agreement "
                f"{figures['top1_agreement_with_fp32']:.0%}")
    if transformer_problem(arch) is not None:
        return f"{measured}; refused without `--force` (a vision transformer)"
    if drift_problems(figures):
        return f"{measured}; installed, not made current (drifts beyond the bounds)"
    return f"{measured}; installed"


def render(report: dict[str, Any]) -> str:
    rows = report["models"]
    lines = [
        "# `make bench`: the model table",
        "",
        f"Command: `{report['command']}`, {report['started_at']}, {report['duration_s']:.0f} s. Machine: "
        f"{report['machine']['cpu']} ({', '.join(report['isa']) or 'no AVX2'}), "
        f"{report['machine']['cpus_usable']} CPUs usable; load average "
        f"{report['load_average']['start']} at start, {report['load_average']['end']} at the end (a shared machine). "
        f"Runtime at {str(report['runtime']['commit'])[:12]}"
        f"{' (model/ modified)' if report['runtime']['model_dirty'] else ''}; onnx backend, "
        f"{report['plan']['rounds']} processes per row, {report['plan']['iters']} warm requests each.",
        "",
        "| architecture | precision | parameters | ONNX MB | cold start p50 (ms) | warm 1 MP p50 (ms) | "
        "peak RSS (MB) | published ImageNet top-1 | quantize's verdict |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        said = verdict(row["arch"], row["quantize"]) if row["precision"] == "int8" else ""
        top1 = row["published"]["top1"]
        lines.append(
            f"| {row['arch']} | {row['precision']} | {row['published']['params'] / 1e6:.1f} M | "
            f"{row['onnx_bytes'] / 1e6:.1f} | {row['figures']['cold_ms']['p50']:,.0f} | "
            f"{row['figures']['warm_1mp_ms']['p50']:,.1f} | {row['figures']['peak_rss_mb']:,.0f} | "
            f"{'-' if top1 is None else f'{top1:.1f}%'} | {said} |")
    lines += [
        "",
        "Published top-1: torchvision's `weights.meta['_metrics']['ImageNet-1K']['acc@1']` of each architecture's "
        "`DEFAULT` weights (fp32), read, not measured: no ImageNet here, and the versions measured hold untrained "
        "weights (latency and memory do not depend on their values). int8 accuracy is not known without real "
        "weights and data: quantize's verdict is its own comparison with fp32 on the calibration photos.",
        "",
        f"Every sample: `{report['results']}` (`models[*].figures.warm_1mp_ms.p50`: the warm p50 per "
        "architecture and precision).",
    ]
    if report.get("costs"):  # (a models.json from before the cost table has none)
        lines += ["", "## What a million classifications cost, per architecture", "", *report["costs"]["markdown"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short pass: proves the table can be made")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), metavar="ARCH")
    parser.add_argument("--work", type=Path, default=BENCH / ".work")
    parser.add_argument("--summary", type=Path, default=None, help="markdown summary (default: <work>/models.md)")
    parser.add_argument("--render", type=Path, metavar="MODELS_JSON",
                        help="measure nothing: write the summary of an earlier run's models.json")
    args = parser.parse_args(argv)
    if args.render is not None:
        markdown = render(json.loads(args.render.read_text()))
        (args.summary or args.work / "models.md").write_text(markdown)
        print(markdown)
        return 0
    plan = QUICK if args.quick else FULL
    work = args.work.resolve()
    started = time.monotonic()
    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    load_start = os.getloadavg()[0]

    store = work / "models-store"
    versions = {arch: ensure_versions(store, work, arch) for arch in args.archs}
    stores = precision_stores(store, work, versions)
    photos = assets.make_photos(work / "photos")
    contenders = [Contender(arch, precision, stores[precision])
                  for arch in args.archs for precision in ("fp32", "int8")]
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        runs = collect(plan, contenders, photos, Path(tmp))

    rows = []
    for contender in contenders:
        version = versions[contender.arch][contender.precision]
        manifest = json.loads((store / "models" / contender.arch / "versions" / version / "manifest.json").read_text())
        rows.append({"arch": contender.arch, "precision": contender.precision, "version": version,
                     "onnx_bytes": manifest["artifacts"]["model.onnx"]["bytes"],
                     "published": published_top1(contender.arch), "quantize": versions[contender.arch]["quantize"],
                     "figures": figures(runs[contender.key])})
    results = work / "models.json"
    report: dict[str, Any] = {
        "schema": 1,
        "mode": "quick" if args.quick else "full",
        "command": shlex.join(["python", "bench/models.py", *(argv if argv is not None else sys.argv[1:])]),
        "started_at": started_at,
        "duration_s": round(time.monotonic() - started, 1),
        "load_average": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "machine": machine(),
        "runtime": runtime_revision(),
        "plan": asdict(plan),
        "isa": cpu_features(),
        "photo": {"file": photos["1mp"].name, "bytes": photos["1mp"].stat().st_size},
        "results": str(results.relative_to(ROOT) if results.is_relative_to(ROOT) else results),
        "models": rows,
        "costs": cost_report(rows),
        "raw": runs,
    }
    write_report(report, results, render(report), args.summary or work / "models.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
