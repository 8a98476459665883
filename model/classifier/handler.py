"""AWS Lambda entry point: ``classifier.handler.handler``.

Mangum adapts API Gateway REST (v1), HTTP API and Function URL (v2) events,
including base64 bodies, to the ASGI app. Everything below runs once per
Lambda instance, in the init phase: logging, settings, and the model load.
"""

from mangum import Mangum

from classifier import logs
from classifier.api import create_app

logs.configure()
app = create_app()
# lifespan="off": Mangum would run startup/shutdown around every invocation;
# the model is loaded above, once.
handler = Mangum(app, lifespan="off")
