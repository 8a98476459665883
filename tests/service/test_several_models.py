"""Several models served by one real process on loopback (``MODELS``), under a memory bound that fits one.

The two models tell apart by their heads: the session's untrained ImageNet ResNet-50 (1,000 labels) and a
3-class ResNet-50 published with ``--weights PATH --labels FILE`` from a state dict this module writes.
With room for one of them, every request for the other unloads the one loaded; several threads alternating
between them keep being answered, each by its own model with its own labels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from torchvision.models import resnet50

from classifier.store.layout import ModelStore

from helpers.photos import jpeg
from helpers.processes import LiveServer, live_server
from helpers.stores import copy_store

LABELS = ["cat", "coffee", "rocket"]
PHOTOS = ["chelsea", "coffee", "rocket", "astronaut"]
# One ResNet-50's model.onnx is ~98 MB (the 3-class one ~90 MB): this bound fits either, never both.
ONE_MODEL_MB = "150"


@pytest.fixture(scope="module")
def two_model_store(published_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's store plus ``three``: a 3-class ResNet-50 with its own labels, published with the CLI."""
    work = tmp_path_factory.mktemp("several-models")
    store = copy_store(published_store, work / "store")
    torch.manual_seed(7)
    checkpoint = work / "three.pth"
    torch.save(resnet50(num_classes=len(LABELS)).eval().state_dict(), checkpoint)
    labels = work / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "classifier", "publish", "--store", str(store), "--name", "three",
         "--weights", str(checkpoint), "--labels", str(labels)],
        capture_output=True, text=True, env=os.environ.copy(), timeout=900)
    assert done.returncode == 0, done.stderr
    return store


@pytest.fixture(scope="module")
def bounded_server(two_model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {"MODELS": "resnet50,three", "MODEL_MEMORY_MB": ONE_MODEL_MB}
    with live_server(two_model_store, tmp_path_factory.mktemp("bounded-server"), env=env) as live:
        yield live


def imagenet_labels(store: Path) -> list[str]:
    models = ModelStore(store)
    version = models.current("resnet50")
    assert version is not None
    labels: list[str] = json.loads((models.version_dir("resnet50", version) / "labels.json").read_text())
    return labels


def classify(client: httpx.Client, model: str, photo: str) -> httpx.Response:
    path = "/classify" if model == "resnet50" else f"/models/{model}/classify"
    return client.post(path, content=jpeg(photo), headers={"content-type": "image/jpeg"}, params={"top_k": 3})


def test_the_served_models_are_listed_and_only_the_default_is_loaded(bounded_server: LiveServer) -> None:
    listing = httpx.get(f"{bounded_server.url}/models", timeout=60).json()
    assert listing["default"] == "resnet50"
    by_name = {m["name"]: m for m in listing["models"]}
    assert list(by_name) == ["resnet50", "three"]
    assert (by_name["three"]["labels"], by_name["resnet50"]["labels"]) == (3, 1000)
    assert by_name["three"]["architecture"] == "resnet50" and by_name["three"]["precision"] == "fp32"


def test_alternating_requests_from_several_threads_are_each_answered_by_their_own_model(
        bounded_server: LiveServer, two_model_store: Path) -> None:
    # GIVEN four clients, each alternating between the two models, with room for one model in memory
    imagenet = set(imagenet_labels(two_model_store))
    requests = [(model, photo) for photo in PHOTOS for model in ("three", "resnet50")]

    def client_run(offset: int) -> list[tuple[str, httpx.Response]]:
        with bounded_server.client() as client:
            mine = requests[offset:] + requests[:offset]
            return [(model, classify(client, model, photo)) for model, photo in mine]

    # WHEN they all run at once
    with ThreadPoolExecutor(4) as pool:
        answers = [answer for run in pool.map(client_run, range(4)) for answer in run]
    # THEN every request was answered, by the model it named, with that model's labels
    assert len(answers) == 4 * len(requests)
    for model, response in answers:
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["model"]["name"] == model
        labels = {p["label"] for p in body["predictions"]}
        assert labels <= (set(LABELS) if model == "three" else imagenet), (model, labels)
        assert len(body["predictions"]) == 3
    # AND the bound was kept by unloading: the log shows each model unloaded to make room for the other
    unloaded = [json.loads(line) for line in bounded_server.logs().splitlines()
                if line.startswith("{") and '"model unloaded"' in line]
    assert {entry["model_name"] for entry in unloaded} == {"resnet50", "three"}


def test_a_model_not_served_is_a_404(bounded_server: LiveServer) -> None:
    with bounded_server.client() as client:
        for response in (classify(client, "products", "chelsea"), client.get("/models/products")):
            assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_the_client_and_the_classify_command_name_a_model(bounded_server: LiveServer, tmp_path: Path) -> None:
    from classifier.client.api import ClassifierClient, ImageFile

    # GIVEN a client whose model is "three"
    client = ClassifierClient(bounded_server.url, model="three")
    assert client.models()["default"] == "resnet50"
    assert client.model("three")["name"] == "three" and client.model()["name"] == "resnet50"
    # WHEN it classifies, and once naming the default model for one call
    own = client.classify_image(ImageFile("cat.jpg", jpeg("chelsea")), top_k=2)
    other = client.classify_image(ImageFile("cat.jpg", jpeg("chelsea")), top_k=2, model="resnet50")
    batch = client.classify_each([ImageFile(f"{p}.jpg", jpeg(p)) for p in PHOTOS], top_k=2)
    # THEN each went to the model named
    assert own.result is not None and own.result["model"]["name"] == "three"
    assert other.result is not None and other.result["model"]["name"] == "resnet50"
    assert [o.result["model"]["name"] if o.result else o.error for o in batch] == ["three"] * len(PHOTOS)
    # AND so does the command line's --model
    image = tmp_path / "cat.jpg"
    image.write_bytes(jpeg("chelsea"))
    done = subprocess.run([sys.executable, "-m", "classifier", "classify", str(image), "--url", bounded_server.url,
                           "--model", "three", "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (answer,) = json.loads(done.stdout)
    assert answer["result"]["model"]["name"] == "three"
    assert {p["label"] for p in answer["result"]["predictions"]} <= set(LABELS)
    # AND a model the API does not serve fails that image, with the API's 404
    missing = ClassifierClient(bounded_server.url, model="products").classify_image(ImageFile("x.jpg", jpeg("coffee")))
    assert missing.error is not None and (missing.error.status, missing.error.code) == (404, "not_found")
