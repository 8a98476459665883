"""Profile our warm request path, step by step, and the candidate changes to it, in one process.

Loads the real handler (``classifier.handler``, BACKEND=onnx by default) on the
bench store, then times, interleaved so that noise hits every step alike:

- the whole handler invocation (API Gateway REST event in, response out);
- ``Classifier.classify`` alone (no HTTP), hence the Mangum/Starlette overhead;
- each step of ``classifier.serving.imaging.preprocess`` (open + checks, EXIF size,
  decode, transpose, RGB, resize, crop + normalise, sha256), the forward pass,
  softmax + top-k, the record write (with its fsyncs), the JSON body;
- FAST_JPEG_DECODE on/off for the 12 MP JPEG;
- prototypes: resizing only the centre-crop box, a fused normalisation;
- ORT thread settings: the runtime's ``OnnxBackend`` with intra-op threads 1
  vs all usable, spinning on/off, as forward alone and as back-to-back
  requests (preprocess + forward + post).

    python bench/profile/warm.py [--iters 30] [--backend onnx] [--work bench/.work]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))

from assets import current_version_dir  # noqa: E402
from trial import FakeContext, ms_since, rest_event  # noqa: E402

Step = Callable[[], Any]


def measure(steps: dict[str, Step], iters: int, warmup: int = 2) -> dict[str, dict[str, float]]:
    """p50/min (ms) of each step, the steps interleaved and their order rotated every round."""
    names = list(steps)
    for _ in range(warmup):
        for name in names:
            steps[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(iters):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            start = time.perf_counter()
            steps[name]()
            samples[name].append(ms_since(start))
    return {name: {"p50": statistics.median(v), "min": min(v)} for name, v in samples.items()}


def table(title: str, rows: dict[str, dict[str, float]]) -> str:
    lines = [f"\n{title}", "", "| step | p50 ms | min ms |", "|---|---:|---:|"]
    lines += [f"| {name} | {r['p50']:.2f} | {r['min']:.2f} |" for name, r in rows.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=BENCH / ".work")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--backend", default="onnx", choices=("onnx", "torch"))
    args = parser.parse_args(argv)

    photos = {"1mp": (args.work / "photos" / "photo-1mp.jpg").read_bytes(),
              "12mp": (args.work / "photos" / "photo-12mp.jpg").read_bytes()}
    records_root = Path(tempfile.mkdtemp(prefix="bench-records-"))
    os.environ.update(MODEL_STORE=str(args.work / "store"), BACKEND=args.backend)
    import numpy as np
    from PIL import Image, ImageOps

    import classifier.handler as entry
    from classifier.records.sqlite import SqliteRecordStore
    from classifier.serving.imaging import crop_and_normalize, open_image, oriented_size, resized_size, to_rgb
    from classifier.serving.service import ImageInput, softmax, top_k

    app = entry.app
    classifier = app.state.classifier
    model = app.state.manager.current()
    spec = model.preprocessing
    backend = model.backend
    scratch_records = SqliteRecordStore(records_root / "records.sqlite3")
    report: dict[str, Any] = {"backend": args.backend, "threads": app.state.manager.threads}
    out: list[str] = [f"backend {args.backend}, threads {app.state.manager.threads}, iters {args.iters}"]

    def profile_photo(photo: str, data: bytes) -> None:
        event = rest_event(data, "image/jpeg")
        state: dict[str, Any] = {}

        def invoke(event: dict[str, Any] = event) -> None:
            response = entry.handler(event, FakeContext("profile"))
            assert response["statusCode"] == 200, response

        def classify(data: bytes = data) -> None:
            classifier.classify([ImageInput(data)], k=5)

        def open_(data: bytes = data) -> None:
            state["image"] = open_image(data, max_pixels=40_000_000)

        def exif_size() -> None:
            oriented_size(state["image"])

        def decode(fast: bool) -> Step:
            def run(data: bytes = data) -> None:
                image = open_image(data, max_pixels=40_000_000)
                if fast:
                    scale = spec.resize / min(image.size)
                    if scale < 1:
                        image.draft("RGB", (int(image.size[0] * scale) + 1, int(image.size[1] * scale) + 1))
                image.load()
                state["decoded"] = image
            return run

        def transpose() -> None:
            state["transposed"] = ImageOps.exif_transpose(state["decoded"])

        def rgb() -> None:
            state["rgb"] = to_rgb(state["transposed"])

        def resize() -> None:
            image = state["rgb"]
            size = resized_size(image.width, image.height, spec.resize)
            state["resized"] = image.resize(size, Image.Resampling.BILINEAR)

        def crop_norm() -> None:
            state["tensor"] = crop_and_normalize(state["resized"], spec)

        def digest(data: bytes = data) -> None:
            hashlib.sha256(data).hexdigest()

        def forward() -> None:
            state["logits"] = backend.run(state["tensor"][None])

        def post() -> None:
            probs = softmax(state["logits"])
            state["best"] = top_k(probs, 5)

        def record() -> None:
            from classifier.records.ids import new_record_id

            scratch_records.put({"id": new_record_id(), "predictions": [{"label": "x", "index": 1, "score": 0.5}] * 5,
                                 "model": {"version": "v"}, "image": {"sha256": "0" * 64}, "timing_ms": {"total": 1.0}})

        def body() -> None:
            json.dumps({"predictions": [{"label": "tabby", "index": 281, "score": 0.5}] * 5, "id": "x" * 32})

        steps: dict[str, Step] = {
            "handler invoke (end to end)": invoke,
            "Classifier.classify (no HTTP)": classify,
            "open_image (identify + checks)": open_,
            "oriented_size (EXIF)": exif_size,
            "decode (draft + load)": decode(True),
            "exif_transpose": transpose,
            "to_rgb": rgb,
            "resize to 232": resize,
            "crop + normalise": crop_norm,
            "sha256 of the bytes": digest,
            "forward (backend.run)": forward,
            "softmax + top-k": post,
            "record write (temp + fsync + rename + dir fsync)": record,
            "JSON body": body,
        }
        rows = measure(steps, args.iters)
        inner = sum(rows[k]["p50"] for k in list(steps)[2:])
        rows["= sum of the steps"] = {"p50": inner, "min": sum(rows[k]["min"] for k in list(steps)[2:])}
        rows["handler - classify (Mangum, Starlette, base64)"] = {
            "p50": rows["handler invoke (end to end)"]["p50"] - rows["Classifier.classify (no HTTP)"]["p50"],
            "min": rows["handler invoke (end to end)"]["min"] - rows["Classifier.classify (no HTTP)"]["min"]}
        report[f"steps_{photo}"] = rows
        out.append(table(f"Warm path, {photo} photo ({len(data):,} bytes)", rows))

        # FAST_JPEG_DECODE on/off, and two preprocessing prototypes.
        image_full = Image.open(io.BytesIO(data))
        image_full.load()

        def preprocess_fast(data: bytes = data) -> None:
            from classifier.serving.imaging import preprocess

            preprocess(data, spec, max_pixels=40_000_000, fast_jpeg=True)

        def preprocess_slow(data: bytes = data) -> None:
            from classifier.serving.imaging import preprocess

            preprocess(data, spec, max_pixels=40_000_000, fast_jpeg=False)

        def preprocess_box(data: bytes = data) -> np.ndarray:
            """Prototype: resize only the source box that maps onto the centre crop (same pixels)."""
            image = open_image(data, max_pixels=40_000_000)
            scale = spec.resize / min(image.size)
            if scale < 1:
                image.draft("RGB", (int(image.size[0] * scale) + 1, int(image.size[1] * scale) + 1))
            image = to_rgb(ImageOps.exif_transpose(image))
            new_w, new_h = resized_size(image.width, image.height, spec.resize)
            crop = spec.crop[0]  # ResNet-50's square crop
            left, top = round((new_w - crop) / 2.0), round((new_h - crop) / 2.0)
            sx, sy = image.width / new_w, image.height / new_h
            box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
            patch = image.resize((crop, crop), Image.Resampling.BILINEAR, box=box)
            array = np.asarray(patch, dtype=np.float32).transpose(2, 0, 1)
            return np.ascontiguousarray((array / np.float32(255.0) - spec.mean) / spec.std)

        scale_ = (1.0 / (255.0 * spec.std)).astype(np.float32)
        shift_ = (spec.mean / spec.std).astype(np.float32)

        def fused_normalise() -> np.ndarray:
            """Prototype: one multiply-add on the HWC uint8 crop, written straight into CHW."""
            image = state["resized"]
            side = spec.crop[0]  # ResNet-50's square crop
            left, top = round((image.width - side) / 2.0), round((image.height - side) / 2.0)
            crop = np.asarray(image.crop((left, top, left + side, top + side)))
            return crop.transpose(2, 0, 1) * scale_ - shift_

        from classifier.serving.imaging import preprocess

        reference, _ = preprocess(data, spec, max_pixels=40_000_000, fast_jpeg=True)
        box_diff = float(np.abs(preprocess_box() - reference).max())
        slow_tensor, _ = preprocess(data, spec, max_pixels=40_000_000, fast_jpeg=False)
        fast_diff = float(np.abs(reference - slow_tensor).max())
        proto = measure({
            "preprocess, FAST_JPEG_DECODE=1 (current default)": preprocess_fast,
            "preprocess, FAST_JPEG_DECODE=0": preprocess_slow,
            "prototype: resize only the crop box": preprocess_box,
            "crop + normalise (current)": crop_norm,
            "prototype: fused normalise": fused_normalise,
        }, args.iters)
        report[f"preprocess_{photo}"] = {**proto, "box_max_abs_diff": box_diff, "fast_vs_full_max_abs_diff": fast_diff}
        out.append(table(f"Preprocessing variants, {photo} (box prototype max |diff| {box_diff:.2g}; "
                         f"fast vs full decode max |diff| {fast_diff:.2g} on normalised input)", proto))


    for photo, data in photos.items():
        profile_photo(photo, data)

    if args.backend == "onnx":
        model_path = current_version_dir(args.work / "store") / "model.onnx"
        out += thread_variants(model_path, photos["1mp"], spec, args.iters, report)
    (args.work / "profile-warm.json").write_text(json.dumps(report, indent=1))
    print("\n".join(out))
    return 0


def thread_variants(model_path: Path, photo: bytes, spec: Any, iters: int, report: dict[str, Any]) -> list[str]:
    """Intra-op threads and spinning: forward alone, and back-to-back requests (preprocess + forward + post).

    Each variant is measured on its own session, built just before and released just after, so that
    no other session's spinning threads share the cores with it (docs/performance.md, "Spinning"); only
    the handler's own session, which does not spin, stays loaded beside it."""
    import gc

    from classifier.serving.backends.onnx_backend import OnnxBackend
    from classifier.serving.imaging import preprocess
    from classifier.serving.service import softmax, top_k

    usable = len(os.sched_getaffinity(0))
    variants = [(threads, spin) for threads in sorted({1, usable}) for spin in (True, False)]
    tensor, _ = preprocess(photo, spec, max_pixels=40_000_000, fast_jpeg=True)
    batch = tensor[None]
    kinds = ("forward only", "preprocess + forward + post, back to back")
    rows: dict[str, dict[str, dict[str, float]]] = {kind: {} for kind in kinds}
    for threads, spin in variants:
        label = f"threads={threads}, spinning={'on' if spin else 'off'}"
        backend = OnnxBackend(model_path, threads=threads, spin=spin)

        def request(backend: OnnxBackend = backend) -> None:
            x, _ = preprocess(photo, spec, max_pixels=40_000_000, fast_jpeg=True)
            top_k(softmax(backend.run(x[None])), 5)

        steps: dict[str, Step] = {kinds[0]: lambda backend=backend: backend.run(batch), kinds[1]: request}
        measured = measure(steps, iters)
        for kind, step in steps.items():
            # CPU time per call (all threads): spinning burns CPU that a 2-vCPU Lambda shares with the Python
            # thread.
            start = time.process_time()
            for _ in range(5):
                step()
            rows[kind][label] = {**measured[kind], "cpu_ms": (time.process_time() - start) / 5 * 1000}
        del backend, steps, request
        gc.collect()
    out = []
    for kind in kinds:
        report[f"threads_{kind}"] = rows[kind]
        lines = [f"\nORT threads and spinning: {kind} (1 MP photo)", "",
                 "| variant | p50 ms | min ms | CPU ms per call |", "|---|---:|---:|---:|"]
        lines += [f"| {label} | {r['p50']:.1f} | {r['min']:.1f} | {r['cpu_ms']:.1f} |"
                  for label, r in rows[kind].items()]
        out.append("\n".join(lines))
    return out

if __name__ == "__main__":
    sys.exit(main())
