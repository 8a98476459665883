"""``classify``: the client of a running API (inline, or through S3 for large images)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from classifier.cli.common import refused
from classifier.cli.output import Progress, format_table
from classifier.config import Settings


def cmd_classify(args: argparse.Namespace) -> int:
    import json

    from classifier.client.api import ClassifierClient, classify_files
    from classifier.client.transport import RetryEvent, RetryPolicy

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
            on_retry=on_retry, max_connections=args.concurrency, model=args.model,
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


def register(sub: Any) -> None:
    """Add this module's commands to the CLI's subparsers."""
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
    p.add_argument("--model", metavar="NAME",
                   help="one of the models the API serves (GET /models lists them; default: the API's default "
                        "model, POST /classify's)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--top-k", type=int, default=5, choices=range(1, 21), metavar="1..20",
                   help="predictions per image (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (default: %(default)s)")
    p.add_argument("--retries", type=int, default=4,
                   help="retries of a 429, a 5xx or a connection error (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for an answer (default: %(default)s)")
    p.add_argument("--inline-max-bytes", type=int, default=Settings.max_image_bytes,
                   help="larger images go through S3 (default: %(default)s, the server's default MAX_IMAGE_BYTES)")
    p.set_defaults(func=cmd_classify)
