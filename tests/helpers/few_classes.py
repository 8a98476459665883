"""A fine-tuned model of a few classes that tells the test photos apart, made in seconds without a download.

A freshly initialised ResNet-50 answers the same class for every photo: its batch-norm layers
hold no statistics and its head is random. Here the statistics are estimated on the photos
themselves (forward passes in train mode), then the head is fitted by least squares on the
pooled features so that each photo lands on the class it is assigned. The checkpoint is a plain
state dict, as a user's fine-tuning would save it, so it goes through ``publish --weights PATH
--labels FILE`` like theirs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from helpers.fitted_model import estimate_batch_norm
from helpers.photos import jpeg

# The logit of a photo's assigned class; every other class gets 0.
MARGIN = 10.0


def photo_tensors(names: Sequence[str]):  # type: ignore[no-untyped-def]
    """The photos as the server feeds them to the model (its preprocessing, its JPEG decoding)."""
    import numpy as np
    import torch

    from classifier.config import Settings
    from classifier.serving.imaging import DEFAULT_PREPROCESSING, Preprocessing, preprocess

    spec = Preprocessing.from_manifest(DEFAULT_PREPROCESSING)
    arrays = [preprocess(jpeg(name), spec, max_pixels=Settings.max_image_pixels,
                         fast_jpeg=Settings.fast_jpeg_decode)[0] for name in names]
    return torch.from_numpy(np.stack(arrays))


def fitted_checkpoint(path: Path, labels: Sequence[str], assigned: Mapping[str, str]) -> Path:
    """Save to ``path`` a resnet50 state dict with ``len(labels)`` outputs that classifies each photo
    of ``assigned`` (photo name -> label) as its label; return ``path``."""
    import torch
    from torchvision.models import resnet50

    torch.manual_seed(0)
    model = resnet50(num_classes=len(labels))
    names = list(assigned)
    batch = photo_tensors(names)
    # Batch-norm statistics of these photos (and their mirror images): a cumulative average.
    estimate_batch_norm(model, torch.cat([batch, batch.flip(-1)]))
    # The head: the least-squares map from pooled features (and a bias) to the assigned logits.
    head, model.fc = model.fc, torch.nn.Identity()
    with torch.no_grad():
        features = model(batch).double()
    model.fc = head
    targets = torch.zeros(len(names), len(labels), dtype=torch.float64)
    for row, name in enumerate(names):
        targets[row, list(labels).index(assigned[name])] = MARGIN
    design = torch.cat([features, torch.ones(len(names), 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(design, targets, driver="gelsd").solution
    with torch.no_grad():
        model.fc.weight.copy_(solution[:-1].T.float())
        model.fc.bias.copy_(solution[-1].float())
        answers = model(batch).argmax(dim=1).tolist()
    assert [labels[i] for i in answers] == [assigned[name] for name in names], "the fitted head missed a photo"
    torch.save(model.state_dict(), path)
    return path
