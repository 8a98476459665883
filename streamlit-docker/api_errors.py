"""How a failed API call reads on the dashboard: a headline, the details, and whether a rerun may fix it.

The client reports every failure as one ``RequestFailed`` (status, code,
message); what a person should read about it is decided here, not there.
"""

from __future__ import annotations

from dataclasses import dataclass

from classifier.client.api import UploadsNotServed
from classifier.client.transport import RequestFailed, retryable
from classifier.config import MiB

# Headlines for the statuses a user meets; the API's own message follows them.
_HEADLINES = {
    400: "The request was rejected",
    401: "Access denied: check API_KEY (or API_SIGV4 and the caller's credentials)",
    403: "Access denied: check API_KEY (or API_SIGV4 and the caller's execute-api:Invoke permission)",
    404: "Not found",
    413: "Too large",
    415: "Not a supported image",
    422: "Invalid image or parameter",
    429: "Too many requests: the API is throttling",
    501: "Not configured on this API",
    503: "No model available",
    504: "The API timed out",
}
# Failures with no HTTP answer, by the client's code.
_NO_ANSWER = {
    "connection_error": "The API is unreachable",
    "timeout": "The API did not answer in time",
}


@dataclass(frozen=True)
class Problem:
    """One failure as the page shows it."""

    headline: str
    detail: str
    reference: str  # "HTTP 415 · unsupported_media_type": what to quote to whoever runs the API


def headline(error: RequestFailed) -> str:
    if error.status is None:
        return _NO_ANSWER.get(error.code, "The request could not be sent")
    if error.status in _HEADLINES:
        return _HEADLINES[error.status]
    return "The API failed" if error.status >= 500 else "Unexpected answer from the API"


def transient(error: RequestFailed) -> bool:
    """Worth asking again later (the same request may succeed), unlike a rejected input or a missing bucket."""
    if error.status is None:
        return error.code in _NO_ANSWER
    return retryable(error.status)


def problem(error: RequestFailed) -> Problem:
    detail = error.message
    if error.code == "connection_error":
        detail += " Is the API running, and is API_URL right?"
    return Problem(headline(error), detail, _reference(error))


def image_problem(error: RequestFailed, *, via: str, size: int, inline_max_bytes: int) -> Problem:
    """``problem``, but for an image too large to send inline when the API has no uploads bucket:
    the limit, and what a larger image needs, rather than a bare 404."""
    if via == "s3" and isinstance(error, UploadsNotServed):
        # Under our limit, the API itself refused the image as too large: its limit is lower.
        limit = (f"the API takes up to {mib(inline_max_bytes)} in a request" if size > inline_max_bytes
                 else "that is over the API's limit for a request")
        return Problem(
            "Too large for this API",
            f"This image is {mib(size)}, and {limit}. A larger image goes through the API's uploads "
            "bucket, and this API has none (its UPLOADS_BUCKET is not set).",
            _reference(error),
        )
    return problem(error)


def mib(size: int) -> str:
    """``4 MiB``, ``4.3 MiB``: a size as the limits are stated."""
    return f"{round(size / MiB, 1):g} MiB"


def _reference(error: RequestFailed) -> str:
    return f"HTTP {error.status} · {error.code}" if error.status is not None else error.code
