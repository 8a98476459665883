"""torchvision's builders as publish and the torch backend use them
(classifier.serving.backends.torchvision_models): which layer is the head, the builder arguments a
manifest may hold, and a network rebuilt from a state dict that answers as torchvision's own."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torchvision.models

from classifier.serving.backends import torchvision_models as tvm
from classifier.serving.backends.torch_backend import TorchBackend

FAMILIES = ["resnet50", "mobilenet_v3_large", "efficientnet_b0", "efficientnet_v2_s", "convnext_tiny",
            "regnet_y_400mf", "vit_b_16", "swin_t", "squeezenet1_1"]


def test_every_family_is_a_classification_builder() -> None:
    names = tvm.architectures()
    assert set(FAMILIES) <= set(names)
    # detection, segmentation, video and quantized builders are not image classifiers to serve
    assert "fasterrcnn_resnet50_fpn" not in names and "raft_large" not in names
    with pytest.raises(tvm.ArchitectureError, match="'fasterrcnn_resnet50_fpn' is not a torchvision classification"):
        tvm.check_architecture("fasterrcnn_resnet50_fpn")


@pytest.mark.parametrize(("arch", "layer"), [
    ("resnet50", "fc"), ("mobilenet_v3_large", "classifier.3"), ("efficientnet_b0", "classifier.1"),
    ("convnext_tiny", "classifier.2"), ("vit_b_16", "heads.head"), ("swin_t", "head"),
    ("regnet_y_400mf", "fc"), ("squeezenet1_1", "classifier.1"),  # SqueezeNet's head is a 1x1 convolution
])
def test_the_final_layer_is_found_whatever_its_name(arch: str, layer: str) -> None:
    assert tvm.final_layer(tvm.build(arch, {}, meta=True), 1000) == layer


def test_the_head_width_of_a_state_dict_is_its_final_layers_rows() -> None:
    model = torchvision.models.mobilenet_v3_small(num_classes=7)
    assert tvm.head_width("mobilenet_v3_small", model.state_dict(), {}) == 7
    with pytest.raises(tvm.ArchitectureError, match=r"no classifier\.3\.weight .* not a mobilenet_v3_small"):
        tvm.head_width("mobilenet_v3_small", {"fc.weight": torch.zeros(7, 576)}, {})


def test_a_vit_takes_the_crop_as_its_image_size() -> None:
    assert tvm.size_kwargs("vit_b_16", (384, 384)) == {"image_size": 384}
    assert tvm.size_kwargs("maxvit_t", (224, 224)) == {"input_size": [224, 224]}
    assert tvm.size_kwargs("convnext_tiny", (300, 200)) == {}
    with pytest.raises(tvm.ArchitectureError, match="vit_b_16 takes square inputs"):
        tvm.size_kwargs("vit_b_16", (384, 224))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_classes": 0}, "'num_classes' = 0"),
    ({"num_classes": True}, "'num_classes' = True"),
    ({"num_classes": 10, "image_size": 100_000}, "'image_size' = 100000"),
    ({"num_classes": 10, "input_size": [224]}, "'input_size' = [224]"),
    ({"num_classes": 10, "block": "os.system"}, "'block' = 'os.system'"),
    ({"image_size": 224}, "needs num_classes"),
    (["num_classes", 10], "must be an object"),
])
def test_builder_arguments_from_a_manifest_are_checked(kwargs: Any, message: str) -> None:
    # A manifest is a file on a shared volume: only the arguments the runtime knows, within bounds
    with pytest.raises(tvm.ArchitectureError, match=message.replace("[", r"\[").replace("]", r"\]")):
        tvm.check_kwargs(kwargs)
    assert tvm.check_kwargs({"num_classes": 10, "image_size": 384, "transform_input": True}) == {
        "num_classes": 10, "image_size": 384, "transform_input": True}


# RegNet is built on the CPU; the meta device is exercised by the torch backend's test below.
@pytest.mark.parametrize("arch", ["regnet_y_400mf"])
def test_a_network_rebuilt_from_its_state_answers_as_torchvisions(arch: str) -> None:
    # GIVEN torchvision's network with seeded weights, and its state dict
    torch.manual_seed(0)
    reference = torchvision.models.get_model(arch, num_classes=10).eval()
    x = torch.randn(2, 3, 96, 96)
    # WHEN the torch backend's loader rebuilds it from the state dict alone
    rebuilt = tvm.load(arch, {"num_classes": 10}, reference.state_dict())
    # THEN it holds no meta tensor and answers the same
    assert not any(t.is_meta for t in [*rebuilt.parameters(), *rebuilt.buffers()])
    with torch.inference_mode():
        torch.testing.assert_close(rebuilt(x), reference(x), rtol=0, atol=0)


def test_weights_that_do_not_fit_are_refused() -> None:
    state = torchvision.models.resnet18(num_classes=10).state_dict()
    del state["layer1.0.conv1.weight"]
    with pytest.raises(tvm.ArchitectureError, match=r"(?s)does not fit .*resnet18.*layer1\.0\.conv1\.weight"):
        tvm.load("resnet18", {"num_classes": 10}, state)
    with pytest.raises(tvm.ArchitectureError, match="does not fit torchvision's resnet18"):
        tvm.load("resnet18", {"num_classes": 5}, torchvision.models.resnet18(num_classes=10).state_dict())


def test_the_torch_backend_builds_the_manifests_architecture(tmp_path: Any) -> None:
    # GIVEN a MobileNetV3-Small's weights in safetensors, as publish writes them
    from safetensors.torch import save_file

    torch.manual_seed(1)
    model = torchvision.models.mobilenet_v3_small(num_classes=4).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "weights.safetensors"))
    # WHEN the torch backend loads it with the manifest's architecture and builder arguments
    backend = TorchBackend(tmp_path / "weights.safetensors", threads=1, architecture="mobilenet_v3_small",
                           kwargs={"num_classes": 4})
    # THEN it is that network: same answers, four classes
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        want = model(x).numpy()
    assert backend.num_classes == 4
    torch.testing.assert_close(torch.from_numpy(backend.run(x.numpy())), torch.from_numpy(want), rtol=1e-5, atol=1e-6)
    # AND a manifest from before builder arguments were recorded still loads (the head's width is read)
    assert TorchBackend(tmp_path / "weights.safetensors", threads=1, architecture="mobilenet_v3_small").num_classes == 4
