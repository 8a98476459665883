"""Structured logs (classifier.observability.logs): one JSON object per line on stdout, with the keys
bound for the current request on each of its lines and on no other request's.

Here the module is used as the API's middleware uses it: bind at a request's start, log, unbind at
its end.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from classifier.observability import logs

log = logging.getLogger("classifier.tests.logs")


class Stdout(io.StringIO):
    def lines(self) -> list[dict[str, Any]]:
        """What was written since the last call, each line parsed as JSON (a line that is not fails)."""
        written, _ = self.getvalue(), self.truncate(0)
        self.seek(0)
        return [json.loads(line) for line in written.splitlines()]


@pytest.fixture
def configured() -> Iterator[Stdout]:
    """``logs.configure()`` for one test, while ``sys.stdout`` is a buffer the test reads; the root
    logger's handlers and level are put back after it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    for handler in handlers:
        root.removeHandler(handler)
    stdout = Stdout()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "stdout", stdout)
            logs.configure()  # its handler keeps the stream it was given
        yield stdout
    finally:
        logs.unbind()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def test_each_record_is_one_json_line_with_its_fields(configured: Stdout) -> None:
    log.info("classified", extra={"model_version": "20261122T100000Z-0123456789ab", "images": 2})
    log.warning("slow\nload")  # a message with a line break stays on its line
    first, second = configured.lines()
    assert first["message"] == "classified" and first["level"] == "INFO"
    assert (first["model_version"], first["images"]) == ("20261122T100000Z-0123456789ab", 2)
    assert first["service"] == logs.SERVICE and first["timestamp"].endswith(("Z", "+00:00"))
    assert first["location"].startswith("test_each_record_is_one_json_line_with_its_fields:")
    assert (second["message"], second["level"]) == ("slow\nload", "WARNING")


def test_configure_is_idempotent(configured: Stdout) -> None:
    logs.configure()
    logs.configure()
    assert [type(h.formatter).__name__ for h in logging.getLogger().handlers
            if isinstance(h, logging.StreamHandler) and h.stream is configured] == ["LambdaPowertoolsFormatter"]
    log.info("once")
    assert [line["message"] for line in configured.lines()] == ["once"]


def test_bound_keys_are_on_every_line_of_the_request_until_unbound(configured: Stdout) -> None:
    # GIVEN a request's keys bound (a key whose value is None is left out)
    logs.bind(request_id="req-1", correlation_id=None, cold_start=True)
    log.info("decoded")
    log.info("request", extra={"status": 200})
    # WHEN the request ends
    logs.unbind()
    log.info("between requests")
    logs.bind(request_id="req-2")
    log.info("next request")
    decoded, access, between, following = configured.lines()
    # THEN both of its lines carry its keys, and no line after it does
    for line in (decoded, access):
        assert (line["request_id"], line["cold_start"]) == ("req-1", True) and "correlation_id" not in line
    assert access["status"] == 200
    assert "request_id" not in between and "cold_start" not in between
    assert following["request_id"] == "req-2" and "cold_start" not in following


def test_concurrent_requests_keep_their_own_keys(configured: Stdout) -> None:
    # GIVEN two requests served at once on two threads (a local server's thread pool)
    both_bound = threading.Barrier(2)

    def serve(request_id: str) -> None:
        logs.bind(request_id=request_id)
        both_bound.wait(timeout=30)  # each binds before either logs
        for step in range(20):
            log.info("step", extra={"served": request_id, "step": step})
        logs.unbind()

    threads = [threading.Thread(target=serve, args=(f"req-{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # THEN every line names the request that wrote it
    written = configured.lines()
    assert len(written) == 40
    assert all(line["request_id"] == line["served"] for line in written)

