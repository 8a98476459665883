"""Weights a test writes for any torchvision architecture, since pretrained ones cannot be downloaded.

A freshly initialised network gives every photo the same top-5: its batch-norm layers hold the
default statistics (mean 0, variance 1), so activations vanish or blow up layer after layer, and
torchvision zero-initialises some heads (ViT's). ``calibrated`` makes a network whose answers
differ from photo to photo: batch-norm statistics estimated on real photos (forward passes in
train mode, cumulative averages), then the final layer drawn afresh, scaled so that the logits
spread over a few units, and biased so that what all photos share does not decide the top-1.
Still untrained: its labels mean nothing, but its scores are
those of a network whose activations have realistic ranges, which is what the reference tests
and int8 calibration need.
"""

from __future__ import annotations

import torch
import torchvision.models
from PIL import Image
from torch import nn

from helpers.photos import photo

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def photo_batch(arch: str, names: tuple[str, ...] = PHOTOS) -> torch.Tensor:
    """The photos (and their mirror images) through the architecture's DEFAULT weights' transforms."""
    transforms = torchvision.models.get_model_weights(arch).DEFAULT.transforms()
    images = [photo(name) for name in names]
    images += [image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for image in images]
    return torch.stack([transforms(image) for image in images])


def final_layer(model: nn.Module) -> nn.Module:
    """The last Linear (or SqueezeNet's Conv2d) of the network: its classifier head."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    return layers[-1]


def calibrated(arch: str, *, classes: int = 1000, seed: int = 0, logit_std: float = 3.0) -> nn.Module:
    """``arch`` with seeded random weights, batch-norm statistics from real photos and a head whose
    logits on those photos have a standard deviation of ``logit_std``; in eval mode."""
    torch.manual_seed(seed)
    model = torchvision.models.get_model(arch, weights=None, num_classes=classes)
    batch = photo_batch(arch)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the passes below
    if norms:
        model.train()
        with torch.no_grad():
            for _ in range(2):
                model(batch)
    model.eval()
    head = final_layer(model)
    with torch.no_grad():
        nn.init.normal_(head.weight)
        if head.bias is not None:
            nn.init.zeros_(head.bias)
        logits = model(batch)
        # What every photo shares (a random head's response to the features all photos have) would
        # give them all the same top-1: the bias takes it away, and the weights set the spread.
        head.weight.mul_(logit_std / (logits - logits.mean(0)).std())
        if head.bias is not None:
            head.bias.sub_(model(batch).mean(0).flatten())
    return model
