"""Command line: ``python -m classifier {publish,models,rollback,serve,classify}``.

Imports stay inside the commands: ``models`` and ``rollback`` need only the
standard library, ``serve`` never imports torch, ``classify`` (a client of a
running API) needs neither the model store nor the model.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from classifier.client import Outcome

DEFAULT_STORE = os.environ.get("MODEL_STORE") or ".model-store"
DEFAULT_NAME = os.environ.get("MODEL_NAME") or "resnet50"


def _store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", type=Path, default=Path(DEFAULT_STORE),
                        help=f"model store directory (default: $MODEL_STORE or {DEFAULT_STORE})")
    parser.add_argument("--name", default=DEFAULT_NAME, help="model name (default: %(default)s)")


def cmd_publish(args: argparse.Namespace) -> int:
    from classifier.publish import PublishError, publish_to_s3, publish_to_store
    from classifier.store import ModelStore

    if args.s3:
        try:
            manifest = publish_to_s3(args.s3, args.weights, args.name)
        except PublishError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"uploaded {manifest['name']} {manifest['version']} to {args.s3} "
              "(the installer Lambda installs it and makes it current)")
        return 0
    try:
        manifest = publish_to_store(ModelStore(args.store), args.weights, args.name)
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"published {manifest['name']} {manifest['version']} (source {manifest['source']}) "
          f"to {args.store}; it is now current")
    if not manifest["trained"]:
        print("WARNING: this model is UNTRAINED (random weights): its predictions are meaningless.",
              file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from classifier.store import ModelStore, StoreError

    store = ModelStore(args.store)
    try:
        infos = store.list(args.name)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not infos:
        print(f"no versions of {args.name} in {args.store}")
        return 0
    print(f"{'':2}{'VERSION':31} {'CREATED':21} {'SOURCE':18} {'TRAINED':8} ARTIFACTS")
    for info in reversed(infos):
        mark = "* " if info.current else "  "
        if info.manifest is None:
            print(f"{mark}{info.version:31} BROKEN: {info.problem}")
            continue
        m = info.manifest
        size = sum(a["bytes"] for a in m["artifacts"].values()) / 1e6
        source = m["source"] if len(m["source"]) <= 18 else m["source"][:15] + "..."
        print(f"{mark}{info.version:31} {m['created_at']:21} {source:18} "
              f"{'yes' if m['trained'] else 'NO':8} {', '.join(sorted(m['artifacts']))} ({size:.0f} MB)")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from classifier.store import ModelStore, StoreError

    store = ModelStore(args.store)
    try:
        previous = store.current(args.name)
        version = store.rollback(args.name, args.to)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.name}: current version is now {version} (was {previous})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from classifier import logs
    from classifier.config import ConfigError, Settings
    from classifier.runtime import ModelManager

    logs.configure()
    os.environ["MODEL_STORE"] = str(args.store)
    os.environ["MODEL_NAME"] = args.name
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    manager = ModelManager(settings)
    manager.load_in_background()  # overlaps the imports below, as in Lambda

    import uvicorn

    from classifier.api import create_app

    app = create_app(settings, manager=manager, load_model=False)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
    return 0


class Progress:
    """A tqdm bar on stderr for several files, when tqdm is installed and stderr is a terminal."""

    def __init__(self, total: int) -> None:
        self.bar: Any = None
        if total < 2:
            return
        try:
            from tqdm import tqdm
        except ImportError:  # a plain install of the runtime package: no bar, no complaint
            return
        # disable=None: tqdm turns itself off when stderr is not a terminal.
        self.bar = tqdm(total=total, unit="img", disable=None, leave=False)

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def write(self, message: str) -> None:
        """A message on stderr that does not tear the bar."""
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def format_table(results: Sequence[Outcome]) -> str:
    """FILE, LABEL, SCORE, LATENCY, MODEL: one row per file (an error fills the rest of its row)."""
    from classifier.client_http import RequestFailed

    header = ("FILE", "LABEL", "SCORE", "LATENCY", "MODEL")
    rows: list[tuple[str, ...]] = []
    for r in results:
        if r.error is not None or r.result is None:
            err = r.error or RequestFailed(None, "error", "no result")
            rows.append((r.name, f"ERROR {err.status or '-'} {err.code}: {err.message}"))
            continue
        predictions = r.result.get("predictions")
        label, score = (predictions[0]["label"], predictions[0]["score"]) if predictions else ("-", 0.0)
        model = r.result.get("model") or {}
        version = str(model.get("version", "-")) + ("" if model.get("trained", True) else " (untrained)")
        rows.append((r.name, str(label), f"{float(score):.4f}", f"{r.latency_ms:.0f} ms", version))
    widths = [max([len(header[i])] + [len(row[i]) for row in rows if len(row) == len(header)])
              for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        if len(row) < len(header):  # an error row: the message spans the remaining columns
            lines.append(f"{row[0]:{widths[0]}}  {row[1]}")
        else:
            cells = [f"{cell:{widths[i]}}" if i < len(widths) else cell for i, cell in enumerate(row)]
            cells[2] = f"{row[2]:>{widths[2]}}"
            cells[3] = f"{row[3]:>{widths[3]}}"
            lines.append("  ".join(cells))
    return "\n".join(lines)


def cmd_classify(args: argparse.Namespace) -> int:
    import json

    from classifier.client import ClassifierClient, classify_files
    from classifier.client_http import RetryEvent, RetryPolicy

    if not args.url:
        print("error: --url is required (or set CLASSIFIER_URL)", file=sys.stderr)
        return 2
    if args.concurrency < 1 or args.retries < 0:
        print("error: --concurrency must be at least 1 and --retries at least 0", file=sys.stderr)
        return 2
    progress = Progress(len(args.images))

    def on_retry(event: RetryEvent) -> None:
        progress.write(f"retry {event.retry}/{args.retries} in {event.delay:.1f}s after {event.reason}: "
                       f"{event.method} {event.url}")

    try:
        client = ClassifierClient(
            args.url, api_key=args.api_key, sigv4=args.sigv4, region=args.region, timeout=args.timeout,
            retry=RetryPolicy(attempts=args.retries + 1), inline_max_bytes=args.inline_max_bytes,
            on_retry=on_retry, max_connections=args.concurrency,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        results = classify_files(client, args.images, top_k=args.top_k, concurrency=args.concurrency,
                                 on_done=lambda _: progress.update())
    finally:
        progress.close()
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        print(format_table(results))
    return 0 if all(r.error is None for r in results) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m classifier", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("publish", help="build ResNet-50, export ONNX + safetensors, install it as current")
    _store_arg(p)
    p.add_argument("--s3", metavar="s3://bucket/prefix",
                   help="upload to the model inbox bucket instead of a local store")
    p.add_argument("--weights", default="IMAGENET1K_V2",
                   help="IMAGENET1K_V2 (default), IMAGENET1K_V1, a .pth/.safetensors file, or random")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("models", help="list versions; * marks the current one")
    _store_arg(p)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("rollback", help="make an earlier version current")
    _store_arg(p)
    p.add_argument("--to", metavar="VERSION", help="version to restore (default: the one before current)")
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("serve", help="serve the HTTP API locally")
    _store_arg(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("classify", help="classify image files with a running API (inline, or through S3 if large)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--url", default=os.environ.get("CLASSIFIER_URL"),
                   help="the API's base URL: API Gateway stage, Function URL, CloudFront or local "
                        "(default: $CLASSIFIER_URL)")
    p.add_argument("--api-key", default=os.environ.get("CLASSIFIER_API_KEY"),
                   help="sent as x-api-key (default: $CLASSIFIER_API_KEY)")
    p.add_argument("--sigv4", action="store_true",
                   help="sign requests with SigV4 (service lambda) for a Function URL with IAM auth")
    p.add_argument("--region", help="SigV4 region (default: from the Function URL, else $AWS_REGION)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--top-k", type=int, default=5, choices=range(1, 21), metavar="1..20",
                   help="predictions per image (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (default: %(default)s)")
    p.add_argument("--retries", type=int, default=4,
                   help="retries of a 429, a 5xx or a connection error (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for an answer (default: %(default)s)")
    p.add_argument("--inline-max-bytes", type=int, default=4 * 1024 * 1024,
                   help="larger images go through S3 (default: 4 MiB, the server's MAX_IMAGE_BYTES)")
    p.set_defaults(func=cmd_classify)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
