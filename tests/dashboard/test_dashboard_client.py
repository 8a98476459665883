"""The package's client as the dashboard uses it, against a stub server: what API Gateway and proxies
answer that the local API does not, and how each failure reads on the page (api_errors)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from classifier.client.api import ClassifierClient, ImageFile, UploadsNotServed, plan_batches
from classifier.client.transport import RequestFailed, RetryPolicy

import helpers.dashboard  # noqa: F401  (puts streamlit-docker/ on sys.path)
from api_errors import headline, transient

# One try: a stub's 5xx would otherwise be retried with backoff.
ONCE = RetryPolicy(attempts=1)


@dataclass
class Stub:
    """A canned answer per path; records the requests it saw."""

    url: str
    answers: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def answer(self, path: str, status: int, body: object, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.answers[path] = (status, content_type, data)


@pytest.fixture
def stub() -> Iterator[Stub]:
    state = Stub(url="")

    class Handler(BaseHTTPRequestHandler):
        def handle_one(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            path = self.path.split("?", 1)[0]
            state.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
            if path.startswith("/slow/"):
                state.release.wait(30)  # until the test is over: the client must give up first
                return  # and it has: nobody is left to answer
            status, content_type, data = state.answers.get(path, (404, "application/json", b"{}"))
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = handle_one

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


def test_api_key_is_sent_as_x_api_key(stub: Stub) -> None:
    # GIVEN a client configured with an API key
    stub.answer("/model", 200, {"state": "loaded", "backend": "onnx", "version": "v1", "trained": True})
    api = ClassifierClient(stub.url, api_key="s3cret")

    # WHEN it asks for the model
    model = api.model()

    # THEN the key travelled in the header API Gateway checks
    assert model["version"] == "v1"
    assert stub.seen[-1][2]["x-api-key"] == "s3cret"


def test_no_api_key_means_no_header(stub: Stub) -> None:
    stub.answer("/model", 200, {"state": "loaded", "backend": "onnx"})
    ClassifierClient(stub.url).model()
    assert "x-api-key" not in stub.seen[-1][2]


def test_stage_path_of_the_api_url_is_kept(stub: Stub) -> None:
    # GIVEN an API Gateway style URL, with a stage and a trailing slash
    stub.answer("/prod/classifications", 200, {"items": [], "next_cursor": None})

    # WHEN the history is asked for, with a cursor
    page = ClassifierClient(f"{stub.url}/prod/").classifications(limit=7, cursor="abc")

    # THEN the request went below the stage, with the paging parameters and no filter
    assert page.items == [] and page.next_cursor is None
    method, path, _ = stub.seen[-1]
    assert method == "GET" and path.startswith("/prod/classifications?")
    assert parse_qs(urlsplit(path).query) == {"limit": ["7"], "cursor": ["abc"]}


def test_history_filters_travel_as_the_apis_query_parameters(stub: Stub) -> None:
    # GIVEN a page of one record
    record = {"id": "r1", "predictions": [{"label": "tabby", "index": 281, "score": 0.5}]}
    stub.answer("/classifications", 200, {"items": [record], "next_cursor": "next"})
    since = datetime(2026, 11, 22, 11, 0, tzinfo=timezone(timedelta(hours=1)))

    # WHEN it is asked for with every filter (times as datetimes or as the API's own strings)
    page = ClassifierClient(stub.url).classifications(limit=5, label="tabby", model_version="v1", since=since,
                                                      until="2026-11-23T00:00:00Z")

    # THEN each filter is a query parameter, times in ISO 8601 UTC
    assert page.items == [record] and page.next_cursor == "next"
    assert parse_qs(urlsplit(stub.seen[-1][1]).query) == {
        "limit": ["5"], "label": ["tabby"], "model_version": ["v1"],
        "since": ["2026-11-22T10:00:00Z"], "until": ["2026-11-23T00:00:00Z"],
    }


def test_api_gateway_forbidden_reads_as_a_key_problem(stub: Stub) -> None:
    # GIVEN API Gateway's answer to a missing or wrong API key
    stub.answer("/model", 403, {"message": "Forbidden"})

    # WHEN the client calls
    with pytest.raises(RequestFailed) as caught:
        ClassifierClient(stub.url).model()

    # THEN the error says what to check
    assert caught.value.status == 403
    assert headline(caught.value).startswith("Access denied: check API_KEY")
    assert caught.value.message == "Forbidden"


def test_the_apis_error_body_is_kept(stub: Stub) -> None:
    stub.answer("/classify", 415, {"error": {"code": "unsupported_media_type", "message": "not an image"}})
    with pytest.raises(RequestFailed) as caught:
        ClassifierClient(stub.url).classify_batch([ImageFile("a.png", b"x", "image/png")])
    assert (caught.value.status, caught.value.code, caught.value.message) == (415, "unsupported_media_type",
                                                                              "not an image")
    assert headline(caught.value) == "Not a supported image"
    assert not transient(caught.value)


def test_a_batch_rejected_for_its_input_is_retried_one_image_at_a_time(stub: Stub) -> None:
    # GIVEN an API that refuses what it is sent as not an image
    stub.answer("/classify", 415, {"error": {"code": "unsupported_media_type", "message": "not an image"}})

    # WHEN two images are classified
    outcomes = ClassifierClient(stub.url).classify_each([ImageFile("a.png", b"x"), ImageFile("b.png", b"y")])

    # THEN the batch, then each image alone, was asked about; each outcome is its own 415
    assert [(method, path.split("?")[0]) for method, path, _ in stub.seen] == [("POST", "/classify")] * 3
    assert stub.seen[0][2]["content-type"].startswith("multipart/form-data")
    assert [(o.name, o.error.code if o.error else None) for o in outcomes] == [
        ("a.png", "unsupported_media_type"), ("b.png", "unsupported_media_type")]


def test_a_batch_failing_for_the_server_is_not_retried_one_by_one(stub: Stub) -> None:
    # A 503 is no fault of the images: every image gets it, after one request.
    stub.answer("/classify", 503, {"error": {"code": "model_unavailable", "message": "no model"}})
    outcomes = ClassifierClient(stub.url, retry=ONCE).classify_each([ImageFile("a.jpg", b"x"),
                                                                     ImageFile("b.jpg", b"y")])
    assert len(stub.seen) == 1
    assert [o.error.status if o.error else None for o in outcomes] == [503, 503]
    assert all(o.error is not None and transient(o.error) for o in outcomes)


def test_an_html_error_page_becomes_plain_text(stub: Stub) -> None:
    # GIVEN a proxy's HTML error page (an ALB or gateway in front of the API)
    stub.answer("/model", 502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")

    with pytest.raises(RequestFailed) as caught:
        ClassifierClient(stub.url, retry=ONCE).model()

    # THEN the message is its text, without markup
    assert caught.value.message == "502 Bad Gateway"
    assert headline(caught.value) == "The API failed"
    assert transient(caught.value)


def test_a_slow_api_times_out_with_a_message(stub: Stub) -> None:
    # GIVEN an API that does not answer within the client's read timeout
    api = ClassifierClient(f"{stub.url}/slow", timeout=0.5, connect_timeout=5.0, retry=ONCE)
    stub.answer("/slow/model", 200, {})

    with pytest.raises(RequestFailed) as caught:
        api.model()

    assert caught.value.code == "timeout"
    assert headline(caught.value) == "The API did not answer in time"
    assert transient(caught.value)


def test_no_uploads_bucket_is_learnt_from_the_document_and_is_permanent(stub: Stub) -> None:
    # GIVEN an API without an uploads bucket: its document lists no POST /uploads, which is an unknown route
    stub.answer("/openapi.json", 200, {"paths": {"/classify": {"post": {}}, "/models": {"get": {}}}})
    stub.answer("/uploads", 404, {"error": {"code": "not_found", "message": "no route POST /uploads"}})
    api = ClassifierClient(stub.url)

    assert api.uploads_enabled() is False
    assert api.uploads_enabled() is False  # the document is read once per client
    with pytest.raises(UploadsNotServed) as caught:
        api.create_upload("image/jpeg", 5 * 1024 * 1024)
    assert len(stub.seen) == 2  # one request each: not retried
    assert not transient(caught.value) and "uploads bucket" in caught.value.message


def test_a_batch_answer_of_the_wrong_length_is_an_error(stub: Stub) -> None:
    stub.answer("/classify", 200, {"results": []})
    with pytest.raises(RequestFailed) as caught:
        ClassifierClient(stub.url).classify_batch([ImageFile("a.jpg", b"x"), ImageFile("b.jpg", b"y")])
    assert caught.value.code == "bad_response"


def test_batches_respect_the_apis_file_and_byte_limits() -> None:
    # GIVEN 20 small images and one over the byte budget
    small = [ImageFile(f"{i}.jpg", b"x" * 100) for i in range(20)]
    big = ImageFile("big.jpg", b"x" * 1000)

    # WHEN they are cut into batches of at most 16 files and 1000 bytes
    batches = list(plan_batches([*small[:5], big, *small[5:]], max_files=16, max_bytes=1000))

    # THEN the order is kept, no batch breaks a limit, and the big image travels alone
    assert [image for batch in batches for image in batch] == [*small[:5], big, *small[5:]]
    assert [len(batch) for batch in batches] == [5, 1, 10, 5]
    assert all(sum(len(i.data) for i in batch) <= 1000 for batch in batches)
    # and no batch holds more files than the API takes at once
    assert [len(batch) for batch in plan_batches(small, max_files=16, max_bytes=10**6)] == [16, 4]
