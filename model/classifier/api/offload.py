"""Where a request's blocking work (inference, file and S3 I/O) runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

T = TypeVar("T")


async def blocking(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking work (inference, file and S3 I/O) for a request.

    Under Lambda (Mangum puts the event in the scope) an instance serves one
    request at a time, so the work runs inline: a hop to a worker thread only
    costs, and Mangum's per-invocation event loop would start a fresh worker
    thread each time (torch then rebuilds its per-thread state; docs/performance.md).
    Under uvicorn it goes to the thread pool to keep the event loop free.
    """
    if "aws.event" in request.scope:
        return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)
