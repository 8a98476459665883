"""The dashboard's container image: what reaches its build, what it copies and runs, a working health check.

No Docker daemon is needed: the build context is staged as CDK stages it for a deploy
(the repository root through streamlit-docker/Dockerfile.dockerignore), the
Dockerfile's COPY lines are applied to it to lay out the image's files, and the app
runs from that layout in a fresh Python 3.12 venv holding the image's locked
requirements alone. The health check command runs against the dashboard on loopback.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from glob import glob
from pathlib import Path

import httpx
import pytest

from helpers import ROOT
from helpers.dashboard import DASHBOARD, DOCKERFILE, files_under, stage_build_context
from helpers.processes import LiveServer, free_port
from helpers.venvs import Venv, fresh_venv, subprocess_env

DOCKERFILE_TEXT = DOCKERFILE.read_text()
# The package's files the image holds: the client's folder, the settings it reads, and the package it belongs to.
PACKAGE = ROOT / "model" / "classifier"
CLIENT_FILES = {p.relative_to(ROOT).as_posix()
                for p in [PACKAGE / "__init__.py", PACKAGE / "config.py", *(PACKAGE / "client").glob("*.py")]}


def test_dockerfile_runs_streamlit_headless_as_a_non_root_user() -> None:
    assert re.search(r"^FROM python:3\.12-slim\S*$", DOCKERFILE_TEXT, re.M)
    user = re.findall(r"^USER (\S+)$", DOCKERFILE_TEXT, re.M)
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"pip install --require-hashes --no-deps --only-binary=:all: --requirement /tmp/requirements.txt",
                     DOCKERFILE_TEXT)
    for setting in ("STREAMLIT_SERVER_ADDRESS=0.0.0.0", "STREAMLIT_SERVER_PORT=8501",
                    "STREAMLIT_SERVER_HEADLESS=true", "STREAMLIT_BROWSER_GATHER_USAGE_STATS=false"):
        assert setting in DOCKERFILE_TEXT
    assert re.search(r"^EXPOSE 8501$", DOCKERFILE_TEXT, re.M)
    assert re.search(r'^CMD \["streamlit", "run", "streamlit_app.py"\]$', DOCKERFILE_TEXT, re.M)


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build context as a deploy stages it."""
    staged = tmp_path_factory.mktemp("dashboard-context") / "context"
    stage_build_context(staged)
    return staged


def lay_out_image(context: Path, image: Path) -> Path:
    """The files the Dockerfile's COPY instructions put in the image, under ``image`` (its /); returns WORKDIR."""
    workdir = image
    for instruction, argument in re.findall(r"^(WORKDIR|COPY) (.+)$", DOCKERFILE_TEXT, re.M):
        if instruction == "WORKDIR":
            workdir = image / argument.lstrip("/")
            continue
        *sources, destination = argument.split()
        target = image / destination.lstrip("/") if destination.startswith("/") else workdir / destination
        for pattern in sources:
            matches = sorted(glob(str(context / pattern)))
            assert matches, f"COPY {pattern}: not in the build context"
            for source in map(Path, matches):
                if source.is_dir():  # COPY dir/ dest/ copies what the directory holds
                    shutil.copytree(source, target, dirs_exist_ok=True)
                else:
                    into = target / source.name if destination.endswith("/") else target
                    into.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, into)
    return workdir


def test_build_context_is_the_dashboard_and_the_client_alone(context: Path) -> None:
    # GIVEN what a `docker build -f streamlit-docker/Dockerfile .` at the repository root gets
    staged = files_under(context)

    # THEN every module, setting and sample photo of the app is in it, and the client's modules
    app = {p.relative_to(ROOT).as_posix()
           for p in [*DASHBOARD.glob("*.py"), *DASHBOARD.glob("samples/*.jpg"), DASHBOARD / ".streamlit/config.toml"]}
    assert {"streamlit-docker/streamlit_app.py", "streamlit-docker/samples/chelsea.jpg"} <= app
    # and nothing else: not the runtime, the lock, nor a developer's leftovers
    assert staged == {*app, *CLIENT_FILES, "streamlit-docker/requirements.txt", "streamlit-docker/Dockerfile"}


def test_the_image_copies_every_file_of_the_build_context(context: Path, tmp_path: Path) -> None:
    # GIVEN the image's files, as the Dockerfile lays them out
    workdir = lay_out_image(context, tmp_path / "image")
    in_image = files_under(tmp_path / "image")

    # THEN the app, its settings and samples are in WORKDIR, beside the client as the classifier package
    assert workdir == tmp_path / "image" / "app"
    app = files_under(workdir)
    assert {"streamlit_app.py", "api_errors.py", ".streamlit/config.toml", "samples/chelsea.jpg",
            "samples/coffee.jpg"} <= app
    assert {"classifier/" + Path(p).relative_to("model/classifier").as_posix() for p in CLIENT_FILES} <= app
    # and every staged file but the Dockerfile went somewhere (requirements.txt: pip's, then removed)
    names = {Path(p).name for p in in_image}
    assert {Path(p).name for p in files_under(context)} - names == {"Dockerfile"}


@pytest.fixture(scope="module")
def dashboard_venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh Python 3.12 venv with streamlit-docker/requirements.txt alone, installed as the image does."""
    return fresh_venv(tmp_path_factory.mktemp("dashboard-venv") / "venv", [DASHBOARD / "requirements.txt"])


# Run from the image's WORKDIR with its own sys.path (streamlit puts the script's folder first):
# where the client comes from, and the page as AppTest renders it against the API.
IN_IMAGE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import classifier.client.api, api_errors
from streamlit.testing.v1 import AppTest
at = AppTest.from_file(sys.argv[1] + "/streamlit_app.py", default_timeout=120).run()
try:
    import onnxruntime  # noqa: F401
    runtime = True
except ImportError:
    runtime = False
print(json.dumps({
    "client": classifier.client.api.__file__,
    "exceptions": [e.value for e in at.exception],
    "errors": [e.value for e in at.error],
    "model": [s.value for s in at.main.get_by_key("model-version").subheader],
    "runtime": runtime,
}))
"""


def test_the_copied_client_runs_the_app_with_the_dashboards_locked_requirements_alone(
        context: Path, dashboard_venv: Venv, server: LiveServer, tmp_path: Path) -> None:
    # GIVEN the image's files and an interpreter holding exactly the image's packages
    workdir = lay_out_image(context, tmp_path / "image")
    env = subprocess_env({"API_URL": server.url})
    env.pop("API_KEY", None)

    # WHEN the page runs there against the live API
    done = subprocess.run([str(dashboard_venv.python), "-c", IN_IMAGE, str(workdir)], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    # THEN the client imported is the copied one, the runtime is absent, and the page shows the API's model
    assert Path(seen["client"]).resolve() == (workdir / "classifier" / "client" / "api.py").resolve()
    assert seen["runtime"] is False
    assert seen["exceptions"] == [] and seen["errors"] == []
    version = httpx.get(f"{server.url}/model", timeout=30).json()["version"]
    assert any(version in subheader for subheader in seen["model"])


def health_check_command() -> str:
    """The Python code of the Dockerfile's HEALTHCHECK."""
    match = re.search(r"^HEALTHCHECK .*?\\\n\s*CMD (\[.*\])$", DOCKERFILE_TEXT, re.M)
    assert match, "no HEALTHCHECK ... CMD [...] in the Dockerfile"
    argv = json.loads(match.group(1))
    assert argv[:2] == ["python", "-c"]
    code: str = argv[2]
    assert "http://127.0.0.1:8501/_stcore/health" in code
    return code


def test_health_check_passes_on_a_serving_dashboard_and_fails_without_one(dashboard: str) -> None:
    # GIVEN the Dockerfile's health check, aimed at the dashboard on loopback instead of :8501
    code = health_check_command()
    live = code.replace("http://127.0.0.1:8501", dashboard)
    dead = code.replace("http://127.0.0.1:8501", f"http://127.0.0.1:{free_port()}")

    # THEN it succeeds against a serving dashboard and fails where nothing listens
    assert subprocess.run([sys.executable, "-c", live], capture_output=True, timeout=60).returncode == 0
    assert subprocess.run([sys.executable, "-c", dead], capture_output=True, timeout=60).returncode != 0
