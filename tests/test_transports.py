"""Network faults through each transport the package uses, and what they prove (issue 18).

A message whose request may have reached the server is never sent again (the turn
would be stored twice); one that provably did not (refused, or no connection made in
time) is retried. These tests break real loopback connections at each point, through
each transport:

| transport | what carries the request |
|---|---|
| ``sync-httpx`` | ``LettaClient``: httpx's own transport |
| ``async-aiohttp``, ``uvloop-aiohttp`` | ``AsyncLettaClient``: aiohttp (httpx-aiohttp) |
| ``async-httpx``, ``uvloop-httpx`` | ``AsyncLettaClient(http_client=httpx.AsyncClient())`` |
| ``async-aiohttp-py`` | ``AsyncLettaClient``: aiohttp with its pure-Python parser (PyPy) |

httpx-aiohttp maps aiohttp's errors loosely (a server that hangs up after reading the
request surfaces as ``ConnectTimeout``); ``precise`` maps them again from aiohttp's
own error, which the tests at the end check class by class.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import aiohttp
import httpx
import pytest
from aiohttp import client_proto
from aiohttp.client_reqrep import ConnectionKey, RequestInfo
from aiohttp.http_parser import HttpResponseParserPy
from httpx_aiohttp.transport import map_aiohttp_exceptions
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from langchain_letta import LettaClient, OutgoingMessage, StreamRequest
from langchain_letta._wire import async_io, settings
from langchain_letta._wire.failures import error_from_transport
from langchain_letta._wire.http import ASYNC_TRANSPORT_ERRORS, precise
from langchain_letta.errors import (
    LettaConnectionError,
    LettaError,
    LettaStreamInterruptedError,
    LettaTimeoutError,
)
from langchain_letta.events import LettaEvent
from tests.conftest import LOOP_MODES, Mode, read_through

AGENT = "agent-0b5c3f0e-transports"
REQUEST = StreamRequest(messages=[OutgoingMessage(content="hi")])
MAX_RETRIES = 2
READ_TIMEOUT = 2.0
"""Long enough never to end a read of these fast servers; the stalls use ``STALL_TIMEOUT``."""
STALL_TIMEOUT = 0.3
TOTAL_TIMEOUT = 3.0
"""Every call's deadline: a fault that no timeout of the transport ends still ends here."""
CONNECT_TIMEOUT = 0.2
PATIENCE = 3.0
"""Most seconds a server thread waits for anything (then it gives up and hangs up)."""

FRAMES = [
    {"message_type": "reasoning_message", "id": "message-0", "reasoning": "Greet them."},
    {"message_type": "assistant_message", "id": "message-1", "content": "Hello"},
]
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)

TRANSPORTS = [
    ("sync", "httpx"),
    *((mode, transport) for mode in LOOP_MODES[1:] for transport in ("aiohttp", "httpx")),
    ("async", "aiohttp-py"),
]
"""(mode, transport): every way the package's clients send a request."""


@pytest.fixture(autouse=True)
def short_reads(monkeypatch: pytest.MonkeyPatch, waits: list[float]) -> list[float]:
    """Read timeouts shorter than the 35 s floor, and retry waits recorded, not slept."""
    monkeypatch.setattr(settings, "MIN_READ_TIMEOUT", 0.1)
    return waits


# ------------------------------------------------------------------ raw loopback servers


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def frame(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def reset(connection: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0) rather than a FIN."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


def hang_up(connection: socket.socket) -> None:
    """Send a FIN, then wait (bounded) for the client to close its side."""
    connection.shutdown(socket.SHUT_WR)
    connection.settimeout(PATIENCE)
    with contextlib.suppress(OSError):
        while connection.recv(65536):
            pass


class FaultServer:
    """A raw HTTP/1.1 server on 127.0.0.1 that breaks every connection the same way.

    Each connection is served by a thread of its own: the request is read whole (head
    and body) and recorded in ``requests``, then ``fault(server, connection)`` answers,
    or not. The server stops when closed, or by itself after ``PATIENCE`` seconds of
    each wait; a fault that cuts a body mid-way first waits until the client has
    delivered the frames sent before the cut (``delivered``), so that the cut is
    always seen after them, whatever the timing.
    """

    def __init__(self, fault: Callable[[FaultServer, socket.socket], None]) -> None:
        self.fault = fault
        self.requests: list[bytes] = []
        self.current = threading.local()
        """``current.request``: the request of the connection this thread serves."""
        self.delivered = threading.Event()
        self.closed = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self.base_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads[0].start()

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.closed.set()
        for thread in list(self._threads):
            thread.join(PATIENCE)
        self._listener.close()

    def _accept(self) -> None:
        deadline = time.monotonic() + 10 * PATIENCE
        while not self.closed.is_set() and time.monotonic() < deadline:
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        connection.settimeout(PATIENCE)
        try:
            self.current.request = self._read_request(connection)
            self.requests.append(self.current.request)
            self.fault(self, connection)
        except OSError:
            pass  # the client hung up first
        finally:
            connection.close()

    @staticmethod
    def _read_request(connection: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            received = connection.recv(65536)
            if not received:
                raise ConnectionResetError("the client hung up inside the request head")
            data += received
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            received = connection.recv(65536)
            if not received:
                raise ConnectionResetError("the client hung up inside the request body")
            body += received
        return head + b"\r\n\r\n" + body

    def wait(self, event: threading.Event) -> None:
        """Wait until ``event`` (or the server is closed), at most ``PATIENCE`` seconds."""
        deadline = time.monotonic() + PATIENCE
        while not event.is_set() and not self.closed.is_set() and time.monotonic() < deadline:
            event.wait(0.02)


def frames_then(cut: Callable[[socket.socket], None], tail: bytes = b"") -> Any:
    """A fault: the head and ``FRAMES`` in chunks; once delivered, ``tail``, then ``cut``."""

    def fault(server: FaultServer, connection: socket.socket) -> None:
        connection.sendall(SSE_HEAD + b"".join(chunk(frame(payload)) for payload in FRAMES))
        server.wait(server.delivered)
        if tail:
            connection.sendall(tail)
        cut(connection)

    return fault


def answer_whole(server: FaultServer, connection: socket.socket) -> None:
    done = b"data: [DONE]\n\n"
    body = b"".join(chunk(frame(payload)) for payload in FRAMES) + chunk(done) + b"0\r\n\r\n"
    connection.sendall(SSE_HEAD + body)
    hang_up(connection)


def reset_before_the_head(server: FaultServer, connection: socket.socket) -> None:
    reset(connection)


def hang_up_before_the_head(server: FaultServer, connection: socket.socket) -> None:
    hang_up(connection)


def garbage_for_a_head(server: FaultServer, connection: socket.socket) -> None:
    connection.sendall(b"this is no HTTP response\r\n\r\n")
    hang_up(connection)


def silence_before_the_head(server: FaultServer, connection: socket.socket) -> None:
    server.wait(threading.Event())


def silence_after_the_frames(server: FaultServer, connection: socket.socket) -> None:
    connection.sendall(SSE_HEAD + b"".join(chunk(frame(payload)) for payload in FRAMES))
    server.wait(threading.Event())


PART_OF_A_CHUNK = b"40\r\ndata: {"
"""The size line of the next chunk and the start of its frame: the cut is inside both."""


@contextlib.contextmanager
def refusing_port() -> Iterator[str]:
    """A loopback port bound but not listening: every connection to it is refused."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{bound.getsockname()[1]}"


@contextlib.contextmanager
def unanswered_port() -> Iterator[str]:
    """A loopback port whose accept queue is full: connecting to it times out.

    With a backlog of 0 the kernel queues one connection; it is taken by a socket here,
    and the SYNs of every later connection are dropped, unanswered.
    """
    with socket.create_server(("127.0.0.1", 0), backlog=0) as listener:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with socket.create_connection(listener.getsockname()[:2], timeout=PATIENCE):
            yield url


# ------------------------------------------------------------------ one call per transport


@dataclass
class Outcome:
    """What one streamed call delivered, and the error that ended it."""

    events: list[LettaEvent]
    error: LettaError | None
    carried_by: list[str] = field(default_factory=list)


class Hung(AssertionError):
    """The async client delivered nothing, and did not end, well past its deadline."""


def call(
    mode: Mode,
    transport: str,
    base_url: str,
    delivered: threading.Event | None = None,
    read_timeout: float = READ_TIMEOUT,
    total_timeout: float = TOTAL_TIMEOUT,
) -> Outcome:
    """Stream ``REQUEST`` once through ``transport`` (foreground, no health probe).

    ``delivered`` is set once the consumer has every frame of ``FRAMES``. Which client
    carried the request, and on which event loop, is recorded in ``carried_by``. An
    async call that outlasts its deadline by far raises ``Hung``: a test fails rather
    than wait for ever.
    """
    carried_by: list[str] = []
    given = None
    if mode != "sync" and transport == "httpx":
        given = httpx.AsyncClient(timeout=httpx.Timeout(read_timeout, connect=CONNECT_TIMEOUT))
    options: dict[str, Any] = {
        "base_url": base_url,
        "max_retries": MAX_RETRIES,
        "background": False,
        "dialect": "current",
        "timeout": read_timeout,
        "connect_timeout": CONNECT_TIMEOUT,
        "total_timeout": total_timeout,
    }
    if given is not None:
        options["http_client"] = given

    def note(count: int) -> None:
        if delivered is not None and count == len(FRAMES):
            delivered.set()

    def tap(events: Iterator[LettaEvent]) -> Iterator[LettaEvent]:
        for count, event in enumerate(events, 1):
            yield event
            note(count)

    async def atap(events: AsyncIterator[LettaEvent]) -> AsyncIterator[LettaEvent]:
        count = 0
        try:
            while True:
                try:
                    event = await asyncio.wait_for(anext(events), total_timeout + 0.5)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise Hung(f"no end {total_timeout + 0.5} s into a call") from None
                yield event
                count += 1
                note(count)
        finally:
            if given is not None:
                await given.aclose()

    def open_stream(client: Any) -> Any:
        if isinstance(client, LettaClient):
            carried_by.append(type(client._http).__name__)
            return tap(iter(client.stream(AGENT, REQUEST)))
        http = client._http.for_request()
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
        carried_by.append(f"{type(http).__name__} on {loop}")
        return atap(client.stream(AGENT, REQUEST).__aiter__())

    parser = contextlib.nullcontext()
    if transport == "aiohttp-py":  # aiohttp without its C extensions (PyPy, or no wheel)
        parser = mock.patch.object(client_proto, "HttpResponseParser", HttpResponseParserPy)
    with parser:
        events, error = read_through(mode, open_stream, **options)
    return Outcome(events, error, carried_by)


CARRIERS = {
    ("sync", "httpx"): "Client",
    ("async", "aiohttp"): "HttpxAiohttpClient on asyncio",
    ("async", "aiohttp-py"): "HttpxAiohttpClient on asyncio",
    ("async", "httpx"): "AsyncClient on asyncio",
    ("uvloop", "aiohttp"): "HttpxAiohttpClient on uvloop",
    ("uvloop", "httpx"): "AsyncClient on uvloop",
}


def assert_sent_once_never_again(outcome: Outcome, server: FaultServer, waits: list[float]) -> None:
    """The request reached the server: the error says so, and nothing was sent again."""
    error = outcome.error
    assert error is not None
    assert error.request_accepted  # it may be stored: the caller must not send it again
    assert not error.is_retryable
    assert len(server.requests) == 1
    assert waits == []  # no retry was even considered


# ------------------------------------------------------------------ the matrix


@pytest.mark.parametrize(("mode", "transport"), TRANSPORTS)
def test_an_unbroken_stream_is_read_whole_on_the_transport_meant(
    mode: Mode, transport: str, waits: list[float]
) -> None:
    """The control: these servers speak HTTP, and each case goes the way it names."""
    with FaultServer(answer_whole) as server:
        outcome = call(mode, transport, server.base_url)
    assert outcome.error is None
    assert [event.raw for event in outcome.events] == FRAMES
    assert outcome.carried_by == [CARRIERS[mode, transport]]
    assert len(server.requests) == 1
    assert server.requests[0].startswith(f"POST /v1/agents/{AGENT}/messages/stream ".encode())


@pytest.mark.parametrize(("mode", "transport"), TRANSPORTS)
def test_a_refused_connection_is_retried_then_fails_typed_as_not_sent(
    mode: Mode, transport: str, waits: list[float]
) -> None:
    with refusing_port() as base_url:
        outcome = call(mode, transport, base_url)
    error = outcome.error
    assert type(error) is LettaConnectionError
    assert not error.request_accepted
    assert error.is_retryable
    assert len(waits) == MAX_RETRIES  # max_retries + 1 attempts
    assert outcome.events == []


@pytest.mark.parametrize(("mode", "transport"), TRANSPORTS)
def test_a_connect_timeout_is_retried_then_fails_typed_as_not_sent(
    mode: Mode, transport: str, waits: list[float]
) -> None:
    with unanswered_port() as base_url:
        started = time.monotonic()
        outcome = call(mode, transport, base_url)
        elapsed = time.monotonic() - started
    error = outcome.error
    assert type(error) is LettaTimeoutError
    assert not error.request_accepted
    assert error.is_retryable
    assert len(waits) == MAX_RETRIES
    assert elapsed < (MAX_RETRIES + 1) * CONNECT_TIMEOUT + 2  # each attempt bounded


FAULTS_AFTER_THE_REQUEST = {
    "reset-before-the-head": (reset_before_the_head, LettaConnectionError, 0),
    "hang-up-before-the-head": (hang_up_before_the_head, LettaConnectionError, 0),
    "garbage-for-a-head": (garbage_for_a_head, LettaConnectionError, 0),
    "hang-up-mid-body": (frames_then(hang_up, PART_OF_A_CHUNK), LettaStreamInterruptedError, 2),
    "reset-mid-body": (frames_then(reset, PART_OF_A_CHUNK), LettaStreamInterruptedError, 2),
    "hang-up-between-chunks": (frames_then(hang_up), LettaStreamInterruptedError, 2),
    "bad-chunk-size": (frames_then(hang_up, b"zz\r\n"), LettaStreamInterruptedError, 2),
}
"""fault: (what the server does after reading the request, error, frames delivered first)."""

SILENT_AFTER_A_BAD_CHUNK = {"aiohttp"}
"""aiohttp's C parser fails an invalid chunk size on its connection, not on the body, and
stops its read timer: the body waits, and the client's own bound on every read ends it
with a read timeout (the frames before still delivered)."""


def after_the_request() -> list[Any]:
    return [
        pytest.param(mode, transport, fault)
        for mode, transport in TRANSPORTS
        for fault in FAULTS_AFTER_THE_REQUEST
    ]


@pytest.mark.parametrize(("mode", "transport", "fault"), after_the_request())
def test_a_connection_broken_after_the_request_was_written_is_never_sent_again(
    mode: Mode, transport: str, fault: str, waits: list[float]
) -> None:
    act, error_class, delivered = FAULTS_AFTER_THE_REQUEST[fault]
    if fault == "bad-chunk-size" and transport in SILENT_AFTER_A_BAD_CHUNK:
        error_class = LettaTimeoutError
    with FaultServer(act) as server:
        started = time.monotonic()
        outcome = call(mode, transport, server.base_url, server.delivered)
        elapsed = time.monotonic() - started
    assert elapsed < TOTAL_TIMEOUT - 0.5  # ended by the fault, not by the deadline
    assert type(outcome.error) is error_class, outcome.error
    assert_sent_once_never_again(outcome, server, waits)
    assert [event.raw for event in outcome.events] == FRAMES[:delivered]  # nothing lost
    if delivered:
        assert outcome.error.progress is not None
        assert outcome.error.progress.events_received == delivered


@pytest.mark.parametrize(
    ("fault", "delivered"),
    [(silence_before_the_head, 0), (silence_after_the_frames, 2)],
    ids=["before-the-head", "after-the-head"],
)
@pytest.mark.parametrize(("mode", "transport"), TRANSPORTS)
def test_a_stall_past_the_read_timeout_is_a_typed_timeout_never_sent_again(
    mode: Mode, transport: str, fault: Any, delivered: int, waits: list[float]
) -> None:
    with FaultServer(fault) as server:
        started = time.monotonic()
        outcome = call(mode, transport, server.base_url, read_timeout=STALL_TIMEOUT)
        elapsed = time.monotonic() - started
    assert type(outcome.error) is LettaTimeoutError, outcome.error
    assert_sent_once_never_again(outcome, server, waits)
    assert [event.raw for event in outcome.events] == FRAMES[:delivered]
    assert elapsed < STALL_TIMEOUT + 1.5  # ended by the read timeout, not the server


MANY = [
    {"message_type": "assistant_message", "id": f"message-{i}", "content": f"w{i} "}
    for i in range(3_000)
]
"""Enough frames, one per HTTP chunk and sent at once, that a sync body is read ahead."""


def many_frames_then(cut: Callable[[socket.socket], None]) -> Any:
    """A fault: the head and ``MANY`` back to back, then ``cut`` (the body never ends)."""

    def fault(server: FaultServer, connection: socket.socket) -> None:
        connection.sendall(SSE_HEAD + b"".join(chunk(frame(payload)) for payload in MANY))
        cut(connection)

    return fault


def stall(connection: socket.socket) -> None:
    """Say nothing more (until the server gives up)."""
    time.sleep(PATIENCE)


@pytest.mark.parametrize(
    ("cut", "error_class"),
    [(hang_up, LettaStreamInterruptedError), (stall, LettaTimeoutError)],
    ids=["hang-up", "stall"],
)
@pytest.mark.parametrize(("mode", "transport"), TRANSPORTS)
def test_a_body_broken_after_many_frames_back_to_back_delivers_them_all_first(
    mode: Mode, transport: str, cut: Any, error_class: type[LettaError], waits: list[float]
) -> None:
    """Sync, such a body is read ahead on a thread: what it read comes before the error.

    aiohttp is the exception: a connection that ends early fails its reader before the
    bytes still waiting in it are handed over (``StreamReader.read`` raises first), so a
    foreground stream gets a prefix of what arrived. A background run is resumed from
    the last event delivered, so nothing is lost there (``test_resume_fuzz.py``).
    """
    with FaultServer(many_frames_then(cut)) as server:
        started = time.monotonic()
        outcome = call(mode, transport, server.base_url, read_timeout=STALL_TIMEOUT)
        elapsed = time.monotonic() - started
    assert type(outcome.error) is error_class, outcome.error
    delivered = [event.raw for event in outcome.events]
    if cut is hang_up and transport.startswith("aiohttp"):
        assert delivered == MANY[: len(delivered)]  # in order, none twice, maybe fewer
    else:
        assert delivered == MANY  # nothing lost, in order
    assert_sent_once_never_again(outcome, server, waits)
    assert elapsed < TOTAL_TIMEOUT - 0.5  # ended by the cut or the read timeout


def pings_for_ever(server: FaultServer, connection: socket.socket) -> None:
    """The head, then a ping every 50 ms: every read brings data, none an event."""
    connection.sendall(SSE_HEAD)
    ping = chunk(b'data: {"message_type":"ping","id":"ping-1"}\n\n')
    deadline = time.monotonic() + PATIENCE
    while not server.closed.is_set() and time.monotonic() < deadline:
        connection.sendall(ping)
        time.sleep(0.05)


@pytest.mark.parametrize("mode", LOOP_MODES[1:])
def test_a_deadline_timer_that_fires_a_little_early_still_ends_the_call_as_the_deadline(
    mode: Mode, waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvloop's timers run on libuv's millisecond clock, and fire before ``time.monotonic()``
    reaches their deadline about one time in four: here every one fires 5 ms early."""
    exact = async_io.Body.read

    async def early(
        body: async_io.Body, seconds: float
    ) -> bytes | httpx.TransportError | httpx.DecodingError:
        return await exact(body, max(seconds - 0.005, 0))

    monkeypatch.setattr(async_io.Body, "read", early)
    with FaultServer(pings_for_ever) as server:
        outcome = call(mode, "aiohttp", server.base_url, total_timeout=0.5)
    assert isinstance(outcome.error, LettaTimeoutError)
    assert outcome.error.request_accepted
    assert "total_timeout" in str(outcome.error), outcome.error  # not "no data from the server"


# ------------------------------------------------------------------ precise()

_KEY = ConnectionKey(**{**dict.fromkeys(ConnectionKey._fields), "host": "127.0.0.1", "port": 9})
_INFO = RequestInfo(URL("http://127.0.0.1:9/"), "POST", CIMultiDictProxy(CIMultiDict()))

PRECISE = {
    "ClientConnectorError": (
        lambda: aiohttp.ClientConnectorError(_KEY, ConnectionRefusedError(111, "refused")),
        httpx.ConnectError,
        LettaConnectionError,
        False,
    ),
    "ConnectionTimeoutError": (
        lambda: aiohttp.ConnectionTimeoutError("Connection timeout to host"),
        httpx.ConnectTimeout,
        LettaTimeoutError,
        False,
    ),
    "SocketTimeoutError": (
        lambda: aiohttp.SocketTimeoutError("Timeout on reading data from socket"),
        httpx.ReadTimeout,
        LettaTimeoutError,
        True,
    ),
    "ServerDisconnectedError": (
        lambda: aiohttp.ServerDisconnectedError(),
        httpx.ReadError,
        LettaConnectionError,
        True,
    ),
    "ClientOSError": (
        lambda: aiohttp.ClientOSError(104, "Connection reset by peer"),
        httpx.ReadError,
        LettaConnectionError,
        True,
    ),
    "ClientPayloadError": (
        lambda: aiohttp.ClientPayloadError("Response payload is not completed"),
        httpx.RemoteProtocolError,
        LettaConnectionError,
        True,
    ),
    "ClientResponseError": (
        lambda: aiohttp.ClientResponseError(_INFO, (), status=400, message="Invalid status"),
        httpx.RemoteProtocolError,
        LettaConnectionError,
        True,
    ),
}
"""aiohttp's error: (how to make it, its precise httpx error, the verdict, request_accepted)."""


def as_the_client_gets_it(make: Callable[[], aiohttp.ClientError]) -> Exception:
    """The error as it leaves httpx-aiohttp: mapped loosely, or aiohttp's own."""
    with pytest.raises(ASYNC_TRANSPORT_ERRORS) as caught, map_aiohttp_exceptions():
        raise make()
    return caught.value


@pytest.mark.parametrize("kind", list(PRECISE))
def test_precise_maps_each_aiohttp_error_to_what_it_proves_about_the_request(kind: str) -> None:
    make, httpx_class, error_class, accepted = PRECISE[kind]
    loose = as_the_client_gets_it(make)
    for error in (loose, make()):  # through httpx-aiohttp, and aiohttp's own (the cause)
        exact = precise(error)
        assert type(exact) is httpx_class
        verdict = error_from_transport(exact)
        assert type(verdict) is error_class
        assert verdict.request_accepted is accepted
        assert verdict.is_retryable is not accepted  # retried only if never sent


@pytest.mark.parametrize("kind", ["ServerDisconnectedError", "ClientOSError"])
def test_httpx_aiohttp_alone_would_read_a_hang_up_as_never_sent(kind: str) -> None:
    """Why ``precise`` exists: without it these would be retried, and the turn stored twice."""
    loose = as_the_client_gets_it(PRECISE[kind][0])
    assert isinstance(loose, httpx.ConnectTimeout)
    assert error_from_transport(loose).is_retryable
    assert error_from_transport(precise(loose)).request_accepted


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("x")],
)
def test_precise_keeps_an_error_of_httpx_own_transport(error: httpx.TransportError) -> None:
    assert precise(error) is error
