"""``batch``: a folder in process, or an S3 prefix on the deployed bulk state machine."""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from classifier.cli.common import add_store_args, refused, runtime_settings
from classifier.cli.output import Progress


def cmd_batch(args: argparse.Namespace) -> int:
    if args.source.startswith("s3://"):
        return batch_s3(args)
    from classifier.records import open_record_store
    from classifier.serving.folder_batch import FolderBatch
    from classifier.serving.imaging import folder_files

    root = Path(args.source)
    settings = runtime_settings(args)
    try:
        total = len(folder_files(root))
        job = FolderBatch(settings, open_record_store(settings), top_k=args.top_k)
        with (open(args.out, "w") if args.out else nullcontext(sys.stdout)) as out, \
                Progress(total, "classifying") as progress:
            counts = job.run(root, out, skip_done=args.skip_done, progress=progress.update)
    except (FileNotFoundError, NotImplementedError, RuntimeError) as exc:
        return refused(exc)
    print(f"{counts.files} files: {counts.classified} classified, {counts.failed} failed, {counts.skipped} skipped "
          f"(done by this model version) in {counts.seconds:.1f} s, {counts.images_per_second:.1f} images/s"
          + (f"; lines in {args.out}" if args.out else ""), file=sys.stderr)
    return 1 if counts.failed else 0


def batch_s3(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from classifier.aws.bulk_jobs import follow, results_location, start_job, state_machine_from_stack
    from classifier.store.inbox import parse_s3_url

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


def register(sub: Any) -> None:
    """Add this module's commands to the CLI's subparsers."""
    p = sub.add_parser("batch", help="classify a folder in process, or an S3 prefix on the bulk state machine")
    add_store_args(p)
    p.add_argument("source", metavar="SOURCE", help="a folder, or s3://bucket/prefix")
    p.add_argument("--out", type=Path, metavar="FILE", help="the JSON lines, one per file (default: stdout)")
    p.add_argument("--skip-done", action="store_true",
                   help="skip files the serving model version has classified (by sha256)")
    p.add_argument("--top-k", type=int, default=5, choices=range(1, 21), metavar="1..20",
                   help="predictions per image (default: %(default)s)")
    p.add_argument("--state-machine", metavar="ARN", help="s3 sources: the state machine (default: --stack's output)")
    p.add_argument("--stack", default="demo-service-stack",
                   help="s3 sources: the service stack whose BulkStateMachineArn output to use (default: %(default)s)")
    p.add_argument("--no-wait", action="store_true", help="s3 sources: print the execution ARN and return")
    p.add_argument("--poll-seconds", type=float, default=5.0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_batch)
