"""The memory bound on loaded models (``classifier.serving.memory.MemoryBudget``, ``MODEL_MEMORY_MB``), driven
as requests drive it: through the registry's slots, on real ResNet-50 sessions (~98 MB of model.onnx each).

Past the bound the least recently used model is unloaded; no request fails because another model loads or
is unloaded: one in flight finishes on the model it started with, and one for a loaded model never waits
for another model's load.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from classifier.config import Settings
from classifier.serving import manager as slots
from classifier.serving.registry import ModelRegistry

from helpers.stores import add_model

# Nothing here should wait this long; it only stops a deadlock from hanging the suite.
DEADLOCK_GUARD_SECONDS = 120
ONE_MODEL_MB = "150"  # one ResNet-50 (98 MB of model.onnx) fits, two do not
TWO_MODELS_MB = "250"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def registry_for(store: Path, clock: Clock, models: str, memory_mb: str) -> ModelRegistry:
    settings = Settings.from_env({"MODEL_STORE": str(store), "MODELS": models, "MODEL_MEMORY_MB": memory_mb})
    return ModelRegistry(settings, clock=clock)


def use(registry: ModelRegistry, clock: Clock, name: str) -> slots.LoadedModel:
    clock.now += 1
    return registry.slot(name).current()


def loaded(registry: ModelRegistry) -> list[str]:
    return [m["name"] for m in registry.summaries() if m["loaded"]]


def test_a_bound_that_fits_one_model_keeps_one_loaded(store: Path) -> None:
    # GIVEN two models and a bound that fits one
    add_model(store, "products")
    clock = Clock()
    registry = registry_for(store, clock, "resnet50,products", ONE_MODEL_MB)
    # WHEN requests alternate between them
    served = [use(registry, clock, name).name for name in ("resnet50", "products", "resnet50", "products")]
    # THEN each was served, and each load unloaded the other
    assert served == ["resnet50", "products", "resnet50", "products"]
    assert loaded(registry) == ["products"]
    assert registry.memory.in_use() == registry.slot("products").current().memory_bytes
    assert registry.memory.in_use() <= 150 * 1024 * 1024


def test_the_least_recently_used_model_is_unloaded_first(store: Path) -> None:
    # GIVEN three models and room for two
    add_model(store, "products")
    add_model(store, "defects")
    clock = Clock()
    registry = registry_for(store, clock, "resnet50,products,defects", TWO_MODELS_MB)
    # WHEN resnet50 and products load, resnet50 is used again, then defects loads
    for name in ("resnet50", "products", "resnet50", "defects"):
        use(registry, clock, name)
    # THEN products, the least recently used, made room
    assert sorted(loaded(registry)) == ["defects", "resnet50"]


def test_a_request_in_flight_finishes_on_a_model_unloaded_meanwhile(store: Path) -> None:
    # GIVEN a request that got resnet50 (and holds it), with room for one model
    add_model(store, "products")
    clock = Clock()
    registry = registry_for(store, clock, "resnet50,products", ONE_MODEL_MB)
    in_flight = use(registry, clock, "resnet50")
    batch = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    before = in_flight.backend.run(batch)
    # WHEN another model's request unloads it
    use(registry, clock, "products")
    assert registry.slot("resnet50").loaded is None
    # THEN the request still runs on it, unchanged
    np.testing.assert_array_equal(in_flight.backend.run(batch), before)


def test_a_request_for_a_loaded_model_does_not_wait_for_another_models_load(
        store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN resnet50 loaded, and a load of products (which will unload resnet50) held inside its backend
    add_model(store, "products")
    clock = Clock()
    registry = registry_for(store, clock, "resnet50,products", ONE_MODEL_MB)
    use(registry, clock, "resnet50")
    loading, release = threading.Event(), threading.Event()
    real_load_backend = slots.load_backend

    def held_load_backend(kind: str, artifact: Path, **kwargs: Any) -> Any:
        if "products" in artifact.parts:
            loading.set()
            assert release.wait(DEADLOCK_GUARD_SECONDS), "the test never released the load"
        return real_load_backend(kind, artifact, **kwargs)

    monkeypatch.setattr(slots, "load_backend", held_load_backend)
    answers: dict[str, str] = {}
    loader = threading.Thread(target=lambda: answers.update(products=use(registry, clock, "products").name))
    loader.start()
    assert loading.wait(DEADLOCK_GUARD_SECONDS)
    assert registry.slot("resnet50").loaded is None  # unloaded to make room
    # WHEN a request for resnet50 comes in during that load
    other = threading.Thread(target=lambda: answers.update(resnet50=registry.slot("resnet50").current().name))
    other.start()
    other.join(DEADLOCK_GUARD_SECONDS)
    finished_during_load = not other.is_alive()
    release.set()
    loader.join(DEADLOCK_GUARD_SECONDS)
    # THEN both requests were served; resnet50's loaded it again without waiting for products' load
    assert answers == {"products": "products", "resnet50": "resnet50"}
    assert finished_during_load
    # AND once both loads are done the bound holds again: the model loaded first made room
    assert loaded(registry) == ["products"]


def test_without_a_bound_nothing_is_unloaded(store: Path) -> None:
    add_model(store, "products")
    clock = Clock()
    registry = registry_for(store, clock, "resnet50,products", "0")
    assert registry.memory.limit_bytes is None
    for name in ("resnet50", "products"):
        use(registry, clock, name)
    assert loaded(registry) == ["resnet50", "products"]
