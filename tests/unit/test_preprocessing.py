"""A manifest's preprocessing (classifier.store.preprocessing): its keys, defaults and bounds, and the
three places a version is held to them: publish (``--preprocessing FILE``), install (the store, and so
the installer Lambda) and load (the model manager)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from classifier.config import Settings
from classifier.errors import ModelUnavailable
from classifier.lifecycle.publish import PublishError, PublishRequest, publish_to_store
from classifier.serving.manager import ModelManager
from classifier.store.layout import ModelStore
from classifier.store.manifest import IntegrityError, validate_manifest
from classifier.store.preprocessing import KEYS, PreprocessingError, crop_size, normalize_preprocessing

from helpers.stores import derive_version, export_version, small_version

IMAGENET = {"resize": 232, "crop": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def test_the_defaults_complete_a_spec_in_key_order() -> None:
    spec = normalize_preprocessing(IMAGENET)
    assert list(spec) == list(KEYS)
    assert spec == {**IMAGENET, "interpolation": "bilinear", "scale": 1 / 255, "channel_order": "RGB",
                    "layout": "NCHW", "output": "logits"}
    # normalising is idempotent: a published manifest reads back as it was written
    assert normalize_preprocessing(spec) == spec


def test_every_key_is_read() -> None:
    spec = {"resize": 320, "crop": [299, 280], "interpolation": "BICUBIC", "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5], "scale": 1 / 127.5, "channel_order": "bgr", "layout": "nhwc",
            "output": "probabilities"}
    assert normalize_preprocessing(spec) == {**spec, "interpolation": "bicubic", "channel_order": "BGR",
                                             "layout": "NHWC"}
    assert crop_size(normalize_preprocessing(spec)) == (299, 280)
    assert crop_size(normalize_preprocessing(IMAGENET)) == (224, 224)


REFUSED = [
    ("unknown key", {"pad": 4}, "preprocessing has an unknown key 'pad'"),
    ("resize 100000", {"resize": 100_000}, "preprocessing resize must be an integer from 8 to 1024 pixels, got 100000"),
    ("resize 0", {"resize": 0}, "preprocessing resize must be an integer from 8 to 1024"),
    ("resize as text", {"resize": "232"}, "preprocessing resize must be an integer"),
    ("resize a float", {"resize": 232.0}, "preprocessing resize must be an integer"),
    ("resize true", {"resize": True}, "preprocessing resize must be an integer"),
    ("crop too large", {"crop": 1025}, "preprocessing crop must be an integer from 8 to 1024 pixels, got 1025"),
    ("crop of three sides", {"crop": [224, 224, 3]}, "preprocessing crop must be an integer or [height, width]"),
    ("crop side too large", {"crop": [224, 5000]}, "preprocessing crop must be an integer from 8 to 1024"),
    ("mean of two", {"mean": [0.5, 0.5]}, "preprocessing mean must be a list of 3 numbers"),
    ("mean huge", {"mean": [0.5, 1e9, 0.5]},
     "preprocessing mean must be a number from -1000 to 1000, got 1000000000.0"),
    ("mean NaN", {"mean": [0.5, float("nan"), 0.5]}, "preprocessing mean must be a number"),
    ("std zero", {"std": [0.2, 0.0, 0.2]}, "preprocessing std must be a number from 0.0001 to 1000, got 0.0"),
    ("std negative", {"std": [0.2, -0.2, 0.2]}, "preprocessing std must be a number from 0.0001"),
    ("std infinite", {"std": [0.2, float("inf"), 0.2]}, "preprocessing std must be a number"),
    ("scale above 1", {"scale": 255}, "preprocessing scale must be a number from 1e-06 to 1, got 255"),
    ("scale zero", {"scale": 0}, "preprocessing scale must be a number from 1e-06 to 1, got 0"),
    ("unknown interpolation", {"interpolation": "lanczos"}, "preprocessing interpolation must be one of"),
    ("unknown channel order", {"channel_order": "RGBA"}, "preprocessing channel_order must be one of RGB, BGR"),
    ("unknown layout", {"layout": "CHW"}, "preprocessing layout must be one of NCHW, NHWC, got 'CHW'"),
    ("unknown output", {"output": "scores"}, "preprocessing output must be one of logits, probabilities"),
]


@pytest.mark.parametrize(("case", "change", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_a_value_out_of_bounds_is_refused_with_its_key(case: str, change: dict[str, Any], message: str) -> None:
    with pytest.raises(PreprocessingError) as refused:
        normalize_preprocessing({**IMAGENET, **change})
    assert str(refused.value).startswith(message)


@pytest.mark.parametrize("key", ["resize", "crop", "mean", "std"])
def test_the_required_keys(key: str) -> None:
    with pytest.raises(PreprocessingError, match=f"^preprocessing is missing '{key}'$"):
        normalize_preprocessing({k: v for k, v in IMAGENET.items() if k != key})


@pytest.mark.parametrize("spec", [None, [232, 224], "resize=232"])
def test_a_spec_that_is_not_an_object(spec: object) -> None:
    with pytest.raises(PreprocessingError, match="must be a JSON object"):
        normalize_preprocessing(spec)


# -- resize: 100000 at publish, at install and at load ---------------------------------------------


def test_publish_refuses_a_preprocessing_file_out_of_bounds(tmp_path: Path) -> None:
    # GIVEN a preprocessing file asking for a 100000-pixel resize
    prep = tmp_path / "prep.json"
    prep.write_text(json.dumps({**IMAGENET, "resize": 100_000}))
    store = ModelStore(tmp_path / "store")
    # WHEN a model is published with it, THEN it is refused before anything is built, naming the key
    with pytest.raises(PublishError, match=r"prep\.json: preprocessing resize must be an integer from 8 to 1024 "
                                           r"pixels, got 100000; nothing was published"):
        publish_to_store(store, PublishRequest(arch="resnet18", weights="random", preprocessing_file=prep))
    # AND the store is as it was: empty
    assert store.names() == [] and not (tmp_path / "store").exists()


def test_install_refuses_a_manifest_out_of_bounds(tmp_path: Path) -> None:
    # GIVEN a store serving a version, and a self-consistent version whose manifest asks for resize 100000
    store = ModelStore(tmp_path / "store")
    good = small_version(tmp_path / "good")
    store.install_dir(tmp_path / "good")
    before = sorted(p.name for p in store.model_dir("resnet50").iterdir())
    small_version(tmp_path / "bad", seed="b", created="2026-11-23T10:00:00Z",
                  preprocessing={**IMAGENET, "resize": 100_000})
    with pytest.raises(IntegrityError, match=r"^manifest preprocessing resize must be an integer from 8 to 1024"):
        validate_manifest(json.loads((tmp_path / "bad" / "manifest.json").read_text()))
    # WHEN it is installed (what the installer Lambda does with an upload), THEN it is refused...
    with pytest.raises(IntegrityError, match="resize must be an integer from 8 to 1024"):
        store.install_dir(tmp_path / "bad")
    # ... and the store is unchanged: one version, still current, no staging left behind
    assert store.versions("resnet50") == [good["version"]] and store.current("resnet50") == good["version"]
    after = sorted(p.name for p in store.model_dir("resnet50").iterdir())
    assert after == before and "CURRENT" in after and not [n for n in after if n.startswith(".staging-")]


def test_load_refuses_a_manifest_out_of_bounds_and_keeps_serving(store: Path, tmp_path: Path) -> None:
    # GIVEN a manager serving the published version
    models = ModelStore(store)
    manager = ModelManager(Settings(model_store=store, refresh_seconds=0.0))
    serving = manager.current().version
    # AND a version with resize 100000 put straight onto the volume (no installer involved) and made current
    exported = export_version(models, serving, tmp_path / "export")
    bad = derive_version(exported, tmp_path / "bad", labels=[f"class {i}" for i in range(1000)])
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["preprocessing"]["resize"] = 100_000
    (bad / "manifest.json").write_text(json.dumps(manifest))
    shutil.copytree(bad, models.version_dir("resnet50", manifest["version"]))
    (store / "models" / "resnet50" / "CURRENT").write_text(manifest["version"] + "\n")
    # WHEN the manager next looks, THEN the version is refused, saying why, and the old one serves on
    assert manager.current().version == serving
    assert "resize must be an integer from 8 to 1024 pixels, got 100000" in str(manager.last_error)
    # AND a process starting on it serves nothing rather than allocate for it
    with pytest.raises(ModelUnavailable, match="resize must be an integer from 8 to 1024"):
        ModelManager(Settings(model_store=store)).current()
