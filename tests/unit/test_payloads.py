"""The domain errors (``classifier.errors``) and the JSON body parser (``classifier.api.payloads``), in process.

The API maps each error to its status and code in one place (tests/unit/test_errors.py checks that over
HTTP); these check the values themselves, so a changed code or message is caught here first, and
mutation testing (``make mutation``) scores the two modules with this file alone.
"""

from __future__ import annotations

import pytest

from classifier import errors
from classifier.api.payloads import json_object
from classifier.errors import ClassifierError, InvalidRequest

EXAMPLE = '{"image": "<base64>"}'

# The README's error table, and the codes the uploads path adds.
CONTRACT = [
    (errors.InvalidRequest, 400, "invalid_request"),
    (errors.NotFound, 404, "not_found"),
    (errors.PayloadTooLarge, 413, "payload_too_large"),
    (errors.ImageTooLarge, 413, "image_too_large"),
    (errors.UnsupportedMediaType, 415, "unsupported_media_type"),
    (errors.InvalidImage, 422, "invalid_image"),
    (errors.InvalidParameter, 422, "invalid_parameter"),
    (errors.ModelUnavailable, 503, "model_unavailable"),
    (errors.UploadsDisabled, 501, "not_configured"),
    (errors.UploadChanged, 409, "upload_changed"),
    (errors.StorageUnavailable, 503, "storage_unavailable"),
    (errors.ClassifierError, 500, "internal_error"),
]


@pytest.mark.parametrize(("kind", "status", "code"), CONTRACT, ids=[c[2] for c in CONTRACT])
def test_each_error_carries_its_status_code_and_message(kind: type[ClassifierError], status: int,
                                                        code: str) -> None:
    error = kind("the image is 5 bytes; the limit is 4")
    assert (error.status, error.code) == (status, code)
    # the message is what the client reads, and what a log line or a re-raise shows
    assert error.message == "the image is 5 bytes; the limit is 4"
    assert str(error) == "the image is 5 bytes; the limit is 4" and error.args == (error.message,)
    assert isinstance(error, ClassifierError)


def test_a_json_object_is_returned_as_it_was_sent() -> None:
    body = '{"image": "aGVsbG8=", "nested": {"list": [1, 2.5, null, true]}, "text": "caf\u00e9"}'.encode()
    assert json_object(body, EXAMPLE) == {"image": "aGVsbG8=", "nested": {"list": [1, 2.5, None, True]},
                                          "text": "caf\u00e9"}
    assert json_object(b"{}", EXAMPLE) == {}


def test_an_empty_body_names_what_to_send() -> None:
    with pytest.raises(InvalidRequest) as refused:
        json_object(b"", EXAMPLE)
    assert refused.value.message == 'the request body is empty: send {"image": "<base64>"}'


@pytest.mark.parametrize("body", [b'{"image": ', b"image=abc", b"\xff\xfe\x00not json", b"{'single': 'quotes'}"])
def test_malformed_json_is_an_invalid_request(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as refused:
        json_object(body, EXAMPLE)
    assert refused.value.message.startswith("the body is not valid JSON: ")
    # json's own reason follows, and no traceback is chained for a log to show as "During handling..."
    assert len(refused.value.message) > len("the body is not valid JSON: ")
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


@pytest.mark.parametrize("body", [b"[1, 2]", b'"a string"', b"42", b"null", b"true"])
def test_json_that_is_not_an_object_is_an_invalid_request(body: bytes) -> None:
    with pytest.raises(InvalidRequest) as refused:
        json_object(body, EXAMPLE)
    assert refused.value.message == "the JSON body must be an object"
