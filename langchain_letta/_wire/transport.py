"""httpx transports whose HTTP/1.1 connections read a chunked body past h11 (see ``chunked``).

Built from public APIs only: httpx's custom transports (``httpx.BaseTransport``) over
httpcore's connection pool with a network backend of our own (``network_backend=``,
httpcore's documented hook for custom I/O). The backend's streams pass every byte
through :class:`~langchain_letta._wire.chunked.JoinedChunks`. A response's reader takes
the data of a chunked body straight from its connection (``network_stream``, the
response extension httpcore documents), one piece per network read however many chunks
it held, where httpx would pass each chunk through h11 and httpcore's generators (about
8 µs a chunk; a live Letta server writes one SSE frame per chunk). h11 still parses every
head, the last chunk and the trailers, and decides when a connection is reused; any
other reader of the body gets each read's chunks joined into one. Sockets, TLS,
timeouts, pooling and keep-alive stay httpcore's. Proxies keep httpx's own transports
(httpx mounts them over this one).

Only the clients this package creates use these transports; an ``http_client`` passed
in is used as it is.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import httpcore
import httpx
import sniffio

from langchain_letta._wire import aio
from langchain_letta._wire.chunked import ChunkedFramingError, JoinedChunks

_HTTPX_HANDLE = httpx.HTTPTransport.handle_request
_HTTPX_HANDLE_ASYNC = httpx.AsyncHTTPTransport.handle_async_request
"""httpx's own transports as this module found them: recorders and mocks (vcrpy,
pytest-httpx) replace these methods, and a request must then go through them."""

READ_SIZE = 64 * 1024
"""Most bytes a read of a body takes from the network: httpcore's own size."""

_UNSET = object()
"""No timeout set on a socket yet (``None`` is a timeout: blocking)."""

_POOL: dict[str, Any] = {
    "max_connections": 100,
    "max_keepalive_connections": 20,
    "keepalive_expiry": 5.0,
    "http1": True,
    "http2": False,
}
"""The pool of httpx's default transport: its default limits, HTTP/1.1 only."""

_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)
"""httpcore's errors as httpx's transport raises them (most specific first)."""


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    try:
        yield
    except Exception as error:
        for source, target in _ERRORS:
            if isinstance(error, source):
                raise target(str(error)) from error
        raise


def _ssl_context() -> ssl.SSLContext | None:
    """The default TLS context of httpx; ``None``: use httpx's own transport.

    That is when this httpx does not make the context public, and when the environment
    names a proxy (``HTTPS_PROXY`` and the like, read as httpx reads them): httpx
    honours those only for a client without a transport of its own.
    """
    create = getattr(httpx, "create_ssl_context", None)
    if create is None or urllib.request.getproxies():
        return None
    context: ssl.SSLContext = create()
    return context


def _core_request(request: httpx.Request) -> httpcore.Request:
    return httpcore.Request(
        method=request.method,
        url=httpcore.URL(
            scheme=request.url.raw_scheme,
            host=request.url.raw_host,
            port=request.url.port,
            target=request.url.raw_path,
        ),
        headers=request.headers.raw,
        content=request.stream,
        extensions=request.extensions,
    )


def _httpx_response(
    response: httpcore.Response, stream: httpx.SyncByteStream | httpx.AsyncByteStream
) -> httpx.Response:
    """The response of httpcore's pool as httpx's transports hand it on, read through ``stream``."""
    return httpx.Response(
        status_code=response.status,
        headers=response.headers,
        stream=stream,
        extensions=response.extensions,
    )


def _read_timeout(request: httpx.Request) -> float | None:
    """The timeout of ``request``'s next read: its ``timeout`` extension, as httpcore reads it."""
    timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
    return timeouts.get("read")


def _framing_error(error: ChunkedFramingError) -> httpcore.RemoteProtocolError:
    return httpcore.RemoteProtocolError(f"malformed chunked body: {error}")


# ------------------------------------------------------------------ sync


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        self._joined = JoinedChunks()
        # A plain socket is read here directly (httpcore's read adds a context manager
        # per read, a paced stream's main cost after the wake-up); TLS through httpcore.
        plain = inner.get_extra_info("ssl_object") is None
        self._socket: socket.socket | None = inner.get_extra_info("socket") if plain else None
        self._timeout: float | object | None = _UNSET  # the socket's, as last set here

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._next(self._joined.for_h11, max_bytes, timeout)

    def read_body(self, max_bytes: int, timeout: float | None) -> bytes:
        """The next data of a chunked body, read here and not through h11 (see ``chunked``).

        ``b""`` when there is no more: the rest of the response (the last chunk, or
        the end of a connection that broke off) is then h11's to read.
        """
        return self._next(self._joined.body_data, max_bytes, timeout)

    def _next(
        self, take: Callable[[], bytes | None], max_bytes: int, timeout: float | None
    ) -> bytes:
        """What ``take`` gives of the bytes received, reading the socket while it gives nothing."""
        joined = self._joined
        try:
            while True:
                out = take()
                if out is not None:
                    return out
                data = self._receive(max_bytes, timeout)
                if not data:
                    return data  # the end: h11 judges a body cut short
                joined.received(data)
        except ChunkedFramingError as error:
            raise _framing_error(error) from None

    def _receive(self, max_bytes: int, timeout: float | None) -> bytes:
        """One read of the socket, with the errors httpcore's sync stream gives."""
        sock = self._socket
        if sock is None:
            return self._inner.read(max_bytes, timeout)
        try:
            if timeout != self._timeout:  # setting it is a system call: once, not every read
                sock.settimeout(timeout)
                self._timeout = timeout
            return sock.recv(max_bytes)
        except TimeoutError as error:  # socket.timeout
            raise httpcore.ReadTimeout(str(error)) from error
        except OSError as error:
            raise httpcore.ReadError(str(error)) from error

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._joined.sent(buffer)
        self._timeout = _UNSET  # httpcore's write sets the socket's timeout its own way
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, response: httpcore.Response, request: httpx.Request) -> None:
        self._stream: Any = response.stream
        network = response.extensions.get("network_stream")
        self._network = network if isinstance(network, _Stream) else None
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        with _mapped():
            network = self._network
            if network is not None:  # a chunked body's data: read past h11
                while data := network.read_body(READ_SIZE, _read_timeout(self._request)):
                    yield data
            yield from self._stream  # h11: the last chunk, or a body that is not chunked

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            with _mapped():
                close()


def bound_reads(response: httpx.Response, timeout: float) -> None:
    """Make the next reads of ``response``'s chunked body wait at most ``timeout`` seconds.

    A blocking read can only be bounded by its socket's timeout: this is how the sync
    client keeps a read from outlasting a call's deadline that is nearer than the read
    timeout the response was sent with. It sets the request's ``timeout`` extension
    (httpx's way of handing timeouts to a transport), which these transports read
    before each read of a body; another transport (an ``http_client`` passed in) read it
    once, when the body started, and keeps that read timeout.
    """
    extensions = response.request.extensions
    extensions["timeout"] = {**extensions.get("timeout", {}), "read": timeout}


class JoiningTransport(httpx.BaseTransport):
    """httpx's default HTTP/1.1 transport, a chunked body read past h11 (see module)."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context, network_backend=_Backend(), **_POOL
        )
        self._standard: httpx.HTTPTransport | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if httpx.HTTPTransport.handle_request is not _HTTPX_HANDLE:
            return self._patched().handle_request(request)  # recorded or mocked: theirs
        with _mapped():
            response = self._pool.handle_request(_core_request(request))
        return _httpx_response(response, _ResponseStream(response, request))

    def _patched(self) -> httpx.HTTPTransport:
        if self._standard is None:
            self._standard = httpx.HTTPTransport()
        return self._standard

    def close(self) -> None:
        self._pool.close()
        if self._standard is not None:
            self._standard.close()


def sync_client(base_url: str, timeout: httpx.Timeout) -> httpx.Client:
    """The ``httpx.Client`` a :class:`LettaClient` makes for itself."""
    context = _ssl_context()
    if context is None:
        return httpx.Client(base_url=base_url, timeout=timeout)
    return httpx.Client(base_url=base_url, timeout=timeout, transport=JoiningTransport(context))


# ------------------------------------------------------------------ async


class _AsyncStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._joined = JoinedChunks()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._next(self._joined.for_h11, max_bytes, timeout)

    async def read_body(self, max_bytes: int, timeout: float | None) -> bytes:
        """Async twin of :meth:`_Stream.read_body`."""
        return await self._next(self._joined.body_data, max_bytes, timeout)

    async def _next(
        self, take: Callable[[], bytes | None], max_bytes: int, timeout: float | None
    ) -> bytes:
        """Async twin of :meth:`_Stream._next`."""
        joined = self._joined
        try:
            while True:
                out = take()
                if out is not None:
                    return out
                data = await self._inner.read(max_bytes, timeout)
                if not data:
                    return data
                joined.received(data)
        except ChunkedFramingError as error:
            raise _framing_error(error) from None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._joined.sent(buffer)
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _AsyncStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _AsyncBackend(httpcore.AsyncNetworkBackend):
    """asyncio's transports (``_wire/aio.py``) under asyncio, anyio's backend otherwise (trio)."""

    def __init__(self) -> None:
        self._anyio = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        connect = aio.connect_tcp if _on_asyncio() else self._anyio.connect_tcp
        return _AsyncStream(await connect(host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        connect = aio.connect_unix_socket if _on_asyncio() else self._anyio.connect_unix_socket
        return _AsyncStream(await connect(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._anyio.sleep(seconds)


def _on_asyncio() -> bool:
    """Whether the running event loop is asyncio's (sniffio's answer, as httpcore asks it)."""
    return bool(sniffio.current_async_library() == "asyncio")


class _AsyncResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: httpcore.Response, request: httpx.Request) -> None:
        self._stream: Any = response.stream
        network = response.extensions.get("network_stream")
        self._network = network if isinstance(network, _AsyncStream) else None
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped():
            network = self._network
            if network is not None:
                while data := await network.read_body(READ_SIZE, _read_timeout(self._request)):
                    yield data
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with _mapped():
                await close()


class AsyncJoiningTransport(httpx.AsyncBaseTransport):
    """Async twin of :class:`JoiningTransport`."""

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, network_backend=_AsyncBackend(), **_POOL
        )
        self._standard: httpx.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if httpx.AsyncHTTPTransport.handle_async_request is not _HTTPX_HANDLE_ASYNC:
            return await self._patched().handle_async_request(request)
        with _mapped():
            response = await self._pool.handle_async_request(_core_request(request))
        return _httpx_response(response, _AsyncResponseStream(response, request))

    def _patched(self) -> httpx.AsyncHTTPTransport:
        if self._standard is None:
            self._standard = httpx.AsyncHTTPTransport()
        return self._standard

    async def aclose(self) -> None:
        await self._pool.aclose()
        if self._standard is not None:
            await self._standard.aclose()


def async_client(base_url: str, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` an :class:`AsyncLettaClient` makes for itself."""
    context = _ssl_context()
    if context is None:
        return httpx.AsyncClient(base_url=base_url, timeout=timeout)
    return httpx.AsyncClient(
        base_url=base_url, timeout=timeout, transport=AsyncJoiningTransport(context)
    )
