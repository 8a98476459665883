"""Which imports cost what at cold start: ``python -X importtime``, grouped by top-level package.

Each target is imported in a fresh interpreter, several times (the first run
only warms the page cache); the self time of every module is added to its
top-level package (standard-library modules are one group), and the medians
are printed. Targets:

- ``classifier.api.app`` (+ the onnx backend): our handler's imports without the model load
  (``classifier.handler`` loads the model at import);
- ``classifier.serving.backends.torch_backend``: what BACKEND=torch adds;
- ``baseline``: ``import torch, torchvision`` and torchvision's resnet50, as the samples do.

It also measures what byte-compiling our own package saves (why model/Dockerfile
compiles it: Lambda's ``/var/task`` is read-only, and the project's environment
sets PYTHONDONTWRITEBYTECODE=1, so an uncompiled package is compiled at every
cold start).

    python bench/profile/imports.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
ROOT = BENCH.parent

TARGETS = {
    "ours (onnx), without model load": "import classifier.api.app, classifier.serving.backends.onnx_backend",
    "torch backend additions": "import classifier.api.app; import classifier.serving.backends.torch_backend",
    "baseline imports": "import torch, torchvision; from torchvision.models import resnet50",
}


def importtime(code: str, env: dict[str, str]) -> tuple[dict[str, float], float]:
    """Self time (ms) per top-level package, and the total, of one fresh-interpreter run."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env, capture_output=True,
                          text=True, check=True, cwd=ROOT)
    groups: dict[str, float] = defaultdict(float)
    total = 0.0
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = line[len("import time:"):].split("|")
        top = name.strip().split(".")[0]
        group = "stdlib" if top in sys.stdlib_module_names or top.startswith("_") else top
        groups[group] += int(self_us) / 1000
        total += int(self_us) / 1000
    return dict(groups), total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    report: dict[str, object] = {}
    for label, code in TARGETS.items():
        runs = [importtime(code, env) for _ in range(args.runs + 1)][1:]
        names = sorted({g for groups, _ in runs for g in groups})
        medians = {g: statistics.median(groups.get(g, 0.0) for groups, _ in runs) for g in names}
        total = statistics.median(t for _, t in runs)
        report[label] = {"total_ms": total, "groups_ms": medians}
        print(f"\n{label}: {total:.0f} ms in total (median of {args.runs})")
        for group, ms in sorted(medians.items(), key=lambda kv: -kv[1])[:14]:
            print(f"  {group:22} {ms:7.1f} ms")

    # Byte-compiled or not: our package's import with and without a warm .pyc cache.
    code = TARGETS["ours (onnx), without model load"]
    with tempfile.TemporaryDirectory() as prefix:
        compiled = dict(os.environ, PYTHONPYCACHEPREFIX=prefix)
        compiled.pop("PYTHONDONTWRITEBYTECODE", None)
        importtime(code, compiled)  # writes the cache
        rows = []
        for _ in range(args.runs):
            rows.append((importtime(code, env)[0].get("classifier", 0.0),
                         importtime(code, compiled)[0].get("classifier", 0.0)))
    source, cached = statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)
    print(f"\nclassifier package self time: {source:.1f} ms compiled from source at every start, "
          f"{cached:.1f} ms from .pyc")
    report["classifier_pyc"] = {"from_source_ms": source, "from_pyc_ms": cached}
    out = BENCH / ".work" / "profile-imports.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
