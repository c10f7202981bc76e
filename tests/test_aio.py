"""The async clients' sockets on asyncio's own transports (``_wire/aio.py``).

Each test drives a real loopback connection: a read returns what has arrived without
waiting for more and takes all of it, a silent peer is a read timeout, a large body is
read back whole while the buffer stays bounded, a reset comes after the bytes before it,
TLS works through ``start_tls``, and a pooled connection the server closed is not reused.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import httpcore
import httpx
import pytest
import trustme

from langchain_letta import AsyncLettaClient, OutgoingMessage, StreamRequest
from langchain_letta._wire import aio, transport
from langchain_letta._wire.transport import AsyncJoiningTransport
from tests.conftest import tls_server


@contextmanager
def _peer() -> Iterator[tuple[int, list[socket.socket]]]:
    """A listening port; each accepted connection is appended for the test to drive."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        listener.close()
        for conn in accepted:
            conn.close()


async def _accepted(accepted: list[socket.socket], count: int = 1) -> socket.socket:
    """The ``count``-th connection accepted, once it is."""
    for _ in range(500):
        if len(accepted) >= count:
            return accepted[count - 1]
        await asyncio.sleep(0.01)
    raise AssertionError(f"connection {count} was not accepted")


async def test_a_read_returns_what_arrived_at_once_and_takes_all_of_it() -> None:
    with _peer() as (port, accepted):
        stream = await aio.connect_tcp("127.0.0.1", port, timeout=5)
        peer = await _accepted(accepted)
        peer.sendall(b"first")
        assert await stream.read(65536, timeout=5) == b"first"  # not held for more
        for piece in (b"a", b"b", b"c"):
            peer.sendall(piece)
        await asyncio.sleep(0.05)  # all three have arrived
        assert await stream.read(65536, timeout=5) == b"abc"
        peer.sendall(b"0123456789")
        await asyncio.sleep(0.05)
        assert await stream.read(4, timeout=5) == b"0123"  # max_bytes is kept
        assert await stream.read(65536, timeout=5) == b"456789"
        await stream.aclose()


async def test_a_silent_peer_is_a_read_timeout_and_the_stream_still_reads_after() -> None:
    with _peer() as (port, accepted):
        stream = await aio.connect_tcp("127.0.0.1", port, timeout=5)
        peer = await _accepted(accepted)
        with pytest.raises(httpcore.ReadTimeout):
            await stream.read(65536, timeout=0.05)
        peer.sendall(b"late")
        assert await stream.read(65536, timeout=5) == b"late"
        await stream.aclose()


async def test_the_end_and_a_reset_come_after_the_bytes_before_them() -> None:
    with _peer() as (port, accepted):
        stream = await aio.connect_tcp("127.0.0.1", port, timeout=5)
        peer = await _accepted(accepted)
        peer.sendall(b"last words")
        peer.shutdown(socket.SHUT_WR)
        assert await stream.read(65536, timeout=5) == b"last words"
        assert await stream.read(65536, timeout=5) == b""
        await stream.aclose()

        stream = await aio.connect_tcp("127.0.0.1", port, timeout=5)
        peer = await _accepted(accepted, 2)
        peer.sendall(b"partial")
        await asyncio.sleep(0.05)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        peer.close()  # RST
        assert await stream.read(65536, timeout=5) == b"partial"
        with pytest.raises(httpcore.ReadError):
            await stream.read(65536, timeout=5)
        with pytest.raises(httpcore.WriteError):
            await stream.write(b"anyone?", timeout=1)


async def test_a_large_body_arrives_whole_with_the_buffer_bounded() -> None:
    body = bytes(range(256)) * (16 * 1024)  # 4 MiB
    with _peer() as (port, accepted):
        stream = await aio.connect_tcp("127.0.0.1", port, timeout=5)
        peer = await _accepted(accepted)
        threading.Thread(target=peer.sendall, args=(body,), daemon=True).start()
        assert isinstance(stream, aio.AsyncioStream)
        reader = stream._reader
        received = bytearray()
        most = 0
        while len(received) < len(body):
            await asyncio.sleep(0.002)  # a slow consumer
            most = max(most, reader.buffered)
            received += await stream.read(65536, timeout=5)
        assert bytes(received) == body
        assert most <= aio.HIGH_WATER + 256 * 1024  # paused once past the mark
        await stream.aclose()


async def test_connecting_to_a_closed_port_is_a_connect_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(httpcore.ConnectError):
        await aio.connect_tcp("127.0.0.1", port, timeout=5)


async def test_tls_goes_through_start_tls() -> None:
    authority = trustme.CA()
    cert = authority.issue_cert("localhost")
    body = b'data: {"message_type":"assistant_message","content":"hi"}\n\n'
    answer = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n"
        b"\r\n%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
    )
    port, thread, requests = tls_server(cert, answer)
    context = ssl.create_default_context()
    authority.configure_trust(context)
    async with httpx.AsyncClient(transport=AsyncJoiningTransport(context)) as client:
        response = await client.get(f"https://localhost:{port}/v1/stream")
        assert response.content == body
        stream = response.extensions["network_stream"]
        assert stream.get_extra_info("ssl_object") is not None
    thread.join(5)
    assert requests[0].startswith(b"GET /v1/stream HTTP/1.1")


async def test_an_untrusted_certificate_is_a_connect_error() -> None:
    cert = trustme.CA().issue_cert("localhost")
    port, _thread, _ = tls_server(cert, b"")
    context = ssl.create_default_context()  # does not trust that authority
    async with httpx.AsyncClient(transport=AsyncJoiningTransport(context)) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"https://localhost:{port}/")


HEALTH = b'HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n{"version":"0.16.8"}'
FRAMES = [
    b'data: {"message_type":"assistant_message","id":"m","content":"Hi"}\n\n',
    b"data: [DONE]\n\n",
]
STREAM = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    + b"".join(b"%x\r\n%b\r\n" % (len(frame), frame) for frame in FRAMES)
    + b"0\r\n\r\n"
)


async def test_a_pooled_connection_the_server_closed_is_not_reused() -> None:
    request = StreamRequest(messages=[OutgoingMessage(content="hi")])
    with _peer() as (port, accepted):

        def serve(conn: socket.socket, answers: list[bytes], close: bool) -> None:
            for answer in answers:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                conn.sendall(answer)
            if close:
                conn.close()

        async with AsyncLettaClient(base_url=f"http://127.0.0.1:{port}", background=False) as c:
            first = asyncio.ensure_future(_collect(c, request))
            conn = await _accepted(accepted)
            threading.Thread(target=serve, args=(conn, [HEALTH, STREAM], True)).start()
            assert await first == ["Hi"]
            await asyncio.sleep(0.1)  # the close has arrived: the pooled connection is dead
            second = asyncio.ensure_future(_collect(c, request))
            conn = await _accepted(accepted, 2)  # a new connection
            threading.Thread(target=serve, args=(conn, [STREAM], False)).start()
            assert await second == ["Hi"]


async def _collect(client: AsyncLettaClient, request: StreamRequest) -> list[str]:
    return [
        event.text  # type: ignore[union-attr]
        async for event in client.stream("agent-1", request)
        if event.message_type == "assistant_message"
    ]


async def test_asyncio_gets_its_own_sockets_and_another_loop_keeps_anyio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert transport._on_asyncio()
    with _peer() as (port, accepted):
        backend = transport._AsyncBackend()
        ours = await backend.connect_tcp("127.0.0.1", port, timeout=5)
        assert isinstance(ours._inner, aio.AsyncioStream)  # type: ignore[attr-defined]
        await ours.aclose()
        monkeypatch.setattr(transport, "_on_asyncio", lambda: False)  # as under trio
        theirs = await backend.connect_tcp("127.0.0.1", port, timeout=5)
        assert type(theirs._inner).__name__ == "AnyIOStream"  # type: ignore[attr-defined]
        peer = await _accepted(accepted, 2)
        peer.sendall(b"through anyio")
        assert await theirs.read(65536, timeout=5) == b"through anyio"
        await theirs.aclose()


async def test_an_idle_connection_is_readable_once_its_peer_sends_or_closes() -> None:
    with _peer() as (port, accepted):
        stream = await aio.connect_tcp("127.0.0.1", port, timeout=5)
        peer = await _accepted(accepted)
        assert stream.get_extra_info("is_readable") is False
        stream._transport.pause_reading()  # the bytes stay in the socket: poll sees them
        peer.sendall(b"unexpected")
        await asyncio.sleep(0.05)
        assert stream._reader.pieces == deque()
        assert stream.get_extra_info("is_readable") is True
        stream._transport.resume_reading()
        await asyncio.sleep(0.05)
        assert stream.get_extra_info("is_readable") is True  # now buffered
        await stream.aclose()
