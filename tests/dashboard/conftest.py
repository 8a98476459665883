"""Fixtures for the dashboard's tests: the app against the live local API (`server`, or `uploads_server`
with an uploads bucket)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from helpers import ROOT
from helpers.aws import aws_env, new_bucket
from helpers.dashboard import APP
from helpers.processes import LiveServer, child, free_port, live_server, wait_until
from helpers.stores import add_model, copy_store


@pytest.fixture
def app_test(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], AppTest]:
    """An AppTest of the dashboard configured with API_URL=``url`` (no API key)."""

    def make(url: str) -> AppTest:
        monkeypatch.setenv("API_URL", url)
        monkeypatch.delenv("API_KEY", raising=False)
        # Generous: a classification on a busy 2-core CI machine can take seconds.
        return AppTest.from_file(str(APP), default_timeout=120)

    return make


@pytest.fixture(scope="module")
def fitted_server(fitted_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The API serving the fitted model, which gives each test photo its own top-1 label."""
    store = copy_store(fitted_store, tmp_path_factory.mktemp("fitted-server") / "store")
    with live_server(store, store.parent) as live:
        yield live


@pytest.fixture(scope="module")
def uploads_server(published_store: Path, tmp_path_factory: pytest.TempPathFactory,
                   s3_endpoint: str) -> Iterator[LiveServer]:
    """The API with an uploads bucket (in moto's S3 server): images over 4 MiB can go through S3."""
    store = copy_store(published_store, tmp_path_factory.mktemp("uploads") / "store")
    with live_server(store, store.parent, env=aws_env(s3_endpoint, new_bucket(s3_endpoint))) as live:
        yield live


@pytest.fixture(scope="module")
def two_models_server(published_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The API serving two models: resnet50 (the default) and ``products`` (the same weights, labels
    ``"products <i>"``)."""
    store = copy_store(published_store, tmp_path_factory.mktemp("two-models") / "store")
    add_model(store, "products")
    with live_server(store, store.parent, env={"MODELS": "resnet50,products"}) as live:
        yield live


@pytest.fixture(scope="session")
def dashboard(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``streamlit run`` on a free loopback port against the live API; yields its URL.

    Started as ``make serve`` starts it (scripts/serve.sh): Streamlit's other settings
    come from streamlit-docker/.streamlit/config.toml, as in the image. One per
    session: every browser page is a new Streamlit session anyway.
    """
    with streamlit_against(server, tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="module")
def two_models_dashboard(two_models_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard against ``two_models_server``."""
    with streamlit_against(two_models_server, tmp_path_factory) as url:
        yield url


@contextmanager
def streamlit_against(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``streamlit run`` of the dashboard with API_URL set to ``server``, stopped on exit; yields its URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("dashboard") / "streamlit.log"
    env = {**os.environ, "API_URL": server.url}
    env.pop("API_KEY", None)
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP),
           "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    url = f"http://127.0.0.1:{port}"
    with child(cmd, log_path, env=env, cwd=ROOT) as proc:
        wait_until(lambda: httpx.get(f"{url}/_stcore/health", timeout=5).status_code == 200,
                   proc, log_path, "streamlit")
        yield url

