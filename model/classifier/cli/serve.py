"""``serve``: the HTTP API under uvicorn, as the Lambda serves it (the model loads while the web layer imports)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from classifier.cli.common import add_store_args, refused
from classifier.config import Settings


def cmd_serve(args: argparse.Namespace) -> int:
    from classifier.config import ConfigError
    from classifier.observability import logs
    from classifier.serving.registry import ModelRegistry

    logs.configure()
    os.environ["MODEL_STORE"] = str(args.store)
    if args.name:
        os.environ["MODEL_NAME"] = args.name
    if args.models:
        os.environ["MODELS"] = args.models
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        return refused(exc)
    models = ModelRegistry(settings)
    models.default.load_in_background()  # overlaps the imports below, as in Lambda

    import uvicorn

    from classifier.api.app import create_app

    app = create_app(settings, models=models, load_model=False)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
    return 0


def register(sub: Any) -> None:
    """Add this module's commands to the CLI's subparsers."""
    p = sub.add_parser("serve", help="serve the HTTP API locally")
    add_store_args(p, name_help="the default model, POST /classify's (default: $MODEL_NAME, else the first of "
                                 f"--models, else {Settings.model_name})")
    p.set_defaults(name=os.environ.get("MODEL_NAME") or None)
    p.add_argument("--models", default=os.environ.get("MODELS") or None, metavar="NAMES",
                   help="the models to serve: comma-separated names, or '*' for every model of the store "
                        "(default: $MODELS, else --name alone)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_serve)
