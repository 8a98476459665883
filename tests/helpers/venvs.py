"""Fresh virtual environments built the way the images build theirs (no Docker needed).

Each image installs one generated requirements file with pip, hash-checked and
closed (``--require-hashes --no-deps``); a venv built the same way, then
``pip check``, shows whether that file alone is a consistent set.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# The flags every image's pip install uses (model/Dockerfile, streamlit-docker/Dockerfile,
# the installer's bundling in lambda_docker/inbox.py).
LOCKED_INSTALL = ("--require-hashes", "--no-deps", "--only-binary=:all:")
LAMBDA_PYTHON = (3, 12)


def subprocess_env(*layers: Mapping[str, str]) -> dict[str, str]:
    """This environment minus anything that would point a child at this repo's venv or store,
    then ``layers`` applied in order."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MODEL_STORE", "MODEL_NAME", "BACKEND"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONNOUSERSITE"] = "1"
    for layer in layers:
        env.update(layer)
    return env


def lambda_python() -> str:
    """A working Python 3.12, the version Lambda and the images run. There is no fallback to the
    interpreter running the tests: a test that claims "as in Lambda" must not run on another Python."""
    pyenv = sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.12.*/bin/python3.12"))
    for candidate in [*pyenv, shutil.which("python3.12")]:
        if candidate is None:
            continue
        # a pyenv shim on PATH may exist and still fail when 3.12 is not selected
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                               capture_output=True, text=True, check=False, env=subprocess_env())
        if probe.returncode == 0 and probe.stdout.strip() == str(LAMBDA_PYTHON):
            return candidate
    raise RuntimeError("Python 3.12 (Lambda's) is not installed: .ci/run needs python3.12 on PATH or under pyenv")


@dataclass
class Venv:
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def pip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(self.python), "-m", "pip", "--disable-pip-version-check", *args],
                              capture_output=True, text=True, env=subprocess_env(), check=False)
        if check and done.returncode != 0:
            noise = "WARNING: Location"  # pip's note on extra-index folders that lack a package
            stderr = "\n".join(line for line in done.stderr.splitlines() if not line.startswith(noise))
            raise AssertionError(f"pip {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{stderr[-4000:]}")
        return done

    def packages(self) -> dict[str, str]:
        """Installed distributions, by normalised name, with their versions."""
        listed = json.loads(self.pip("list", "--format", "json").stdout)
        return {re.sub(r"[-_.]+", "-", p["name"]).lower(): p["version"] for p in listed}

    def check(self) -> list[str]:
        """``pip check``'s complaints: an empty list when every installed requirement is met."""
        done = self.pip("check", check=False)
        if done.returncode == 0:
            return []
        return [line for line in done.stdout.splitlines() if line.strip()]


def fresh_venv(path: Path, requirements: Sequence[Path], *, python: str | None = None,
               extra: Sequence[str] = ()) -> Venv:
    """A new venv (Python 3.12 unless ``python``) holding ``requirements`` installed as the images do."""
    subprocess.run([python or lambda_python(), "-m", "venv", str(path)], check=True, env=subprocess_env())
    venv = Venv(path)
    files = [arg for requirement in requirements for arg in ("-r", str(requirement))]
    venv.pip("install", "--quiet", *LOCKED_INSTALL, *extra, *files)
    return venv
