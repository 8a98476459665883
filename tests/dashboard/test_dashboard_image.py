"""The dashboard's container build context: pinned packages, the tested versions, a working health check.

No Docker daemon is needed: the checks read the Dockerfile and run its health check command
against the dashboard served on loopback.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from fnmatch import fnmatch
from importlib.metadata import distribution, version

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from dashboard_support import DASHBOARD
from support import ROOT, free_port

DOCKERFILE = (DASHBOARD / "Dockerfile").read_text()
# The image's Python, on Linux: the environment the pins must resolve for.
IMAGE_MARKERS = {"python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux",
                 "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
                 "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}


def pins(path: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, sep, pinned = line.partition("==")
            assert sep and pinned, f"{path}: {line!r} is not pinned with =="
            found[canonicalize_name(Requirement(name).name)] = pinned
    return found


def test_every_image_package_is_pinned_to_the_version_the_tests_run() -> None:
    image = pins("streamlit-docker/requirements.txt")
    assert {"streamlit", "requests", "altair", "pillow"} <= set(image)
    for name, pinned in image.items():
        assert version(name) == pinned, f"{name}: the image pins {pinned}, the tests run {version(name)}"
    # and the packages the project's requirements also pin have the same versions there
    project = {**pins("requirements.txt"), **pins("model/requirements.txt")}
    assert {n: v for n, v in image.items() if n in project} == {n: project[n] for n in image if n in project}


def test_the_pins_cover_every_dependency() -> None:
    # GIVEN the image's pins
    image = pins("streamlit-docker/requirements.txt")

    # WHEN the dependency closure of the direct packages is walked (as installed here)
    needed: set[str] = set()
    todo = ["streamlit", "requests", "altair", "pillow"]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in needed:
            continue
        needed.add(name)
        for spec in distribution(name).requires or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate(IMAGE_MARKERS):
                todo.append(requirement.name)

    # THEN nothing is left for pip to pick at build time
    assert needed - set(image) == set()


def test_dockerfile_runs_streamlit_headless_as_a_non_root_user() -> None:
    assert re.search(r"^FROM python:3\.12-slim\S*$", DOCKERFILE, re.M)
    user = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    assert "--requirement /tmp/requirements.txt" in DOCKERFILE
    for setting in ("STREAMLIT_SERVER_ADDRESS=0.0.0.0", "STREAMLIT_SERVER_PORT=8501",
                    "STREAMLIT_SERVER_HEADLESS=true", "STREAMLIT_BROWSER_GATHER_USAGE_STATS=false"):
        assert setting in DOCKERFILE
    assert re.search(r"^EXPOSE 8501$", DOCKERFILE, re.M)
    assert re.search(r'^CMD \["streamlit", "run", "app.py"\]$', DOCKERFILE, re.M)


def test_build_context_holds_what_the_app_needs() -> None:
    # GIVEN the .dockerignore allowlist and the files the Dockerfile copies
    rules = [r for r in (DASHBOARD / ".dockerignore").read_text().splitlines() if r and not r.startswith("#")]

    def sent(path: str) -> bool:
        keep = True
        for rule in rules:
            if fnmatch(path, rule.lstrip("!")):
                keep = rule.startswith("!")
        return keep

    # THEN every module and sample photo of the app reaches the build, and is copied into the image
    needed = [p.relative_to(DASHBOARD).as_posix() for p in [*DASHBOARD.glob("*.py"), *DASHBOARD.glob("samples/*.jpg")]]
    assert "api_client.py" in needed and "samples/chelsea.jpg" in needed
    for path in [*needed, "requirements.txt"]:
        assert sent(path), f"{path} is excluded by .dockerignore"
    copied = " ".join(re.findall(r"^COPY (.+)$", DOCKERFILE, re.M))
    for path in needed:
        assert path in copied or path.split("/")[0] + "/" in copied, f"{path} is not copied into the image"
    assert not sent("Dockerfile.bak") and not sent("__pycache__/app.cpython-312.pyc")


def health_check_command() -> str:
    """The Python code of the Dockerfile's HEALTHCHECK."""
    match = re.search(r"^HEALTHCHECK .*?\\\n\s*CMD (\[.*\])$", DOCKERFILE, re.M)
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
