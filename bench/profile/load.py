"""Profile the onnx model load (cold start) and its memory: the runtime's recipe against candidate changes.

Every variant runs in a fresh process (``--child``), several times, the order
rotated each round, and reports the phases of a load one after the other (read
bytes, sha256, create the ONNX Runtime session, a first forward: the "probe"
179da43 ran at load), the forward time afterwards (a variant must not buy its
load time with slower inference), and the peak RSS.

Offline artifacts the candidates need are made once, from the store's
``model.onnx``, under ``<work>/profile``: an ORT-optimised ONNX model at the
EXTENDED level (portable: no CPU-specific layout) and at the ALL level
(NCHWc layout chosen for *this* CPU's vector width), and the ALL-level model
in ORT format.

The first variant is the runtime's own ``OnnxBackend`` built from the path, as
``ModelManager.load`` builds it (which hashes on a second thread meanwhile); the
others spell out their ORT options: the 179da43 recipe and the candidates
measured against it (findings: ``bench/PROFILE.md``).

    python bench/profile/load.py [--rounds 5] [--work bench/.work] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))

from assets import current_version_dir  # noqa: E402
from trial import ms_since, peak_rss_kb  # noqa: E402

RUNTIME = "runtime: OnnxBackend from the path"
# name -> artifact, how it is handed to ORT ("runtime": to the runtime's OnnxBackend), optimisation
# level at load, extra session config entries, CPU arena
VARIANTS: dict[str, dict[str, Any]] = {
    RUNTIME: {"artifact": "model.onnx", "source": "runtime"},
    "179da43: bytes, ALL": {"artifact": "model.onnx", "source": "bytes", "level": "ALL"},
    "path, ALL (hash streamed)": {"artifact": "model.onnx", "source": "path", "level": "ALL"},
    "bytes, ALL, no prepacking": {"artifact": "model.onnx", "source": "bytes", "level": "ALL",
                                  "config": {"session.disable_prepacking": "1"}},
    "bytes, ALL, no CPU arena": {"artifact": "model.onnx", "source": "bytes", "level": "ALL", "arena": False},
    "bytes, BASIC": {"artifact": "model.onnx", "source": "bytes", "level": "BASIC"},
    "pre-optimised EXTENDED, load ALL": {"artifact": "model.ext.onnx", "source": "bytes", "level": "ALL"},
    "pre-optimised EXTENDED, load BASIC": {"artifact": "model.ext.onnx", "source": "bytes", "level": "BASIC"},
    "pre-optimised ALL, load DISABLE": {"artifact": "model.all.onnx", "source": "bytes", "level": "DISABLE"},
    "path, pre-optimised EXTENDED, load ALL": {"artifact": "model.ext.onnx", "source": "path", "level": "ALL"},
    "path, pre-optimised ALL, load DISABLE": {"artifact": "model.all.onnx", "source": "path", "level": "DISABLE"},
    "path, ALL, parallel prepack": {"artifact": "model.onnx", "source": "path", "level": "ALL",
                                    "config": {"session.prepack.enable_parallel": "1"}},
    "path, pre-optimised ALL, load DISABLE, parallel prepack": {
        "artifact": "model.all.onnx", "source": "path", "level": "DISABLE",
        "config": {"session.prepack.enable_parallel": "1"}},
    # session.use_ort_model_bytes_for_initializers=1 as well would let the weights live in the
    # bytes buffer, but with onnxruntime 1.31.1's Python binding it segfaults (SIGSEGV) at load.
    "ORT format ALL, bytes used directly": {
        "artifact": "model.all.ort", "source": "bytes", "level": "DISABLE",
        "config": {"session.use_ort_model_bytes_directly": "1"}},
}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    return fn(), ms_since(start)


def session_options(spec: dict[str, Any], threads: int) -> Any:
    """The ORT options of a variant that spells them out (not the runtime's own)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = {
        "ALL": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "EXTENDED": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "BASIC": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "DISABLE": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[spec["level"]]
    options.log_severity_level = 3
    if spec.get("arena") is False:
        options.enable_cpu_mem_arena = False
    for key, value in spec.get("config", {}).items():
        options.add_session_config_entry(key, value)
    return options


def child(variant: str, folder: Path, threads: int, forwards: int) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    spec = VARIANTS[variant]
    path = folder / spec["artifact"]
    out: dict[str, Any] = {"rss_after_imports": peak_rss_kb()}
    if spec["source"] == "bytes":
        data, out["read_ms"] = timed(path.read_bytes)
        _, out["sha256_ms"] = timed(lambda: hashlib.sha256(data).hexdigest())
        model: bytes | str = data
    else:  # the hash streamed from the file, one after the other (the runtime overlaps them)
        from classifier.store.fsio import sha256_file

        out["read_ms"] = 0.0
        _, out["sha256_ms"] = timed(lambda: sha256_file(path))
        model = str(path)
    if spec["source"] == "runtime":
        from classifier.serving.backends.onnx_backend import OnnxBackend

        backend, out["session_ms"] = timed(lambda: OnnxBackend(path, threads=threads))
        session = backend.session
    else:
        options = session_options(spec, threads)
        session, out["session_ms"] = timed(
            lambda: ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]))
    if not spec.get("config", {}).get("session.use_ort_model_bytes_directly"):
        del model  # no bytes copy lives beside the session (the ORT-format variant must keep its buffer)
        data = b""
    name = session.get_inputs()[0].name
    probe = np.zeros((1, 3, 224, 224), dtype=np.float32)
    _, out["probe_ms"] = timed(lambda: session.run(None, {name: probe}))
    out["load_ms"] = out["read_ms"] + out["sha256_ms"] + out["session_ms"] + out["probe_ms"]
    out["rss_after_load"] = peak_rss_kb()
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    samples = [timed(lambda: session.run(None, {name: x}))[1] for _ in range(forwards)]
    out["forward_ms"] = statistics.median(samples)
    out["forward_min_ms"] = min(samples)
    out["logits_head"] = [float(v) for v in session.run(None, {name: x})[0][0, :5]]
    out["rss_final"] = peak_rss_kb()
    return out


def make_artifacts(model: Path, folder: Path) -> None:
    """The pre-optimised models, saved by ORT itself (as a publish step would)."""
    import onnxruntime as ort

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "model.onnx"
    if not target.exists():
        target.write_bytes(model.read_bytes())
    jobs = [("model.ext.onnx", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "ONNX"),
            ("model.all.onnx", ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "ONNX"),
            ("model.all.ort", ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "ORT")]
    for name, level, fmt in jobs:
        if (folder / name).exists():
            continue
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.optimized_model_filepath = str(folder / name)
        options.add_session_config_entry("session.save_model_format", fmt)
        options.log_severity_level = 3
        ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=BENCH / ".work")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--forwards", type=int, default=10)
    parser.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    folder = args.work / "profile"
    if args.child:
        assert args.result is not None
        args.result.write_text(json.dumps(child(args.child, folder, args.threads, args.forwards)))
        return 0

    make_artifacts(current_version_dir(args.work / "store") / "model.onnx", folder)
    sizes = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
    names = args.only or list(VARIANTS)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    result_path = folder / "child.json"
    for r in range(args.rounds + 1):  # round 0 warms the page cache and is not recorded
        k = r % len(names)
        for name in names[k:] + names[:k]:
            subprocess.run([sys.executable, __file__, "--work", str(args.work), "--threads", str(args.threads),
                            "--forwards", str(args.forwards), "--child", name, "--result", str(result_path)],
                           check=True)
            if r:
                runs[name].append(json.loads(result_path.read_text()))
        print(f"round {r}/{args.rounds} done", file=sys.stderr, flush=True)

    def med(name: str, key: str, sub: str | None = None) -> float:
        return statistics.median(x[key][sub] if sub else x[key] for x in runs[name])

    reference = runs[names[0]][0]["logits_head"]
    print(f"artifact sizes (MB): {', '.join(f'{k} {v / 1e6:.1f}' for k, v in sorted(sizes.items()))}")
    print(f"threads {args.threads}; medians of {args.rounds} fresh processes each\n")
    print("| variant | read | sha256 | session | probe | load total | forward p50 | forward min | "
          "RSS after imports | peak RSS after load | peak RSS final | RSS final | max logit diff |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for name in names:
        diff = max(abs(a - b) for a, b in zip(runs[name][0]["logits_head"], reference, strict=True))
        row = {key: med(name, key) for key in ("read_ms", "sha256_ms", "session_ms", "probe_ms", "load_ms",
                                                "forward_ms", "forward_min_ms")}
        row.update(rss_imports_mb=med(name, "rss_after_imports", "VmRSS") / 1024,
                   hwm_load_mb=med(name, "rss_after_load", "VmHWM") / 1024,
                   hwm_final_mb=med(name, "rss_final", "VmHWM") / 1024,
                   rss_final_mb=med(name, "rss_final", "VmRSS") / 1024, max_logit_diff=diff)
        summary[name] = row
        print(f"| {name} | {row['read_ms']:.0f} | {row['sha256_ms']:.0f} | {row['session_ms']:.0f} | "
              f"{row['probe_ms']:.0f} | {row['load_ms']:.0f} | {row['forward_ms']:.1f} | {row['forward_min_ms']:.1f} | "
              f"{row['rss_imports_mb']:.0f} | {row['hwm_load_mb']:.0f} | {row['hwm_final_mb']:.0f} | "
              f"{row['rss_final_mb']:.0f} | {diff:.2g} |")
    (folder / "profile-load.json").write_text(json.dumps({"sizes": sizes, "variants": summary, "raw": runs},
                                                          indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
