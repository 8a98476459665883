"""Rollouts on a running server: canary routing, a candidate that cannot load, and the server's own judge
aborting or promoting, with requests in flight all along."""

from __future__ import annotations

import contextlib
import io
import json
import math
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from classifier.cli import main
from classifier.store.layout import ModelStore
from classifier.store.rollout import RolloutStore

from helpers.inbox import tiny_version
from helpers.openapi import matches_the_document
from helpers.photos import encode, photo
from helpers.processes import LiveServer, live_server, wait_for
from helpers.stores import copy_store, derive_version

NAME = "resnet50"
# A small real photo: the model's cost is the same whatever the size, decoding is not.
PHOTO = encode(photo("chelsea").resize((300, 200)), "JPEG", quality=90)
FAST = {"MODEL_REFRESH_SECONDS": "1", "ROLLOUT_JUDGE_SECONDS": "1"}


def rollout_state(server: LiveServer) -> dict[str, Any] | None:
    state: dict[str, Any] | None = httpx.get(server.url + "/model", timeout=60).json().get("rollout")
    return state


def classify(client: httpx.Client, request_id: str | None = None) -> httpx.Response:
    headers = {"content-type": "image/jpeg", **({"x-request-id": request_id} if request_id else {})}
    return client.post("/classify", content=PHOTO, headers=headers)


class Store:
    """A private store: the published (random) ResNet-50 current, and a candidate with the same weights and
    labels under its own version id (a retrained model stand-in: which version answered shows in each response)."""

    def __init__(self, published_store: Path, tmp_path: Path) -> None:
        self.root = copy_store(published_store, tmp_path / "store")
        self.store = ModelStore(self.root)
        current = self.store.current(NAME)
        assert current is not None
        self.current = current
        source = derive_version(self.store.version_dir(NAME, current), tmp_path / "candidate",
                                created="2031-06-01T00:00:00Z")
        self.candidate = self.store.install_dir(source, make_current=False)
        self.rollouts = RolloutStore(self.store)

    def start(self, *options: str, version: str | None = None) -> None:
        assert main(["rollout", "start", version or self.candidate, "--store", str(self.root), *options]) == 0


@pytest.fixture
def store(published_store: Path, tmp_path: Path) -> Store:
    return Store(published_store, tmp_path)


class Hammer(threading.Thread):
    """Classifies in a loop and keeps every status, until stopped."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.statuses: list[int] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as client:
            while not self.stop.is_set():
                self.statuses.append(classify(client).status_code)

    def __enter__(self) -> Hammer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.join(180)


def test_a_20_percent_canary_over_400_requests(store: Store, tmp_path: Path) -> None:
    # GIVEN a server, and a 20% canary whose guards never conclude (so it runs throughout)
    with live_server(store.root, tmp_path, env=FAST) as server:
        store.start("--canary", "20", "--min-requests", "1000000")
        wait_for(lambda: (rollout_state(server) or {}).get("candidate_state") == "loaded", "the candidate loaded")
        # (GET /model's rollout is as the API document describes it)
        matches_the_document(httpx.get(server.url + "/model", timeout=60).json(), "/model", "get")
        # WHEN 400 requests come, each with its own X-Request-Id
        ids = [uuid.uuid4().hex for _ in range(400)]
        answered: dict[str, str] = {}
        with server.client() as client:
            for request_id in ids:
                response = classify(client, request_id)
                assert response.status_code == 200, response.text
                model = response.json()["model"]
                # THEN each response says which version answered, and its role
                expected_role = "canary" if model["version"] == store.candidate else "current"
                assert model["version"] in (store.current, store.candidate) and model["role"] == expected_role
                answered[request_id] = model["version"]
                if len(answered) <= 20:
                    matches_the_document(response.json(), "/classify", "post")
            # AND a retry with the same X-Request-Id goes to the same version, every time
            for request_id in ids[:60]:
                assert classify(client, request_id).json()["model"]["version"] == answered[request_id]
    # AND the candidate's share is within the 99.9% binomial interval of 20% of 400
    n, p = len(ids), 0.2
    share = sum(version == store.candidate for version in answered.values())
    assert abs(share - n * p) <= 3.29 * math.sqrt(n * p * (1 - p)), share
    # AND the ledger counted each request on the version that answered it
    report = status(store)
    assert report["evidence"]["candidate"]["requests"] == share + sum(answered[i] == store.candidate for i in ids[:60])
    assert report["evidence"]["current"]["requests"] == 460 - report["evidence"]["candidate"]["requests"]


def status(store: Store) -> dict[str, Any]:
    """``rollout status --json`` of the store."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["rollout", "status", "--store", str(store.root), "--json"]) == 0
    report: dict[str, Any] = json.loads(buffer.getvalue())
    return report


def test_a_candidate_that_cannot_load_is_aborted_and_no_request_fails(
    store: Store, published_store: Path, tmp_path: Path,
) -> None:
    # GIVEN a candidate that is intact on disk (every sha256 matches its manifest) but is no ONNX model
    broken = tiny_version(published_store, tmp_path / "broken", seed="not a model")
    version = store.store.install_dir(tmp_path / "broken", make_current=False)
    assert version == broken["version"]
    with live_server(store.root, tmp_path, env=FAST) as server, Hammer(server.url) as hammer:
        wait_for(lambda: len(hammer.statuses) >= 3, "requests served")
        # WHEN a canary of it starts (start accepts it: its bytes are what its manifest says)
        store.start("--canary", "50", version=version)
        # THEN at its next refresh the server fails to load it and aborts the rollout, saying why
        wait_for(lambda: store.rollouts.get(NAME) is None, "the rollout aborted")
        time.sleep(2)  # and requests go on being served afterwards
    (outcome,) = store.rollouts.outcomes(NAME)
    assert outcome["outcome"] == "aborted" and f"the candidate {version} could not be loaded" in outcome["reason"]
    assert outcome["evidence"]["load_error"] and outcome["actor"].startswith("server ")
    # AND not one request failed, before, during or after; CURRENT never moved
    assert hammer.statuses and set(hammer.statuses) == {200}, hammer.statuses
    assert store.store.current(NAME) == store.current
    assert "could not be loaded" in server.logs()


def test_the_server_promotes_a_canary_that_holds_every_guard(store: Store, tmp_path: Path) -> None:
    # GIVEN a server and a canary (the same weights: as fast, as right) that promotes itself when ready
    with live_server(store.root, tmp_path, env=FAST) as server:
        store.start("--canary", "50", "--min-requests", "15", "--max-latency-ratio", "3", "--auto-promote")
        wait_for(lambda: (rollout_state(server) or {}).get("candidate_state") == "loaded", "the candidate loaded")
        # WHEN requests come until the server's judge has seen enough
        with server.client() as client:
            def promoted() -> bool:
                assert classify(client).status_code == 200
                return store.store.current(NAME) == store.candidate

            wait_for(promoted, "the candidate promoted")
            # THEN CURRENT is the candidate, and the server serves it (no rollout any more)
            wait_for(lambda: classify(client).json()["model"] == {
                "name": NAME, "version": store.candidate, "backend": "onnx", "trained": False}, "served")
    (outcome,) = store.rollouts.outcomes(NAME)
    assert outcome["outcome"] == "promoted" and outcome["reason"].startswith("judge: ready")
    assert outcome["evidence"]["candidate"]["requests"] >= 15
