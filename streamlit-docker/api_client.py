"""A small typed client for the classifier's HTTP API (DESIGN.md §4), as the dashboard uses it.

Every failure, whether the API is down, slow, or answers with an error, surfaces
as one exception type, :class:`ApiError`, carrying a message a person can read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict, cast

import requests

# The API's defaults (MAX_BATCH, MAX_IMAGE_BYTES). A batch is cut to stay within
# both, so a multipart body never nears the request limit (6 MB in Lambda).
MAX_BATCH_FILES = 16
MAX_BATCH_BYTES = 4 * 1024 * 1024

# A Lambda cold start (model load from EFS) can take several seconds; API
# Gateway itself gives up after 29 s, so waiting longer gains nothing.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0


class ModelRef(TypedDict):
    name: str
    version: str
    backend: str
    trained: bool


class Prediction(TypedDict):
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


class Classification(TypedDict):
    id: str
    created_at: str
    model: ModelRef
    predictions: list[Prediction]
    image: ImageFacts
    timing_ms: Timing
    warning: NotRequired[str]


class ModelState(TypedDict, total=False):
    state: str
    backend: str
    name: str
    version: str
    trained: bool
    loaded_at: str
    load_ms: float
    threads: int
    refresh_seconds: float
    manifest: dict[str, Any]
    last_error: str | None


@dataclass(frozen=True)
class ClassificationPage:
    items: list[Classification]
    next_cursor: str | None


@dataclass(frozen=True)
class ImageUpload:
    name: str
    data: bytes
    content_type: str = "application/octet-stream"


# Headlines for the statuses a user meets; the API's own message follows them.
_TITLES = {
    400: "The request was rejected",
    401: "Access denied: check API_KEY",
    403: "Access denied: check API_KEY",
    404: "Not found",
    413: "Too large",
    415: "Not a supported image",
    422: "Invalid image or parameter",
    429: "Too many requests: the API is throttling",
    503: "No model available",
    504: "The API timed out",
}


class ApiError(Exception):
    """A failed API call: ``status`` is None when no HTTP answer came back."""

    def __init__(self, message: str, *, status: int | None = None, code: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    @property
    def title(self) -> str:
        if self.code == "unreachable":
            return "The API is unreachable"
        if self.code == "timeout":
            return "The API did not answer in time"
        if self.status in _TITLES:
            return _TITLES[self.status]
        if self.status is not None and self.status >= 500:
            return "The API failed"
        return "Unexpected answer from the API"

    @property
    def transient(self) -> bool:
        """Worth retrying later (the same request may succeed), unlike a rejected input."""
        return self.status is None or self.status == 429 or self.status >= 500

    @property
    def about_input(self) -> bool:
        """The API rejected what was sent (one bad image can fail a whole batch)."""
        return self.status in (400, 413, 415, 422)

    def __str__(self) -> str:
        where = f"HTTP {self.status}, " if self.status is not None else ""
        return f"{self.title}: {self.message} ({where}{self.code})"


@dataclass(frozen=True)
class Outcome:
    """What became of one image: its classification, or the error that stopped it."""

    upload: ImageUpload
    result: Classification | None = None
    error: ApiError | None = None


class ClassifierApi:
    def __init__(self, base_url: str, api_key: str | None = None, *,
                 timeout: tuple[float, float] = (CONNECT_TIMEOUT, READ_TIMEOUT),
                 session: requests.Session | None = None) -> None:
        # API Gateway URLs end with the stage (".../prod/"): keep the path, drop the slash.
        self.base_url = base_url.strip().rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers["Accept"] = "application/json"
        if api_key:
            self.session.headers["x-api-key"] = api_key

    def model(self) -> ModelState:
        """``GET /model``: the serving model's manifest and load state."""
        return cast(ModelState, self._call("GET", "/model"))

    def classifications(self, limit: int = 20, cursor: str | None = None) -> ClassificationPage:
        """``GET /classifications``: one page of stored records, newest first."""
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        body = self._call("GET", "/classifications", params=params)
        return ClassificationPage(items=list(body.get("items") or []), next_cursor=body.get("next_cursor"))

    def classify(self, images: Sequence[ImageUpload], top_k: int = 5) -> list[Classification]:
        """``POST /classify``: one request, a multipart batch; one result per image, in order."""
        if not images:
            return []
        files = [("file", (image.name, image.data, image.content_type)) for image in images]
        body = self._call("POST", "/classify", params={"top_k": top_k}, files=files)
        results = body.get("results", [body])  # a batch, or one image
        if len(results) != len(images) or not all(isinstance(r, dict) and "predictions" in r for r in results):
            raise ApiError(f"expected {len(images)} classification(s), got something else",
                           status=200, code="bad_response")
        return cast(list[Classification], results)

    def classify_each(self, images: Sequence[ImageUpload], top_k: int = 5) -> list[Outcome]:
        """Classify any number of images in as few requests as the API's limits allow.

        When a batch is rejected because of its input, its images are retried one
        by one, so a single unreadable file fails alone and the rest still get
        their predictions (a rejected batch stores no records, so nothing repeats).
        """
        outcomes: list[Outcome] = []
        for batch in plan_batches(images):
            try:
                results = self.classify(batch, top_k)
            except ApiError as exc:
                if len(batch) > 1 and exc.about_input:
                    outcomes.extend(self._classify_one(image, top_k) for image in batch)
                else:
                    outcomes.extend(Outcome(image, error=exc) for image in batch)
            else:
                outcomes.extend(Outcome(image, result=r) for image, r in zip(batch, results, strict=True))
        return outcomes

    def _classify_one(self, image: ImageUpload, top_k: int) -> Outcome:
        try:
            return Outcome(image, result=self.classify([image], top_k)[0])
        except ApiError as exc:
            return Outcome(image, error=exc)

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        url = self.base_url + path
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise ApiError(f"no answer from {url} within {self.timeout[1]:g} s", code="timeout") from None
        except requests.ConnectionError as exc:
            raise ApiError(f"cannot connect to {self.base_url} ({_reason(exc)}): is the API running, "
                           "and is API_URL right?", code="unreachable") from None
        except requests.RequestException as exc:
            raise ApiError(f"the request to {url} failed: {_reason(exc)}", code="request_failed") from None
        if response.status_code >= 400:
            raise _error_from(response)
        try:
            body = response.json()
        except ValueError:
            raise ApiError(f"{url} did not answer with JSON", status=response.status_code,
                           code="bad_response") from None
        if not isinstance(body, dict):
            raise ApiError(f"{url} answered with JSON that is not an object", status=response.status_code,
                           code="bad_response")
        return body


def plan_batches(images: Sequence[ImageUpload], max_files: int = MAX_BATCH_FILES,
                 max_bytes: int = MAX_BATCH_BYTES) -> Iterator[list[ImageUpload]]:
    """Consecutive groups of at most ``max_files`` images and ``max_bytes`` (a larger image goes alone)."""
    batch: list[ImageUpload] = []
    size = 0
    for image in images:
        if batch and (len(batch) == max_files or size + len(image.data) > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(image)
        size += len(image.data)
    if batch:
        yield batch


def _error_from(response: requests.Response) -> ApiError:
    """The API's ``{"error": {...}}``, API Gateway's ``{"message": ...}``, or whatever else came back."""
    status = response.status_code
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return ApiError(str(error["message"]), status=status, code=str(error.get("code") or "error"))
        if body.get("message"):  # API Gateway: missing API key, throttling, integration timeout
            return ApiError(str(body["message"]), status=status, code="gateway")
    text = " ".join(re.sub(r"<[^>]+>", " ", response.text).split())[:200]
    return ApiError(text or response.reason or "no details", status=status, code="http_error")


def _reason(exc: BaseException) -> str:
    """The useful part of a requests/urllib3 error ("Connection refused"), not its nested repr."""
    found = re.findall(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    return found[-1].strip().lower() if found else type(exc).__name__
