"""Helpers shared by the test suites (on sys.path through pytest's ``pythonpath``).

- ``photos``: real CC0 photographs and encodings of them;
- ``processes``: child processes, free ports, a real API server on loopback;
- ``stores``: publishing a model and cheap private copies of a store;
- ``lambda_events``: real API Gateway events in, Lambda proxy responses out;
- ``runtime_api``: the Lambda Runtime API that awslambdaric talks to, on loopback;
- ``aws``: moto's server, the environment that points boto3 at it, buckets;
- ``inbox``: small model versions and their S3 events, for the installer;
- ``venvs``: fresh virtual environments built as the images build theirs;
- ``dashboard``: the dashboard's paths and Streamlit's AppTest tree.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"
