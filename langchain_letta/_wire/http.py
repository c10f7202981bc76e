"""The HTTP clients this package makes, and what a transport's error says of the request.

Sync calls go through httpx's own transport; async calls through aiohttp, by
httpx-aiohttp (what letta-client and openai offer as their fastest async setup),
except while a mock or recorder has replaced httpx's transport (respx, pytest-httpx,
vcrpy): then through httpx's own, so that it sees every request whenever it was
started. A client passed in by the caller is used as it is. Async calls run on
asyncio (uvloop included): their waits, locks and tasks are asyncio's.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import aiohttp
import httpcore
import httpx
import sniffio
from aiohttp.http_exceptions import HttpProcessingError
from httpx_aiohttp import HttpxAiohttpClient

from langchain_letta.errors import LettaInvalidRequestError

LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
"""One connection per concurrent stream, as letta-client allows; idle ones kept 5 s."""

ASYNC_TRANSPORT_ERRORS = (httpx.TransportError, aiohttp.ClientError, HttpProcessingError)
"""What an async request or read may raise for a network failure: httpx-aiohttp lets
some of aiohttp's own through (a malformed response head, for one; a malformed chunk
from aiohttp's pure-Python parser)."""


def sync_client(timeout: httpx.Timeout) -> httpx.Client:
    """A client on httpx's own transport (proxies and TLS from the environment)."""
    return httpx.Client(timeout=timeout, limits=LIMITS)


def raw(response: httpx.Response) -> bool:
    """Whether ``response``'s body is read raw (``iter_raw``): httpx would pass it through.

    So it does for a body that names no content coding and was not read already (a
    mock's response made from bytes is). Raw, each read is spared the identity
    decoder and the generator layer httpx puts on it; otherwise ``iter_bytes``.
    """
    return not response.is_stream_consumed and "content-encoding" not in response.headers


class AsyncClients:
    """The async HTTP client of one ``AsyncLettaClient``, chosen for each request.

    ``given``, if any, serves every request. Otherwise each of the two clients is made
    on first use: aiohttp's, or httpx's own while httpx is mocked. The clients made here
    are closed by :meth:`aclose`, or else when their event loop shuts down
    (``asyncio.run`` ending, a server stopping): an aiohttp session left open would be
    reported as unclosed.
    """

    def __init__(self, given: httpx.AsyncClient | None, timeout: httpx.Timeout) -> None:
        self._given = given
        self._timeout = timeout
        self._aiohttp: httpx.AsyncClient | None = None
        self._httpx: httpx.AsyncClient | None = None
        self._closer: AsyncGenerator[None, None] | None = None

    def for_request(self) -> httpx.AsyncClient:
        """The client for a request made now, in the running event loop.

        Raises:
            LettaInvalidRequestError: The running event loop is not asyncio's (trio).
        """
        _require_asyncio()
        if self._given is not None:
            return self._given
        if not _httpx_mocked():
            if self._aiohttp is None:
                self._aiohttp = HttpxAiohttpClient(timeout=self._timeout, limits=LIMITS)
                self._close_with_loop()
            return self._aiohttp
        if self._httpx is None:
            self._httpx = httpx.AsyncClient(timeout=self._timeout, limits=LIMITS)
            self._close_with_loop()
        return self._httpx

    async def aclose(self) -> None:
        """Close the clients made here (a given one stays open: its owner closes it)."""
        closer, self._closer = self._closer, None
        if closer is not None:
            await closer.aclose()

    def _close_with_loop(self) -> None:
        """Start an async generator whose end closes the clients made here.

        The running loop keeps track of every started async generator and closes them
        all when it shuts down (``loop.shutdown_asyncgens``, which ``asyncio.run`` and
        uvicorn call): that is the hook that closes the clients then.
        """
        if self._closer is None:
            self._closer = self._closing()
            first_step = self._closer.__anext__()
            with contextlib.suppress(StopIteration):
                first_step.send(None)  # runs to its ``yield`` at once: nothing awaited

    async def _closing(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            made = [client for client in (self._aiohttp, self._httpx) if client is not None]
            self._aiohttp = self._httpx = None
            for client in made:
                await client.aclose()


def _require_asyncio() -> None:
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        library = "no event loop"
    if library != "asyncio":
        raise LettaInvalidRequestError(
            f"the async Letta client runs on asyncio (uvloop included), not on {library}: "
            "call the sync API in a worker thread instead; nothing was sent",
            is_retryable=False,
        )


def _httpx_mocked() -> bool:
    """Whether a mock replaced httpx's (or httpcore's) async transport with its own.

    Checked per request, so the order of imports and mocks does not matter.
    """
    return not (
        _own(httpx.AsyncHTTPTransport.handle_async_request, "httpx.")
        and _own(httpcore.AsyncConnectionPool.handle_async_request, "httpcore.")
    )


def _own(function: object, package: str) -> bool:
    """Whether ``function`` is still the package's own, not a mock's.

    A mock either defines its replacement in its own module (respx, pytest-httpx), or
    wraps the original, keeping its module but adding ``__wrapped__`` (vcrpy's
    ``functools.wraps``).
    """
    module = getattr(function, "__module__", None)
    return (
        isinstance(module, str)
        and module.startswith(package)
        and not hasattr(function, "__wrapped__")
    )


def precise(
    error: httpx.TransportError | aiohttp.ClientError | HttpProcessingError,
) -> httpx.TransportError:
    """The httpx error that says what ``error`` proves about the request.

    httpx-aiohttp maps aiohttp's errors loosely: a server that hangs up after the
    request was written surfaces as ``ConnectTimeout``, which would read as "never
    sent". From aiohttp's own error (the cause), only a failure to connect says the
    request was not sent; anything else may have reached the server.
    """
    if isinstance(error, HttpProcessingError):
        return httpx.RemoteProtocolError(type(error).__name__)
    if isinstance(error, httpx.TransportError):
        cause = error.__cause__
        if not isinstance(cause, aiohttp.ClientError):
            return error
    else:
        cause = error
    kind = type(cause).__name__
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError(kind)
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(kind)
    if isinstance(cause, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(kind)
    if isinstance(cause, (aiohttp.ClientPayloadError, aiohttp.ClientResponseError)):
        return httpx.RemoteProtocolError(kind)
    return httpx.ReadError(kind)
