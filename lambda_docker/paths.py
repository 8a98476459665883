"""The build contexts of the app's assets, found from this file, never from the working directory."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The functions' container image and the installer's zip are built from here.
MODEL_DIR = REPO_ROOT / "model"
DASHBOARD_DIR = REPO_ROOT / "streamlit-docker"
