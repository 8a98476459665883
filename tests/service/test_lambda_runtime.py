"""The Lambda image's install and start-up, exercised without Docker.

No container engine runs in CI, so the three things the image does are
reproduced with the real parts:

- its entrypoint runs ``awslambdaric`` (the runtime interface client from
  PyPI) on the handler named by ``CMD``; here it runs on Python 3.12 from a
  fresh venv holding the locked ``awslambdaric`` and ``model/requirements.txt``,
  against a minimal Lambda Runtime API served on loopback, with the package
  copied into a task root the way ``COPY classifier/ ${LAMBDA_TASK_ROOT}/classifier/`` does;
- it installs ``model/requirements.txt`` alone; here into a fresh venv, which
  must serve the onnx backend without torch;
- the Dockerfile itself is parsed, so the emulation above cannot drift from it.

Every venv here runs Lambda's Python, 3.12: where it is missing the tests fail
(``helpers.venvs.lambda_python``), never quietly run on the interpreter running them.
"""

from __future__ import annotations

import base64
import json
import queue
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from helpers import ROOT
from helpers.fitted_model import PHOTO_LABELS
from helpers.lambda_events import LambdaResponse, make_event, read_response
from helpers.photos import jpeg
from helpers.processes import child, free_port, wait_until
from helpers.runtime_api import RUNTIME_API_PREFIX, Post, RuntimeApi
from helpers.stores import copy_store, stored_records
from helpers.torchvision_reference import reference_labels, reference_model, reference_probs
from helpers.venvs import LAMBDA_PYTHON, LOCKED_INSTALL, Venv, fresh_venv, subprocess_env

MODEL_DIR = ROOT / "model"
DOCKERFILE = MODEL_DIR / "Dockerfile"
# Generous bounds that only stop a hung subprocess from hanging the suite; nothing is timed.
HANG_GUARD_SECONDS = 300
# What the Lambda base image brings on its Python besides the task root: the runtime interface
# client and its dependencies, at the lock's versions.
RUNTIME_CLIENT = ("awslambdaric", "simplejson", "snapshot-restore-py")


# --- the Dockerfile, parsed ---------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    return instructions


def _args_of(keyword: str) -> list[str]:
    return [i.args for i in dockerfile() if i.keyword == keyword]


def image_handler() -> str:
    """The handler the image's CMD names: what awslambdaric is started with."""
    cmd = json.loads(_args_of("CMD")[-1])
    assert isinstance(cmd, list) and len(cmd) == 1, f"CMD must be one handler in exec form, got {cmd!r}"
    return str(cmd[0])


def image_env() -> dict[str, str]:
    """The image's ENV, with build arguments at their defaults (the onnx image)."""
    build_args = dict(arg.split("=", 1) for arg in _args_of("ARG") if "=" in arg)

    def expand(value: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: build_args.get(m[1], ""), value)

    env: dict[str, str] = {}
    for args in _args_of("ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = expand(value)
    return env


def current_version(store: Path) -> str:
    return (store / "models" / "resnet50" / "CURRENT").read_text().strip()


# --- helpers ------------------------------------------------------------------------------------


def locked_requirements(names: tuple[str, ...], dest: Path) -> Path:
    """The entries (pin, markers, hashes) of ``names`` copied from the lock's requirements.txt into ``dest``."""
    entries: dict[str, str] = {}
    name = ""
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            name = re.split(r"[=<>~ ;\[]", line, maxsplit=1)[0].lower()
            entries[name] = ""
        if name and not line.lstrip().startswith("#"):
            entries[name] += line + "\n"
    missing = [n for n in names if n not in entries]
    assert not missing, f"{missing} are not in requirements.txt"
    dest.write_text("".join(entries[n] for n in names))
    return dest


def classify_event(kind: str, body: bytes, content_type: str) -> dict[str, Any]:
    return make_event(kind, "POST", "/classify", body=body, content_type=content_type)


def assert_same_predictions(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Same top-5 scores within 1e-4, position by position, with the same labels. Positions whose
    scores tie within 1e-4 may swap, so indices are compared as a set (the 5th may tie with a 6th)."""
    assert len(got) == len(want) == 5
    for position, (g, w) in enumerate(zip(got, want, strict=True)):
        assert abs(g["score"] - w["score"]) <= 1e-4, f"position {position}: {got} vs {want}"
    labels = {p["index"]: p["label"] for p in want}
    assert [g["index"] for g in got if g["index"] not in labels] in ([], [got[-1]["index"]])
    assert all(g["label"] == labels[g["index"]] for g in got if g["index"] in labels)


def json_log_lines(text: str) -> list[dict[str, Any]]:
    entries = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def assert_classified(response: LambdaResponse, reference: dict[str, Any], version: str) -> dict[str, Any]:
    assert response.status == 200, response.body[:2000]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["model"]["version"] == version
    assert body["model"]["backend"] == "onnx"
    assert body["image"]["format"] == "JPEG"
    assert (body["image"]["width"], body["image"]["height"]) == (451, 300)  # chelsea
    assert "warning" not in body  # the fitted model was published from a checkpoint: "trained"
    assert body["predictions"][0]["label"] == PHOTO_LABELS["chelsea"]
    assert_same_predictions(body["predictions"], reference["predictions"])
    return body


@pytest.fixture(scope="module")
def chelsea() -> bytes:
    return jpeg("chelsea")


@pytest.fixture(scope="module")
def reference(fitted_store: Path, chelsea: bytes) -> dict[str, Any]:
    """torchvision's answer for chelsea on the fitted model's weights (none of the service's code):
    its top 5, with labels and scores, as the API would write them."""
    probs = reference_probs(reference_model(fitted_store), chelsea)
    labels = reference_labels(fitted_store)
    top = np.argsort(-probs, kind="stable")[:5]
    return {"predictions": [{"label": labels[i], "index": int(i), "score": float(probs[i])} for i in top]}


# --- 1. awslambdaric bootstraps the handler -----------------------------------------------------


@dataclass
class LambdaRun:
    python: Path  # the interpreter the runtime client ran on
    store: Path
    task_root: Path
    env: dict[str, str]
    request_ids: dict[str, str]
    posts: list[Post]
    logs: str

    def response(self, name: str) -> Post:
        """The result posted for the invocation called ``name``."""
        path = f"{RUNTIME_API_PREFIX}/invocation/{self.request_ids[name]}/response"
        found = [p for p in self.posts if p.path == path]
        assert len(found) == 1, ([p.path for p in self.posts], self.logs)
        return found[0]


def collect_posts(api: RuntimeApi, proc: subprocess.Popen[bytes], count: int, log_path: Path) -> list[Post]:
    posts: list[Post] = []
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while len(posts) < count:
        try:
            posts.append(api.posts.get(timeout=0.5))
            continue
        except queue.Empty:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            state = f"exited with {proc.returncode}" if proc.returncode is not None else "hung"
            pytest.fail(f"the runtime client {state} after {len(posts)} of {count} posts "
                        f"{[(p.path, p.body[:500]) for p in posts]}:\n{log_path.read_text(errors='replace')}")
    return posts


@pytest.fixture(scope="module")
def lambda_image_python(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The base image's Python (3.12) with its runtime interface client, and model/requirements.txt."""
    base = tmp_path_factory.mktemp("lambda-image")
    client = locked_requirements(RUNTIME_CLIENT, base / "runtime-client.txt")
    return fresh_venv(base / "venv", [MODEL_DIR / "requirements.txt", client])


@pytest.fixture(scope="module")
def lambda_run(fitted_store: Path, tmp_path_factory: pytest.TempPathFactory, chelsea: bytes,
               lambda_image_python: Venv) -> LambdaRun:
    """One Lambda execution environment: init, then three invocations, as the image would run them."""
    base = tmp_path_factory.mktemp("lambda")
    store = copy_store(fitted_store, base / "store")
    # COPY classifier/ ${LAMBDA_TASK_ROOT}/classifier/
    task_root = base / "var-task"
    shutil.copytree(MODEL_DIR / "classifier", task_root / "classifier",
                    ignore=shutil.ignore_patterns("__pycache__"))
    log_path = base / "function.log"
    with RuntimeApi() as api:
        request_ids = {
            "v1": api.invoke(classify_event("v1", chelsea, "image/jpeg")),
            "v2": api.invoke(classify_event("v2", chelsea, "image/jpeg")),
            "unsupported": api.invoke(classify_event("v1", b"just some text", "text/plain")),
        }
        env = subprocess_env(image_env(), {
            "MODEL_STORE": str(store),  # /mnt/store in Lambda: the EFS mount
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "LAMBDA_TASK_ROOT": str(task_root),
            "PYTHONPATH": str(task_root),
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "AWS_LAMBDA_FUNCTION_NAME": "demo-classifier",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
            "AWS_REGION": "eu-west-1",
        })
        # The base image's entrypoint: python -m awslambdaric <CMD>, from the task root.
        python = lambda_image_python.python
        with child([str(python), "-m", "awslambdaric", image_handler()], log_path, cwd=task_root,
                   env=env) as proc:
            posts = collect_posts(api, proc, len(request_ids), log_path)
    return LambdaRun(python, store, task_root, env, request_ids, posts, log_path.read_text(errors="replace"))


def test_runtime_client_posts_one_response_per_invocation(lambda_run: LambdaRun) -> None:
    # GIVEN the function started by awslambdaric and sent three invocations
    # THEN init succeeded and each invocation got a result (not a function error), in order
    assert [post.path for post in lambda_run.posts] == [
        f"{RUNTIME_API_PREFIX}/invocation/{request_id}/response" for request_id in lambda_run.request_ids.values()
    ], lambda_run.logs
    for post in lambda_run.posts:
        assert post.headers.get("content-type", "").startswith("application/json")


def test_runtime_client_classifies_rest_v1_event(lambda_run: LambdaRun, reference: dict[str, Any]) -> None:
    # GIVEN a REST (v1) POST /classify with a base64 JPEG body, invoked through the runtime client
    response = read_response(lambda_run.response("v1").json())
    # THEN the proxy response holds torchvision's predictions for the photo (its own class first), from CURRENT
    body = assert_classified(response, reference, current_version(lambda_run.store))
    # AND the classification was stored as a record on the (EFS) store
    assert stored_records(lambda_run.store)[body["id"]]["predictions"] == body["predictions"]


def test_runtime_client_classifies_http_v2_event(lambda_run: LambdaRun, reference: dict[str, Any]) -> None:
    # GIVEN the same photo as an HTTP API / Function URL (v2) event, in the same warm environment
    response = read_response(lambda_run.response("v2").json())
    # THEN it is classified the same way
    assert_classified(response, reference, current_version(lambda_run.store))


def test_unsupported_body_is_a_415_response_through_the_runtime(lambda_run: LambdaRun) -> None:
    # GIVEN a text/plain body
    raw = lambda_run.response("unsupported").json()
    response = read_response(raw)
    # THEN the function returns the API's JSON error as a proxy response, not a Lambda function error
    assert "errorType" not in raw
    assert response.status == 415
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()
    assert set(error) == {"error"}
    assert error["error"]["code"] == "unsupported_media_type"
    assert isinstance(error["error"]["message"], str) and error["error"]["message"]
    assert "Traceback" not in response.body.decode()


def test_request_ids_are_in_the_json_logs(lambda_run: LambdaRun, chelsea: bytes) -> None:
    # GIVEN the function's stdout (CloudWatch Logs in AWS)
    entries = json_log_lines(lambda_run.logs)
    # THEN each invocation's Lambda request id is on a JSON log line with its outcome
    version = current_version(lambda_run.store)
    for name, status in (("v1", 200), ("v2", 200), ("unsupported", 415)):
        request_id = lambda_run.request_ids[name]
        mine = [e for e in entries if e.get("request_id") == request_id]
        assert any(e.get("status") == status and e.get("path") == "/classify" for e in mine), (name, mine)
        if status == 200:
            assert any(e.get("model_version") == version for e in mine), (name, mine)
    # AND the image bytes never are
    assert base64.b64encode(chelsea).decode()[100:200] not in lambda_run.logs


def test_logs_are_powertools_json_and_metrics_are_emf(lambda_run: LambdaRun) -> None:
    entries = json_log_lines(lambda_run.logs)
    version = current_version(lambda_run.store)
    # GIVEN the access-log line of the v1 invocation: Powertools' keys, with the request's own
    request_id = lambda_run.request_ids["v1"]
    (access,) = [e for e in entries if e.get("message") == "request" and e.get("request_id") == request_id]
    assert {"level", "location", "timestamp", "service"} <= set(access) and access["service"] == "classifier"
    assert access["function_request_id"] == request_id and access["level"] == "INFO"
    assert access["correlation_id"]  # API Gateway's request id, from the event
    # and the model's log lines (written on the loading thread) are Powertools JSON too
    assert any(e.get("message") == "model loaded" and e.get("service") == "classifier" for e in entries)
    # THEN each classification wrote an EMF record with its latencies, by model version
    emf = [e for e in entries if "_aws" in e]
    latency = [e for e in emf if "TotalLatency" in e]
    assert len(latency) == 2  # the v1 and v2 classifications; not the init warm-up
    for record in latency:
        (directive,) = record["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "Classifier"
        assert {m["Name"] for m in directive["Metrics"]} == {"TotalLatency", "InferenceLatency", "DecodeLatency",
                                                            "Images"}
        assert ["model_version", "service"] in [sorted(d) for d in directive["Dimensions"]]
        assert record["model_version"] == version and record["TotalLatency"][0] >= record["InferenceLatency"][0] > 0
    # AND the 415 counted as an error by code, and the first invocation as the cold start
    errors = [e for e in emf if "Errors" in e]
    assert [e["code"] for e in errors] == ["unsupported_media_type"]
    assert len([e for e in emf if "ColdStart" in e]) == 1


def test_handler_package_resolves_from_the_task_root(lambda_run: LambdaRun) -> None:
    # GIVEN the interpreter and environment the runtime client ran in
    out = subprocess.run(
        [str(lambda_run.python), "-c",
         "import json, sys, awslambdaric, classifier; print(json.dumps([sys.version_info[:2], classifier.__file__]))"],
        cwd=lambda_run.task_root, env=lambda_run.env,
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, out.stderr
    version, package = json.loads(out.stdout)
    # THEN it is Lambda's Python, as AWS_EXECUTION_ENV claims, not the one running these tests
    assert tuple(version) == LAMBDA_PYTHON == tuple(int(n) for n in lambda_run.env["AWS_EXECUTION_ENV"]
                                                      .removeprefix("AWS_Lambda_python").split("."))
    # AND `classifier` is the copy in LAMBDA_TASK_ROOT, as in the image, not this repo's editable install
    assert Path(package) == lambda_run.task_root / "classifier" / "__init__.py"


# --- 2. model/requirements.txt alone serves the onnx backend ------------------------------------


# Runs inside the fresh venv: the Lambda init phase (import the handler module, which loads
# the model) and one invocation, then what got imported.
INVOKE_SCRIPT = """
import importlib.util, json, sys
from pathlib import Path

event = json.loads(Path(sys.argv[1]).read_text())
import classifier.handler

class Context:
    aws_request_id = "11111111-2222-3333-4444-555555555555"
    function_name = "demo-classifier"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:demo-classifier"
    memory_limit_in_mb = 3008
    def get_remaining_time_in_millis(self):
        return 25000

response = classifier.handler.handler(event, Context())
Path(sys.argv[2]).write_text(json.dumps({
    "version": list(sys.version_info[:2]),
    "prefix": sys.prefix,
    "classifier": classifier.__file__,
    "response": response,
    "findable": {name: importlib.util.find_spec(name) is not None for name in ("torch", "torchvision")},
    "imported": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")),
    "onnxruntime": "onnxruntime" in sys.modules,
}))
"""


def test_runtime_requirements_alone_install_no_torch(runtime_venv: Venv) -> None:
    # GIVEN the venv built from model/requirements.txt alone, as the image installs it
    packages = runtime_venv.packages()
    # THEN it holds the runtime (onnxruntime, the ASGI adapter, the server) and no torch
    assert {"onnxruntime", "mangum", "starlette", "uvicorn", "numpy", "pillow"} <= set(packages)
    assert not set(packages) & {"torch", "torchvision"}
    # AND not the classifier package either: it comes from the task root, as in the image
    assert "classifier" not in packages


def test_runtime_requirements_alone_are_a_closed_set(runtime_venv: Venv) -> None:
    # GIVEN the file installed with --no-deps: pip resolved nothing, so a missing dependency stays missing
    # THEN every requirement of every installed package is met, at a compatible version
    assert runtime_venv.check() == []


def test_runtime_requirements_alone_serve_the_lambda_handler(
    runtime_venv: Venv, fitted_store: Path, tmp_path: Path, chelsea: bytes, reference: dict[str, Any]
) -> None:
    # GIVEN the fresh venv, the package on PYTHONPATH like LAMBDA_TASK_ROOT, and a published store
    store = copy_store(fitted_store, tmp_path / "store")
    event_path, result_path = tmp_path / "event.json", tmp_path / "result.json"
    event_path.write_text(json.dumps(classify_event("v1", chelsea, "image/jpeg")))
    script = tmp_path / "invoke.py"
    script.write_text(INVOKE_SCRIPT)
    # WHEN the handler module is imported and invoked with a REST v1 event
    run = subprocess.run(
        [str(runtime_venv.python), str(script), str(event_path), str(result_path)],
        cwd=tmp_path, capture_output=True, text=True, check=False,
        env=subprocess_env(image_env(), {"MODEL_STORE": str(store), "PYTHONPATH": str(MODEL_DIR)}),
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    result = json.loads(result_path.read_text())
    # THEN it ran in the fresh venv, on Lambda's Python, on this repo's package
    assert tuple(result["version"]) == LAMBDA_PYTHON
    assert Path(result["prefix"]).resolve() == runtime_venv.path.resolve()
    assert Path(result["classifier"]).resolve() == (MODEL_DIR / "classifier" / "__init__.py").resolve()
    # AND classified the photo with the onnx backend, as torchvision does
    assert_classified(read_response(result["response"]), reference, current_version(store))
    assert result["onnxruntime"] is True
    # AND torch is neither installed nor imported
    assert result["findable"] == {"torch": False, "torchvision": False}
    assert result["imported"] == []


def test_runtime_requirements_alone_serve_http(
    runtime_venv: Venv, fitted_store: Path, tmp_path: Path, chelsea: bytes, reference: dict[str, Any]
) -> None:
    # GIVEN `python -m classifier serve` from the fresh venv
    store = copy_store(fitted_store, tmp_path / "store")
    port = free_port()
    log_path = tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    cmd = [str(runtime_venv.python), "-m", "classifier", "serve", "--store", str(store), "--port", str(port)]
    with child(cmd, log_path, cwd=tmp_path, env=subprocess_env(image_env(), {"PYTHONPATH": str(MODEL_DIR)})) as proc:
        wait_until(lambda: httpx.get(f"{url}/health", timeout=5).status_code == 200, proc, log_path,
                   "the server", timeout=HANG_GUARD_SECONDS)
        health = httpx.get(f"{url}/health", timeout=30).json()
        # WHEN a photo is posted over HTTP
        classified = httpx.post(f"{url}/classify", content=chelsea, headers={"Content-Type": "image/jpeg"}, timeout=60)
    # THEN /health reports the current version loaded on the onnx backend
    assert health == {"status": "ok", "version": current_version(store), "backend": "onnx"}
    # AND the photo is classified as torchvision classifies it
    assert classified.status_code == 200, classified.text
    assert_same_predictions(classified.json()["predictions"], reference["predictions"])


# --- 3. the Dockerfile is what the tests above emulate ------------------------------------------


def test_dockerfile_runs_the_handler_on_the_lambda_python_base_image() -> None:
    instructions = dockerfile()
    # The base image's entrypoint runs awslambdaric on CMD, which is what the tests above do.
    assert instructions[0] == Instruction("FROM", "public.ecr.aws/lambda/python:3.12")
    assert not [i for i in instructions if i.keyword == "ENTRYPOINT"]
    assert image_handler() == "classifier.handler.handler"
    # The weights are on EFS, not in the image.
    assert image_env()["MODEL_STORE"] == "/mnt/store"
    assert image_env()["BACKEND"] == "onnx"


def test_dockerfile_copies_the_package_into_the_task_root() -> None:
    copies = [shlex.split(args) for args in _args_of("COPY")]
    assert [c for c in copies if "classifier" in c[0]] == [["classifier/", "${LAMBDA_TASK_ROOT}/classifier/"]]
    assert (MODEL_DIR / "classifier" / "handler.py").is_file()


def test_dockerfile_installs_the_locked_requirements() -> None:
    run = " ".join(_args_of("RUN"))
    copied = {src for args in _args_of("COPY") for src in shlex.split(args)[:-1]}
    installed = re.findall(r"-r\s+([^\s;&|]+)", run)
    # every requirements file the image installs is in the build context and copied in
    assert installed and all(name in copied and (MODEL_DIR / name).is_file() for name in installed)
    # the default image installs model/requirements.txt (the file the fresh venv above holds, alone)
    # into the task root, hash-checked and closed, before and outside the torch branch
    first_install = run[run.index("pip install"):].split("&&")[0]
    assert "-r requirements.txt" in first_install and '--target "${LAMBDA_TASK_ROOT}"' in first_install
    assert all(flag in first_install.split() for flag in LOCKED_INSTALL)
    torch_branch = re.search(r'if \[ "\$BACKEND" = "torch" \]; then(.*?)(?:elif|else|fi)', run, re.DOTALL)
    assert torch_branch and "-r requirements-torch.txt" in torch_branch[1]
    assert "--no-deps" in torch_branch[1].split()
    assert set(installed) == {"requirements.txt", "requirements-torch.txt"}
