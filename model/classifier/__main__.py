"""Command line: ``python -m classifier {publish,models,evaluate,promote,quantize,batch,rollback,serve,classify}``.

Imports stay inside the commands: ``models`` and ``rollback`` need only the
standard library, ``serve`` never imports torch, ``classify`` (a client of a
running API) needs neither the model store nor the model.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from classifier.client import Outcome

DEFAULT_STORE = os.environ.get("MODEL_STORE") or ".model-store"
DEFAULT_NAME = os.environ.get("MODEL_NAME") or "resnet50"


def refused(reason: object) -> int:
    """A refusal the user can act on: one ``error:`` line on stderr, and exit status 2."""
    print(f"error: {reason}", file=sys.stderr)
    return 2


def _store_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", type=Path, default=Path(DEFAULT_STORE),
                        help=f"model store directory (default: $MODEL_STORE or {DEFAULT_STORE})")
    parser.add_argument("--name", default=DEFAULT_NAME, help="model name (default: %(default)s)")


def cmd_publish(args: argparse.Namespace) -> int:
    from classifier.publish import PublishError, publish_to_s3, publish_to_store
    from classifier.store import ModelStore

    activate = not args.no_activate
    try:
        if args.s3:
            manifest = publish_to_s3(args.s3, args.weights, args.name, labels_file=args.labels, activate=activate)
        else:
            manifest = publish_to_store(ModelStore(args.store), args.weights, args.name, labels_file=args.labels,
                                        activate=activate)
    except PublishError as exc:
        return refused(exc)
    labels = manifest["labels"]["count"]
    if args.s3:
        after = "makes it current" if activate else "installs it; `promote --s3` makes it current"
        print(f"uploaded {manifest['name']} {manifest['version']} ({labels} labels) to {args.s3} "
              f"(the installer Lambda {after})")
    else:
        state = "it is now current" if activate else "installed, not current (promote it when it is ready)"
        print(f"published {manifest['name']} {manifest['version']} (source {manifest['source']}, {labels} labels) "
              f"to {args.store}; {state}")
    if not manifest["trained"]:
        print("WARNING: this model is UNTRAINED (random weights): its predictions are meaningless.",
              file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from classifier.store import ModelStore, StoreError, precision

    store = ModelStore(args.store)
    try:
        infos = store.list(args.name)
    except StoreError as exc:
        return refused(exc)
    if not infos:
        print(f"no versions of {args.name} in {args.store}")
        return 0
    print(f"{'':2}{'VERSION':31} {'CREATED':21} {'SOURCE':18} {'TRAINED':8} {'PRECISION':10} "
          f"{'TOP-1 (LATEST EVALUATION)':26} SIZE")
    for info in reversed(infos):
        mark = "* " if info.current else "  "
        if info.manifest is None:
            print(f"{mark}{info.version:31} BROKEN: {info.problem}")
            continue
        m = info.manifest
        size = sum(a["bytes"] for a in m["artifacts"].values()) / 1e6
        source = m["source"] if len(m["source"]) <= 18 else m["source"][:15] + "..."
        report = store.latest_evaluation(args.name, info.version)
        score = f"{report['top1']:.3f} on {report['images']} images" if report else "-"
        print(f"{mark}{info.version:31} {m['created_at']:21} {source:18} "
              f"{'yes' if m['trained'] else 'NO':8} {precision(m):10} {score:26} {size:.0f} MB")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from classifier.evaluate import DataSet, EvaluationError, evaluate
    from classifier.store import ModelStore, StoreError

    settings = _settings(args)
    store = ModelStore(args.store)
    try:
        version = args.version or store.current(args.name)
        if version is None:
            raise EvaluationError(f"model {args.name} has no current version: pass --version")
        labels = _labels(store, args.name, version)
        data = DataSet.scan(args.data, labels)
        with Progress(len(data.samples), "evaluating", enabled=not args.json) as progress:
            report = evaluate(store, settings, version, data, compare=args.compare, progress=progress.advance_to)
    except (EvaluationError, StoreError) as exc:
        return refused(exc)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_evaluation(report))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from classifier.evaluate import DataSet, EvaluationError, evaluate
    from classifier.store import ModelStore, StoreError

    if (args.data is None) != (args.min_top1 is None):
        return refused("a gate needs both --data DIR and --min-top1 X")
    if args.s3:
        if args.data is not None:
            return refused("gate a promotion on a local store (evaluate there first); --s3 only sends the "
                           "promotion to the installer")
        return _promote_s3(args)
    store = ModelStore(args.store)
    try:
        labels = _labels(store, args.name, args.version)
        if args.data is not None:
            data = DataSet.scan(args.data, labels)
            report = store.evaluation(args.name, args.version, data.sha256)
            if report is None:
                with Progress(len(data.samples), "evaluating") as progress:
                    report = evaluate(store, _settings(args), args.version, data, progress=progress.advance_to)
            if report["top1"] < args.min_top1:
                print(f"refused: {args.name} {args.version} scores top-1 {report['top1']:.4f} on {args.data} "
                      f"({report['images']} images), below --min-top1 {args.min_top1}; CURRENT is unchanged",
                      file=sys.stderr)
                return 1
            print(f"gate passed: top-1 {report['top1']:.4f} >= {args.min_top1} on {report['images']} images")
        previous = store.current(args.name)
        store.set_current(args.name, args.version)
    except (EvaluationError, StoreError) as exc:
        return refused(exc)
    print(f"{args.name}: current version is now {args.version} (was {previous})")
    return 0


def _promote_s3(args: argparse.Namespace) -> int:
    from classifier.publish import PublishError, promote_in_inbox

    try:
        key = promote_in_inbox(args.s3, args.name, args.version)
    except PublishError as exc:
        return refused(exc)
    print(f"wrote s3 key {key}: the installer Lambda makes {args.name} {args.version} current")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from classifier.quantize import QuantizeError, quantize
    from classifier.store import ModelStore, StoreError

    try:
        manifest = quantize(ModelStore(args.store), args.name, args.version, calibration=args.calibration,
                            activate=not args.no_activate)
    except (QuantizeError, StoreError) as exc:
        return refused(exc)
    size = manifest["artifacts"]["model.onnx"]["bytes"] / 1e6
    state = "it is now current" if not args.no_activate else "installed, not current"
    print(f"quantized {manifest['derived_from']} into {manifest['version']} (int8, {size:.0f} MB); {state}. "
          f"Top-1 agreement with fp32 on the calibration photos: "
          f"{manifest['verification']['top1_agreement_with_fp32']:.2f}; measure it on your data with "
          f"`evaluate --data DIR --version {manifest['version']} --compare {manifest['derived_from']}`")
    return 0


def _settings(args: argparse.Namespace) -> Any:
    """Runtime settings from the environment (BACKEND, threads, ...) with this command's store and name."""
    from classifier.config import Settings

    return replace(Settings.from_env(), model_store=args.store, model_name=args.name)


def _labels(store: Any, name: str, version: str) -> list[str]:
    import json

    store.manifest(name, version)  # a clear error for an unknown version
    labels: list[str] = json.loads((store.version_dir(name, version) / "labels.json").read_text())
    return labels


def format_evaluation(report: dict[str, Any]) -> str:
    lines = [f"{report['name']} {report['version']} ({report['precision']}, {report['backend']}) on "
             f"{report['data']['path']}: {report['images']} images",
             f"  top-1 {report['top1']:.4f}   top-5 {report['top5']:.4f}   latency per image p50 "
             f"{report['latency_ms']['p50']:.1f} ms, p95 {report['latency_ms']['p95']:.1f} ms"]
    if "agreement" in report:
        agreement = report["agreement"]
        lines.append(f"  against {agreement['version']}: same top-1 on {agreement['top1']:.4f}, "
                     f"top-5 overlap {agreement['top5_overlap']:.4f}")
    width = max(len(label) for label in report["per_class"])
    lines.append(f"  {'CLASS':{width}}  IMAGES  TOP-1")
    for label, row in report["per_class"].items():
        lines.append(f"  {label:{width}}  {row['images']:6}  {row['top1']:.4f}")
    for error in report["errors"]:
        lines.append(f"  skipped {error['file']}: {error['code']}: {error['message']}")
    return "\n".join(lines)


def cmd_batch(args: argparse.Namespace) -> int:
    if args.source.startswith("s3://"):
        return _batch_s3(args)
    from classifier.bulk import FolderBatch, image_files
    from classifier.records import open_record_store

    root = Path(args.source)
    settings = _settings(args)
    try:
        total = len(image_files(root))
        job = FolderBatch(settings, open_record_store(settings), top_k=args.top_k)
        with (open(args.out, "w") if args.out else nullcontext(sys.stdout)) as out, \
                Progress(total, "classifying") as progress:
            counts = job.run(root, out, skip_done=args.skip_done, progress=progress.update)
    except (FileNotFoundError, NotImplementedError, RuntimeError) as exc:
        return refused(exc)
    print(f"{counts.files} files: {counts.classified} classified, {counts.failed} failed, {counts.skipped} skipped "
          f"(already classified) in {counts.seconds:.1f} s, {counts.images_per_second:.1f} images/s"
          + (f"; lines in {args.out}" if args.out else ""), file=sys.stderr)
    return 1 if counts.failed else 0


def _batch_s3(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from classifier.bulk import follow, results_location, start_job, state_machine_from_stack
    from classifier.inbox import parse_s3_url

    try:
        bucket, prefix = parse_s3_url(args.source)
        arn = args.state_machine or state_machine_from_stack(args.stack)
        execution = start_job(arn, bucket, prefix, args.top_k)
        print(f"started {execution}", file=sys.stderr)
        if args.no_wait:
            print(execution)
            return 0

        def show(counts: Any) -> None:
            print(f"  {counts.get('succeeded', 0)} of {counts.get('total', '?')} items done, "
                  f"{counts.get('failed', 0)} failed, {counts.get('running', 0)} running", file=sys.stderr)

        described = follow(execution, poll_seconds=args.poll_seconds, on_progress=show)
    except (ValueError, LookupError, ClientError, BotoCoreError) as exc:
        return refused(exc)
    where = results_location(described)
    print(f"{described['status']}: {execution}" + (f"; results in {where}" if where else ""))
    return 0 if described["status"] == "SUCCEEDED" else 1


def cmd_rollback(args: argparse.Namespace) -> int:
    from classifier.store import ModelStore, StoreError

    store = ModelStore(args.store)
    try:
        previous = store.current(args.name)
        version = store.rollback(args.name, args.to)
    except StoreError as exc:
        return refused(exc)
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
        return refused(exc)
    manager = ModelManager(settings)
    manager.load_in_background()  # overlaps the imports below, as in Lambda

    import uvicorn

    from classifier.api import create_app

    app = create_app(settings, manager=manager, load_model=False)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
    return 0


class Progress:
    """A tqdm bar on stderr for several files (with images/s), when tqdm is installed and stderr is a terminal."""

    def __init__(self, total: int, what: str | None = None, *, enabled: bool = True) -> None:
        self.bar: Any = None
        if total < 2 or not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:  # a plain install of the runtime package: no bar, no complaint
            return
        # disable=None: tqdm turns itself off when stderr is not a terminal.
        self.bar = tqdm(total=total, unit="img", desc=what, disable=None, leave=False)

    def update(self, count: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def advance_to(self, done: int, _total: int) -> None:
        """A progress callback (done of total) for the library's long loops."""
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

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
        return refused("--url is required (or set CLASSIFIER_URL)")
    if args.concurrency < 1 or args.retries < 0:
        return refused("--concurrency must be at least 1 and --retries at least 0")
    progress = Progress(len(args.images))

    def on_retry(event: RetryEvent) -> None:
        progress.write(f"retry {event.retry}/{args.retries} in {event.delay:.1f}s after {event.reason}: "
                       f"{event.method} {event.url}")

    try:
        client = ClassifierClient(
            args.url, api_key=args.api_key, sigv4=args.sigv4, service=args.service, region=args.region,
            timeout=args.timeout,
            retry=RetryPolicy(attempts=args.retries + 1), inline_max_bytes=args.inline_max_bytes,
            on_retry=on_retry, max_connections=args.concurrency,
        )
    except ValueError as exc:
        return refused(exc)
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


def build_parser() -> argparse.ArgumentParser:
    """Every command and option (tests/test_docs.py parses each documented command line with it)."""
    parser = argparse.ArgumentParser(prog="python -m classifier", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("publish", help="build ResNet-50, export ONNX + safetensors, install it as current")
    _store_arg(p)
    p.add_argument("--s3", metavar="s3://bucket/prefix",
                   help="upload to the model inbox bucket instead of a local store")
    p.add_argument("--weights", default="IMAGENET1K_V2",
                   help="IMAGENET1K_V2 (default), IMAGENET1K_V1, a .pth/.safetensors file, or random")
    p.add_argument("--labels", type=Path, metavar="FILE",
                   help="your checkpoint's labels: .txt (a label a line) or .json (a list), one per output of fc")
    p.add_argument("--no-activate", action="store_true", help="install the version without making it current")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("models", help="list versions; * marks the current one")
    _store_arg(p)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("evaluate", help="accuracy and latency of a version on DIR/<label>/<images>")
    _store_arg(p)
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="an ImageFolder: DIR/<label>/<images>")
    p.add_argument("--version", help="the version to evaluate (default: the current one)")
    p.add_argument("--compare", metavar="VERSION", help="also report top-1 agreement and top-5 overlap with it")
    p.add_argument("--json", action="store_true", help="print the report alone, as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("promote", help="make VERSION current, optionally only if it passes an accuracy gate")
    _store_arg(p)
    p.add_argument("version", metavar="VERSION")
    p.add_argument("--data", type=Path, metavar="DIR", help="the gate's data set (an ImageFolder)")
    p.add_argument("--min-top1", type=float, metavar="X", help="refuse below this top-1 accuracy (0..1)")
    p.add_argument("--s3", metavar="s3://bucket/prefix",
                   help="ask the installer Lambda to promote it (the model inbox bucket)")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("quantize", help="derive an int8 version (ONNX Runtime static quantization)")
    _store_arg(p)
    p.add_argument("--version", help="the fp32 version to quantize (default: the current one)")
    p.add_argument("--calibration", type=Path, metavar="DIR", help="calibration images (default: bundled photos)")
    p.add_argument("--no-activate", action="store_true", help="install the int8 version without making it current")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("batch", help="classify a folder in process, or an S3 prefix on the bulk state machine")
    _store_arg(p)
    p.add_argument("source", metavar="SOURCE", help="a folder, or s3://bucket/prefix")
    p.add_argument("--out", type=Path, metavar="FILE", help="the JSON lines, one per file (default: stdout)")
    p.add_argument("--skip-done", action="store_true", help="skip files whose sha256 already has a record")
    p.add_argument("--top-k", type=int, default=5, choices=range(1, 21), metavar="1..20",
                   help="predictions per image (default: %(default)s)")
    p.add_argument("--state-machine", metavar="ARN", help="s3 sources: the state machine (default: --stack's output)")
    p.add_argument("--stack", default="demo-service-stack",
                   help="s3 sources: the service stack whose BulkStateMachineArn output to use (default: %(default)s)")
    p.add_argument("--no-wait", action="store_true", help="s3 sources: print the execution ARN and return")
    p.add_argument("--poll-seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_batch)

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
                   help="sign requests with SigV4 with the caller's AWS credentials (api_auth=iam, a Function URL)")
    p.add_argument("--service", choices=("execute-api", "lambda"),
                   help="SigV4 service (default: lambda for a Function URL, execute-api otherwise)")
    p.add_argument("--region", help="SigV4 region (default: from an AWS host name, else $AWS_REGION)")
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

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
