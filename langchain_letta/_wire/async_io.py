"""The async shell's I/O primitives: asyncio's waits, locks and tasks, aiohttp's errors.

:mod:`.sync_io` has the same names with blocking I/O; the shells call only these, so
:mod:`.sync_client` can be generated from :mod:`.async_client` (see CONTRIBUTING.md,
"Twins"). What differs by nature between the two flavours lives here, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import aiohttp
import httpx

from langchain_letta._wire.http import ASYNC_TRANSPORT_ERRORS, AsyncClients, precise, raw

__all__ = [
    "HTTP_ERRORS",
    "PROBE_ERRORS",
    "STOPPED",
    "TRANSPORT_ERRORS",
    "Body",
    "Finishers",
    "closed",
    "for_request",
    "make_http",
    "new_lock",
    "send_streaming",
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


async def _no_chunks() -> AsyncIterator[bytes]:
    """The pieces of no body."""
    return
    yield  # pragma: no cover - makes this an empty async generator


async def send_streaming(
    http: httpx.AsyncClient, request: httpx.Request, *, own: bool
) -> httpx.Response:
    """Send ``request`` for a body read through :class:`Body`; wait for its head.

    ``own``: ``http`` is one this package made. Then aiohttp's own read
    timer is turned off for the body, which :class:`Body` bounds read by read already
    (aiohttp sets that timer again on every network read: a tenth of the client's CPU
    on a paced stream), and the head is waited for within the time aiohttp gave it
    (pool, connect and read timeouts). A client given by the caller is used as it is.

    Raises:
        httpx.ReadTimeout: No response head in that time (the request may have
            reached the server).
    """
    timeout = request.extensions.get("timeout") or {}
    read = timeout.get("read")
    if not own or read is None:
        return await http.send(request, stream=True, follow_redirects=False)
    request.extensions["timeout"] = {**timeout, "read": None}
    head = read + (timeout.get("pool") or 0.0) + (timeout.get("connect") or 0.0)
    try:
        async with asyncio.timeout(head):  # in this task: aiohttp ties a response to it
            return await http.send(request, stream=True, follow_redirects=False)
    except TimeoutError:
        raise httpx.ReadTimeout("no response head within the read timeout") from None


_EARLY = 0.001
"""How early a timer may fire (uvloop's round to the millisecond): a read this near its
due time when the body's timer fires is over."""


def _pieces(response: httpx.Response) -> AsyncIterator[bytes]:
    """The pieces of ``response``'s body as they arrive, as httpx decodes them."""
    return response.aiter_raw() if raw(response) else response.aiter_bytes()


class Body:
    """The body of one response (or of none), read a piece at a time, each read bounded.

    aiohttp stops its own read timer when its parser fails a connection without
    failing the body, so every read is bounded here too. One timer serves the whole
    body: a read only notes when it is due, and the timer, when it fires, cancels
    the read that is overdue (as ``asyncio.timeout`` does: the read's task, its
    cancellation counted) or sets itself for the one under way. A timer made and
    cancelled for every read cost a tenth of the client's CPU on a paced stream, an
    ``asyncio.timeout`` per read a few per cent more.
    """

    def __init__(self, response: httpx.Response | None) -> None:
        self.response = response
        """The response whose body this is, until it is closed."""
        self._chunks = _no_chunks() if response is None else _pieces(response)
        self.cut = False
        """A read was stopped midway: the error went through httpx's iterator, which ended,
        so the rest of the body cannot be read (a cancellation while the task waits)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._reading: asyncio.Task[object] | None = None
        self._expired = False

    async def read(self, seconds: float) -> bytes | httpx.TransportError | httpx.DecodingError:
        """The next piece (``b""`` at the end), or the error that broke the body.

        No data within ``seconds`` is ``httpx.ReadTimeout``.
        """
        try:
            # The loop is looked up once: on Python 3.11, each lookup is a getpid() call.
            loop = self._loop or self._bind()
            due = self._due = loop.time() + seconds
            timer = self._timer
            if timer is None or timer.when() > due:
                if timer is not None:
                    timer.cancel()
                self._timer = loop.call_at(due, self._overdue)
            task = self._reading = asyncio.current_task(loop)
            cancelling = task.cancelling() if task is not None else 0
            try:
                return await anext(self._chunks, b"")
            except asyncio.CancelledError:
                self.cut = True
                # Ours alone (no other cancellation asked meanwhile): the time ran out.
                if task is None or not self._expired or task.uncancel() > cancelling:
                    raise
                return httpx.ReadTimeout("no data within the read's time")
            finally:
                self._reading, self._expired = None, False
        except ASYNC_TRANSPORT_ERRORS as error:
            return precise(error)
        except httpx.DecodingError as error:
            return error

    async def rest(self, limit: int, seconds: float) -> bytes:
        """The rest of the body, at most ``limit`` bytes, read within ``seconds``.

        What arrived is returned if the connection broke or the time ran out.
        """
        until = time.monotonic() + seconds
        data = bytearray()
        while len(data) < limit:
            piece = await self.read(max(until - time.monotonic(), 0.0))
            if not piece or not isinstance(piece, bytes):
                break
            data += piece
        return bytes(data[:limit])

    async def close(self) -> None:
        """Hang up: the response is closed (if not yet), the timer goes."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        response, self.response = self.response, None
        if response is not None:
            await response.aclose()

    def _bind(self) -> asyncio.AbstractEventLoop:
        """The running loop: the body's reads all run on it (aiohttp ties a response to one)."""
        loop = self._loop = asyncio.get_running_loop()
        return loop

    def _overdue(self) -> None:
        self._timer = None
        task = self._reading
        if task is None:  # no read is under way: the next one sets a timer
            return
        loop = self._loop or self._bind()
        if loop.time() + _EARLY < self._due:  # reads since the timer was set are due later
            self._timer = loop.call_at(self._due, self._overdue)
        else:
            self._expired = True
            task.cancel()


async def closed(body: Body) -> Body:
    """Close ``body`` (and its response); what the shell holds once it is closed."""
    await body.close()
    return Body(None)


class Finishers:
    """The ends of bodies still being read, each in a task of its own.

    The consumer is never held up, and a connection whose body ends returns to the
    pool. :meth:`aclose` gives up on those still being read.
    """

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[None], Body] = {}

    def start(
        self,
        body: Body,
        limit: int,
        seconds: float,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Read the rest of ``body`` (at most ``limit`` bytes, ``seconds``), then close it.

        ``then`` is called when that is over, even if the task was cancelled before it ran.
        """

        async def finish() -> None:
            # Best effort: a failure here only means the connection is not reused.
            try:
                with contextlib.suppress(Exception):
                    await body.rest(limit, seconds)
            finally:
                with contextlib.suppress(Exception):
                    await body.close()

        self._spawn(finish(), body, then)

    def follow(
        self,
        events: AsyncIterator[object],
        close: Callable[[], Awaitable[None]],
        then: Callable[[], None],
    ) -> None:
        """Read ``events`` (a run read again, bounded by its own deadline) to their end.

        Then ``close`` it and call ``then``, also if it failed or was given up on.
        """

        async def finish() -> None:
            try:
                with contextlib.suppress(Exception):
                    async for _ in events:
                        pass
            finally:
                with contextlib.suppress(Exception):
                    await close()

        self._spawn(finish(), Body(None), then)

    def _spawn(
        self, finish: Coroutine[Any, Any, None], body: Body, then: Callable[[], None] | None
    ) -> None:
        """Run ``finish`` in a task of its own; :meth:`aclose` cancels it and closes ``body``."""
        task = asyncio.get_running_loop().create_task(finish)
        self._tasks[task] = body
        task.add_done_callback(lambda done: self._tasks.pop(done, None))
        if then is not None:  # also when the task is cancelled before it ran
            task.add_done_callback(lambda _: then())

    async def aclose(self) -> None:
        """Give up on the bodies still being read, and close their responses now."""
        finishing, self._tasks = self._tasks, {}
        for task, body in finishing.items():
            task.cancel()  # one not started yet would never close its response: close it here
            with contextlib.suppress(*ASYNC_TRANSPORT_ERRORS):
                await body.close()
