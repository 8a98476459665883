"""The dashboard's container build context: what it copies and runs, and a working health check.

No Docker daemon is needed: the checks read the Dockerfile and run its health check command
against the dashboard served on loopback. Its requirements come from the project's lock
(tests/test_lock.py checks that, and that the image runs the versions the tests run).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from fnmatch import fnmatch

from helpers.dashboard import DASHBOARD
from helpers.processes import free_port

DOCKERFILE = (DASHBOARD / "Dockerfile").read_text()


def test_dockerfile_runs_streamlit_headless_as_a_non_root_user() -> None:
    assert re.search(r"^FROM python:3\.12-slim\S*$", DOCKERFILE, re.M)
    user = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"pip install --require-hashes --no-deps --only-binary=:all: --requirement /tmp/requirements.txt",
                     DOCKERFILE)
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
