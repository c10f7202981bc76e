"""The async shell's I/O primitives: asyncio's waits, locks and tasks, aiohttp's errors.

:mod:`.sync_io` has the same names with blocking I/O; the shells call only these, so
:mod:`.sync_client` can be generated from :mod:`.async_client` (see CONTRIBUTING.md,
"Twins"). What differs by nature between the two flavours lives here, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import aiohttp
import httpx

from langchain_letta._wire.http import ASYNC_TRANSPORT_ERRORS, AsyncClients, precise

__all__ = [
    "HTTP_ERRORS",
    "PROBE_ERRORS",
    "STOPPED",
    "TRANSPORT_ERRORS",
    "Finishers",
    "closed",
    "for_request",
    "make_http",
    "new_lock",
    "no_chunks",
    "read_limited",
    "read_next",
    "sleep",
    "within",
]
"""What the shell uses: the same names in :mod:`.async_io` and :mod:`.sync_io`."""

T = TypeVar("T")

TRANSPORT_ERRORS = ASYNC_TRANSPORT_ERRORS
"""What a request or a read may raise for a network failure."""
HTTP_ERRORS = (httpx.HTTPError, aiohttp.ClientError)
"""What a request made on the side (a cancel) may raise."""
PROBE_ERRORS = (httpx.HTTPError, aiohttp.ClientError, asyncio.TimeoutError)
"""What the health probe may raise: it is bounded by a timer of its own."""
STOPPED = (GeneratorExit, asyncio.CancelledError, KeyboardInterrupt)
"""How a consumer stops a stream early: dropping it, cancelling its task, Ctrl-C."""

new_lock = asyncio.Lock


async def sleep(seconds: float) -> None:
    """Wait ``seconds`` (looked up on each call, so a test may record the waits)."""
    await asyncio.sleep(seconds)


def make_http(given: httpx.AsyncClient | None, timeout: httpx.Timeout) -> AsyncClients:
    """The HTTP clients of one client: ``given``, or those made on first use."""
    return AsyncClients(given, timeout)


def for_request(http: AsyncClients) -> httpx.AsyncClient:
    """The HTTP client for a request made now, in the running event loop."""
    return http.for_request()


async def within(seconds: float, call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, given up with ``asyncio.TimeoutError`` after ``seconds``."""
    return await asyncio.wait_for(call(), seconds)


async def no_chunks() -> AsyncIterator[bytes]:
    """The body of no response."""
    return
    yield  # pragma: no cover - makes this an empty async generator


async def closed(response: httpx.Response | None) -> tuple[None, AsyncIterator[bytes]]:
    """Close ``response`` (if any); what the shell holds once it is closed."""
    if response is not None:
        await response.aclose()
    return None, no_chunks()


async def read_within(chunks: AsyncIterator[bytes], seconds: float) -> bytes:
    """The next piece of a body (``b""`` at its end), or ``TimeoutError`` after ``seconds``."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):  # one timer, no task
            return await anext(chunks, b"")
    return await asyncio.wait_for(anext(chunks, b""), seconds)


async def read_next(
    chunks: AsyncIterator[bytes], seconds: float
) -> bytes | httpx.TransportError | httpx.DecodingError:
    """The next piece of a body (``b""`` at its end), or the error that broke it.

    Every read is bounded by a timer here: aiohttp stops its own read timer when its
    parser fails a connection without failing the body.
    """
    try:
        return await read_within(chunks, seconds)
    except ASYNC_TRANSPORT_ERRORS as error:
        return precise(error)
    except httpx.DecodingError as error:
        return error
    except asyncio.TimeoutError:
        return httpx.ReadTimeout("no data within the read's time")


async def read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The rest of a body, at most ``limit`` bytes; what arrived if the connection broke."""
    body = bytearray()
    try:
        async for chunk in chunks:
            body += chunk
            if len(body) >= limit:
                break
    except (*ASYNC_TRANSPORT_ERRORS, httpx.DecodingError):
        pass  # what arrived is the body: the status already says what happened
    return bytes(body[:limit])


class Finishers:
    """The ends of bodies still being read, each in a task of its own.

    The consumer is never held up, and a connection whose body ends returns to the
    pool. :meth:`aclose` gives up on those still being read.
    """

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[None], httpx.Response] = {}

    def start(
        self,
        response: httpx.Response,
        chunks: AsyncIterator[bytes],
        limit: int,
        seconds: float,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Read the rest of ``response`` (at most ``limit`` bytes, ``seconds``), then close it.

        ``then`` is called when that is over, even if the task was cancelled before it ran.
        """

        async def finish() -> None:
            # Best effort: a failure here only means the connection is not reused.
            try:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(read_limited(chunks, limit), seconds)
            finally:
                with contextlib.suppress(Exception):
                    await response.aclose()

        task = asyncio.get_running_loop().create_task(finish())
        self._tasks[task] = response
        task.add_done_callback(lambda done: self._tasks.pop(done, None))
        if then is not None:  # also when the task is cancelled before it ran
            task.add_done_callback(lambda _: then())

    async def aclose(self) -> None:
        """Give up on the bodies still being read, and close their responses now."""
        finishing, self._tasks = self._tasks, {}
        for task, response in finishing.items():
            task.cancel()  # one not started yet would never close its response: close it here
            with contextlib.suppress(*ASYNC_TRANSPORT_ERRORS):
                await response.aclose()
