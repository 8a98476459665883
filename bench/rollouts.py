"""The rollout figures of ``make bench``: what shadow mode adds to a Lambda invocation, and what two loaded
versions of a model take.

1. Shadow cost. The Lambda handler (``classifier.handler.handler``, invoked with API Gateway REST
   events as ``bench/trial.py`` does) in one process, over a store whose model has a 50% shadow
   rollout of a candidate (the same weights under another version id: as heavy as a retrained
   ResNet-50). Each request's ``X-Request-Id`` decides whether the candidate runs in its shadow, so
   shadowed and plain requests interleave in the same process under the same noise. In Lambda the
   shadow run happens inside the invocation (the answer leaves when it ends), so the extra wall time
   of a shadowed invocation is what it adds to both the caller's latency and the billed duration:
   median shadowed minus median plain, per photo size, and its price per million shadowed requests
   at the function's memory.
2. Memory. In a fresh process: the RSS once the current version is loaded and has run, then once the
   candidate is loaded beside it and has run (the runtime's own ``ModelManager`` and rollout slot),
   against what the memory bound (``MODEL_MEMORY_MB``) counts: the two ``model.onnx`` files.

    python bench/rollouts.py [--work bench/.work] [--summary bench/results-rollouts.md] [--requests 60] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
NAME = "resnet50"
# Lambda's x86_64 price per GB-second (us-east-1, 2026-12-01), and the CDK app's default memory (cdk.json).
PRICE_PER_GB_SECOND = 0.0000166667
MEMORY_MB = 3008


def log(message: str) -> None:
    print(f"[rollouts] {message}", file=sys.stderr, flush=True)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def prepare(work: Path) -> tuple[Path, str, str]:
    """A store with an untrained ResNet-50 current and a candidate of the same weights; returns (store, both ids)."""
    from classifier.store.layout import ModelStore
    from classifier.store.manifest import make_version

    store = work / "store"
    subprocess.run([sys.executable, "-m", "classifier", "publish", "--store", str(store), "--weights", "random"],
                   check=True, capture_output=True)
    models = ModelStore(store)
    current = models.current(NAME)
    assert current is not None
    # The same artifacts under a later version id: a candidate exactly as heavy as the current version.
    source = work / "candidate"
    shutil.copytree(models.version_dir(NAME, current), source, copy_function=os.link)
    manifest = json.loads((source / "manifest.json").read_text())
    created = datetime(2031, 6, 1, tzinfo=UTC)
    manifest.update(created_at=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    version=make_version(manifest["artifacts"], created))
    (source / "manifest.json").unlink()
    (source / "manifest.json").write_text(json.dumps(manifest))
    candidate = models.install_dir(source, make_current=False)
    return store, current, candidate


def shadow_child(store: Path, requests: int, photos: dict[str, Path], result: Path) -> None:
    """In a child process: the handler, half the requests shadowed, each invocation's wall time."""
    sys.path.insert(0, str(BENCH))
    import trial

    from classifier.store.layout import ModelStore
    from classifier.store.rollout import RolloutStore, routes_to_candidate

    handler_module = __import__("classifier.handler", fromlist=["handler"])
    rollout = RolloutStore(ModelStore(store)).get(NAME)
    assert rollout is not None
    events = {size: trial.rest_event(path.read_bytes(), "image/jpeg") for size, path in photos.items()}
    samples: dict[str, dict[str, list[float]]] = {size: {"plain": [], "shadowed": []} for size in photos}
    n = 0
    for i in range(requests * 2 + 10):
        for size, event in events.items():
            key = f"bench-{i}-{size}"
            event["headers"]["X-Request-Id"] = key
            event["multiValueHeaders"]["X-Request-Id"] = [key]
            elapsed, response = trial.invoke(handler_module.handler, event, n)
            n += 1
            body = json.loads(response["body"])
            assert body["model"]["version"] == rollout.current, body["model"]
            if i >= 10:  # warm-up: the candidate loads at the first refresh
                kind = "shadowed" if routes_to_candidate(rollout, key) else "plain"
                samples[size][kind].append(elapsed)
    manager = handler_module.app.state.manager
    assert manager.rollout.candidate is not None, "the candidate never loaded"
    result.write_text(json.dumps({"samples": samples, "threads": manager.threads, "spinning": manager.plan.spin}))


def memory_child(store: Path, candidate_version: str, result: Path) -> None:
    """In a child process: RSS with the current version, then with a rollout's candidate beside it (this
    starts the rollout the shadow figures then use: 50% shadow, never concluding)."""
    import numpy as np

    from classifier.config import Settings
    from classifier.serving.manager import ModelManager
    from classifier.store.rollout import Guards, RolloutStore

    batch = np.zeros((1, 3, 224, 224), dtype=np.float32)
    manager = ModelManager(Settings(model_store=store, refresh_seconds=0.0, rollout_judge_seconds=0.0))
    start = rss_mb()
    manager.current().backend.run(batch)
    one = rss_mb()
    RolloutStore(manager.store).start(NAME, candidate_version, mode="shadow", percent=50,
                                      guards=Guards(min_requests=10**9))
    manager.refresh(force=True)  # reads ROLLOUT, loads the candidate
    candidate = manager.rollout.candidate
    assert candidate is not None, "the candidate did not load"
    candidate.backend.run(batch)
    two = rss_mb()
    result.write_text(json.dumps({"rss_start_mb": start, "rss_one_mb": one, "rss_two_mb": two,
                                  "counted_mb": manager.memory_bytes / 2**20}))


def run_child(args: list[str], env: dict[str, str]) -> None:
    subprocess.run([sys.executable, __file__, *args], check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)


def render(report: dict[str, Any]) -> str:
    memory = report["memory"]
    added = memory["rss_two_mb"] - memory["rss_one_mb"]
    lines = [
        "# `make bench`: rollouts",
        "",
        f"Command: `{report['command']}`, {report['started_at']}. Machine: {report['machine']}; "
        f"load average {report['load_average']} at start (a shared machine).",
        "",
        f"Shadow mode in Lambda: the handler with a 50% shadow rollout of an untrained ResNet-50 (the candidate: "
        f"the same weights), {report['requests']} invocations of each kind per photo, interleaved in one process "
        f"({report['threads']} inference threads, spinning {'on' if report['spinning'] else 'off'}: Lambda's plan at "
        f"{MEMORY_MB} MB). Wall time per invocation, ms:",
        "",
        "| photo | plain p50 | shadowed p50 | extra per shadowed request | plain p95 | shadowed p95 | "
        f"extra $ per million shadowed ({MEMORY_MB} MB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size, row in report["shadow"].items():
        lines.append(f"| {size} | {row['plain_p50']:.1f} | {row['shadowed_p50']:.1f} | {row['extra_ms']:.1f} "
                     f"({row['extra_ratio']:.2f}x) | {row['plain_p95']:.1f} | {row['shadowed_p95']:.1f} | "
                     f"${row['extra_usd_per_million']:.2f} |")
    lines += [
        "",
        "Memory of two loaded versions (RSS, MB): "
        f"{memory['rss_start_mb']:.0f} before the model, {memory['rss_one_mb']:.0f} with the current version, "
        f"{memory['rss_two_mb']:.0f} with the candidate beside it (+{added:.0f}); "
        f"the memory bound counts them as {memory['counted_mb']:.0f} MB (their two model.onnx).",
    ]
    return "\n".join(lines) + "\n"


def cpu_model() -> str:
    """The CPU's model name and whether it has AVX-512 VNNI (what ONNX Runtime's int8 and fp32 kernels use)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    return f"{name} ({'AVX-512 VNNI' if 'avx512_vnni' in info else 'no AVX-512 VNNI'})"


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=BENCH / ".work")
    parser.add_argument("--summary", type=Path, default=None, help="default: <work>/results-rollouts.md")
    parser.add_argument("--requests", type=int, default=60, help="invocations of each kind per photo (about)")
    parser.add_argument("--quick", action="store_true", help="10 invocations of each kind")
    parser.add_argument("--child", choices=("shadow", "memory"), help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--photo", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--candidate", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "shadow":
        photos = dict(item.split("=", 1) for item in args.photo)
        shadow_child(args.store, args.requests, {k: Path(v) for k, v in photos.items()}, args.result)
        return 0
    if args.child == "memory":
        memory_child(args.store, args.candidate, args.result)
        return 0

    work = args.work.resolve() / "rollouts"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    requests = 10 if args.quick else args.requests
    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    load = round(os.getloadavg()[0], 2)
    sys.path.insert(0, str(BENCH))
    import assets

    photos = assets.make_photos(work / "photos")
    store, current, candidate = prepare(work)
    # The function's settings as the CDK app gives them, and its memory: the thread plan is Lambda's at
    # MEMORY_MB (a CPU share of 1.7, so two threads that do not spin), not this host's.
    env = {**os.environ, "MODEL_STORE": str(store), "MODEL_NAME": NAME, "MODEL_REFRESH_SECONDS": "1",
           "ROLLOUT_JUDGE_SECONDS": "0", "POWERTOOLS_METRICS_NAMESPACE": "Classifier",
           "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(MEMORY_MB)}
    log("memory of two loaded versions (and the rollout started)")
    memory_result = work / "memory.json"
    run_child(["--child", "memory", "--store", str(store), "--candidate", candidate, "--result", str(memory_result)],
              env)
    memory = json.loads(memory_result.read_text())
    log(f"shadow: {requests} invocations of each kind per photo")
    result = work / "shadow.json"
    # Each kind gets about half of 2x requests: the routing key decides.
    run_child(["--child", "shadow", "--store", str(store), "--requests", str(requests), "--result", str(result),
               *(f"--photo={size}={path}" for size, path in photos.items())], env)
    shadow = json.loads(result.read_text())

    rows = {}
    gb = MEMORY_MB / 1024
    for size, kinds in shadow["samples"].items():
        plain, shadowed = kinds["plain"], kinds["shadowed"]
        extra = statistics.median(shadowed) - statistics.median(plain)
        rows[size] = {
            "plain": len(plain), "shadowed": len(shadowed),
            "plain_p50": statistics.median(plain), "shadowed_p50": statistics.median(shadowed),
            "plain_p95": percentile(plain, 0.95), "shadowed_p95": percentile(shadowed, 0.95),
            "extra_ms": extra, "extra_ratio": statistics.median(shadowed) / statistics.median(plain),
            "extra_usd_per_million": extra / 1000 * gb * PRICE_PER_GB_SECOND * 1e6,
        }
    report = {
        "command": " ".join(["python", "bench/rollouts.py", *(argv if argv is not None else sys.argv[1:])]),
        "started_at": started_at, "load_average": load,
        "machine": f"{cpu_model()}, {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "requests": requests, "threads": shadow["threads"], "spinning": shadow["spinning"],
        "current": current, "candidate": candidate,
        "shadow": rows, "memory": memory, "samples": shadow["samples"],
    }
    (work / "results-rollouts.json").write_text(json.dumps(report, indent=1) + "\n")
    markdown = render(report)
    summary = args.summary or args.work / "results-rollouts.md"
    summary.write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
