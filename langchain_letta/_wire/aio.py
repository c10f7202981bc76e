"""httpcore network streams on asyncio's own transports: the async clients' sockets.

httpcore's default async backend goes through anyio, which per read enters a cancel
scope with its own timer (``fail_after``), switches the socket's reading on and off
(two ``epoll_ctl`` calls) and, when data is already there, yields to the event loop
once more. On a paced stream (a token every few hundred µs, a read each) that is
most of the client's CPU. Here a :class:`asyncio.Protocol` reads all the time into a
bounded buffer; a read takes what has arrived at once and only waits, with one timer,
when nothing has. Everything arrived is taken (up to ``max_bytes``), so a read never
waits while anything is there, and never holds back bytes that came.

httpcore's ``AsyncNetworkBackend`` interface is the public hook for this (see
``_wire/transport.py``). Only asyncio is served here: under another event loop (trio)
the transport keeps anyio's backend.
"""

from __future__ import annotations

import asyncio
import select
import ssl
from collections import deque
from collections.abc import Iterable
from typing import Any, cast

import httpcore

HIGH_WATER = 256 * 1024
"""Bytes buffered before the socket's reading pauses (the kernel's buffer holds the rest)."""
LOW_WATER = 64 * 1024
"""Bytes buffered at most when reading resumes."""
HAPPY_EYEBALLS_DELAY = 0.25
"""Seconds before trying the next address of a host, as anyio (httpcore's default) does."""


class _Reader(asyncio.Protocol):
    """The receiving side of one connection: what arrived, whether it ended, who waits."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pieces: deque[bytes] = deque()
        self.buffered = 0
        self.ended = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[bool] | None = None
        self.drained: asyncio.Future[bool] | None = None
        self.paused = False
        self.writing_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # a stream's, not a datagram's

    def data_received(self, data: bytes) -> None:
        self.pieces.append(data)
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> None:
        self.ended = True
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        if exc is not None:
            self.error = exc
        self._wake()
        self._wake_writer()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_writer()

    def take(self, max_bytes: int) -> bytes:
        """Everything arrived, up to ``max_bytes``, as one piece (``b""``: nothing yet)."""
        pieces = self.pieces
        if len(pieces) == 1 and len(pieces[0]) <= max_bytes:
            data = pieces.popleft()
        else:
            taken: list[bytes] = []
            room = max_bytes
            while pieces and room > 0:
                piece = pieces.popleft()
                if len(piece) > room:
                    pieces.appendleft(piece[room:])
                    piece = piece[:room]
                taken.append(piece)
                room -= len(piece)
            data = b"".join(taken)
        self.buffered -= len(data)
        if self.paused and self.buffered <= LOW_WATER and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data

    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def _wake_writer(self) -> None:
        waiter, self.drained = self.drained, None
        if waiter is not None and not waiter.done():
            waiter.set_result(True)


async def _until(
    loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[bool], timeout: float | None
) -> bool:
    """Wait for ``waiter``; ``False`` if ``timeout`` seconds passed first."""
    if timeout is None:
        return await waiter
    timer = loop.call_later(timeout, _expire, waiter)
    try:
        return await waiter
    finally:
        timer.cancel()


def _reason(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection over an asyncio transport (TCP, TLS on it, or a Unix socket)."""

    def __init__(self, transport: asyncio.Transport, reader: _Reader) -> None:
        self._transport = transport
        self._reader = reader
        self._loop = asyncio.get_running_loop()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        reader = self._reader
        while not reader.pieces:
            if reader.error is not None:
                raise httpcore.ReadError(_reason(reader.error))
            if reader.ended:
                return b""
            reader.waiter = waiter = self._loop.create_future()
            if not await _until(self._loop, waiter, timeout):
                raise httpcore.ReadTimeout("no data arrived within the read timeout")
        return reader.take(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        reader = self._reader
        if reader.error is not None or self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        while reader.writing_paused and reader.error is None:
            reader.drained = waiter = self._loop.create_future()
            if not await _until(self._loop, waiter, timeout):
                raise httpcore.WriteTimeout("the data could not be sent within the write timeout")
        if reader.error is not None:
            raise httpcore.WriteError(_reason(reader.error))

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            upgraded = await asyncio.wait_for(
                self._loop.start_tls(
                    self._transport, self._reader, ssl_context, server_hostname=server_hostname
                ),
                timeout,
            )
        except asyncio.TimeoutError as error:
            self._transport.abort()
            raise httpcore.ConnectTimeout("the TLS handshake timed out") from error
        except (OSError, ssl.SSLError) as error:
            self._transport.abort()
            raise httpcore.ConnectError(str(error)) from error
        if upgraded is None:  # the connection closed during the handshake
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        self._reader.transport = upgraded
        return AsyncioStream(upgraded, self._reader)

    def get_extra_info(self, info: str) -> Any:
        transport = self._transport
        if info == "ssl_object":
            return transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        if info == "socket":
            return transport.get_extra_info("socket")
        if info == "is_readable":  # an idle connection with something to read has ended
            reader = self._reader
            return bool(reader.pieces) or reader.ended or _readable(transport)
        return None


def _readable(transport: asyncio.Transport) -> bool:
    """Whether the socket has something to read (poll where it exists: no fd limit)."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.fileno() < 0:
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([sock], [], [], 0)  # pragma: no cover (Windows)
    return bool(readable)


async def connect_tcp(
    host: str,
    port: int,
    timeout: float | None = None,
    local_address: str | None = None,
    socket_options: Iterable[Any] | None = None,
) -> AsyncioStream:
    """A TCP connection (TCP_NODELAY set, as asyncio does) with httpcore's errors."""
    loop = asyncio.get_running_loop()
    local = None if local_address is None else (local_address, 0)
    opening = loop.create_connection(
        _Reader, host, port, local_addr=local, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY
    )
    return await _connected(opening, timeout, socket_options)


async def connect_unix_socket(
    path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
) -> AsyncioStream:
    """A Unix socket connection with httpcore's errors."""
    loop = asyncio.get_running_loop()
    return await _connected(loop.create_unix_connection(_Reader, path), timeout, socket_options)


async def _connected(
    opening: Any, timeout: float | None, socket_options: Iterable[Any] | None
) -> AsyncioStream:
    try:
        transport, reader = await asyncio.wait_for(opening, timeout)
    except asyncio.TimeoutError as error:
        raise httpcore.ConnectTimeout("the connection timed out") from error
    except OSError as error:
        raise httpcore.ConnectError(str(error)) from error
    try:
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
    except OSError as error:
        transport.abort()
        raise httpcore.ConnectError(str(error)) from error
    return AsyncioStream(transport, reader)
