"""Domain errors, each carrying the HTTP status and error code of the API contract.

Code raises these anywhere; the API maps them to JSON in one place
(``classifier.api.routes``), and the S3 trigger turns them into refusals or retries.
"""

from __future__ import annotations


class ClassifierError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def as_dict(self) -> dict[str, str]:
        """The ``error`` object of a response body or a JSON line."""
        return {"code": self.code, "message": self.message}


class InvalidRequest(ClassifierError):
    status, code = 400, "invalid_request"


class Forbidden(ClassifierError):
    """The caller is known but lacks a grant this request needs (reading every caller's records)."""

    status, code = 403, "forbidden"


class NotFound(ClassifierError):
    status, code = 404, "not_found"


class PayloadTooLarge(ClassifierError):
    status, code = 413, "payload_too_large"


class ImageTooLarge(ClassifierError):
    status, code = 413, "image_too_large"


class UnsupportedMediaType(ClassifierError):
    status, code = 415, "unsupported_media_type"


class InvalidImage(ClassifierError):
    status, code = 422, "invalid_image"


class InvalidParameter(ClassifierError):
    status, code = 422, "invalid_parameter"


class ModelUnavailable(ClassifierError):
    status, code = 503, "model_unavailable"


class UploadsDisabled(ClassifierError):
    status, code = 501, "not_configured"


class UploadChanged(ClassifierError):
    """The object was replaced after the event that named it (its ETag differs)."""

    status, code = 409, "upload_changed"


class StorageUnavailable(ClassifierError):
    """S3 could not be reached or refused us: worth retrying, and the operator's problem."""

    status, code = 503, "storage_unavailable"
