"""Domain errors, each carrying the HTTP status and error code of the API contract.

Code raises these anywhere; ``classifier.api`` maps them to JSON in one place.
"""

from __future__ import annotations


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(ApiError):
    status, code = 400, "invalid_request"


class NotFound(ApiError):
    status, code = 404, "not_found"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class ImageTooLarge(ApiError):
    status, code = 413, "image_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class InvalidImage(ApiError):
    status, code = 422, "invalid_image"


class InvalidParameter(ApiError):
    status, code = 422, "invalid_parameter"


class ModelUnavailable(ApiError):
    status, code = 503, "model_unavailable"


class UploadsDisabled(ApiError):
    status, code = 501, "not_configured"


class UploadChanged(ApiError):
    """The object was replaced after the event that named it (its ETag differs)."""

    status, code = 409, "upload_changed"


class StorageUnavailable(ApiError):
    """S3 could not be reached or refused us: worth retrying, and the operator's problem."""

    status, code = 503, "storage_unavailable"
