"""The inputs of ``make bench``: the photos and the baseline's weights file.

Photos are made from scikit-image's CC0 photographs, as the tests' are:

- ``photo-1mp.jpg``: "coffee" upscaled to 1224x816 (1.0 MP), quality 92;
- ``photo-12mp.jpg``: "astronaut" upscaled to 4000x3000 (12 MP), with a little
  seeded grain (sigma 3) so its entropy-coded size (~1.9 MB) is closer to a
  camera JPEG's than a smooth upscale (~1 MB) would be, quality 92.

The baseline's ``resnet50.pth`` is ``torch.save`` of the state dict held in the
published version's ``weights.safetensors``: the very weights our handler serves.

    python bench/assets.py --store bench/.work/store --work bench/.work
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

PHOTO_1MP = "photo-1mp.jpg"
PHOTO_12MP = "photo-12mp.jpg"
BASELINE_WEIGHTS = "resnet50.pth"


def make_photos(folder: Path) -> dict[str, Path]:
    import numpy as np
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    small, large = folder / PHOTO_1MP, folder / PHOTO_12MP
    if not small.exists():
        coffee = Image.fromarray(data.coffee()).resize((1224, 816), Image.Resampling.BICUBIC)
        coffee.save(small, "JPEG", quality=92)
    if not large.exists():
        astronaut = Image.fromarray(data.astronaut()).resize((4000, 3000), Image.Resampling.BICUBIC)
        grain = np.random.default_rng(0).normal(0.0, 3.0, (3000, 4000, 3))
        pixels = np.clip(np.asarray(astronaut, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(large, "JPEG", quality=92)
    return {"1mp": small, "12mp": large}


def current_version_dir(store: Path, name: str = "resnet50") -> Path:
    version = (store / "models" / name / "CURRENT").read_text().strip()
    return store / "models" / name / "versions" / version


def make_baseline_weights(store: Path, target: Path) -> Path:
    """The published weights as a plain ``torch.save`` state dict (what the samples load)."""
    import torch
    from safetensors.torch import load_file

    target.parent.mkdir(parents=True, exist_ok=True)
    source = current_version_dir(store) / "weights.safetensors"
    tmp = target.with_suffix(".tmp")
    torch.save(load_file(source), tmp)
    tmp.replace(target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, required=True, help="a store with a published resnet50")
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args(argv)
    make_photos(args.work / "photos")
    make_baseline_weights(args.store, args.work / "baseline" / BASELINE_WEIGHTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
