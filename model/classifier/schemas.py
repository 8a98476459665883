"""Response shapes, for the OpenAPI document only (responses are not re-validated)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from classifier.uploads import UPLOAD_CONTENT_TYPES


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class ModelRef(BaseModel):
    name: str
    version: str
    backend: str
    trained: bool


class Prediction(BaseModel):
    label: str
    index: int
    score: float


class ImageFacts(BaseModel):
    format: str
    width: int
    height: int
    sha256: str


class Timing(BaseModel):
    decode: float
    inference: float
    total: float


class Classification(BaseModel):
    id: str
    created_at: str
    model: ModelRef
    predictions: list[Prediction]
    image: ImageFacts
    timing_ms: Timing
    warning: str | None = None
    s3_key: str | None = None


class Batch(BaseModel):
    results: list[Classification]


class ClassificationPage(BaseModel):
    items: list[Classification]
    next_cursor: str | None


class ModelState(BaseModel):
    state: str
    backend: str
    name: str | None = None
    version: str | None = None
    trained: bool | None = None
    manifest: dict[str, Any] | None = None
    last_error: str | None = None


class Health(BaseModel):
    status: str


class Upload(BaseModel):
    """A presigned POST: send ``fields`` then the image as the form's last field, ``file``, to ``url``."""

    key: str
    url: str
    fields: dict[str, str]
    expires_in: int


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}


CLASSIFY_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One image as raw bytes, a multipart batch of `file` parts (up to 16), "
        "or JSON with a base64 `image` (or an `s3_key` from POST /uploads).",
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                    "required": ["file"],
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image": {"type": "string", "format": "byte"},
                        "s3_key": {"type": "string"},
                    },
                }
            },
        },
    }
}


UPLOAD_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The image about to be uploaded. The presigned policy pins the returned key, this "
        "Content-Type and a size of 1 byte to MAX_S3_IMAGE_BYTES (default 20 MiB).",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "content_type": {
                            "type": "string",
                            "enum": list(UPLOAD_CONTENT_TYPES),
                        },
                        "bytes": {"type": "integer", "minimum": 1, "description": "the image's size in bytes"},
                    },
                    "required": ["content_type", "bytes"],
                }
            }
        },
    }
}
