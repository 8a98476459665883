"""One lock for every environment: uv.lock, and the requirements files each image installs, generated from it.

The venv the tests run in is installed from uv.lock (``uv sync --frozen``); each image
installs a file exported from the same lock. So the image runs what the tests ran when
(1) every distribution here is the locked one, (2) every generated file is what the lock
gives now, and (3) each image's file alone, installed as its Dockerfile does, is a closed set.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import distributions
from pathlib import Path
from types import ModuleType

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from helpers import ROOT
from helpers.venvs import fresh_venv

# The files an image or a zip installs, each hash-locked (the torch variant's is separate).
HASHED_IMAGE_FILES = ["model/requirements.txt", "model/requirements-installer.txt",
                      "streamlit-docker/requirements.txt"]
TORCH_FILE = "model/requirements-torch.txt"


def load_lock_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lock_script", ROOT / "scripts" / "lock.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


lock_script = load_lock_script()


def locked_versions() -> dict[str, set[str]]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    versions: dict[str, set[str]] = {}
    for package in lock["package"]:
        versions.setdefault(canonicalize_name(package["name"]), set()).add(package["version"])
    return versions


def requirements(path: str) -> list[tuple[Requirement, list[str]]]:
    """Each requirement of a generated file with its hashes (continuation lines joined)."""
    text = (ROOT / path).read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *options = line.split(" --")
        hashes = [o.removeprefix("hash=sha256:").strip() for o in options if o.startswith("hash=")]
        found.append((Requirement(spec), hashes))
    return found


def pinned_version(requirement: Requirement) -> str:
    (specifier,) = requirement.specifier
    assert specifier.operator == "==", f"{requirement} is not an exact pin"
    return specifier.version


# --- the lock and the files generated from it -------------------------------------------------


def test_the_lock_is_up_to_date_with_pyproject() -> None:
    # uv checks that uv.lock still satisfies every pyproject.toml, from the lock alone
    done = subprocess.run([str(Path(sys.executable).with_name("uv")), "lock", "--check", "--offline"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_every_generated_file_is_up_to_date_with_the_lock() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "lock.py"), "--check"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert {target.path for target in lock_script.TARGETS} >= {*HASHED_IMAGE_FILES, TORCH_FILE}


def test_the_check_names_a_file_edited_by_hand(tmp_path: Path) -> None:
    # GIVEN a copy of the project's lock inputs where one generated file was edited by hand
    for path in ["uv.lock", "pyproject.toml", "model/pyproject.toml",
                 *(target.path for target in lock_script.TARGETS)]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / path, tmp_path / path)
    edited = tmp_path / "streamlit-docker" / "requirements.txt"
    text = edited.read_text()
    certifi = re.search(r"^certifi==(\S+)", text, re.M)
    assert certifi, "the dashboard needs certifi (through requests)"
    edited.write_text(text.replace(certifi[0], "certifi==2026.10.18"))

    # WHEN the files are checked against the lock
    # THEN exactly that file is reported
    assert lock_script.stale(tmp_path) == ["streamlit-docker/requirements.txt"]


def test_every_installed_distribution_is_the_locked_version() -> None:
    # GIVEN the distributions installed in the venv the tests run in
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in distributions()}
    locked = locked_versions()
    assert len(installed) > 100, "this is not the project's venv"

    # THEN each is pinned in uv.lock, at that version: nothing came from elsewhere
    unlocked = {name: version for name, version in installed.items() if version not in locked.get(name, set())}
    assert unlocked == {}


@pytest.mark.parametrize("path", HASHED_IMAGE_FILES)
def test_every_image_requirement_is_an_exact_hash_checked_pin(path: str) -> None:
    found = requirements(path)
    assert found
    for requirement, hashes in found:
        assert pinned_version(requirement) in locked_versions()[canonicalize_name(requirement.name)]
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), requirement


@pytest.mark.parametrize("path", [*HASHED_IMAGE_FILES, TORCH_FILE])
def test_each_image_runs_the_versions_the_tests_run(path: str) -> None:
    # GIVEN an image's requirements (lines for another Python than this one, e.g. a package
    # whose version differs between 3.11 and 3.12, are the lock's own choice for that Python)
    here = default_environment()
    applicable = [r for r, _ in requirements(path) if r.marker is None or r.marker.evaluate(here)]
    assert applicable
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in distributions()}

    # THEN the venv the tests run in has each of them, at that version (+cpu builds: the same release)
    for requirement in applicable:
        name = canonicalize_name(requirement.name)
        assert installed.get(name) == pinned_version(requirement).split("+")[0], name


def test_the_torch_variant_pins_cpu_builds_and_no_cuda() -> None:
    found = {canonicalize_name(r.name): pinned_version(r) for r, _ in requirements(TORCH_FILE)}
    locked = locked_versions()
    assert found["torch"] == f"{next(iter(locked['torch']))}+cpu"
    assert found["torchvision"] == f"{next(iter(locked['torchvision']))}+cpu"
    assert "safetensors" in found
    assert not [name for name in found if lock_script.CUDA_ONLY.match(name)]
    # what the default image already installs is not installed a second time
    assert not set(found) & {canonicalize_name(r.name) for r, _ in requirements("model/requirements.txt")}


# --- each image's file alone, installed as its Dockerfile does ----------------------------------


@pytest.mark.parametrize("path", ["model/requirements-installer.txt", "streamlit-docker/requirements.txt"])
def test_image_requirements_alone_are_a_closed_set(path: str, tmp_path: Path) -> None:
    # GIVEN a fresh Python 3.12 venv with that file alone, hash-checked and with --no-deps
    venv = fresh_venv(tmp_path / "venv", [ROOT / path])
    # THEN every requirement of every installed package is met
    assert venv.check() == []
    assert {canonicalize_name(r.name) for r, _ in requirements(path)} <= set(venv.packages())


def test_torch_variant_requirements_are_closed_but_for_cudas_own(tmp_path: Path) -> None:
    # GIVEN the runtime's file, then the torch variant's, both with --no-deps. The +cpu wheels come
    # from PyTorch's index, out of this machine's reach: PyPI's CUDA build of the same release
    # stands in for them, and its metadata declares the CUDA packages the +cpu build does not.
    cpu_free = tmp_path / "requirements-torch.txt"
    cpu_free.write_text((ROOT / TORCH_FILE).read_text().replace("+cpu", ""))
    venv = fresh_venv(tmp_path / "venv", [ROOT / "model" / "requirements.txt"])
    venv.pip("install", "--quiet", "--no-deps", "--only-binary=:all:", "-r", str(cpu_free))

    # THEN pip check finds nothing missing or conflicting but torch's CUDA-only requirements
    complaints = venv.check()
    missing = [re.fullmatch(r"torch \S+ requires (\S+), which is not installed\.", line) for line in complaints]
    assert all(missing), complaints
    assert all(lock_script.CUDA_ONLY.match(m[1]) for m in missing if m), complaints
