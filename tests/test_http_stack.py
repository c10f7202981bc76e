"""The HTTP stack under the clients (issue 18): the ecosystem's clients, configured as usual.

Sync calls go through httpx's own transport; async calls on asyncio through aiohttp (by
httpx-aiohttp), and through httpx's own transport while a mock replaces it. These tests
check, over loopback, what a user of httpx expects of any client built on it: proxies and
TLS from the environment, timeouts and pooling, sockets closed by ``close()``, a client of
one's own used as given, and mocks and recorders that see every request whatever the
order of imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import socketserver
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
import trustme
import vcr  # type: ignore[import-untyped]
from httpx_aiohttp import HttpxAiohttpClient
from langchain_core.load import dumpd
from langchain_core.messages import AIMessage, HumanMessage
from pytest_httpx import HTTPXMock

from langchain_letta import (
    AsyncLettaClient,
    ChatLetta,
    LettaAgentRunnable,
    LettaClient,
    OutgoingMessage,
    StreamRequest,
    letta_node,
)
from langchain_letta._wire import settings as client_module
from langchain_letta.errors import LettaConnectionError, LettaError, LettaTimeoutError
from langchain_letta.events import LettaEvent
from langchain_letta.testing import FakeLettaServer, Reply
from tests.conftest import MODES, Mode, read_through

AGENT = "agent-0b5c3f0e-http-stack"
REQUEST = StreamRequest(messages=[OutgoingMessage(content="hi")])
HELLO = "Hello through the stack"
MOCKED = "Hello from the mock"
HEALTH = {"version": "0.16.8"}
STREAM_PATH = "/v1/conversations/default/messages"  # agent-direct mode (0.16.6+)


def answer(text: str = HELLO) -> Reply:
    """A whole foreground turn: one assistant message, then ``[DONE]``."""
    message = {"message_type": "assistant_message", "id": "message-1", "content": text}
    return Reply.events(message)


def stream_body(text: str = HELLO) -> bytes:
    """The SSE body of :func:`answer`, byte for byte, for mocks."""
    return answer(text).body


def texts(events: list[LettaEvent]) -> list[str]:
    return [event.raw["content"] for event in events if event.raw.get("content")]


def collect(
    base_url: str, mode: Mode, **options: Any
) -> tuple[list[LettaEvent], LettaError | None]:
    """Stream ``REQUEST`` with the sync or async client: the events and the error, if any."""
    return read_through(
        mode, lambda client: client.stream(AGENT, REQUEST), base_url=base_url, **options
    )


def chat(model: ChatLetta, mode: Mode) -> AIMessage:
    """``invoke`` or ``ainvoke`` one turn."""
    reply = model.invoke("hi") if mode == "sync" else asyncio.run(model.ainvoke("hi"))
    assert isinstance(reply, AIMessage)
    return reply


def closed_port() -> int:
    """A loopback port nobody listens on: a request that reaches the network is refused."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def uses_aiohttp(client: AsyncLettaClient) -> bool:
    """Whether the client's requests so far went through aiohttp, and only through it."""
    clients = client._http
    return isinstance(clients._aiohttp, HttpxAiohttpClient) and clients._httpx is None


def wait_until(condition: Callable[[], bool], seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


async def await_until(condition: Callable[[], bool], seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


# ------------------------------------------------------------------ loopback servers


class _ProxyHandler(socketserver.StreamRequestHandler):
    server: ForwardProxy

    def handle(self) -> None:
        line = self.rfile.readline()
        if not line:
            return
        method, target, version = line.decode("latin-1").split()
        head: list[bytes] = []
        length = 0
        while (header := self.rfile.readline()) not in (b"\r\n", b""):
            name, _, value = header.decode("latin-1").partition(":")
            if name.strip().lower() in ("connection", "proxy-connection", "keep-alive"):
                continue
            if name.strip().lower() == "content-length":
                length = int(value)
            head.append(header)
        body = self.rfile.read(length)
        self.server.requests.append(f"{method} {target}")
        url = urllib.parse.urlsplit(target)  # absolute form, as a client sends to a proxy
        assert url.scheme == "http"
        assert url.hostname is not None
        assert url.port is not None
        path = url.path + (f"?{url.query}" if url.query else "")
        with socket.create_connection((url.hostname, url.port), timeout=10) as upstream:
            line = f"{method} {path} {version}\r\n".encode()
            upstream.sendall(line + b"".join(head) + b"connection: close\r\n\r\n" + body)
            while chunk := upstream.recv(65536):
                self.wfile.write(chunk)
                self.wfile.flush()


class ForwardProxy(socketserver.ThreadingTCPServer):
    """A plain HTTP forward proxy on loopback: one request per connection, relayed as it comes."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.requests: list[str] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> ForwardProxy:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()


class KeepAliveServer:
    """A raw HTTP/1.1 Letta server on loopback that keeps connections open between requests.

    It counts the TCP connections it accepts, and sees each one's end (EOF): what the fake
    server (uvicorn) does not show.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.accepted = 0
        self.ended = 0
        self.requests: list[str] = []
        self._lock = threading.Lock()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return self.accepted - self.ended

    def __enter__(self) -> KeepAliveServer:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            try:
                while line := reader.readline():
                    method, path, _ = line.decode().split(" ", 2)
                    length = 0
                    while (header := reader.readline()) not in (b"\r\n", b""):
                        name, _, value = header.decode().partition(":")
                        if name.lower() == "content-length":
                            length = int(value)
                    reader.read(length)
                    self.requests.append(f"{method} {path}")
                    if path.startswith("/v1/health"):
                        kind, body = "application/json", json.dumps(HEALTH).encode()
                    else:
                        kind, body = "text/event-stream", stream_body()
                    head = f"HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\n"
                    conn.sendall(f"{head}content-length: {len(body)}\r\n\r\n".encode() + body)
            except OSError:
                pass  # reset by the client: an end as well
            finally:
                with self._lock:
                    self.ended += 1


# ------------------------------------------------------------------ 1: proxies


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardProxy]:
    """A forward proxy set in the environment for plain HTTP, with no exception to it."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with ForwardProxy() as running:
        monkeypatch.setenv("HTTP_PROXY", running.url)
        monkeypatch.setenv("http_proxy", running.url)
        yield running


@pytest.mark.parametrize("mode", MODES)
def test_a_proxy_from_the_environment_carries_every_request(
    mode: Mode, proxy: ForwardProxy
) -> None:
    used_aiohttp: list[bool] = []

    async def through_aiohttp() -> tuple[list[LettaEvent], LettaError | None]:
        events: list[LettaEvent] = []
        async with AsyncLettaClient(base_url=server.base_url) as client:
            events.extend([event async for event in client.stream(AGENT, REQUEST)])
            used_aiohttp.append(uses_aiohttp(client))
        return events, None

    with FakeLettaServer([answer()]) as server:
        if mode == "sync":
            events, error = collect(server.base_url, mode)
        else:
            events, error = asyncio.run(through_aiohttp())
    assert error is None
    assert texts(events) == [HELLO]
    assert proxy.requests == [
        f"GET {server.base_url}/v1/health/",
        f"POST {server.base_url}{STREAM_PATH}",
    ]
    assert len(server.stream_requests) == 1
    assert used_aiohttp == ([] if mode == "sync" else [True])


# ------------------------------------------------------------------ 2: TLS


class TLSFront:
    """TLS on loopback in front of a fake server: each connection relayed to it as it comes.

    A client that refuses the certificate never gets a connection through: the fake
    server receives nothing.
    """

    def __init__(self, cert: trustme.LeafCert, upstream: FakeLettaServer) -> None:
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self._context)
        target = urllib.parse.urlsplit(upstream.base_url)
        self._upstream = (str(target.hostname), int(target.port or 80))
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(lambda _loop, _context: None)  # refused handshakes
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.relayed = 0
        self.base_url = ""

    def __enter__(self) -> TLSFront:
        self._thread.start()
        serving = asyncio.start_server(self._relay, "127.0.0.1", 0, ssl=self._context)
        self._server = asyncio.run_coroutine_threadsafe(serving, self._loop).result(5)
        self.base_url = f"https://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.relayed += 1
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_fake(ca: trustme.CA) -> Iterator[tuple[TLSFront, FakeLettaServer]]:
    """The fake server behind TLS, with a certificate of ``ca`` for 127.0.0.1."""
    with (
        FakeLettaServer([answer()]) as server,
        TLSFront(ca.issue_cert("127.0.0.1"), server) as front,
    ):
        yield front, server


@pytest.mark.parametrize("mode", MODES)
def test_tls_is_verified_with_the_ca_of_ssl_cert_file(
    mode: Mode,
    ca: trustme.CA,
    tls_fake: tuple[TLSFront, FakeLettaServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    front, server = tls_fake
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    used_aiohttp: list[bool] = []

    async def through_aiohttp() -> tuple[list[LettaEvent], LettaError | None]:
        async with AsyncLettaClient(base_url=front.base_url) as client:
            events = [event async for event in client.stream(AGENT, REQUEST)]
            used_aiohttp.append(uses_aiohttp(client))
        return events, None

    if mode == "sync":
        events, error = collect(front.base_url, mode)
    else:
        events, error = asyncio.run(through_aiohttp())
    assert error is None
    assert texts(events) == [HELLO]
    assert [r.path for r in server.received] == ["/v1/health/", STREAM_PATH]
    assert front.relayed == 1  # one TLS connection for both
    assert used_aiohttp == ([] if mode == "sync" else [True])


@pytest.mark.parametrize("mode", MODES)
def test_an_untrusted_certificate_fails_typed_with_nothing_sent(
    mode: Mode, tls_fake: tuple[TLSFront, FakeLettaServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    front, server = tls_fake
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    events, error = collect(front.base_url, mode, max_retries=0)
    assert events == []
    assert type(error) is LettaConnectionError
    assert not error.request_accepted
    assert error.is_retryable
    assert "cannot reach the Letta server (ConnectError" in str(error)
    assert server.received == []
    assert front.relayed == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_given_client_verifies_with_its_own_context(
    mode: Mode, ca: trustme.CA, tls_fake: tuple[TLSFront, FakeLettaServer]
) -> None:
    front, server = tls_fake
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if mode == "sync":
        with httpx.Client(verify=context) as given:
            events, error = collect(front.base_url, mode, http_client=given)
    else:

        async def run() -> tuple[list[LettaEvent], LettaError | None]:
            async with httpx.AsyncClient(verify=context) as given:
                client = AsyncLettaClient(base_url=front.base_url, http_client=given)
                return [event async for event in client.stream(AGENT, REQUEST)], None

        events, error = asyncio.run(run())
    assert error is None
    assert texts(events) == [HELLO]
    assert [r.path for r in server.received] == ["/v1/health/", STREAM_PATH]


# ------------------------------------------------------------------ 3: timeouts and the pool


@pytest.mark.parametrize("mode", MODES)
def test_the_read_timeout_bounds_a_silence_after_the_response_began(
    mode: Mode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server sends its head and a first event, then nothing: the call ends after ~1 s."""
    monkeypatch.setattr(client_module, "MIN_READ_TIMEOUT", 0.1)
    stalled = Reply.events(
        {"message_type": "assistant_message", "id": "message-1", "content": HELLO},
        {"message_type": "assistant_message", "id": "message-2", "content": "never sent"},
    ).with_faults(stall_after=1)
    used_aiohttp: list[bool] = []

    async def through_aiohttp() -> tuple[list[LettaEvent], LettaError | None]:
        events: list[LettaEvent] = []
        async with AsyncLettaClient(base_url=server.base_url, **options) as client:
            try:
                async for event in client.stream(AGENT, REQUEST):
                    events.append(event)
            except LettaError as error:
                return events, error
            finally:
                used_aiohttp.append(uses_aiohttp(client))
        return events, None

    options: dict[str, Any] = {"timeout": 1.0, "background": False, "total_timeout": 20.0}
    with FakeLettaServer([stalled]) as server:
        started = time.monotonic()
        if mode == "sync":
            events, error = collect(server.base_url, mode, **options)
        else:
            events, error = asyncio.run(through_aiohttp())
        elapsed = time.monotonic() - started
    assert texts(events) == [HELLO]
    assert type(error) is LettaTimeoutError
    assert error.request_accepted
    assert "read timeout" in str(error)
    assert 0.9 < elapsed < 3.0
    assert used_aiohttp == ([] if mode == "sync" else [True])


@pytest.mark.parametrize("mode", MODES)
def test_consecutive_calls_reuse_one_connection(mode: Mode) -> None:
    async def three() -> bool:
        async with AsyncLettaClient(base_url=server.base_url) as client:
            for _ in range(3):
                assert texts([event async for event in client.stream(AGENT, REQUEST)]) == [HELLO]
                await asyncio.sleep(0.2)  # the response's end is read in the background
            return uses_aiohttp(client)

    with KeepAliveServer() as server:
        if mode == "sync":
            with LettaClient(base_url=server.base_url) as client:
                for _ in range(3):
                    assert texts(list(client.stream(AGENT, REQUEST))) == [HELLO]
                    time.sleep(0.2)
        else:
            assert asyncio.run(three())
    assert server.requests == ["GET /v1/health/"] + [f"POST {STREAM_PATH}"] * 3
    assert server.accepted == 1


# ------------------------------------------------------------------ 4: close() and aclose()


def test_close_closes_the_connections_it_made() -> None:
    with KeepAliveServer() as server:
        client = LettaClient(base_url=server.base_url)
        assert texts(list(client.stream(AGENT, REQUEST))) == [HELLO]
        time.sleep(0.2)
        assert server.open_connections == 1  # kept for the next call
        client.close()
        assert wait_until(lambda: server.open_connections == 0)
    assert server.accepted == 1


def test_aclose_closes_the_connections_it_made() -> None:
    async def run() -> None:
        client = AsyncLettaClient(base_url=server.base_url)
        assert texts([event async for event in client.stream(AGENT, REQUEST)]) == [HELLO]
        await asyncio.sleep(0.2)
        assert uses_aiohttp(client)
        assert server.open_connections == 1
        await client.aclose()
        assert await await_until(lambda: server.open_connections == 0)

    with KeepAliveServer() as server:
        asyncio.run(run())
    assert server.accepted == 1


def test_close_leaves_a_given_client_open() -> None:
    with KeepAliveServer() as server, httpx.Client() as given:
        with LettaClient(base_url=server.base_url, http_client=given) as client:
            assert texts(list(client.stream(AGENT, REQUEST))) == [HELLO]
        assert not given.is_closed
        time.sleep(0.2)
        assert server.open_connections == 1
        assert given.get(f"{server.base_url}/v1/health/").json() == HEALTH
        with LettaClient(base_url=server.base_url, http_client=given) as client:
            assert texts(list(client.stream(AGENT, REQUEST))) == [HELLO]
    assert server.accepted == 1


def test_aclose_leaves_a_given_client_open() -> None:
    async def run() -> None:
        async with httpx.AsyncClient() as given:
            async with AsyncLettaClient(base_url=server.base_url, http_client=given) as client:
                assert texts([e async for e in client.stream(AGENT, REQUEST)]) == [HELLO]
            assert not given.is_closed
            assert (await given.get(f"{server.base_url}/v1/health/")).json() == HEALTH
            async with AsyncLettaClient(base_url=server.base_url, http_client=given) as client:
                assert texts([e async for e in client.stream(AGENT, REQUEST)]) == [HELLO]

    with KeepAliveServer() as server:
        asyncio.run(run())
    assert server.requests[-2:] == ["GET /v1/health/", f"POST {STREAM_PATH}"]


def test_aclose_leaves_no_response_open_in_a_given_client() -> None:
    """What ``aclose()`` gives up on is closed (or finished) at once, not left to the GC."""

    async def run() -> list[str]:
        async with httpx.AsyncClient() as given:
            client = AsyncLettaClient(base_url=server.base_url, http_client=given)
            assert texts([e async for e in client.stream(AGENT, REQUEST)]) == [HELLO]
            await client.aclose()
            pool = given._transport._pool  # type: ignore[attr-defined]  # httpcore's pool
            return [repr(c) for c in pool.connections if not (c.is_idle() or c.is_closed())]

    with KeepAliveServer() as server:
        assert asyncio.run(run()) == []


def test_a_model_used_under_asyncio_run_leaves_no_session_open(tmp_path: Path) -> None:
    """``asyncio.run(model.ainvoke(...))``, twice, as a script does: nothing left unclosed."""
    code = textwrap.dedent(
        f"""
        import asyncio
        from langchain_letta import ChatLetta
        from langchain_letta.testing import FakeLettaServer, Reply

        with FakeLettaServer(lambda _request: Reply(body={stream_body()!r})) as server:
            model = ChatLetta(agent_id={AGENT!r}, base_url=server.base_url)
            for _ in range(2):
                print(asyncio.run(model.ainvoke("hi")).text)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == [HELLO, HELLO]
    assert "Unclosed" not in done.stderr, done.stderr


# ------------------------------------------------------------------ 5: a client of one's own

MOCK_BASE = "http://letta.test:8283"


def letta_mock(seen: list[httpx.Request]) -> httpx.MockTransport:
    """A Letta server as an ``httpx.MockTransport``: the health probe and one stream."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET" and request.url.path == "/v1/health/":
            return httpx.Response(200, json=HEALTH)
        if request.method == "POST" and request.url.path == STREAM_PATH:
            headers = {"content-type": "text/event-stream"}
            return httpx.Response(200, headers=headers, content=stream_body(MOCKED))
        return httpx.Response(404, json={"detail": "Not Found"})

    return httpx.MockTransport(handle)


def sent(seen: list[httpx.Request]) -> list[tuple[str, str, str | None]]:
    return [(r.method, str(r.url), r.headers.get("x-trace")) for r in seen]


EXPECTED = [
    ("GET", f"{MOCK_BASE}/v1/health/", "1"),
    ("POST", f"{MOCK_BASE}{STREAM_PATH}", "1"),
]


@pytest.mark.parametrize("mode", MODES)
def test_chatletta_uses_the_given_clients_and_sends_default_headers(mode: Mode) -> None:
    seen: list[httpx.Request] = []
    # No base_url on the client: the package sends absolute URLs.
    sync_http = httpx.Client(transport=letta_mock(seen))
    async_http = httpx.AsyncClient(transport=letta_mock(seen))
    model = ChatLetta(
        agent_id=AGENT,
        base_url=MOCK_BASE,
        http_client=sync_http,
        http_async_client=async_http,
        default_headers={"X-Trace": "1"},
    )
    assert chat(model, mode).text == MOCKED
    assert sent(seen) == EXPECTED
    assert not sync_http.is_closed
    assert not async_http.is_closed


def test_the_runnable_and_the_graph_node_pass_the_given_client_through() -> None:
    seen: list[httpx.Request] = []
    http = httpx.Client(transport=letta_mock(seen))
    knobs: dict[str, Any] = {"base_url": MOCK_BASE, "http_client": http}
    knobs["default_headers"] = {"X-Trace": "1"}
    runnable = LettaAgentRunnable(agent_id=AGENT, **knobs)
    response = runnable.invoke("hi")
    assert [event.raw.get("content") for event in response.events] == [MOCKED]
    assert sent(seen) == EXPECTED

    seen.clear()
    node = letta_node(agent_id=AGENT, **knobs)
    update = node.invoke({"messages": [HumanMessage("hi")]})
    assert [message.text for message in update["messages"]] == [MOCKED]
    assert sent(seen) == EXPECTED


def test_the_given_clients_are_never_serialized_nor_shown() -> None:
    secret = "sk-only-in-the-client"
    headers = {"Authorization": f"Bearer {secret}"}
    model = ChatLetta(
        agent_id=AGENT,
        base_url=MOCK_BASE,
        http_client=httpx.Client(headers=headers),
        http_async_client=httpx.AsyncClient(headers=headers),
    )
    saved = dumpd(model)
    assert "http_client" not in saved["kwargs"]
    assert "http_async_client" not in saved["kwargs"]
    assert saved["kwargs"]["base_url"] == MOCK_BASE
    assert secret not in json.dumps(saved)
    assert secret not in repr(model)
    assert secret not in str(model)
    given = httpx.Client(headers=headers)
    runnable = dumpd(LettaAgentRunnable(agent_id=AGENT, http_client=given))  # type: ignore[call-arg]
    assert "http_client" not in json.dumps(runnable)
    assert secret not in json.dumps(runnable)


# ------------------------------------------------------------------ 6: mocks and recorders


def mock_routes(router: respx.MockRouter) -> respx.Route:
    """The Letta routes on a respx router; the stream's route comes back."""
    router.get("/v1/health/").respond(json=HEALTH)
    sse = {"content-type": "text/event-stream"}
    return router.post(STREAM_PATH).respond(headers=sse, content=stream_body(MOCKED))


@pytest.mark.parametrize("mode", MODES)
def test_respx_intercepts_a_model_that_already_went_to_the_network(mode: Mode) -> None:
    """The model's clients exist (aiohttp's too) before the mock starts: it sees the call."""

    def mocked() -> respx.MockRouter:
        return respx.mock(base_url=server.base_url, assert_all_called=False)

    async def twice(model: ChatLetta) -> list[str]:
        replies = [str((await model.ainvoke("hi")).text)]
        client = model._clients._async[1]  # type: ignore[index]
        assert uses_aiohttp(client)
        with mocked() as router:
            stream = mock_routes(router)
            replies.append(str((await model.ainvoke("hi")).text))
            assert stream.call_count == 1
        return replies

    with FakeLettaServer([answer()]) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, max_retries=0)
        if mode == "sync":
            replies = [str(model.invoke("hi").text)]
            with mocked() as router:
                stream = mock_routes(router)
                replies.append(str(model.invoke("hi").text))
                assert stream.call_count == 1
        else:
            replies = asyncio.run(twice(model))
    assert replies == [HELLO, MOCKED]
    assert len(server.stream_requests) == 1  # the mocked call never reached the server


@pytest.fixture
def fake_server() -> Iterator[FakeLettaServer]:
    with FakeLettaServer(lambda _request: answer()) as server:
        yield server


@pytest.fixture
def used_model(fake_server: FakeLettaServer) -> ChatLetta:
    """A model whose sync client has been to the network (before ``httpx_mock`` starts)."""
    model = ChatLetta(agent_id=AGENT, base_url=fake_server.base_url, max_retries=0)
    assert model.invoke("hi").text == HELLO
    return model


@pytest.fixture
async def used_async_model(fake_server: FakeLettaServer) -> ChatLetta:
    """A model whose async client has been to the network through aiohttp, in the test's loop."""
    model = ChatLetta(agent_id=AGENT, base_url=fake_server.base_url, max_retries=0)
    assert (await model.ainvoke("hi")).text == HELLO
    assert uses_aiohttp(model._clients._async[1])  # type: ignore[index]
    return model


def add_stream_response(httpx_mock: HTTPXMock, base_url: str) -> None:
    sse = {"content-type": "text/event-stream"}
    url = f"{base_url}{STREAM_PATH}"
    httpx_mock.add_response(method="POST", url=url, headers=sse, content=stream_body(MOCKED))


def test_pytest_httpx_intercepts_a_model_that_already_went_to_the_network(
    used_model: ChatLetta, httpx_mock: HTTPXMock, fake_server: FakeLettaServer
) -> None:
    add_stream_response(httpx_mock, fake_server.base_url)
    assert used_model.invoke("hi").text == MOCKED
    assert len(fake_server.stream_requests) == 1  # the fixture's own call


async def test_pytest_httpx_intercepts_an_async_model_that_already_went_to_the_network(
    used_async_model: ChatLetta, httpx_mock: HTTPXMock, fake_server: FakeLettaServer
) -> None:
    client = used_async_model._clients._async[1]  # type: ignore[index]
    add_stream_response(httpx_mock, fake_server.base_url)
    assert (await used_async_model.ainvoke("hi")).text == MOCKED
    assert used_async_model._clients._async[1] is client  # type: ignore[index]  # same loop
    assert len(fake_server.stream_requests) == 1


@pytest.mark.parametrize("mode", MODES)
def test_vcr_records_and_replays_a_model_made_before_the_cassette(
    mode: Mode, tmp_path: Path
) -> None:
    cassette = str(tmp_path / "cassette.yaml")
    with FakeLettaServer([answer()]) as server:
        recording = ChatLetta(agent_id=AGENT, base_url=server.base_url, max_retries=0)
        replaying = ChatLetta(agent_id=AGENT, base_url=server.base_url, max_retries=0)
        with vcr.use_cassette(cassette, record_mode="once") as recorded:
            assert chat(recording, mode).text == HELLO
        assert [request.path for request in recorded.requests] == ["/v1/health/", STREAM_PATH]
    assert len(server.stream_requests) == 1
    # The server is gone: only the cassette can answer now.
    with vcr.use_cassette(cassette, record_mode="none") as replayed:
        assert chat(replaying, mode).text == HELLO
        assert replayed.play_count == 2


# The calls of a fresh process, as a script's function ``run_calls``: ChatLetta sync and
# async, LettaClient and AsyncLettaClient, each a new client that probes the server and
# streams once (8 requests). langchain_letta is imported only there, under the mock.
RUN_CALLS = """
import asyncio
import sys


def run_calls():
    assert "langchain_letta" not in sys.modules, "imported before the mock started"
    from langchain_letta import AsyncLettaClient, ChatLetta, LettaClient
    from langchain_letta import OutgoingMessage, StreamRequest

    request = StreamRequest(messages=[OutgoingMessage(content="hi")])

    async def async_client_texts():
        async with AsyncLettaClient(base_url=BASE, max_retries=0) as client:
            return [event.raw["content"] async for event in client.stream(AGENT, request)]

    model = ChatLetta(agent_id=AGENT, base_url=BASE, max_retries=0)
    assert model.invoke("hi").text == TEXT
    assert asyncio.run(model.ainvoke("hi")).text == TEXT
    with LettaClient(base_url=BASE, max_retries=0) as client:
        assert [event.raw["content"] for event in client.stream(AGENT, request)] == [TEXT]
    assert asyncio.run(async_client_texts()) == [TEXT]
"""


def script(under_the_mock: str, base_url: str) -> str:
    """``RUN_CALLS`` and what starts the mock and calls ``run_calls()`` under it."""
    constants = {
        "BASE": base_url,
        "AGENT": AGENT,
        "TEXT": MOCKED,
        "HEALTH": HEALTH,
        "STREAM_PATH": STREAM_PATH,
        "BODY": stream_body(MOCKED),
    }
    values = "".join(f"{name} = {value!r}\n" for name, value in constants.items())
    return values + RUN_CALLS + textwrap.dedent(under_the_mock)


def run_python(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_respx_started_before_the_import_intercepts_every_client(tmp_path: Path) -> None:
    code = script(
        """
        import respx

        with respx.mock(base_url=BASE) as router:
            router.get("/v1/health/").respond(json=HEALTH)
            sse = {"content-type": "text/event-stream"}
            stream = router.post(STREAM_PATH).respond(headers=sse, content=BODY)
            run_calls()
            assert stream.call_count == 4
            print("intercepted", len(router.calls))
        """,
        f"http://127.0.0.1:{closed_port()}",  # a call that reaches the network is refused
    )
    assert run_python("-c", code, cwd=tmp_path).split() == ["intercepted", "8"]


def test_pytest_httpx_started_before_the_import_intercepts_every_client(tmp_path: Path) -> None:
    code = script(
        """
        from pytest_httpx import HTTPXMock


        def test_under_the_mock(httpx_mock: HTTPXMock) -> None:
            sse = {"content-type": "text/event-stream"}
            health, stream = BASE + "/v1/health/", BASE + STREAM_PATH
            httpx_mock.add_response(url=health, json=HEALTH, is_reusable=True)
            options = {"method": "POST", "headers": sse, "is_reusable": True}
            httpx_mock.add_response(url=stream, content=BODY, **options)
            run_calls()
            assert len(httpx_mock.get_requests(url=stream)) == 4
            print("intercepted", len(httpx_mock.get_requests()))
        """,
        f"http://127.0.0.1:{closed_port()}",
    )
    (tmp_path / "test_mocked.py").write_text(code)
    output = run_python("-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", cwd=tmp_path)
    assert "intercepted 8" in output
    assert "1 passed" in output


def test_vcr_started_before_the_import_replays_to_every_client(tmp_path: Path) -> None:
    cassette = tmp_path / "cassette.yaml"
    with FakeLettaServer([answer(MOCKED)]) as server:
        with vcr.use_cassette(str(cassette), record_mode="once"):
            recorder = LettaClient(base_url=server.base_url, max_retries=0)
            assert texts(list(recorder.stream(AGENT, REQUEST))) == [MOCKED]
            recorder.close()
    code = f"CASSETTE = {str(cassette)!r}\n" + script(
        """
        import vcr

        replay = vcr.use_cassette(CASSETTE, record_mode="none", allow_playback_repeats=True)
        with replay as cassette:
            run_calls()
            print("replayed", cassette.play_count)
        """,
        server.base_url,  # the server is gone: only the cassette can answer
    )
    assert run_python("-c", code, cwd=tmp_path).split() == ["replayed", "8"]
