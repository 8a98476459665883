"""A classify request's body, whatever its form, as ``ImageInput`` values.

Raw bytes (``image/*``, ``application/octet-stream``), ``multipart/form-data``
with ``file`` parts (a batch), JSON ``{"image": "<base64>"}`` (a ``data:`` URL
too) and JSON ``{"s3_key": "uploads/..."}`` (read from the uploads bucket).
Each image is admitted here, once, under the byte limit of the way it came in:
``MAX_IMAGE_BYTES`` inline, ``MAX_S3_IMAGE_BYTES`` through S3.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from classifier.api.offload import blocking
from classifier.api.payloads import json_object
from classifier.aws.uploads import Uploads, check_upload_key
from classifier.config import Settings
from classifier.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from classifier.serving.service import ImageInput


async def read_images(request: Request, settings: Settings, uploads: Uploads) -> list[ImageInput]:
    """The image(s) of a ``POST /classify``; 400/413/415 for a body that holds none we can take."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        return await _read_multipart(request, settings, uploads)
    if media_type == "application/json" or media_type.endswith("+json"):
        payload = json_object(await request.body(), '{"image": "<base64>"}')
        if "s3_key" in payload and "image" in payload:
            raise InvalidRequest("send either 'image' or 's3_key', not both")
        # Without an uploads bucket an s3_key is not part of this API (nor of its document): the body
        # is one without an image.
        if "s3_key" in payload and uploads.enabled:
            key = check_upload_key(payload["s3_key"])
            data = await blocking(request, uploads.read, key)
            return [ImageInput(data, None, settings.max_s3_image_bytes, {"s3_key": key})]
        return [_inline(_decode_json_image(payload, s3_key=uploads.enabled), None, settings, uploads)]
    if media_type.startswith("image/") or media_type in ("application/octet-stream", ""):
        body = await request.body()
        if not body:
            raise InvalidRequest("the request body is empty: send an image")
        return [_inline(body, None, settings, uploads)]
    raise UnsupportedMediaType(
        f"Content-Type {media_type!r} is not accepted: send image/*, application/octet-stream, "
        "multipart/form-data or application/json"
    )


def _inline(data: bytes, name: str | None, settings: Settings, uploads: Uploads) -> ImageInput:
    """An image sent in the request body, within ``MAX_IMAGE_BYTES``."""
    try:
        return ImageInput(data, name, settings.max_image_bytes)
    except PayloadTooLarge as exc:
        if uploads.enabled and settings.max_image_bytes < settings.max_s3_image_bytes:
            raise PayloadTooLarge(f"{exc.message} (use POST /uploads for larger images)") from None
        raise


async def _read_multipart(request: Request, settings: Settings, uploads: Uploads) -> list[ImageInput]:
    async with request.form(max_files=1000, max_fields=1000) as form:
        parts = form.getlist("file")
        if not parts:
            raise InvalidRequest("the multipart body has no 'file' part")
        if len(parts) > settings.max_batch:
            raise PayloadTooLarge(f"{len(parts)} files in one request; the limit is {settings.max_batch}")
        images: list[ImageInput] = []
        for i, part in enumerate(parts):
            if not isinstance(part, UploadFile):
                raise InvalidRequest(f"part {i + 1} named 'file' is a text field, not a file")
            data = await part.read()
            if not data:
                raise InvalidRequest(f"file {i + 1} ({part.filename or 'unnamed'}) is empty")
            try:
                images.append(_inline(data, part.filename or None, settings, uploads))
            except PayloadTooLarge as exc:
                if len(parts) == 1:
                    raise
                raise PayloadTooLarge(f"image {i + 1}: {exc.message}") from None
    return images


def _decode_json_image(payload: dict[str, Any], *, s3_key: bool) -> bytes:
    if "image" not in payload:
        alternative = " (or an 's3_key' from POST /uploads)" if s3_key else ""
        raise InvalidRequest(f"the JSON body needs an 'image' field holding base64 image bytes{alternative}")
    encoded = payload["image"]
    if not isinstance(encoded, str) or not encoded:
        raise InvalidRequest("'image' must be a non-empty base64 string")
    if encoded.startswith("data:") and "," in encoded:  # a data URL, as browsers produce
        encoded = encoded.split(",", 1)[1]
    try:
        return base64.b64decode("".join(encoded.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("'image' is not valid base64") from None
