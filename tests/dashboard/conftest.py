"""Fixtures for the dashboard's tests: the app against the live local API (`server`, or `uploads_server`
with an uploads bucket)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from helpers.aws import aws_env, new_bucket
from helpers.dashboard import APP, streamlit_dashboard
from helpers.processes import LiveServer, live_server
from helpers.stores import copy_store


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
def uploads_server(published_store: Path, tmp_path_factory: pytest.TempPathFactory,
                   s3_endpoint: str) -> Iterator[LiveServer]:
    """The API with an uploads bucket (in moto's S3 server): images over 4 MiB can go through S3."""
    store = copy_store(published_store, tmp_path_factory.mktemp("uploads") / "store")
    with live_server(store, store.parent, env=aws_env(s3_endpoint, new_bucket(s3_endpoint))) as live:
        yield live


@pytest.fixture(scope="session")
def dashboard(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard against the live API (one per session: every browser page is a new
    Streamlit session anyway)."""
    with streamlit_dashboard(server.url, tmp_path_factory.mktemp("dashboard") / "streamlit.log") as url:
        yield url
