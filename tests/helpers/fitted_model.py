"""A ResNet-50 that tells the test photos apart, made without pretrained weights.

A freshly initialised ResNet-50 gives every photo the same top-5 (its batch-norm layers hold the
defaults, mean 0 and variance 1, so every image drifts to the same features), so a test that needs
two photos to get two answers cannot use one. This one is made in three steps, in this process:

1. torchvision's ``resnet50`` with seeded random weights;
2. its batch-norm statistics estimated on views of the real test photos (one forward pass in
   train mode, with a cumulative average), so its features differ from photo to photo;
3. the rows of ``fc`` for the classes of ``PHOTO_LABELS`` fitted by ridge regression on those
   features (each photo in several encodings, rotations and sizes), so each photo's top-1 is its
   own class by a wide margin, whatever the encoding; the other 996 rows keep their random
   weights, so the rest of the top-5 still varies.

Making it costs a few forward passes of a batch of photos (slow on a shared machine), so the
weights are cached under ``test-output/cache/``, in a file named after a digest of the code that
makes them and of the library versions that decide their numbers (``cache_key``): changing that
code makes a new file. They are published as a user's checkpoint is (``publish --weights FILE``,
so the manifest says ``"trained": true``), and that store is cached beside them, keyed by the
weights and by the code that publishes (``PUBLISHING_CODE``): each session copies it (hard links).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from helpers.photos import photo

if TYPE_CHECKING:
    import torch

# Each test photo and the ImageNet class it is fitted to (torchvision's spelling).
PHOTO_LABELS = {"chelsea": "tabby", "coffee": "espresso", "astronaut": "space shuttle", "rocket": "missile"}
SEED = 0
# The logit of a photo's own class over the others' (in units of the fitted targets): large enough
# that a JPEG re-encode, a rotation or a reduced-scale decode never changes the top-1.
MARGIN = 12.0
RIDGE = 0.1


def class_index(name: str) -> int:
    """The ImageNet index ``name`` (a test photo) is fitted to."""
    from torchvision.models import ResNet50_Weights

    categories: list[str] = ResNet50_Weights.IMAGENET1K_V2.meta["categories"]
    return categories.index(PHOTO_LABELS[name])


def _reopened(image: Image.Image, fmt: str, **params: object) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def views(image: Image.Image) -> list[Image.Image]:
    """The forms a test sends a photo in: JPEG at several qualities, PNG, WebP, slightly rotated,
    larger (what ``big_jpeg`` makes, aspect ratio changed) and smaller."""
    width, height = image.size
    return [
        _reopened(image, "JPEG", quality=95), _reopened(image, "JPEG", quality=75), _reopened(image, "PNG"),
        _reopened(image, "WEBP", quality=80),
        _reopened(image.rotate(8), "JPEG", quality=90), _reopened(image.rotate(-8), "JPEG", quality=90),
        _reopened(image.resize((width * 2, height * 2), Image.Resampling.BICUBIC), "JPEG", quality=90),
        _reopened(image.resize((4000, 3000), Image.Resampling.BICUBIC), "JPEG", quality=90),
        _reopened(image.resize((width * 4 // 5, height * 4 // 5)), "JPEG", quality=70),
    ]


def estimate_batch_norm(model: torch.nn.Module, batch: torch.Tensor) -> None:
    """Set ``model``'s batch-norm statistics to those of ``batch``: one pass in train mode, averaged
    (momentum None); ``model`` is left in eval mode."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(batch)
    model.eval()


def fit() -> dict[str, torch.Tensor]:
    """The fitted model's state dict (1000 classes, torchvision's key names)."""
    import numpy as np
    import torch
    from torchvision.models import ResNet50_Weights, resnet50

    transforms = ResNet50_Weights.IMAGENET1K_V2.transforms()
    torch.manual_seed(SEED)
    model = resnet50()
    names = list(PHOTO_LABELS)
    batch, owners = [], []
    for owner, name in enumerate(names):
        for view in views(photo(name)):
            batch.append(transforms(view))
            owners.append(owner)
    x = torch.stack(batch)
    estimate_batch_norm(model, x)
    trunk = torch.nn.Sequential(*list(model.children())[:-1])
    with torch.no_grad():
        features = trunk(x).flatten(1).double().numpy()
    # Ridge regression (dual form: fewer samples than features) of centred one-hot targets.
    mean = features.mean(axis=0)
    centred = features - mean
    targets = np.eye(len(names))[owners] - 1 / len(names)
    coef = centred.T @ np.linalg.solve(centred @ centred.T + RIDGE * np.eye(len(centred)), targets)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rows = [class_index(name) for name in names]
    state["fc.weight"][rows] = torch.from_numpy(MARGIN * coef.T).float()
    state["fc.bias"][rows] = torch.from_numpy(MARGIN * (1 / len(names) - mean @ coef)).float()
    return state


def cache_key() -> str:
    """What decides the weights: the code that makes them (the functions and constants above, and the
    photos' loader) and the versions of the libraries that compute them."""
    import inspect

    import numpy as np
    import PIL
    import skimage
    import torch
    import torchvision

    from helpers import photos

    parts = [inspect.getsource(code) for code in (fit, estimate_batch_norm, views, _reopened, class_index,
                                                  photos.photo)]
    parts += [repr((PHOTO_LABELS, SEED, MARGIN, RIDGE))]
    parts += [torch.__version__, torchvision.__version__, np.__version__, PIL.__version__, skimage.__version__]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


# What decides the files of a published version, besides its weights.
PUBLISHING_CODE = ("lifecycle/publish.py", "store", "serving/imaging.py", "serving/backends/onnx_backend.py",
                   "serving/backends/torchvision_models.py")


def fitted_weights(cache: Path) -> Path:
    """The fitted weights as a safetensors file in ``cache``, made on the first call for this key."""
    from safetensors.torch import save_file

    path = cache / f"fitted-resnet50-{cache_key()}.safetensors"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({k: v.contiguous() for k, v in fit().items()}, str(tmp))
        os.replace(tmp, path)  # a concurrent session writes the same bytes; either rename wins whole
    return path


def published_fitted_store(cache: Path) -> Path:
    """A store in ``cache`` holding the fitted weights published with the CLI, made on the first call
    for these weights and this publishing code. Read-only: copy it (``helpers.stores.copy_store``)."""
    import shutil

    from helpers import ROOT
    from helpers.stores import publish

    weights = fitted_weights(cache)
    digest = hashlib.sha256(weights.name.encode())
    package = ROOT / "model" / "classifier"
    for part in PUBLISHING_CODE:
        for source in sorted((package / part).rglob("*.py")) if (package / part).is_dir() else [package / part]:
            digest.update(f"\0{source.relative_to(package)}\0".encode() + source.read_bytes())
    path = cache / f"fitted-store-{digest.hexdigest()[:16]}"
    if not path.exists():
        tmp = cache / f".{path.name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        publish(tmp, str(weights))
        try:
            tmp.rename(path)
        except OSError:  # another session published it first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    return path
