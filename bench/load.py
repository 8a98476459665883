"""``make load``: the local API under a real load generator (Locust, headless), with the server's memory.

Starts ``python -m classifier serve`` (what ``make serve`` runs for the API) on
a store of its own (``bench/.work/store``, an untrained ResNet-50: latency does
not depend on weight values), or drives a server you already run (``--url``,
and ``--pid`` for its memory). Locust's users (``bench/locustfile.py``) post
real photos (scikit-image's CC0 photos and the bench's 1 MP JPEG), list
records, and now and then send a bad input that must get its 4xx. Reports
throughput, p50/p95/p99 (Locust's own percentiles: it rounds times above
100 ms to 10 ms), failures, and the server's RSS before and after (VmRSS,
and its peak, VmHWM).

Locust runs on the same machine as the server and takes CPU from it: read
the figures as what this machine sustains with both on it.

    python bench/load.py [--users 16] [--seconds 60] [--url URL [--pid PID]] [--summary FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
LOCUST = Path(sys.executable).parent / "locust"
START_TIMEOUT = 180


def log(message: str) -> None:
    print(f"[load] {message}", file=sys.stderr, flush=True)


def memory_mb(pid: int) -> dict[str, float] | None:
    """VmRSS and VmHWM (peak) of ``pid`` in MB, or None when it cannot be read."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out or None


@dataclass
class Server:
    url: str
    pid: int | None

    def rss_mb(self) -> dict[str, float] | None:
        return memory_mb(self.pid) if self.pid else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def local_server(store: Path, env: Mapping[str, str] | None = None) -> Iterator[Server]:
    """``python -m classifier serve`` on a free loopback port, until the block ends (then SIGTERM, and wait)."""
    port = free_port()
    log_path = store.parent / f"server-{port}.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "classifier", "serve", "--store", str(store), "--port",
                                 str(port)], env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT
        while not healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield Server(url, proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load_photos(work: Path) -> Path:
    """The users' photos (``<work>/load-photos``): four CC0 photos at their own size and the bench's 1 MP JPEG."""
    import assets
    from PIL import Image
    from skimage import data

    folder = work / "load-photos"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        path = folder / f"{name}.jpg"
        if not path.exists():
            Image.fromarray(getattr(data, name)()).convert("RGB").save(path, "JPEG", quality=90)
    shutil.copyfile(assets.make_photos(work / "photos")["1mp"], folder / "photo-1mp.jpg")
    return folder


def _ms(row: Mapping[str, str], key: str) -> float | None:
    value = row.get(key, "")
    return None if value in ("", "N/A") else float(value)


def run_locust(url: str, *, users: int, seconds: int, out: Path, photos: Path | None = None) -> dict[str, Any]:
    """Locust headless against ``url``; its figures: the aggregate and one row per request name."""
    out.mkdir(parents=True, exist_ok=True)
    photos = photos or load_photos(BENCH / ".work")
    prefix = out / "locust"
    cmd = [str(LOCUST), "-f", str(BENCH / "locustfile.py"), "--headless", "--users", str(users),
           "--spawn-rate", str(users), "--run-time", f"{seconds}s", "--host", url, "--csv", str(prefix),
           "--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0"]
    proc = subprocess.run(cmd, env={**os.environ, "LOAD_PHOTOS": str(photos)}, capture_output=True, text=True,
                          timeout=seconds + 120, cwd=out)
    if proc.returncode != 0:
        raise RuntimeError(f"locust failed (exit {proc.returncode}): {proc.stderr[-3000:]}")
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_name = {}
    total: dict[str, Any] = {}
    for row in rows:
        figures = {
            "requests": int(row["Request Count"]),
            "failures": int(row["Failure Count"]),
            "requests_per_s": round(float(row["Requests/s"]), 2),
            "p50_ms": _ms(row, "50%"), "p95_ms": _ms(row, "95%"), "p99_ms": _ms(row, "99%"),
            "max_ms": _ms(row, "Max Response Time"),
        }
        if row["Name"] == "Aggregated":
            total = figures
        else:
            by_name[row["Name"]] = figures
    return {**total, "by_name": by_name, "users": users, "seconds": seconds}


def render(report: dict[str, Any]) -> str:
    r = report["result"]
    before, after = report["rss_before_mb"] or {}, report["rss_after_mb"] or {}
    lines = [
        "# `make load` results",
        "",
        f"Command: `{report['command']}`, {report['started_at']}, load average {report['load_average']['start']} "
        f"at start, {report['load_average']['end']} at end. Machine: {report['cpu']}, {report['cpus']} CPUs "
        "(Locust runs beside the server and takes CPU from it).",
        f"{r['users']} users for {r['seconds']} s, no pause between requests; photos: "
        f"{', '.join(report['photos'])}.",
        "",
        "| requests | requests/s | p50 (ms) | p95 (ms) | p99 (ms) | failures | server RSS before → after (MB) | "
        "server peak RSS (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {r['requests']:,} | {r['requests_per_s']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
        f"{r['failures']} | {before.get('VmRSS', '-')} → {after.get('VmRSS', '-')} | {after.get('VmHWM', '-')} |",
        "",
        "| request | count | requests/s | p50 (ms) | p95 (ms) | p99 (ms) | failures |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in sorted(r["by_name"].items()):
        lines.append(f"| {name} | {row['requests']:,} | {row['requests_per_s']} | {row['p50_ms']} | {row['p95_ms']} | "
                     f"{row['p99_ms']} | {row['failures']} |")
    return "\n".join([*lines, ""])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--url", help="drive this running server (e.g. make serve's) instead of starting one")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, for its memory")
    parser.add_argument("--work", type=Path, default=BENCH / ".work")
    parser.add_argument("--summary", type=Path, help="also write the markdown summary here")
    args = parser.parse_args(argv)
    from run import ensure_store, machine

    work = args.work.resolve()
    photos = load_photos(work)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_start = os.getloadavg()[0]
    with contextlib.ExitStack() as stack:
        if args.url:
            server = Server(args.url.rstrip("/"), args.pid)
        else:
            store = work / "store"
            ensure_store(store)
            for path in store.glob("records.sqlite3*"):  # every run starts from an empty records table
                path.unlink()
            server = stack.enter_context(local_server(store))
        log(f"{args.users} users for {args.seconds} s against {server.url}")
        before = server.rss_mb()
        result = run_locust(server.url, users=args.users, seconds=args.seconds, out=work / "load", photos=photos)
        after = server.rss_mb()
    report = {
        "command": " ".join(["python", "bench/load.py", *(argv if argv is not None else sys.argv[1:])]),
        "started_at": started_at,
        "load_average": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "cpu": machine()["cpu"], "cpus": len(os.sched_getaffinity(0)),
        "photos": sorted(p.name for p in photos.glob("*.jpg")),
        "rss_before_mb": before, "rss_after_mb": after, "result": result,
    }
    (work / "load.json").write_text(json.dumps(report, indent=1) + "\n")
    markdown = render(report)
    if args.summary:
        args.summary.write_text(markdown)
    print(markdown)
    return 0 if result.get("requests") else 1


if __name__ == "__main__":
    sys.exit(main())
