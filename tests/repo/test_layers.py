"""The runtime package's layers hold: ``lint-imports`` checks the contracts in pyproject.toml.

A module may import the layers below its own, never one above: the folder layout a newcomer
sees (docs/architecture.md) is the import graph. The check is shown to fail, too: a copy of the
package with one upward import breaks the layers contract.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(package_parent: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False)


def test_the_import_contracts_are_kept() -> None:
    done = lint_imports(ROOT / "model", ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in done.stdout


def test_an_import_from_a_lower_layer_to_a_higher_one_breaks_the_contract(tmp_path: Path) -> None:
    # GIVEN a copy of the package where the model store (low) imports the HTTP API (high)
    shutil.copytree(ROOT / "model" / "classifier", tmp_path / "model" / "classifier",
                    ignore=shutil.ignore_patterns("__pycache__", "assets"))
    shutil.copyfile(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    layout = tmp_path / "model" / "classifier" / "store" / "layout.py"
    layout.write_text(layout.read_text() + "\nfrom classifier.api import routes  # noqa: E402,F401\n")
    # WHEN the contracts are checked against that copy
    done = lint_imports(tmp_path / "model", tmp_path)
    # THEN the layers contract is broken, naming the import
    assert done.returncode != 0
    assert "BROKEN" in done.stdout and "classifier.store.layout -> classifier.api.routes" in done.stdout, done.stdout
