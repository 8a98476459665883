"""What decoding the largest admitted image costs: the figure behind ``MAX_REQUEST_PIXELS``.

Preprocesses (``classifier.serving.imaging.preprocess``, what every request runs) a real
photo scaled to 40 MP, the most ``MAX_IMAGE_PIXELS`` admits per image, as a 16-bit
PNG (the slowest form to decode: no reduced-scale decoding, 16-bit to 8-bit
conversion) and as a JPEG (decoded at 1/8 scale), each ``--iters`` times, and
prints the fastest run and the median (on a shared machine the fastest is the
nearest to an uncontended CPU's), and what a request holding ``MAX_REQUEST_PIXELS``
of such images costs in decoding at the fastest run's rate.

    python bench/profile/pixels.py [--iters 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
from PIL import Image
from skimage import data

from classifier.config import Settings
from classifier.serving.imaging import DEFAULT_PREPROCESSING, Preprocessing, preprocess

SIZE = (7300, 5479)  # 39,996,700 pixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    settings = Settings()
    spec = Preprocessing.from_manifest(DEFAULT_PREPROCESSING)
    photo = Image.fromarray(data.astronaut()).resize(SIZE, Image.Resampling.BILINEAR)
    forms = {}
    buf = io.BytesIO()
    Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257).save(buf, "PNG", compress_level=1)
    forms["16-bit PNG"] = buf.getvalue()
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90)
    forms["JPEG"] = buf.getvalue()
    pixels = SIZE[0] * SIZE[1]
    for name, encoded in forms.items():
        runs = []
        for _ in range(args.iters):
            started = time.perf_counter()
            preprocess(encoded, spec, max_pixels=settings.max_image_pixels, fast_jpeg=settings.fast_jpeg_decode)
            runs.append(time.perf_counter() - started)
        fastest, median = min(runs), statistics.median(runs)
        worst = fastest * settings.max_request_pixels / pixels
        print(f"{name}: {len(encoded) / 1e6:.1f} MB, {pixels / 1e6:.1f} MP: fastest {fastest:.2f} s, median "
              f"{median:.2f} s (runs {', '.join(f'{r:.2f}' for r in runs)}); a request of MAX_REQUEST_PIXELS "
              f"({settings.max_request_pixels / 1e6:.0f} MP) of these: ~{worst:.1f} s")


if __name__ == "__main__":
    main()
