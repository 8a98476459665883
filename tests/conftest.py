"""Fixtures shared by every tier, and the tiers themselves.

Each test lives in one folder of tests/, its tier, and is marked with it: ``unit`` (no server,
no subprocess, no network, no CDK: ``make test-fast``), ``service``, ``infra``, ``dashboard``
and ``repo``. A unit test that starts a process or opens a connection fails, naming the tier
it belongs to.

Publishing a model takes a few seconds, so one untrained ResNet-50 (the full
architecture with random weights: pretrained weights cannot be downloaded in
CI) is published once per session; tests that change the store get a private
copy whose artifacts are hard links. That model gives every photo the same
answer; a test that needs two photos told apart uses ``fitted_store``, a
ResNet-50 fitted to give each test photo its own class (``helpers.fitted_model``).
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from helpers import ROOT
from helpers.lambda_events import load_handler
from helpers.processes import LiveServer, live_server
from helpers.stores import copy_store, publish
from helpers.venvs import Venv, fresh_venv

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "service", "infra", "dashboard", "repo")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, the first folder under tests/ it lives in."""
    for item in items:
        tier = Path(item.path).resolve().relative_to(TESTS).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in a tier's folder, tests/{{{','.join(TIERS)}}}/")
        item.add_marker(tier)


@pytest.fixture(autouse=True)
def unit_tests_stay_in_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the unit tier, starting a process or connecting a socket fails the test.

    Fixtures of a wider scope (a published store, made once per session) are set up before this
    one, so only what the test itself does is held to it."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a unit test starts no process and opens no connection: move it to tests/service")

    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)
    monkeypatch.setattr(os, "fork", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture(scope="session")
def output_dir() -> Path:
    """Artifacts a test leaves for humans (screenshots, logs): ./test-output."""
    path = ROOT / "test-output"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def published_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only store holding one published (untrained) version. Do not modify.

    ``TESTS_PUBLISHED_STORE`` names one published beforehand: ``make mutation`` runs the suite
    once per mutant, and publishing (torch, an ONNX export) would cost each run ~15 s."""
    if os.environ.get("TESTS_PUBLISHED_STORE"):
        return Path(os.environ["TESTS_PUBLISHED_STORE"])
    store = tmp_path_factory.mktemp("published") / "store"
    publish(store, "random")
    return store


@pytest.fixture(scope="session")
def fitted_store(tmp_path_factory: pytest.TempPathFactory, output_dir: Path) -> Path:
    """A read-only store whose current model gives each photo of ``helpers.fitted_model.PHOTO_LABELS``
    its own top-1 class (chelsea: tabby, coffee: espresso, ...). Do not modify.

    Its weights are fitted, and published, once and cached in ``test-output/cache/`` (keyed by the
    code that makes them); a session copies that store (hard links)."""
    from helpers.fitted_model import published_fitted_store

    return copy_store(published_fitted_store(output_dir / "cache"), tmp_path_factory.mktemp("fitted") / "store")


@pytest.fixture
def store(published_store: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the published store."""
    return copy_store(published_store, tmp_path / "store")


@pytest.fixture(scope="module")
def app_client(published_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The API in this process (Starlette's TestClient, no socket), over a private copy of the store:
    for checks of the app's own behaviour, where a real server adds nothing."""
    from classifier.api.app import create_app
    from classifier.config import Settings

    store = copy_store(published_store, tmp_path_factory.mktemp("app") / "store")
    with TestClient(create_app(Settings(model_store=store))) as client:
        yield client


@pytest.fixture(scope="session")
def server(published_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real API server on loopback, shared by read-mostly HTTP tests."""
    store = copy_store(published_store, tmp_path_factory.mktemp("server") / "store")
    with live_server(store, store.parent) as live:
        yield live


@pytest.fixture(scope="module")
def handler_and_store(published_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """``classifier.handler.handler`` freshly imported over a private store, as a new Lambda instance."""
    store = copy_store(published_store, tmp_path_factory.mktemp("lambda") / "store")
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield load_handler(monkeypatch, store), store


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, shared by every S3 test (buckets are per test)."""
    from helpers.aws import moto_server

    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh Python 3.12 venv holding model/requirements.txt alone, installed as the Lambda image does."""
    return fresh_venv(tmp_path_factory.mktemp("runtime-venv") / "venv", [ROOT / "model" / "requirements.txt"])
