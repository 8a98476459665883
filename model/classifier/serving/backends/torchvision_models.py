"""torchvision's classification builders, as ``publish`` and the torch backend use them.

A version made from torchvision records its builder (the manifest's ``architecture``) and the
keyword arguments that shape the network (``torchvision.kwargs``: the number of classes, the
input size of the architectures that fix one, Inception's input transform), so the torch
backend rebuilds exactly the network that was published. Those arguments come from a file on a
shared volume, so they are checked here, key by key, before anything is built.

Heavy (imports torch and torchvision): only the torch backend and ``publish`` import it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torchvision.models
from torch import nn

from classifier.store.preprocessing import MAX_SIDE, MIN_SIDE

# The builder arguments a manifest may record, and what each may hold.
MAX_CLASSES = 100_000
_BOOL_KWARGS = ("transform_input", "aux_logits")


class ArchitectureError(ValueError):
    """An architecture or builder arguments that cannot be built; the message says why."""


def architectures() -> list[str]:
    """Every classification builder of ``torchvision.models`` (not detection, segmentation, video)."""
    return list(torchvision.models.list_models(module=torchvision.models))


def check_architecture(arch: str) -> str:
    if arch not in architectures():
        raise ArchitectureError(f"{arch!r} is not a torchvision classification model; "
                                f"python -c 'import torchvision; print(torchvision.models.list_models("
                                f"module=torchvision.models))' lists them")
    return arch


def default_weights(arch: str) -> Any:
    """The architecture's ``DEFAULT`` weights enum member (its preprocessing and published metrics)."""
    return torchvision.models.get_model_weights(check_architecture(arch)).DEFAULT


def size_kwargs(arch: str, crop: tuple[int, int]) -> dict[str, Any]:
    """The builder arguments that fix an input size, for the architectures that have one: a ViT's
    position embeddings and a MaxViT's partitions are made for one size; the rest take any."""
    if arch.startswith("vit_"):
        if crop[0] != crop[1]:
            raise ArchitectureError(f"{arch} takes square inputs: its crop {crop[0]}x{crop[1]} is not")
        return {"image_size": crop[0]}
    if arch.startswith("maxvit_"):
        return {"input_size": [crop[0], crop[1]]}
    return {}


def check_kwargs(kwargs: Any) -> dict[str, Any]:
    """``kwargs`` as a manifest's ``torchvision.kwargs`` may hold them; raises ``ArchitectureError``."""
    if not isinstance(kwargs, Mapping):
        raise ArchitectureError("torchvision.kwargs must be an object")
    for key, value in kwargs.items():
        if not _allowed(key, value):
            raise ArchitectureError(f"torchvision.kwargs {key!r} = {value!r} is not an argument this runtime builds")
    if "num_classes" not in kwargs:
        raise ArchitectureError("torchvision.kwargs needs num_classes")
    return dict(kwargs)


def _allowed(key: str, value: Any) -> bool:
    if key == "num_classes":
        return _is_int(value) and 1 <= value <= MAX_CLASSES
    if key == "image_size":
        return _is_int(value) and MIN_SIDE <= value <= MAX_SIDE
    if key == "input_size":
        return isinstance(value, list) and len(value) == 2 and all(_is_int(v) and MIN_SIDE <= v <= MAX_SIDE
                                                                   for v in value)
    return key in _BOOL_KWARGS and isinstance(value, bool)


def build(arch: str, kwargs: Mapping[str, Any], *, meta: bool = False) -> nn.Module:
    """``arch`` without pretrained weights; with ``meta``, on the meta device where the architecture
    allows it (no time spent initialising parameters that are about to be replaced)."""
    builder = torchvision.models.get_model_builder(check_architecture(arch))
    args = {key: (tuple(value) if key == "input_size" else value) for key, value in kwargs.items()}
    if meta:
        try:
            with torch.device("meta"):
                return builder(weights=None, **args)
        except NotImplementedError:
            # RegNet computes its widths with tensor operations while it is built, which the
            # meta device cannot run: that family is built (and initialised) on the CPU.
            pass
    return builder(weights=None, **args)


def final_layer(module: nn.Module, classes: int) -> str:
    """The qualified name of the classifier's final layer: the last Linear or Conv2d (SqueezeNet's
    head is a convolution) with ``classes`` outputs, whatever its attribute name (``fc``,
    ``classifier.3``, ``heads.head``, ``head``)."""
    name = None
    for qualified, layer in module.named_modules():
        outputs = getattr(layer, "out_features", None) if isinstance(layer, nn.Linear) else (
            getattr(layer, "out_channels", None) if isinstance(layer, nn.Conv2d) else None)
        if outputs == classes:
            name = qualified
    if name is None:
        raise ArchitectureError(f"{type(module).__name__} has no final layer with {classes} outputs")
    return name


def head_width(arch: str, state: Mapping[str, Any], size: Mapping[str, Any]) -> int:
    """The number of classes of a state dict for ``arch``: the rows of its final layer's weight."""
    skeleton = build(arch, size, meta=True)  # with the builder's default head: ImageNet's classes
    layer = final_layer(skeleton, len(default_weights(arch).meta["categories"]))
    weight = state.get(f"{layer}.weight")
    shape = getattr(weight, "shape", None)
    if shape is None or len(shape) < 2:
        raise ArchitectureError(f"no {layer}.weight (the final layer of torchvision's {arch}) in the state dict: "
                                f"not a {arch} checkpoint")
    return int(shape[0])


def load(arch: str, kwargs: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> nn.Module:
    """``arch`` built with ``kwargs`` and holding ``state`` (strictly: every key, every shape), in eval mode."""
    module = build(arch, kwargs, meta=True)
    on_meta = any(t.is_meta for t in _tensors(module))
    try:
        # On the meta device the state's tensors are assigned in place (no copy).
        module.load_state_dict(state, strict=True, assign=on_meta)
    except RuntimeError as exc:
        raise ArchitectureError(f"the state dict does not fit torchvision's {arch}: {exc}") from None
    if any(t.is_meta for t in _tensors(module)):
        raise ArchitectureError(f"torchvision's {arch} keeps a tensor the state dict does not hold")
    return module.eval()


def _tensors(module: nn.Module) -> Iterator[torch.Tensor]:
    yield from module.parameters()
    yield from module.buffers()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
