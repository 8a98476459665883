"""Where a request's blocking work runs (classifier.api.offload.blocking): inline on the event loop's
thread under Lambda (Mangum puts the event in the ASGI scope; an instance serves one request at a
time), on Starlette's thread pool otherwise, so a local server's loop stays free."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from starlette.requests import Request

from classifier.api.offload import blocking


def request(**scope: Any) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/classify", "headers": [], **scope})


def work(label: str, *, times: int) -> tuple[str, str]:
    return label * times, threading.current_thread().name


async def run(req: Request) -> tuple[tuple[str, str], str]:
    """``work`` through ``blocking``, and the name of the thread the event loop runs on."""
    return await blocking(req, work, "ab", times=2), threading.current_thread().name


def test_under_lambda_the_work_runs_inline() -> None:
    (value, worker), loop = asyncio.run(run(request(**{"aws.event": {"httpMethod": "POST"}, "aws.context": None})))
    assert value == "abab" and worker == loop


def test_elsewhere_the_work_runs_on_the_thread_pool() -> None:
    (value, worker), loop = asyncio.run(run(request()))
    assert value == "abab" and worker != loop


def test_offloading_keeps_the_loop_free() -> None:
    # GIVEN blocking work that waits until the event loop has run something else
    loop_ran = threading.Event()

    def wait_for_the_loop() -> bool:
        return loop_ran.wait(timeout=30)

    async def both() -> bool:
        offloaded = asyncio.ensure_future(blocking(request(), wait_for_the_loop))
        await asyncio.sleep(0)  # the loop runs on while the work waits...
        loop_ran.set()          # ...and this is what the work waits for
        return await offloaded

    # THEN the work saw the loop run (inline, it would have waited out its timeout and returned False)
    assert asyncio.run(both()) is True


@pytest.mark.parametrize("scope", [{"aws.event": {}}, {}], ids=["lambda", "server"])
def test_an_error_in_the_work_reaches_the_caller(scope: dict[str, Any]) -> None:
    def fails() -> None:
        raise LookupError("no such model")

    with pytest.raises(LookupError, match="no such model"):
        asyncio.run(blocking(request(**scope), fails))
