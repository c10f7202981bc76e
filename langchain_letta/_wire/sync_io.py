"""The sync shell's I/O primitives: blocking reads, threads and locks, httpx's errors.

The same names as :mod:`.async_io`, whose twin this is (see CONTRIBUTING.md, "Twins"):
what differs by nature between the two flavours lives here, and nothing else.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import httpx

from langchain_letta._wire.http import sync_client

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

TRANSPORT_ERRORS = (httpx.TransportError,)
"""What a request or a read may raise for a network failure."""
HTTP_ERRORS = (httpx.HTTPError,)
"""What a request made on the side (a cancel) may raise."""
PROBE_ERRORS = (httpx.HTTPError,)
"""What the health probe may raise: httpx's timeouts bound it."""
STOPPED = (GeneratorExit, KeyboardInterrupt)
"""How a consumer stops a stream early: dropping it, Ctrl-C."""

new_lock = threading.Lock


def sleep(seconds: float) -> None:
    """Wait ``seconds`` (looked up on each call, so a test may record the waits)."""
    time.sleep(seconds)


def make_http(given: httpx.Client | None, timeout: httpx.Timeout) -> httpx.Client:
    """The HTTP client of one client: ``given``, or one on httpx's own transport."""
    return given or sync_client(timeout)


def for_request(http: httpx.Client) -> httpx.Client:
    """The HTTP client for a request made now."""
    return http


def within(seconds: float, call: Callable[[], T]) -> T:
    """``call()``; its requests are bounded by httpx's timeouts, ``seconds`` among them."""
    return call()


def no_chunks() -> Iterator[bytes]:
    """The body of no response."""
    return iter(())


def closed(response: httpx.Response | None) -> tuple[None, Iterator[bytes]]:
    """Close ``response`` (if any); what the shell holds once it is closed."""
    if response is not None:
        response.close()
    return None, no_chunks()


def read_next(
    chunks: Iterator[bytes], seconds: float
) -> bytes | httpx.TransportError | httpx.DecodingError:
    """The next piece of a body (``b""`` at its end), or the error that broke it.

    httpx sets a response's read timeout when the request is sent, so ``seconds`` is
    not applied: a read near the deadline may end up to one read timeout late.
    """
    try:
        return next(chunks, b"")
    except (httpx.TransportError, httpx.DecodingError) as error:
        return error


def read_limited(chunks: Iterator[bytes], limit: int, until: float | None = None) -> bytes:
    """The rest of a body, at most ``limit`` bytes (and no read after ``until``, monotonic).

    What arrived is returned if the connection broke.
    """
    body = bytearray()
    try:
        for chunk in chunks:
            body += chunk
            if len(body) >= limit or (until is not None and time.monotonic() > until):
                break
    except (httpx.TransportError, httpx.DecodingError):
        pass  # what arrived is the body: the status already says what happened
    return bytes(body[:limit])


class Finishers:
    """The ends of bodies still being read, each on a daemon thread of its own.

    The consumer is never held up, and a connection whose body ends returns to the
    pool; a server that holds a body open delays nobody and loses the connection.
    """

    def start(
        self,
        response: httpx.Response,
        chunks: Iterator[bytes],
        limit: int,
        seconds: float,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Read the rest of ``response`` (at most ``limit`` bytes, ``seconds``), then close it.

        ``then`` is called once that is over, or its bounds are reached.
        """

        def finish() -> None:
            # Best effort: a client closed meanwhile, or any other failure here, only
            # means the connection is not reused.
            try:
                with contextlib.suppress(Exception):
                    read_limited(chunks, limit, time.monotonic() + seconds)
            finally:
                with contextlib.suppress(Exception):
                    response.close()
                if then is not None:
                    then()

        threading.Thread(target=finish, name="letta-finish", daemon=True).start()

    def close(self) -> None:
        """Nothing to give up on: each thread ends within its own bounds."""
