"""``serve``: the HTTP API under uvicorn, as the Lambda serves it (the model loads while the web layer imports)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from classifier.cli.common import add_store_args, refused


def cmd_serve(args: argparse.Namespace) -> int:
    from classifier.config import ConfigError, Settings
    from classifier.observability import logs
    from classifier.serving.manager import ModelManager

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

    from classifier.api.app import create_app

    app = create_app(settings, manager=manager, load_model=False)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
    return 0


def register(sub: Any) -> None:
    """Add this module's commands to the CLI's subparsers."""
    p = sub.add_parser("serve", help="serve the HTTP API locally")
    add_store_args(p)
    p.add_argument("--host", default="127.0.0.1", metavar="H",
                   help="the address to listen on (default: %(default)s, this machine only; 0.0.0.0 for every "
                        "network interface, behind a firewall: the API has no authentication of its own)")
    p.add_argument("--port", type=int, default=8000, help="the TCP port to listen on (default: %(default)s)")
    p.set_defaults(func=cmd_serve)
