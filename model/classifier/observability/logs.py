"""Structured JSON logs: Powertools for AWS Lambda's formatter on the root logger.

Every module logs through the standard library (``logging.getLogger(__name__)``, with
``extra={...}`` fields); ``configure`` gives the root logger one stdout handler with
Powertools' ``LambdaPowertoolsFormatter``, so each record is one JSON line that
CloudWatch Logs parses (``level``, ``location``, ``message``, ``timestamp``,
``service``, the extra fields). ``bind`` adds keys to every line of the current
request (request and correlation ids, cold start, model version); they live in a
context variable, so concurrent requests on a local server's threads do not mix.

Importing Powertools costs cold-start time (docs/performance.md): the Lambda handler calls ``configure`` after the
model load has started on its thread, so the two overlap.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "classifier"


def _formatter() -> Any | None:
    for handler in logging.getLogger().handlers:
        if type(handler.formatter).__name__ == "LambdaPowertoolsFormatter":
            return handler.formatter
    return None


def configure(level: str = "INFO") -> None:
    """Send every log record to stdout as one Powertools JSON line (idempotent)."""
    if _formatter() is not None:
        return
    from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

    root = logging.getLogger()
    # The Lambda runtime installs its own plain-text handler; replace it.
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(LambdaPowertoolsFormatter(service=SERVICE, use_rfc3339=True, utc=True))
    root.addHandler(handler)
    root.setLevel(os.environ.get("POWERTOOLS_LOG_LEVEL") or level)


def bind(**keys: Any) -> None:
    """Add ``keys`` to every log line of the current request (None values are left out)."""
    formatter = _formatter()
    if formatter is not None:
        formatter.thread_safe_append_keys(**{k: v for k, v in keys.items() if v is not None})


def unbind() -> None:
    """Forget the current request's keys."""
    formatter = _formatter()
    if formatter is not None:
        formatter.thread_safe_clear_keys()
