"""The HTTP API (ASGI): the app factory that wires routes, middleware and shared state.

The same app runs under uvicorn locally and under Mangum in Lambda. It is a
plain Starlette app: FastAPI (with pydantic) added to every cold start (docs/performance.md)
to import, for validating three query parameters and generating a document.
The OpenAPI document is ``openapi.json`` beside this module, maintained by
hand (its parameter bounds come from ``classifier.api.parameters``), and served
narrowed to the routes this app has (``classifier.api.document``): ``POST /uploads``
exists only with an uploads bucket. The tests check that it is valid, lists
exactly the app's routes, and that real responses match its schemas.

Where things are: routes and error mapping in ``routes``, request bodies in
``inputs``, the request-id/size-limit/access-log middleware in ``middleware``,
the use case itself in ``service``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from classifier.api import routes
from classifier.api.middleware import RequestContext
from classifier.aws.uploads import Uploads
from classifier.config import Settings
from classifier.errors import ClassifierError
from classifier.records import RecordStore, open_record_store
from classifier.serving.registry import ModelRegistry
from classifier.serving.service import Classifier


def create_app(
    settings: Settings | None = None,
    *,
    models: ModelRegistry | None = None,
    records: RecordStore | None = None,
    load_model: bool = True,
) -> Starlette:
    """Build the API. With ``load_model`` the default model is loaded now, before the
    app is returned (the Lambda handler instead starts the load on a thread); the
    other served models load on their first request."""
    settings = settings or Settings.from_env()
    models = models or ModelRegistry(settings)
    records = records or open_record_store(settings)
    uploads = Uploads(settings)  # boto3 is imported on first use, not here
    if load_model:
        models.default.refresh()
    app = Starlette(
        routes=[
            Route("/classify", routes.classify, methods=["POST"]),
            # A route this deployment cannot serve is not there at all: it answers as any unknown
            # route does, and the document does not list it.
            *([Route("/uploads", routes.create_upload, methods=["POST"])] if uploads.enabled else []),
            Route("/classifications", routes.list_classifications, methods=["GET"]),
            Route("/classifications/{record_id}", routes.get_classification, methods=["GET"]),
            Route("/model", routes.model_state, methods=["GET"]),
            Route("/model/versions", routes.model_versions, methods=["GET"]),
            Route("/model/versions/{version}/evaluation", routes.version_evaluation, methods=["GET"]),
            Route("/models", routes.list_models, methods=["GET"]),
            Route("/models/{name}", routes.named_model_state, methods=["GET"]),
            Route("/models/{name}/classify", routes.classify_with_model, methods=["POST"]),
            Route("/health", routes.health, methods=["GET"]),
            Route("/openapi.json", routes.openapi, methods=["GET"], include_in_schema=False),
            Route("/docs", routes.docs, methods=["GET"], include_in_schema=False),
        ],
        middleware=[Middleware(RequestContext, max_body=settings.max_request_bytes)],
        exception_handlers={ClassifierError: routes.on_classifier_error, HTTPException: routes.on_http_error},
    )
    app.state.settings = settings
    app.state.models = models
    app.state.manager = models.default
    app.state.records = records
    app.state.classifier = Classifier(settings, models.default, records)
    app.state.uploads = uploads
    app.state.openapi = None
    return app
