"""Fixtures for the dashboard's tests: the app against the live local API (`server`, or `uploads_server`
with an uploads bucket)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from helpers.aws import aws_env, new_bucket
from helpers.dashboard import APP, streamlit_dashboard
from helpers.processes import LiveServer, live_server, wait_until
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
def rollout_server(published_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The API with a full shadow rollout running (a candidate with the current version's weights, so every
    guard holds: verdict ``ready``) and four photos classified; it never acts on the verdict itself."""
    from classifier.cli import main
    from classifier.store.layout import ModelStore

    from helpers.photos import jpeg
    from helpers.stores import derive_version

    folder = tmp_path_factory.mktemp("rollout")
    store = copy_store(published_store, folder / "store")
    models = ModelStore(store)
    current = models.current("resnet50")
    assert current is not None
    candidate = models.install_dir(derive_version(models.version_dir("resnet50", current), folder / "candidate",
                                                  created="2031-06-01T00:00:00Z"), make_current=False)
    assert main(["rollout", "start", candidate, "--store", str(store), "--shadow", "100", "--min-requests", "3",
                 "--max-latency-ratio", "100"]) == 0
    with live_server(store, folder, env={"ROLLOUT_JUDGE_SECONDS": "0"}) as live, live.client() as client:
        wait_until(lambda: (client.get("/model").json().get("rollout") or {}).get("candidate_state") == "loaded",
                   live.process, live.log_path, "the candidate")
        for name in ("chelsea", "coffee", "astronaut", "rocket"):
            assert client.post("/classify", content=jpeg(name), headers={"content-type": "image/jpeg"}).is_success
        # the shadow runs follow the answers: wait until the evidence holds all four
        wait_until(lambda: client.get("/model").json()["rollout"]["evidence"]["compared"] == 4,
                   live.process, live.log_path, "the shadow runs")
        yield live


@pytest.fixture(scope="session")
def dashboard(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard against the live API (one per session: every browser page is a new
    Streamlit session anyway)."""
    with streamlit_against(server, tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="module")
def rollout_dashboard(rollout_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard against ``rollout_server``."""
    with streamlit_against(rollout_server, tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="module")
def two_models_dashboard(two_models_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard against ``two_models_server``."""
    with streamlit_against(two_models_server, tmp_path_factory) as url:
        yield url


@contextmanager
def streamlit_against(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``streamlit run`` of the dashboard with API_URL set to ``server``, stopped on exit; yields its URL."""
    with streamlit_dashboard(server.url, tmp_path_factory.mktemp("dashboard") / "streamlit.log") as url:
        yield url
