"""The image-size proxy of ``make bench``: installed size of the runtime requirements, with and without torch.

Each variant is installed with pip into a fresh venv under ``<work>/venvs``, and
its size is the sum of the files pip added to ``site-packages`` (apparent
bytes, byte-compiled ``.pyc`` included, as pip leaves them in the image); the
files of the empty venv (pip itself) are not counted. Variants:

- ``onnx``: ``model/requirements.txt``, installed as the default Lambda image
  does (hash-checked, ``--no-deps``);
- ``torch-cuda``: the same plus ``torch``/``torchvision``/``safetensors`` at
  the versions uv.lock pins. PyPI's Linux torch wheels are CUDA builds and
  pull in the nvidia-* wheels;
- ``torch-cpu``: the same with a CPU-only torch wheel found in pip's
  ``find-links`` directory (``/opt/wheels`` on the project's machines), the
  closest stand-in for the ``+cpu`` wheel the torch image variant installs from
  PyTorch's own index, which this machine cannot reach, and the rest of
  ``model/requirements-torch.txt`` with ``--no-deps`` (torchvision from PyPI:
  it is a few MB either way).

Installing takes minutes and gigabytes, so results are cached in
``<work>/install-size.json`` under a key of everything that determines them.

    python bench/install_size.py [--work bench/.work] [--force]
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_REQUIREMENTS = ROOT / "model" / "requirements.txt"
TORCH_REQUIREMENTS = ROOT / "model" / "requirements-torch.txt"
CPU_WHEEL_DIRS = [Path(p) for p in (os.environ.get("PIP_FIND_LINKS") or "/opt/wheels").split() if p]


def pinned(name: str) -> str:
    """``name==version`` as uv.lock pins it."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    versions = [p["version"] for p in lock["package"] if p["name"] == name]
    if len(versions) != 1:
        raise SystemExit(f"{name}: expected one version in uv.lock, found {versions}")
    return f"{name}=={versions[0]}"


def torch_variant_pins() -> list[str]:
    """model/requirements-torch.txt's pins but torch itself, for this Python, without +cpu."""
    pins = []
    for line in TORCH_REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if requirement.name != "torch" and (requirement.marker is None or requirement.marker.evaluate()):
            pins.append(f"{requirement.name}{requirement.specifier}".replace("+cpu", ""))
    return pins


def cpu_torch_wheel() -> Path | None:
    """The newest CPU-only torch wheel for this Python in a find-links directory, if any."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    found: list[Path] = []
    for folder in CPU_WHEEL_DIRS:
        found += [Path(p) for p in glob.glob(str(folder / f"torch-*+cpu-{tag}-{tag}-*x86_64.whl"))]
    return sorted(found)[-1] if found else None


def variants() -> dict[str, list[list[str]]]:
    """Each variant as a list of pip install argument lists, run in order."""
    runtime = ["--require-hashes", "--no-deps", "-r", str(RUNTIME_REQUIREMENTS)]
    plans: dict[str, list[list[str]]] = {
        "onnx": [runtime],
        "torch-cuda": [runtime, [pinned("torch"), pinned("torchvision"), pinned("safetensors")]],
    }
    wheel = cpu_torch_wheel()
    if wheel is not None:
        plans["torch-cpu"] = [runtime, ["--no-deps", str(wheel), *torch_variant_pins()]]
    return plans


def cache_key(plans: dict[str, list[list[str]]]) -> str:
    digest = hashlib.sha256()
    digest.update(RUNTIME_REQUIREMENTS.read_bytes())
    digest.update(TORCH_REQUIREMENTS.read_bytes())
    digest.update(json.dumps(plans, sort_keys=True).encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:16]


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def file_sizes(root: Path) -> dict[str, int]:
    sizes = {}
    for dirpath, _, filenames in os.walk(root):
        for filename in filenames:
            path = Path(dirpath) / filename
            if path.is_file() and not path.is_symlink():
                sizes[str(path.relative_to(root))] = path.stat().st_size
    return sizes


def top_level(rel: str) -> str:
    """The distribution-ish folder a file belongs to (``torch``, ``nvidia``, ``numpy.libs``...)."""
    head = rel.split(os.sep, 1)[0]
    return re.sub(r"-[^-]+\.dist-info$", ".dist-info", head)


def measure(name: str, steps: list[list[str]], venvs: Path) -> dict[str, Any]:
    venv = venvs / name
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    empty = file_sizes(site_packages(venv))
    start = time.monotonic()
    for step in steps:
        pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                              "--disable-pip-version-check", *step], capture_output=True, text=True)
        if pip.returncode != 0:
            noise = "WARNING: Location"  # pip's complaint about extra-index folders a package is not in
            errors = "\n".join(x for x in pip.stderr.splitlines() if not x.startswith(noise))
            raise RuntimeError(f"pip install {' '.join(step)} failed for {name}:\n{errors[-3000:]}")
    added = {k: v for k, v in file_sizes(site_packages(venv)).items() if k not in empty}
    by_top: dict[str, int] = {}
    for rel, size in added.items():
        by_top[top_level(rel)] = by_top.get(top_level(rel), 0) + size
    freeze = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "freeze", "--disable-pip-version-check"],
                            check=True, capture_output=True, text=True).stdout.splitlines()
    largest = sorted(by_top.items(), key=lambda kv: -kv[1])[:12]
    shutil.rmtree(venv)  # gigabytes; the numbers are what we keep
    return {
        "bytes": sum(added.values()),
        "files": len(added),
        "install_seconds": round(time.monotonic() - start, 1),
        "pip_steps": steps,
        "packages": freeze,
        "largest": [{"name": k, "bytes": v} for k, v in largest],
    }


def run(work: Path, force: bool = False, only_cached: bool = False) -> dict[str, Any] | None:
    """Measured sizes (from the cache when its key matches); None when ``only_cached`` and nothing is cached."""
    plans = variants()
    key = cache_key(plans)
    cache = work / "install-size.json"
    if cache.exists() and not force:
        cached: dict[str, Any] = json.loads(cache.read_text())
        if cached.get("key") == key:
            cached["cached"] = True
            return cached
    if only_cached:
        return None
    venvs = work / "venvs"
    venvs.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "key": key,
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": sys.version.split()[0],
        "variants": {},
    }
    for name, steps in plans.items():
        print(f"install size: installing {name} into a fresh venv...", file=sys.stderr, flush=True)
        result["variants"][name] = measure(name, steps, venvs)
    cache.write_text(json.dumps(result, indent=1))
    result["cached"] = False
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".work")
    parser.add_argument("--force", action="store_true", help="measure again even if cached")
    args = parser.parse_args(argv)
    result = run(args.work, force=args.force)
    assert result is not None
    for name, variant in result["variants"].items():
        print(f"{name:11} {variant['bytes'] / 1e6:9.1f} MB  {variant['files']:6} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
