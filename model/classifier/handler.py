"""AWS Lambda entry point: ``classifier.handler.handler``.

Mangum adapts API Gateway REST (v1), HTTP API and Function URL (v2) events,
including base64 bodies, to the ASGI app. Everything below runs once per
Lambda instance, in the init phase.

Order matters for the cold start: the model starts loading on a thread
*before* the web framework is imported, so reading, hashing and building the
ONNX Runtime session (which release the GIL) overlap the web layer's import. The
first request waits for the load if it is not finished yet.
"""

import logging

from classifier import logs
from classifier.config import Settings
from classifier.runtime import ModelManager

logs.configure()
logging.getLogger("mangum").setLevel(logging.WARNING)  # our access log already has one line per request
settings = Settings.from_env()
manager = ModelManager(settings)
manager.load_in_background()

from mangum import Mangum  # noqa: E402  (deliberately after the load started)

from classifier.api import create_app, warm_up  # noqa: E402

app = create_app(settings, manager=manager, load_model=False)
# lifespan="off": Mangum would run startup/shutdown around every invocation;
# the model is loaded above, once.
handler = Mangum(app, lifespan="off")
warm_up(handler)
