"""AWS Lambda entry point: ``classifier.handler.handler``.

Mangum adapts API Gateway REST (v1), HTTP API and Function URL (v2) events,
including base64 bodies, to the ASGI app. Everything below runs once per
Lambda instance, in the init phase.

Order matters for the cold start: the default model's ONNX Runtime session starts
building on a thread *first* (``classifier.serving.preload``), before the model
slots, Powertools and the web framework are imported, so the build (which releases
the GIL) overlaps those imports; the slot's load then verifies the version (reading
and hashing it on another thread) and takes the session. The first request waits for
the load if it is not finished yet. Other served models (``MODELS``) load on their
first request.
"""

import logging
from typing import Any

from classifier.config import Settings
from classifier.serving import preload

settings = Settings.from_env()
early = preload.start(settings)

from classifier.observability import logs  # noqa: E402  (deliberately after the build started)
from classifier.serving.registry import ModelRegistry  # noqa: E402

models = ModelRegistry(settings)
models.default.load_in_background(early)
logs.configure()  # imports Powertools while the model loads
logging.getLogger("mangum").setLevel(logging.WARNING)  # our access log already has one line per request

from mangum import Mangum  # noqa: E402  (deliberately after the load started)

from classifier.api.app import create_app  # noqa: E402
from classifier.api.middleware import WARM_UP_REQUEST_ID  # noqa: E402

app = create_app(settings, models=models, load_model=False)


def warm_up(handler: Any) -> None:
    """Send one cheap request (a 404) through the Lambda handler during init.

    Routing, middleware, error mapping, Mangum's adapter and the thread pool
    set themselves up lazily; doing it here, while the model loads on its
    thread, takes that time off the first real request (docs/performance.md).
    The middleware knows it by its request id with no invocation context
    (``is_warm_up``), which no caller can send, and leaves it out of the metrics.
    """
    path = "/classifications/warm-up"
    event = {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"user-agent": "classifier-init"}, "isBase64Encoded": False,
        "requestContext": {
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": "classifier-init"},
            "requestId": WARM_UP_REQUEST_ID, "routeKey": "$default", "stage": "$default", "accountId": "-",
            "apiId": "-", "domainName": "localhost", "domainPrefix": "localhost", "time": "", "timeEpoch": 0,
        },
    }
    handler(event, None)


# lifespan="off": Mangum would run startup/shutdown around every invocation;
# the model is loaded above, once.
handler = Mangum(app, lifespan="off")
warm_up(handler)
