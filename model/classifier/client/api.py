"""A Python client for the classifier API: the engine of ``python -m classifier classify`` and of the dashboard.

For each image it picks the way in by size: up to ``inline_max_bytes`` (the
server's ``MAX_IMAGE_BYTES``, ``Settings.max_image_bytes`` by default) the bytes go in the body of
``POST /classify``; larger images go through S3 (``POST /uploads``, the
presigned POST straight to the bucket, then ``POST /classify {"s3_key"}``), which
only a deployment with an uploads bucket serves (its ``GET /openapi.json`` says).
A ``model`` (the client's, or a call's) sends images to ``POST /models/{model}/classify``
instead: one of the models the API serves (``GET /models``).
An inline request the server answers with 413 ``payload_too_large`` (its limit
is lower than ours) is retried through S3. Many small images go as multipart
batches (``classify_each``); a batch rejected for its input is retried one
image at a time, so one bad file fails alone.

Every failure is a ``RequestFailed`` (status, code, message); retries, SigV4
and the API key are ``classifier.client.transport``'s. Standard library, urllib3
and ``classifier.config`` only: the dashboard image holds this folder without the runtime.
"""

from __future__ import annotations

import json
import mimetypes
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast
from urllib.parse import quote, urlsplit

import urllib3

from classifier.client.transport import (
    ApiHttp,
    RequestFailed,
    Response,
    RetryEvent,
    RetryPolicy,
    json_or_raise,
    region_from_url,
    s3_error,
    service_for_url,
    sigv4_signer,
)
from classifier.config import Settings

# The API's defaults: MAX_IMAGE_BYTES, MAX_S3_IMAGE_BYTES and MAX_BATCH (files in one multipart request).
DEFAULT_INLINE_MAX_BYTES = Settings.max_image_bytes
DEFAULT_S3_MAX_BYTES = Settings.max_s3_image_bytes
MAX_BATCH_FILES = Settings.max_batch
# The API's answers to input it cannot take: a whole batch can be refused for one bad file.
_INPUT_REJECTED = (400, 413, 415, 422)


class ModelRef(TypedDict):
    name: str
    version: str
    backend: str
    trained: bool


class ClientPrediction(TypedDict):
    label: str
    index: int
    score: float


class ImageFacts(TypedDict):
    format: str
    width: int
    height: int
    sha256: str


class Timing(TypedDict):
    decode: float
    inference: float
    total: float


class ClientClassification(TypedDict):
    """``POST /classify``'s answer for one image, and a stored record of ``GET /classifications``."""

    id: str
    created_at: str
    model: ModelRef
    predictions: list[ClientPrediction]
    image: ImageFacts
    timing_ms: Timing
    warning: NotRequired[str]
    s3_key: NotRequired[str]


class ModelSummary(TypedDict):
    """One entry of ``GET /models``."""

    name: str
    version: str | None
    architecture: str | None
    precision: str | None
    labels: int | None
    loaded: bool
    problem: NotRequired[str]


class ModelList(TypedDict):
    """``GET /models``: the served models; ``default`` is the one ``POST /classify`` uses."""

    default: str
    models: list[ModelSummary]


class UploadsNotServed(RequestFailed):
    """The API has no uploads bucket (it serves no ``POST /uploads``), which an image over its inline
    limit needs."""


class ModelState(TypedDict, total=False):
    """``GET /model``: the serving model's manifest and load state."""

    state: str
    backend: str
    name: str
    version: str
    trained: bool
    loaded_at: str
    load_ms: float
    threads: int
    spinning: bool
    refresh_seconds: float
    manifest: dict[str, Any]
    last_error: str | None


@dataclass(frozen=True)
class ClassificationPage:
    items: list[ClientClassification]
    next_cursor: str | None


@dataclass(frozen=True)
class ImageFile:
    """An image to classify: a file's name (or path) and bytes, and the type its sender declared, if any."""

    name: str
    data: bytes
    content_type: str | None = None


@dataclass
class Outcome:
    """What became of one image: ``result`` (the API's classification) or the ``error`` that stopped it."""

    name: str
    via: str  # "inline" or "s3"
    latency_ms: float
    result: ClientClassification | None = None
    error: RequestFailed | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.name, "via": self.via, "latency_ms": round(self.latency_ms, 1)}
        if self.error is not None:
            out["error"] = self.error.as_dict()
        else:
            out["result"] = self.result
        return out


def sniff_content_type(data: bytes, name: str = "", declared: str | None = None) -> str | None:
    """The image type from the magic bytes; else the declared type, else the file name's, if an image type."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:2] == b"BM":
        return "image/bmp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    guessed = declared or mimetypes.guess_type(name)[0]
    return guessed if guessed and guessed.startswith("image/") else None


def _query_time(value: datetime | str) -> str:
    """ISO 8601 UTC, as the API's ``since`` and ``until`` take it."""
    if isinstance(value, str):
        return value
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ClassifierClient:
    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        sigv4: bool = False,
        region: str | None = None,
        service: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        inline_max_bytes: int = DEFAULT_INLINE_MAX_BYTES,
        on_retry: Callable[[RetryEvent], None] | None = None,
        max_connections: int = 8,
        model: str | None = None,
    ) -> None:
        """``model``: the served model to classify with (``POST /models/{model}/classify``); None: the API's
        default model (``POST /classify``). Each classify call may name another."""
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the API URL must be an http(s) URL, got {url!r}")
        self.http = ApiHttp(
            url.strip().rstrip("/"), api_key=api_key,
            signer=sigv4_signer(service or service_for_url(url), region or region_from_url(url)) if sigv4 else None,
            timeout=urllib3.Timeout(connect=connect_timeout, read=timeout), retry=retry or RetryPolicy(),
            on_retry=on_retry, max_connections=max_connections,
        )
        self.inline_max_bytes = inline_max_bytes
        self.default_model = model
        self._operations: set[tuple[str, str]] | None = None

    @property
    def base_url(self) -> str:
        return self.http.base_url

    @property
    def api_key(self) -> str | None:
        return self.http.api_key

    # -- reading ---------------------------------------------------------------------
    def model(self, name: str | None = None) -> ModelState:
        """``GET /model`` (the default model), or ``GET /models/{name}``: a model's manifest and load state."""
        path = "/model" if name is None else f"/models/{quote(name, safe='')}"
        return cast(ModelState, json_or_raise(self.request("GET", path)))

    def models(self) -> ModelList:
        """``GET /models``: every model the API serves, and which one ``POST /classify`` uses."""
        return cast(ModelList, json_or_raise(self.request("GET", "/models")))

    def operations(self) -> set[tuple[str, str]]:
        """(method, path) of every operation the API serves, from its document (read once per client):
        a deployment's ``GET /openapi.json`` lists exactly what it serves."""
        if self._operations is None:
            spec = json_or_raise(self.request("GET", "/openapi.json"))
            self._operations = {(method.upper(), path) for path, ops in (spec.get("paths") or {}).items()
                                for method in ops}
        return self._operations

    def classifications(self, *, limit: int = 20, cursor: str | None = None, label: str | None = None,
                        model_version: str | None = None, since: datetime | str | None = None,
                        until: datetime | str | None = None, model: str | None = None) -> ClassificationPage:
        """``GET /classifications``: one page of stored records, newest first; each filter only when given
        (``model``: the model's name)."""
        query = {"limit": str(limit)}
        optional = {"cursor": cursor, "label": label, "model_version": model_version, "model": model,
                    "since": None if since is None else _query_time(since),
                    "until": None if until is None else _query_time(until)}
        query.update({name: value for name, value in optional.items() if value is not None})
        body = json_or_raise(self.request("GET", "/classifications", query=query))
        return ClassificationPage(items=list(body.get("items") or []), next_cursor=body.get("next_cursor"))

    def model_versions(self) -> dict[str, Any]:
        """``GET /model/versions``: every installed version, newest first, with its latest evaluation."""
        return json_or_raise(self.request("GET", "/model/versions"))

    def evaluation(self, version: str) -> dict[str, Any]:
        """``GET /model/versions/{version}/evaluation``: that version's latest report, whole."""
        return json_or_raise(self.request("GET", f"/model/versions/{quote(version, safe='')}/evaluation"))

    def uploads_enabled(self) -> bool:
        """Whether the API has an uploads bucket (images over the inline limit need one): whether its
        document lists ``POST /uploads``."""
        return ("POST", "/uploads") in self.operations()

    # -- classifying -----------------------------------------------------------------
    def classify_file(self, path: str | Path, *, top_k: int = 5, model: str | None = None) -> Outcome:
        """Classify one file, inline or through S3 by its size; never raises for a bad file or answer."""
        started = time.perf_counter()
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            error = RequestFailed(None, "file_error", f"cannot read {path}: {exc.strerror or exc}")
            return Outcome(str(path), "inline", _ms_since(started), error=error)
        return self.classify_image(ImageFile(str(path), data), top_k=top_k, model=model)

    def classify_image(self, image: ImageFile, *, top_k: int = 5, model: str | None = None) -> Outcome:
        """Classify one image, inline or through S3 by its size; never raises for a bad image or answer."""
        started = time.perf_counter()
        via = "inline"
        content_type = sniff_content_type(image.data, image.name, image.content_type)
        try:
            if len(image.data) <= self.inline_max_bytes:
                try:
                    result = self.classify_bytes(image.data, content_type, top_k=top_k, model=model)
                except RequestFailed as exc:
                    if exc.status != 413 or exc.code == "image_too_large":
                        raise
                    via = "s3"  # the server's inline limit is below ours
                    result = self.classify_via_s3(image.data, content_type, top_k=top_k, model=model)
            else:
                via = "s3"
                result = self.classify_via_s3(image.data, content_type, top_k=top_k, model=model)
        except RequestFailed as exc:
            return Outcome(image.name, via, _ms_since(started), error=exc)
        return Outcome(image.name, via, _ms_since(started), result=result)

    def classify_each(self, images: Sequence[ImageFile], *, top_k: int = 5,
                      model: str | None = None) -> list[Outcome]:
        """Classify any number of images in as few requests as the API's limits allow; outcomes in order.

        Small images go in multipart batches (at most ``MAX_BATCH_FILES`` files
        and ``inline_max_bytes`` in all); an image alone in its batch goes as
        ``classify_image`` sends it, through S3 when it is large. When a batch is
        rejected because of its input, its images are retried one by one, so a
        single unreadable file fails alone and the rest still get their
        predictions (a rejected batch stores no records, so nothing repeats).
        """
        outcomes: list[Outcome] = []
        for batch in plan_batches(images, max_files=MAX_BATCH_FILES, max_bytes=self.inline_max_bytes):
            if len(batch) == 1:
                outcomes.append(self.classify_image(batch[0], top_k=top_k, model=model))
                continue
            started = time.perf_counter()
            try:
                results = self.classify_batch(batch, top_k=top_k, model=model)
            except RequestFailed as exc:
                if exc.status in _INPUT_REJECTED:
                    outcomes.extend(self.classify_image(image, top_k=top_k, model=model) for image in batch)
                else:
                    outcomes.extend(Outcome(image.name, "inline", _ms_since(started), error=exc) for image in batch)
            else:
                latency = _ms_since(started)
                outcomes.extend(Outcome(image.name, "inline", latency, result=result)
                                for image, result in zip(batch, results, strict=True))
        return outcomes

    def classify_batch(self, images: Sequence[ImageFile], *, top_k: int = 5,
                       model: str | None = None) -> list[ClientClassification]:
        """``POST /classify`` with one multipart ``file`` part per image; one result per image, in order."""
        form = [("file", (image.name, image.data,
                          sniff_content_type(image.data, image.name, image.content_type) or "application/octet-stream"))
                for image in images]
        body, form_type = urllib3.encode_multipart_formdata(form)
        response = self.request("POST", self.classify_path(model), body, {"content-type": form_type},
                                query={"top_k": str(top_k)})
        payload = json_or_raise(response)
        results = payload.get("results", [payload])  # a batch, or one image
        if len(results) != len(images) or not all(isinstance(r, dict) and "predictions" in r for r in results):
            raise RequestFailed(response.status, "bad_response",
                                f"expected {len(images)} classification(s), got something else")
        return cast(list[ClientClassification], results)

    def classify_bytes(self, data: bytes, content_type: str | None = None, *, top_k: int = 5,
                       model: str | None = None) -> ClientClassification:
        """``POST /classify`` with the image as the body."""
        response = self.request("POST", self.classify_path(model), data,
                                {"content-type": content_type or "application/octet-stream"},
                                query={"top_k": str(top_k)})
        return cast(ClientClassification, json_or_raise(response))

    def classify_via_s3(self, data: bytes, content_type: str | None, *, top_k: int = 5,
                        model: str | None = None) -> ClientClassification:
        """``POST /uploads``, the presigned POST to S3, then ``POST /classify {"s3_key"}``."""
        if content_type is None:
            raise RequestFailed(None, "unsupported_media_type",
                                "not a JPEG, PNG, WebP, GIF, BMP or TIFF file; only images can be uploaded")
        upload = self.create_upload(content_type, len(data))
        self.upload(upload, data)
        return self.classify_key(upload["key"], top_k=top_k, model=model)

    def create_upload(self, content_type: str, size: int) -> dict[str, Any]:
        """``POST /uploads``: a presigned POST for one new key; ``UploadsNotServed`` without a bucket."""
        body = json.dumps({"content_type": content_type, "bytes": size}).encode()
        try:
            return json_or_raise(self.request("POST", "/uploads", body, {"content-type": "application/json"}))
        except RequestFailed as exc:
            if exc.status == 404 and exc.code == "not_found":  # no such route: this API has no uploads bucket
                raise UploadsNotServed(exc.status, exc.code,
                                       "this API has no uploads bucket (it serves no POST /uploads)") from None
            raise

    def upload(self, upload: Mapping[str, Any], data: bytes) -> None:
        """Send ``data`` to S3 with a presigned POST: its fields in order, the file last (S3 requires it)."""
        form: list[tuple[str, Any]] = [(name, str(value)) for name, value in upload["fields"].items()]
        content_type = str(upload["fields"].get("Content-Type", "application/octet-stream"))
        form.append(("file", ("image", data, content_type)))
        body, form_type = urllib3.encode_multipart_formdata(form)
        response = self.http.send("POST", str(upload["url"]), body, {"content-type": form_type}, sign=False)
        if not 200 <= response.status < 300:
            raise s3_error(response)

    def classify_key(self, key: str, *, top_k: int = 5, model: str | None = None) -> ClientClassification:
        body = json.dumps({"s3_key": key}).encode()
        response = self.request("POST", self.classify_path(model), body, {"content-type": "application/json"},
                                query={"top_k": str(top_k)})
        return cast(ClientClassification, json_or_raise(response))

    def classify_path(self, model: str | None = None) -> str:
        """Where images go: ``POST /models/{model}/classify`` for a named model (this call's, else the
        client's), ``POST /classify`` (the API's default model) without one."""
        name = model or self.default_model
        return "/classify" if name is None else f"/models/{quote(name, safe='')}/classify"

    def request(self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None,
                query: Mapping[str, str] | None = None) -> Response:
        """One API call (signed, with the API key), retried on 429/5xx, connection errors and timeouts."""
        return self.http.request(method, path, body, headers, query)


def plan_batches(images: Sequence[ImageFile], *, max_files: int = MAX_BATCH_FILES,
                 max_bytes: int = DEFAULT_INLINE_MAX_BYTES) -> Iterator[list[ImageFile]]:
    """Consecutive groups of at most ``max_files`` images and ``max_bytes`` (a larger image goes alone)."""
    batch: list[ImageFile] = []
    size = 0
    for image in images:
        if batch and (len(batch) == max_files or size + len(image.data) > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(image)
        size += len(image.data)
    if batch:
        yield batch


def classify_files(client: ClassifierClient, paths: Sequence[str], *, top_k: int = 5, concurrency: int = 4,
                   on_done: Callable[[Outcome], None] | None = None, model: str | None = None) -> list[Outcome]:
    """Classify ``paths`` with up to ``concurrency`` requests in flight; results in input order."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    results: list[Outcome | None] = [None] * len(paths)
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {pool.submit(client.classify_file, path, top_k=top_k, model=model): i
                   for i, path in enumerate(paths)}
        for future in as_completed(futures):
            outcome = future.result()
            results[futures[future]] = outcome
            if on_done is not None:
                on_done(outcome)
    return [r for r in results if r is not None]


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
