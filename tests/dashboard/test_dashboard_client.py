"""The dashboard's API client against a stub server: what API Gateway and proxies answer that the local API does not."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import helpers.dashboard  # noqa: F401  (puts streamlit-docker/ on sys.path)
from api_client import ApiError, ClassifierApi, ImageUpload, plan_batches


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
    api = ClassifierApi(stub.url, "s3cret")

    # WHEN it asks for the model
    model = api.model()

    # THEN the key travelled in the header API Gateway checks
    assert model["version"] == "v1"
    assert stub.seen[-1][2]["x-api-key"] == "s3cret"


def test_no_api_key_means_no_header(stub: Stub) -> None:
    stub.answer("/model", 200, {"state": "loaded", "backend": "onnx"})
    ClassifierApi(stub.url, None).model()
    assert "x-api-key" not in stub.seen[-1][2]


def test_stage_path_of_the_api_url_is_kept(stub: Stub) -> None:
    # GIVEN an API Gateway style URL, with a stage and a trailing slash
    stub.answer("/prod/classifications", 200, {"items": [], "next_cursor": None})

    # WHEN the history is asked for, with a cursor
    page = ClassifierApi(f"{stub.url}/prod/").classifications(limit=7, cursor="abc")

    # THEN the request went below the stage, with the paging parameters
    assert page.items == [] and page.next_cursor is None
    method, path, _ = stub.seen[-1]
    assert method == "GET" and path.startswith("/prod/classifications?")
    assert "limit=7" in path and "cursor=abc" in path


def test_api_gateway_forbidden_reads_as_a_key_problem(stub: Stub) -> None:
    # GIVEN API Gateway's answer to a missing or wrong API key
    stub.answer("/model", 403, {"message": "Forbidden"})

    # WHEN the client calls
    with pytest.raises(ApiError) as caught:
        ClassifierApi(stub.url).model()

    # THEN the error says what to check
    assert caught.value.status == 403
    assert caught.value.title == "Access denied: check API_KEY"
    assert caught.value.message == "Forbidden"


def test_the_apis_error_body_is_kept(stub: Stub) -> None:
    stub.answer("/classify", 415, {"error": {"code": "unsupported_media_type", "message": "not an image"}})
    with pytest.raises(ApiError) as caught:
        ClassifierApi(stub.url).classify([ImageUpload("a.png", b"x", "image/png")])
    assert (caught.value.status, caught.value.code, caught.value.message) == (415, "unsupported_media_type",
                                                                              "not an image")
    assert caught.value.title == "Not a supported image"
    assert not caught.value.transient and caught.value.about_input


def test_an_html_error_page_becomes_plain_text(stub: Stub) -> None:
    # GIVEN a proxy's HTML error page (an ALB or gateway in front of the API)
    stub.answer("/model", 502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")

    with pytest.raises(ApiError) as caught:
        ClassifierApi(stub.url).model()

    # THEN the message is its text, without markup
    assert caught.value.message == "502 Bad Gateway"
    assert caught.value.title == "The API failed"
    assert caught.value.transient


def test_a_slow_api_times_out_with_a_message(stub: Stub) -> None:
    # GIVEN an API that does not answer within the client's read timeout
    api = ClassifierApi(stub.url, timeout=(5.0, 0.5))
    api.base_url += "/slow"  # every path of this client lands on the stub's slow route
    stub.answer("/slow/model", 200, {})

    with pytest.raises(ApiError) as caught:
        api.model()

    assert caught.value.code == "timeout"
    assert caught.value.title == "The API did not answer in time"


def test_a_batch_answer_of_the_wrong_length_is_an_error(stub: Stub) -> None:
    stub.answer("/classify", 200, {"results": []})
    with pytest.raises(ApiError) as caught:
        ClassifierApi(stub.url).classify([ImageUpload("a.jpg", b"x"), ImageUpload("b.jpg", b"y")])
    assert caught.value.code == "bad_response"


def test_batches_respect_the_apis_file_and_byte_limits() -> None:
    # GIVEN 20 small images and one over the byte budget
    small = [ImageUpload(f"{i}.jpg", b"x" * 100) for i in range(20)]
    big = ImageUpload("big.jpg", b"x" * 1000)

    # WHEN they are cut into batches of at most 16 files and 1000 bytes
    batches = list(plan_batches([*small[:5], big, *small[5:]], max_files=16, max_bytes=1000))

    # THEN the order is kept, no batch breaks a limit, and the big image travels alone
    assert [image for batch in batches for image in batch] == [*small[:5], big, *small[5:]]
    assert [len(batch) for batch in batches] == [5, 1, 10, 5]
    assert all(sum(len(i.data) for i in batch) <= 1000 for batch in batches)
    # and no batch holds more files than the API takes at once
    assert [len(batch) for batch in plan_batches(small, max_files=16, max_bytes=10**6)] == [16, 4]
