"""``python -m classifier publish``: weights sources, the offline message, and the
ONNX-vs-torch agreement gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet50

from classifier.lifecycle import publish as publisher
from classifier.store.layout import ModelStore


def test_publish_refuses_when_onnx_and_torch_disagree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an exporter that writes a different network than the one checked (a broken export)
    real_export = publisher.export_onnx

    def broken_export(module: torch.nn.Module, path: Path, input_shape: tuple[int, ...]) -> None:
        torch.manual_seed(123)
        real_export(resnet50().eval(), path, input_shape)

    monkeypatch.setattr(publisher, "export_onnx", broken_export)
    store = ModelStore(tmp_path / "store")
    # WHEN publishing
    with pytest.raises(publisher.PublishError, match="disagree"):
        publisher.publish_to_store(store, publisher.PublishRequest(weights="random"))
    # THEN nothing was installed
    assert store.current("resnet50") is None and store.versions("resnet50") == []


def test_manifest_records_the_agreement_check(published_store: Path) -> None:
    models = ModelStore(published_store)
    version = models.current("resnet50")
    assert version is not None
    manifest = json.loads((models.version_dir("resnet50", version) / "manifest.json").read_text())
    assert manifest["verification"]["photo"] == "chelsea.jpg"
    assert manifest["verification"]["max_abs_logit_diff"] < 1e-2
    assert manifest["onnx"]["dynamic_batch"] is True


def test_a_pickled_whole_model_is_refused_with_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a fine-tuned model saved whole (torch.save(model)), not as its state dict
    from classifier.cli import main

    whole = tmp_path / "flowers.pth"
    torch.save(resnet50(num_classes=3), whole)
    labels = tmp_path / "labels.txt"
    labels.write_text("daisy\nrose\ntulip\n")
    # WHEN it is published
    code = main(["publish", "--store", str(tmp_path / "store"), "--weights", str(whole), "--labels", str(labels)])
    # THEN it is refused with the one line that fixes it, not torch's advice to the caller of torch.load
    err = capsys.readouterr().err
    assert code == 2
    assert "holds a pickled torchvision.models.resnet.ResNet object" in err
    assert 'torch.save(model.state_dict(), "weights.pth")' in err
    assert "weights_only" not in err and "add_safe_globals" not in err
    assert ModelStore(tmp_path / "store").versions("resnet50") == []
    # AND the state dict saved as it says is accepted
    state = tmp_path / "weights.pth"
    torch.save(torch.load(whole, weights_only=False).state_dict(), state)
    built = publisher.build(publisher.PublishRequest(weights=str(state), labels_file=labels))
    assert built.labels == ["daisy", "rose", "tulip"]
