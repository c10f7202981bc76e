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

from langchain_letta._wire.http import raw, sync_client

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


def send_streaming(http: httpx.Client, request: httpx.Request, *, own: bool) -> httpx.Response:
    """Send ``request`` for a body read through :class:`Body`; wait for its head.

    httpx's read timeout bounds the head and every read of the body read in the
    caller's thread, whoever made ``http`` (``own``).
    """
    return http.send(request, stream=True, follow_redirects=False)


BACK_TO_BACK = 8
"""Reads in a row that found their piece waiting, after which a body is read ahead."""
WAITING = 50e-6
"""A read that took less (seconds) found its piece waiting: nothing came off the network."""
READ_AHEAD = 1 << 20
"""Bytes read ahead at most: the reader thread waits while that many wait for the caller."""


def _pieces(response: httpx.Response) -> Iterator[bytes]:
    """The pieces of ``response``'s body as they arrive, as httpx decodes them."""
    return response.iter_raw() if raw(response) else response.iter_bytes()


class Body:
    """The body of one response (or of none), read a piece at a time.

    httpx's transport hands a chunked body over one HTTP chunk at a time, and Letta
    writes each event in a chunk of its own: read so, a body that arrives faster than
    it is consumed costs a read, an event batch and a LangChain chunk per event.
    Once ``BACK_TO_BACK`` reads in a row found their piece waiting, the rest of the
    body is read on a thread of its own, and each read takes every piece that has
    arrived (at most ``READ_AHEAD`` bytes wait). No piece waits for another: a read
    returns as soon as one is there. A body that trickles in (a live model's tokens)
    is read in the caller's thread, as before. The thread is the only reader of its
    response, and closes it if the caller hung up meanwhile.
    """

    def __init__(self, response: httpx.Response | None) -> None:
        self.response = response
        """The response whose body this is, until it is closed."""
        self._chunks = iter(()) if response is None else _pieces(response)
        self.cut = False
        """A read was stopped midway (Ctrl-C): the error went through httpx's iterator,
        which ended, so the rest of the body cannot be read."""
        self._in_a_row = 0
        self._ahead: _ReadAhead | None = None

    def read(self, seconds: float) -> bytes | httpx.TransportError | httpx.DecodingError:
        """The next pieces (``b""`` at the end), or the error that broke the body.

        Read in the caller's thread, ``seconds`` is not applied: httpx set the
        response's read timeout when the request was sent.
        """
        if self._ahead is not None:
            return self._ahead.take(seconds)
        started = time.perf_counter()
        try:
            piece = next(self._chunks, b"")
        except (httpx.TransportError, httpx.DecodingError) as error:
            return error
        except KeyboardInterrupt:
            self.cut = True
            raise
        if time.perf_counter() - started >= WAITING or not piece:
            self._in_a_row = 0
        elif (in_a_row := self._in_a_row + 1) < BACK_TO_BACK:
            self._in_a_row = in_a_row
        elif self.response is not None:
            self._ahead = _ReadAhead(self.response, self._chunks)
        return piece

    def rest(self, limit: int, seconds: float) -> bytes:
        """The rest of the body, at most ``limit`` bytes, read within ``seconds``.

        What arrived is returned if the connection broke or the time ran out.
        """
        until = time.monotonic() + seconds
        data = bytearray()
        while len(data) < limit and time.monotonic() < until:
            piece = self.read(max(until - time.monotonic(), 0.0))
            if not piece or not isinstance(piece, bytes):
                break
            data += piece
        return bytes(data[:limit])

    def close(self) -> None:
        """Hang up: the response is closed, now or by the thread reading it."""
        response, self.response = self.response, None
        if self._ahead is not None:
            self._ahead.close()
        elif response is not None:
            response.close()


class _ReadAhead:
    """The thread that reads the rest of one body, and what it read for the caller."""

    def __init__(self, response: httpx.Response, chunks: Iterator[bytes]) -> None:
        self._response = response
        self._chunks = chunks
        self._changed = threading.Condition(threading.Lock())
        self._pieces: list[bytes] = []
        self._waiting = 0
        self._end: bytes | httpx.TransportError | httpx.DecodingError | None = None
        self._failure: Exception | None = None
        """What else the reader raised: raised in the caller's thread."""
        self._closing = False
        self._done = False
        threading.Thread(target=self._run, name="letta-read-ahead", daemon=True).start()

    def take(self, seconds: float) -> bytes | httpx.TransportError | httpx.DecodingError:
        """Every piece read so far; else the end, or the next piece within ``seconds``."""
        with self._changed:
            self._changed.wait_for(lambda: self._pieces or self._end is not None, seconds)
            if self._pieces:
                pieces, self._pieces, self._waiting = self._pieces, [], 0
                self._changed.notify()  # the reader may wait for room
                return pieces[0] if len(pieces) == 1 else b"".join(pieces)
            if self._failure is not None:
                raise self._failure
            if self._end is not None:
                return self._end
        return httpx.ReadTimeout("no data within the read's time")

    def close(self) -> None:
        """Stop reading; the response is closed here if the thread is done, else by it."""
        with self._changed:
            self._closing = True
            self._changed.notify()
            done = self._done
        if done:
            self._response.close()

    def _run(self) -> None:
        changed = self._changed
        end: bytes | httpx.TransportError | httpx.DecodingError = b""
        try:
            for piece in self._chunks:  # never empty: httpx's iterators drop those
                with changed:
                    self._pieces.append(piece)
                    self._waiting += len(piece)
                    changed.notify()
                    while self._waiting >= READ_AHEAD and not self._closing:
                        changed.wait()
                    if self._closing:
                        break
        except (httpx.TransportError, httpx.DecodingError) as error:
            end = error
        except Exception as error:  # raised in the caller's thread
            self._failure = error
        finally:
            with changed:
                self._end = end
                self._done = True
                closing = self._closing
                changed.notify()
            if closing:
                with contextlib.suppress(Exception):
                    self._response.close()


def closed(body: Body) -> Body:
    """Close ``body`` (and its response); what the shell holds once it is closed."""
    body.close()
    return Body(None)


class Finishers:
    """The ends of bodies still being read, each on a daemon thread of its own.

    The consumer is never held up, and a connection whose body ends returns to the
    pool; a server that holds a body open delays nobody and loses the connection.
    """

    def start(
        self,
        body: Body,
        limit: int,
        seconds: float,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Read the rest of ``body`` (at most ``limit`` bytes, ``seconds``), then close it.

        ``then`` is called once that is over, or its bounds are reached.
        """

        def finish() -> None:
            # Best effort: a client closed meanwhile, or any other failure here, only
            # means the connection is not reused.
            try:
                with contextlib.suppress(Exception):
                    body.rest(limit, seconds)
            finally:
                with contextlib.suppress(Exception):
                    body.close()
                if then is not None:
                    then()

        threading.Thread(target=finish, name="letta-finish", daemon=True).start()

    def follow(
        self, events: Iterator[object], close: Callable[[], None], then: Callable[[], None]
    ) -> None:
        """Read ``events`` (a run read again, bounded by its own deadline) to their end.

        Then ``close`` it and call ``then``, also if it failed.
        """

        def finish() -> None:
            try:
                with contextlib.suppress(Exception):
                    for _ in events:
                        pass
            finally:
                with contextlib.suppress(Exception):
                    close()
                then()

        threading.Thread(target=finish, name="letta-finish", daemon=True).start()

    def close(self) -> None:
        """Nothing to give up on: each thread ends within its own bounds."""
