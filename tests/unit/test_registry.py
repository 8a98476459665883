"""The served models (``classifier.serving.registry.ModelRegistry``) in process: which names ``MODELS`` serves,
that each model answers with its own labels, loads on its first request and hot-swaps on its own CURRENT.

The second model is the published ResNet-50's artifacts (hard links) under another name with labels of its
own, so the two tell apart by their labels alone. The memory bound has its own file, test_memory.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from classifier.config import Settings
from classifier.errors import NotFound
from classifier.serving.registry import ModelRegistry
from classifier.serving.service import Classifier, ImageInput

from helpers.photos import jpeg
from helpers.stores import add_model


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def registry_for(store: Path, clock: Clock | None = None, **env: str) -> ModelRegistry:
    settings = Settings.from_env({"MODEL_STORE": str(store), **env})
    return ModelRegistry(settings, clock=clock or Clock())


def top_labels(classifier: Classifier, registry: ModelRegistry, name: str) -> tuple[str, list[str]]:
    (result,) = classifier.classify([ImageInput(jpeg("chelsea"))], k=3, store=False, source=registry.slot(name))
    return result.model["name"], [p.label for p in result.predictions]


def test_models_lists_what_a_process_serves(store: Path) -> None:
    # GIVEN a store of three models, and a process serving two of them
    add_model(store, "products")
    add_model(store, "defects")
    registry = registry_for(store, MODELS="products,resnet50", MODEL_NAME="resnet50")
    # THEN it lists those two, the default first, and refuses the third and unknown names with a 404
    assert registry.names() == ["resnet50", "products"]
    assert registry.slot("products").name == "products"
    for name in ("defects", "nope", "../resnet50", "R" * 500):
        with pytest.raises(NotFound, match="is served here"):
            registry.slot(name)
    # AND GET /models describes each from the store, without loading either
    assert [(m["name"], m["loaded"], m["labels"], m["precision"]) for m in registry.summaries()] == [
        ("resnet50", False, 1000, "fp32"), ("products", False, 1000, "fp32")]


def test_every_model_of_the_store_with_a_star(store: Path) -> None:
    add_model(store, "products")
    registry = registry_for(store, MODELS="*")
    assert registry.names() == ["resnet50", "products"]
    # a model published after start-up is served too
    add_model(store, "defects")
    assert registry.names() == ["resnet50", "defects", "products"]
    assert registry.slot("defects").name == "defects"
    with pytest.raises(NotFound):
        registry.slot("nope")


def test_each_model_answers_with_its_own_labels_and_loads_on_its_first_request(store: Path) -> None:
    # GIVEN two models with the same weights and different labels, neither loaded yet
    add_model(store, "products")
    registry = registry_for(store, MODELS="resnet50,products")
    classifier = Classifier(registry.settings, registry.default, None)
    assert registry.default.loaded is None and registry.slot("products").loaded is None
    # WHEN each is asked for
    default_name, default_labels = top_labels(classifier, registry, "resnet50")
    assert registry.slot("products").loaded is None  # only what was asked for loads
    name, labels = top_labels(classifier, registry, "products")
    # THEN each answered, named itself, and used its own labels for the same classes
    assert (default_name, name) == ("resnet50", "products")
    assert all(label.startswith("products ") for label in labels)
    assert not any(label.startswith("products ") for label in default_labels)
    assert [label.split(" ", 1)[1] for label in labels] == [
        str(registry.default.current().labels.index(label)) for label in default_labels]
    assert [m["loaded"] for m in registry.summaries()] == [True, True]


def test_each_model_hot_swaps_on_its_own_current(store: Path) -> None:
    # GIVEN both models loaded, re-reading CURRENT every 30 s
    add_model(store, "products")
    clock = Clock()
    registry = registry_for(store, clock, MODELS="resnet50,products", MODEL_REFRESH_SECONDS="30")
    before = {name: registry.slot(name).current().version for name in ("resnet50", "products")}
    # WHEN a new version of products becomes current
    v2 = add_model(store, "products", labels=[f"products v2 {i}" for i in range(1000)])
    clock.now += 30
    # THEN products serves it, and resnet50 keeps its version
    assert registry.slot("products").current().version == v2 != before["products"]
    assert registry.slot("resnet50").current().version == before["resnet50"]
    assert registry.summaries()[1]["version"] == v2


def test_a_model_without_a_version_is_listed_with_its_problem(store: Path) -> None:
    (store / "models" / "empty").mkdir()
    registry = registry_for(store, MODELS="*")
    (entry,) = [m for m in registry.summaries() if m["name"] == "empty"]
    assert entry["version"] is None and entry["loaded"] is False and "no version" in entry["problem"]
