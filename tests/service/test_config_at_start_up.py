"""A bad setting stops `serve` at start-up with a message naming the variable (the real CLI, in a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_serve_refuses_a_bad_setting(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "classifier", "serve", "--store", str(tmp_path)],
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "BACKEND": "tf"}, timeout=60)
    assert result.returncode == 2 and "BACKEND" in result.stderr and "Traceback" not in result.stderr


