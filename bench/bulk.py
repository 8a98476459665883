"""The bulk and records figures of ``make bench`` (issue 13), in one run on this machine.

1. ``batch`` on a folder against one-by-one HTTP requests through the local server, the same
   photos, the same store: images/s each, and their ratio. The server is a real
   ``python -m classifier serve`` on loopback, called by one client, one image a request.
2. Record-list latency (SQLite) at 1,000, 100,000 and 1,000,000 records: a first page, a page
   from a cursor in the middle, and a page filtered by a top-1 label, 20 records each; medians
   of repeated calls in this process.

    python bench/bulk.py [--work bench/.work] [--summary bench/results-bulk.md] [--images 64] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
LABELS = [f"class-{i}" for i in range(100)]  # a label filter selects ~1% of the records


def log(message: str) -> None:
    print(f"[bulk] {message}", file=sys.stderr, flush=True)


def photos(folder: Path, count: int) -> list[Path]:
    """``count`` real photos (scikit-image's CC0 set at a few sizes and qualities), ~0.3-1 MP JPEGs."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    names = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "retina")
    paths = []
    for i in range(count):
        image = Image.fromarray(getattr(data, names[i % len(names)])()).convert("RGB")
        scale = 1.0 + (i % 4) * 0.5
        image = image.resize((int(image.width * scale), int(image.height * scale)))
        path = folder / f"photo-{i:03d}.jpg"
        image.save(path, "JPEG", quality=80 + i % 15)
        paths.append(path)
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def batch_images_per_second(store: Path, folder: Path) -> float:
    """``batch``'s own loop (classifier.aws.bulk_worker.FolderBatch), in this process, once the model is loaded: the
    steady rate, as the server's is measured once it answers."""
    import io

    from classifier.config import Settings
    from classifier.records import open_record_store
    from classifier.serving.folder_batch import FolderBatch

    settings = Settings(model_store=store)
    job = FolderBatch(settings, open_record_store(settings))
    job.classifier.manager.current()  # load the model first
    warm = folder.parent / "warm"
    warm.mkdir()
    shutil.copy(next(folder.iterdir()), warm / "one.jpg")
    job.run(warm, io.StringIO())
    counts = job.run(folder, io.StringIO())
    return counts.images_per_second


def http_images_per_second(store: Path, paths: Sequence[Path], scratch: Path) -> float:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(scratch / "server.log", "wb") as server_log:
        server = subprocess.Popen([sys.executable, "-m", "classifier", "serve", "--store", str(store),
                                   "--port", str(port)], stdout=server_log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=120) as client:
            client.post("/classify", content=paths[0].read_bytes(), headers={"content-type": "image/jpeg"})
            started = time.perf_counter()
            for path in paths:
                client.post("/classify", content=path.read_bytes(),
                            headers={"content-type": "image/jpeg"}).raise_for_status()
            return len(paths) / (time.perf_counter() - started)
    finally:
        server.terminate()
        server.wait(30)


def filled_store(path: Path, count: int) -> Any:
    """A SQLite record store holding ``count`` records, one a minute back from now."""
    from classifier.records.ids import new_record_id
    from classifier.records.sqlite import SqliteRecordStore

    if path.exists():
        path.unlink()
    store = SqliteRecordStore(path)
    now = datetime.now(UTC)
    chunk = 20_000
    for start in range(0, count, chunk):
        rows = []
        for n in range(start, min(count, start + chunk)):
            when = now - timedelta(minutes=n)
            rows.append({"id": new_record_id(when), "created_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "model": {"name": "resnet50", "version": "20261122T100000Z-0123456789ab",
                                   "backend": "onnx", "trained": True},
                         "predictions": [{"label": LABELS[n % len(LABELS)], "index": n % 100, "score": 0.5}] * 5,
                         "image": {"format": "JPEG", "width": 1, "height": 1, "sha256": f"{n:064x}"},
                         "timing_ms": {"decode": 1.0, "inference": 20.0, "total": 22.0}})
        store.put_many(rows)
    return store


def median_ms(call: Callable[[], Any], repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 3)


def list_latency(work: Path, sizes: Sequence[int], repeats: int) -> dict[str, dict[str, float]]:
    results = {}
    for count in sizes:
        log(f"records: {count:,} into SQLite")
        store = filled_store(work / f"records-{count}.sqlite3", count)
        middle = store.list(limit=count // 2).next_cursor  # a cursor half way through
        results[str(count)] = {
            "first_page_ms": median_ms(lambda s=store: s.list(limit=20), repeats),
            "middle_page_ms": median_ms(lambda s=store, c=middle: s.list(limit=20, cursor=c), repeats),
            "label_page_ms": median_ms(lambda s=store: s.list(limit=20, label=LABELS[7]), repeats),
        }
        (work / f"records-{count}.sqlite3").unlink()
    return results


def render(report: dict[str, Any]) -> str:
    b = report["batch"]
    lines = [
        "# `make bench`: bulk and records",
        "",
        f"Command: `{report['command']}`, {report['started_at']}. Machine: {report['machine']}; "
        f"load average {report['load_average']['start']} at start (a shared machine).",
        "",
        f"Classifying {b['images']} photos (~0.3-1 MP JPEGs) with an untrained ResNet-50, onnx backend:",
        "",
        "| way | images/s |",
        "|---|---:|",
        f"| `python -m classifier batch DIR` (batches of 16, in process) | {b['batch_images_per_s']:.1f} |",
        f"| one `POST /classify` per image to the local server | {b['http_images_per_s']:.1f} |",
        f"| batch ÷ HTTP | {b['batch_images_per_s'] / b['http_images_per_s']:.2f}x |",
        "",
        "Listing records (SQLite, 20 a page), median of "
        f"{report['repeats']} calls (ms):",
        "",
        "| records | first page | page from a cursor half way | label-filtered page |",
        "|---:|---:|---:|---:|",
    ]
    for count, row in report["records"].items():
        lines.append(f"| {int(count):,} | {row['first_page_ms']:.2f} | {row['middle_page_ms']:.2f} | "
                     f"{row['label_page_ms']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=BENCH / ".work")
    parser.add_argument("--summary", type=Path, default=None, help="default: <work>/results-bulk.md")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="16 images; 1k and 10k records")
    args = parser.parse_args(argv)
    work = args.work.resolve() / "bulk"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    images = 16 if args.quick else args.images
    sizes = (1_000, 10_000) if args.quick else (1_000, 100_000, 1_000_000)
    repeats = 5 if args.quick else 50
    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    load = os.getloadavg()[0]

    store = work / "store"
    subprocess.run([sys.executable, "-m", "classifier", "publish", "--store", str(store), "--weights", "random"],
                   check=True, capture_output=True)
    paths = photos(work / "photos", images)
    log("batch, then one-by-one HTTP")
    batch = batch_images_per_second(store, work / "photos")
    http = http_images_per_second(store, paths, work)
    records = list_latency(work, sizes, repeats)

    import platform

    report = {
        "command": " ".join(["python", "bench/bulk.py", *(argv if argv is not None else sys.argv[1:])]),
        "started_at": started_at, "load_average": {"start": round(load, 2)},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "batch": {"images": images, "batch_images_per_s": round(batch, 2), "http_images_per_s": round(http, 2)},
        "records": records, "repeats": repeats,
    }
    (work / "results-bulk.json").write_text(json.dumps(report, indent=1) + "\n")
    markdown = render(report)
    summary = args.summary or args.work / "results-bulk.md"
    summary.write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
