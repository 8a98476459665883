"""How long installing the developer venv from the lock takes, with uv and with pip, on a cold cache.

Both install the same locked set into a fresh venv, with an empty cache of their own:

- ``uv``: what ``make venv`` does. pip installs uv from requirements-uv.txt, then
  ``uv sync --frozen`` installs uv.lock. uv reads no pip configuration: it downloads
  from PyPI (the URLs in uv.lock).
- ``pip``: ``pip install --require-hashes --no-deps -r requirements.txt`` (the same
  lock, exported), then the ``classifier`` package editable. pip reads this
  machine's pip configuration, which serves torch and torchvision from local disk.

Rounds alternate the two tools, so a busy machine slows both alike. The script
fails if the two venvs do not hold exactly the same distributions and versions.

    python bench/setup_time.py [--rounds 2] [--work bench/.work]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIST_DISTRIBUTIONS = (
    "import json, importlib.metadata as m; "
    "print(json.dumps(sorted({(d.metadata['Name'].lower().replace('_', '-'), d.version) for d in m.distributions()})))"
)


def run(cmd: Sequence[str], **env: str) -> None:
    done = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        noise = "WARNING: Location"
        stderr = "\n".join(x for x in done.stderr.splitlines() if not x.startswith(noise))
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stderr[-3000:]}")


def install_with_uv(venv: Path, cache: Path) -> None:
    python = str(venv / "bin" / "python")
    run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--require-hashes", "-r", "requirements-uv.txt",
         "--cache-dir", str(cache / "pip")])
    run([str(venv / "bin" / "uv"), "sync", "--frozen", "--compile-bytecode", "--quiet"],
        UV_CACHE_DIR=str(cache / "uv"), UV_PROJECT_ENVIRONMENT=str(venv))


def install_with_pip(venv: Path, cache: Path) -> None:
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--cache-dir", str(cache)]
    run([*pip, "--require-hashes", "--no-deps", "-r", "requirements.txt"])
    run([*pip, "--no-deps", "-e", "./model"])


def measure(tool: str, work: Path) -> tuple[float, list[list[str]]]:
    venv, cache = work / f"setup-{tool}-venv", work / f"setup-{tool}-cache"
    for path in (venv, cache):
        shutil.rmtree(path, ignore_errors=True)
    start = time.monotonic()
    subprocess.run([base_python(), "-m", "venv", str(venv)], check=True)
    (install_with_uv if tool == "uv" else install_with_pip)(venv, cache)
    seconds = time.monotonic() - start
    listed = subprocess.run([str(venv / "bin" / "python"), "-c", LIST_DISTRIBUTIONS],
                            capture_output=True, text=True, check=True).stdout
    for path in (venv, cache):
        shutil.rmtree(path, ignore_errors=True)
    return seconds, json.loads(listed)


def base_python() -> str:
    """The interpreter the project's venv was made from (a fresh venv must not nest in it)."""
    return str(Path(getattr(sys, "_base_executable", sys.executable)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".work")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    times: dict[str, list[float]] = {"uv": [], "pip": []}
    sets: dict[str, list[list[str]]] = {}
    for round_ in range(args.rounds):
        for tool in ("uv", "pip") if round_ % 2 == 0 else ("pip", "uv"):
            print(f"round {round_ + 1}: {tool}...", file=sys.stderr, flush=True)
            seconds, installed = measure(tool, args.work)
            times[tool].append(seconds)
            sets.setdefault(tool, installed)
            print(f"round {round_ + 1}: {tool} {seconds:.1f} s, {len(installed)} distributions", flush=True)
    if sets["uv"] != sets["pip"]:
        differ = set(map(tuple, sets["uv"])) ^ set(map(tuple, sets["pip"]))
        raise SystemExit(f"the two tools installed different sets: {sorted(differ)}")
    uv, pip = statistics.median(times["uv"]), statistics.median(times["pip"])
    print(f"same {len(sets['uv'])} distributions from both; median uv {uv:.1f} s, pip {pip:.1f} s, "
          f"uv/pip {uv / pip:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
