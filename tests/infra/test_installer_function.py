"""The installer function as synthesized: its sizing, its trigger's retries, and its zip on its own runtime."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from .conftest import Synth
from .test_storage_stack import only, resources
from helpers.venvs import lambda_python

HANDLER = "classifier.store.installer.handler"


def installer(synth: Synth) -> tuple[str, dict[str, Any]]:
    function_id, function = only(synth.storage, "AWS::Lambda::Function", {"Handler": HANDLER})
    return function_id, function["Properties"]


def test_installer_is_sized_for_downloading_and_hashing_a_version(default: Synth) -> None:
    # ~200 MB of artifacts downloaded and hashed: 1 GB buys the network and CPU, 5 minutes is
    # ample for that; arm64 is the cheaper architecture for a job with no native wheels.
    _, props = installer(default)
    assert (props["MemorySize"], props["Timeout"], props["Architectures"]) == (1024, 300, ["arm64"])
    assert props["Runtime"] == "python3.12"


def test_a_failed_delivery_to_the_installer_is_retried_twice(default: Synth) -> None:
    function_id, _ = installer(default)
    rules = [rule["Properties"] for rule in resources(default.storage, "AWS::Events::Rule").values()
             if any(target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]} for target in rule["Properties"]["Targets"])]
    assert len(rules) == 1
    (target,) = rules[0]["Targets"]
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2}


def installer_asset(synth: Synth, function_id: str) -> Path:
    # The function's code names its asset by hash (S3Key "<hash>.zip"); the assets manifest
    # says which staged directory that zip is made from.
    code = resources(synth.storage, "AWS::Lambda::Function")[function_id]["Properties"]["Code"]
    asset_hash = code["S3Key"].removesuffix(".zip")
    files = synth.assets(synth.deployment.storage)["files"]
    return synth.outdir / files[asset_hash]["source"]["path"]


def test_installer_zip_imports_its_handler_under_its_runtimes_python(default: Synth) -> None:
    # The zip holds the stdlib part of classifier and its locked SDK; Lambda runs it on the
    # Python its runtime names, with nothing else on the path (-I: no site, no PYTHON* env; -B: the
    # staged asset, which other tests read, gets no __pycache__).
    function_id, props = installer(default)
    asset = installer_asset(default, function_id)
    assert (asset / "classifier" / "store" / "installer.py").is_file()
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import json, importlib, boto3; "
        "module, name = sys.argv[2].rsplit('.', 1); handler = getattr(importlib.import_module(module), name); "
        "print(json.dumps({'python': 'python%d.%d' % sys.version_info[:2], 'callable': callable(handler), "
        "'boto3': boto3.__file__, 'numpy': 'numpy' in sys.modules}))"
    )
    done = subprocess.run([lambda_python(), "-I", "-B", "-c", probe, str(asset), props["Handler"]],
                          capture_output=True, text=True, check=False, env={"MODEL_STORE": "/mnt/store"})
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["python"] == props["Runtime"] and found["callable"] is True
    assert found["boto3"].startswith(str(asset))  # the locked SDK in the zip, not the runtime's own
    assert found["numpy"] is False  # the installer's zip has no numpy: its import must not need it
