"""Generate every requirements file an image, a zip or a pip user installs from, out of uv.lock.

uv.lock (from pyproject.toml and model/pyproject.toml) is the project's one lock.
The files below are derived from it with ``uv export --frozen``, which reads the
lock only: no resolution, no network. ``make lock`` re-resolves the lock, then
runs this script; tests/repo/test_lock.py runs ``--check``, which fails when a file
is out of date with the lock.

    python scripts/lock.py           # write the files
    python scripts/lock.py --check   # exit 1, naming each stale file
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# torch's Linux wheels on PyPI are CUDA builds: these requirements (and whatever only
# they need) are what the CPU-only builds from PyTorch's index do not declare.
CUDA_ONLY = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")
# The torch image variant installs these from PyTorch's CPU-only index, under the same
# version with the local tag "+cpu".
CPU_BUILDS = ("torch", "torchvision")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class Target:
    path: str
    purpose: str
    export: tuple[str, ...]
    hashed: bool = True


TARGETS = (
    Target(
        "requirements.txt",
        "Everything a developer needs, for those who install with pip rather than `make venv` (uv):\n"
        "#   pip install --require-hashes --no-deps -r requirements.txt && pip install --no-deps -e ./model",
        ("--all-groups", "--no-emit-workspace"),
    ),
    Target(
        "requirements-uv.txt",
        "The uv that `make venv` installs first (with pip), to install the rest from uv.lock.",
        ("--only-group", "uv", "--no-emit-project", "--no-emit-workspace"),
    ),
    Target(
        "model/requirements.txt",
        "The Lambda image (onnx backend, the default): model/Dockerfile installs this file alone,\n"
        "# with --require-hashes. torch is deliberately absent.",
        ("--package", "classifier", "--no-emit-workspace"),
    ),
    Target(
        "model/requirements-installer.txt",
        "The installer Lambda's zip: bundled beside classifier's standard-library modules\n"
        "# (lambda_docker/inbox.py), so the installer does not run on the Lambda runtime's own boto3.",
        ("--only-group", "installer", "--no-emit-project", "--no-emit-workspace"),
    ),
    Target(
        "streamlit-docker/requirements.txt",
        "The dashboard image: streamlit-docker/Dockerfile installs this file alone, with --require-hashes.",
        ("--only-group", "dashboard", "--no-emit-project", "--no-emit-workspace"),
    ),
    Target(
        "model/requirements-torch.txt",
        "The torch variant of the Lambda image (docker build --build-arg BACKEND=torch), on top of\n"
        "# model/requirements.txt. torch and torchvision come from PyTorch's CPU-only index\n"
        f"# ({CPU_INDEX}), which this project's CI machine cannot reach, so these\n"
        "# lines are NOT hash-locked: each is an exact version taken from uv.lock, with the +cpu\n"
        "# builds of the locked torch and torchvision, and without the CUDA packages (nvidia-*,\n"
        "# cuda-*, triton) that only PyPI's CUDA builds declare.",
        ("--only-group", "torch", "--no-emit-project", "--no-emit-workspace", "--no-hashes"),
        hashed=False,
    ),
)


def uv() -> str:
    """The venv's uv (the version the lock pins), else one on PATH."""
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        raise SystemExit("uv is not installed: run `make venv` first")
    return found


def uv_export(root: Path, args: Sequence[str]) -> str:
    cmd = [uv(), "export", "--frozen", "--no-header", "--format", "requirements.txt", *args]
    env = {**os.environ, "UV_NO_PROGRESS": "1"}
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return done.stdout


def locked_packages(root: Path) -> dict[str, dict[str, object]]:
    """uv.lock's packages by name (the first of several versions: names are all that is used)."""
    lock = tomllib.loads((root / "uv.lock").read_text())
    packages: dict[str, dict[str, object]] = {}
    for package in lock["package"]:
        packages.setdefault(package["name"], package)
    return packages


def requirement_names(text: str) -> list[str]:
    return [m[1] for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", text, re.M)]


def torch_args(root: Path, runtime: str) -> list[str]:
    """Prune the CUDA-only requirements of torch, and leave out what model/requirements.txt installs."""
    torch = locked_packages(root)["torch"]
    dependencies = torch.get("dependencies", [])
    assert isinstance(dependencies, list)
    cuda = sorted({str(d["name"]) for d in dependencies if CUDA_ONLY.match(str(d["name"]))})
    args = [arg for name in cuda for arg in ("--prune", name)]
    args += [arg for name in requirement_names(runtime) for arg in ("--no-emit-package", name)]
    return args


def cpu_builds(text: str) -> str:
    for name in CPU_BUILDS:
        text, count = re.subn(rf"^({name}==[^\s;+]+)(?=\s|;|$)", r"\1+cpu", text, flags=re.M)
        if count != 1:
            raise SystemExit(f"expected exactly one {name}== line in the torch export, found {count}")
    return text


def render(root: Path = ROOT) -> dict[str, str]:
    """Every generated file's path and its content, from uv.lock."""
    files: dict[str, str] = {}
    for target in TARGETS:
        args = list(target.export)
        if target.path == "model/requirements-torch.txt":
            args += torch_args(root, files["model/requirements.txt"])
        body = uv_export(root, args)
        if target.path == "model/requirements-torch.txt":
            body = cpu_builds(body)
        header = f"# Generated from uv.lock by `make lock` (scripts/lock.py): do not edit.\n# {target.purpose}\n"
        files[target.path] = header + body
    return files


def stale(root: Path = ROOT) -> list[str]:
    """The generated files whose content differs from what uv.lock gives now."""
    return [path for path, text in render(root).items()
            if not (root / path).is_file() or (root / path).read_text() != text]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if a generated file is out of date")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for path in out_of_date:
            print(f"{path} is out of date with uv.lock: run `make lock`", file=sys.stderr)
        return 1 if out_of_date else 0
    for path, text in render().items():
        (ROOT / path).write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
