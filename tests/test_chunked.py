"""The chunk joiner (``_wire/chunked.py``) and the transports built on it (``_wire/transport.py``).

The oracle is h11 itself: what the joiner hands on, fed to an h11 client connection,
with the body's data taken past h11 or through it, must give the same body, end the
response where the wire did, and leave the connection ready for the next request;
malformed framing is refused, bounded, after the bytes before the fault.
"""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
import trustme

from langchain_letta import AsyncLettaClient, LettaClient, OutgoingMessage, StreamRequest
from langchain_letta._wire.chunked import (
    MAX_SIZE_LINE,
    MAX_TRAILERS,
    ChunkedFramingError,
    JoinedChunks,
)
from langchain_letta._wire.transport import AsyncJoiningTransport, JoiningTransport
from langchain_letta.errors import LettaStreamInterruptedError
from tests.conftest import tls_server

CAPTURES = Path(__file__).parent / "data" / "letta-streams"
ALL_CAPTURES = sorted(CAPTURES.rglob("*.sse"))
REQUEST = b"POST /v1/agents/a/messages/stream HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n"
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
HEAD_LF = b"HTTP/1.1 200 OK\ncontent-type: text/event-stream\ntransfer-encoding: chunked\n\n"
"""A head with bare LF line ends, which h11 takes."""
NEXT = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
"""A second response on the connection: the joiner must still be in step with h11."""


def _frames(body: bytes) -> list[bytes]:
    """One piece per SSE frame, as a live server writes them (joined, exactly ``body``)."""
    parts = body.split(b"\n\n")
    return [part + b"\n\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _chunked(pieces: list[bytes], trailer: bytes = b"") -> bytes:
    return (
        b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces if p) + b"0\r\n" + trailer + b"\r\n"
    )


def _random_pieces(body: bytes, rng: random.Random, most: int) -> list[bytes]:
    pieces, at = [], 0
    while at < len(body):
        size = rng.randint(1, most)
        pieces.append(body[at : at + size])
        at += size
    return pieces


def _split(wire: bytes, cuts: list[int]) -> Iterator[bytes]:
    start = 0
    for cut in sorted(cuts):
        yield wire[start:cut]
        start = cut
    yield wire[start:]


def _handed(joiner: JoinedChunks, data: bytes) -> bytes:
    """What h11 gets of ``data`` through a stream's reads, up to a fault (the next read's)."""
    joiner.received(data)
    out = bytearray()
    while True:
        try:
            piece = joiner.for_h11()
        except ChunkedFramingError:
            if out:
                return bytes(out)
            raise
        if piece is None:
            return bytes(out)
        out += piece


class _Client:
    """An h11 client connection fed through a joiner, as httpcore feeds it.

    ``direct``: once h11 has the response's head, the body's data is taken from the
    joiner (``body_data``), as the transports' response streams take it, and h11 only
    gets what is left.
    """

    def __init__(self, direct: bool = False) -> None:
        self.direct = direct
        self.reads = 0
        self.body_reads = 0
        self.joiner = JoinedChunks()
        self.h11 = h11.Connection(h11.CLIENT)
        self.body = bytearray()
        self.data_events = 0
        self.body_events = 0
        self.ended = False
        self.trailers: list[tuple[bytes, bytes]] = []

    def send(self, request: bytes = REQUEST) -> None:
        method, target = request.split(b" ")[:2]
        self.h11.send(h11.Request(method=method, target=target, headers=[("host", "x")]))
        self.h11.send(h11.EndOfMessage())
        self.joiner.sent(request)
        self.body.clear()
        self.data_events = 0
        self.reads = 0
        self.ended = False

    def feed(self, data: bytes) -> None:
        if not data:
            return  # an empty read is the end of the connection: the streams never pass one
        self.joiner.received(data)
        while True:
            if self.direct and self.h11.their_state is h11.SEND_BODY:
                taken = self.joiner.body_data()
                if taken is None:
                    return  # the stream reads on
                if taken:
                    self.body += taken
                    self.reads += 1
                    continue
            handed = self.joiner.for_h11()
            if handed is None:  # all handed (a size line may be held back): read on
                return
            self.h11.receive_data(handed)
            self._events()

    def _events(self) -> None:
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Data):
                self.body += event.data
                self.data_events += 1
            elif isinstance(event, h11.EndOfMessage):
                self.ended = True
                self.trailers = list(event.headers)

    def next_cycle(self) -> None:
        assert self.h11.our_state is h11.DONE
        assert self.h11.their_state is h11.DONE
        self.h11.start_next_cycle()


def _check(wire_reads: Iterator[bytes], body: bytes, direct: bool = False) -> _Client:
    client = _Client(direct)
    client.send()
    for data in wire_reads:
        client.feed(data)
    assert client.ended
    assert bytes(client.body) == body
    client.body_events, client.body_reads = client.data_events, client.reads
    if direct:
        assert client.data_events == 0  # h11 saw no data: only the head and the last chunk
    client.next_cycle()
    client.send(b"GET /v1/health/ HTTP/1.1\r\n")
    client.feed(NEXT)
    assert client.ended
    assert bytes(client.body) == b"hello"
    return client


# ------------------------------------------------------------------ real bodies


@pytest.mark.parametrize("capture", ALL_CAPTURES, ids=lambda p: str(p.relative_to(CAPTURES)))
def test_every_capture_arrives_whole_however_chunked_and_read(capture: Path) -> None:
    body = capture.read_bytes()
    rng = random.Random(capture.name)  # noqa: S311
    for pieces in (_frames(body), _random_pieces(body, rng, 50), _random_pieces(body, rng, 5000)):
        assert b"".join(pieces) == body
        wire = HEAD + _chunked(pieces) + b""
        cuts = [rng.randint(0, len(wire)) for _ in range(rng.randint(1, 40))]
        _check(_split(wire, cuts), body)
        _check(_split(wire, cuts), body, direct=True)
        client = _check(iter([wire]), body)  # one read: one joined chunk
        assert client.body_events == (1 if body else 0)
        client = _check(iter([wire]), body, direct=True)  # one read: one piece of data
        assert client.body_reads == (1 if body else 0)


def test_every_split_point_of_a_real_body() -> None:
    whole = (CAPTURES / "0.16.8/memgpt_v2_agent/04-tool-call-tokens.sse").read_bytes()
    body = b"".join(_frames(whole)[:8])
    wire = HEAD + _chunked([*_frames(body), b"tail"], b"x-checksum: 1\r\n")
    for direct in (False, True):
        for cut in range(len(wire) + 1):
            _check(_split(wire, [cut]), body + b"tail", direct)
        rng = random.Random(3)  # noqa: S311
        for _ in range(300):  # and in three reads
            cuts = [rng.randint(0, len(wire)), rng.randint(0, len(wire))]
            _check(_split(wire, cuts), body + b"tail", direct)


def test_a_head_ends_where_h11_ends_it_even_with_bare_lf_line_ends() -> None:
    # Data that would look like the end of a CRLF head, had the head not ended before.
    pieces = [b"x\r\ntransfer-encoding: chunked\r\n\r\n", b"5\r\nhello\r\n", b"data: more\n\n"]
    wire = HEAD_LF + _chunked(pieces)
    for direct in (False, True):
        for cut in range(len(wire) + 1):
            client = _check(_split(wire, [cut]), b"".join(pieces), direct)
            assert not client.joiner.passing  # followed, not given up on


@pytest.mark.parametrize(
    "received",
    [HEAD, HEAD + b"3\r\nab", HEAD + b"3\r\nabc", HEAD + b"0\r\n", NEXT[:-1]],
    ids=["at-a-size", "in-data", "at-crlf", "in-trailers", "in-a-length"],
)
def test_a_request_while_a_response_is_still_read_leaves_the_connection_to_h11(
    received: bytes,
) -> None:
    joiner = JoinedChunks()
    joiner.sent(REQUEST)
    _handed(joiner, received)
    joiner.sent(REQUEST)  # h11 ended that response where the joiner did not: out of step
    assert joiner.passing
    assert _handed(joiner, HEAD + b"3\r\nabc\r\n") == HEAD + b"3\r\nabc\r\n"
    assert joiner.body_data() == b""  # a body reader goes to h11


def test_a_blank_line_before_the_status_line_is_left_to_h11() -> None:
    joiner = JoinedChunks()
    joiner.sent(REQUEST)
    assert _handed(joiner, b"\r\n" + HEAD + b"3\r\nabc\r\n") == b"\r\n" + HEAD + b"3\r\nabc\r\n"
    assert joiner.passing  # h11 refuses it: nothing of this connection is taken from h11


def test_chunks_of_one_read_reach_h11_as_one_chunk() -> None:
    joiner = JoinedChunks()
    joiner.sent(REQUEST)
    out = _handed(joiner, HEAD + b"3\r\nabc\r\n2;ext=1\r\nde\r\n1\r\nf")
    assert out == HEAD + b"6\r\nabcdef\r\n"
    assert _handed(joiner, b"\r\n0\r\n\r\n") == b"0\r\n\r\n"


def test_a_read_of_one_whole_chunk_is_its_data() -> None:
    joiner = JoinedChunks()
    joiner.sent(REQUEST)
    _handed(joiner, HEAD)
    joiner.received(b"3;x=1\r\nabc\r\n")  # extensions dropped, as h11 drops them
    assert joiner.body_data() == b"abc"
    assert joiner.body_data() is None  # nothing more yet: read on
    assert _handed(joiner, b"3;x=1\r\nabc\r\n") == b"3\r\nabc\r\n"
    # The same length, but not a chunk: checked, the data handed on, then the fault.
    assert _handed(joiner, b"3\r\nabcXX") == b"3\r\nabc\r\n"
    with pytest.raises(ChunkedFramingError, match="CRLF"):
        joiner.for_h11()  # the stream's next read
    with pytest.raises(ChunkedFramingError, match="CRLF"):
        _handed(joiner, b"more")


def test_the_body_reader_gets_data_and_h11_the_rest_in_wire_order() -> None:
    joiner = JoinedChunks()
    joiner.sent(REQUEST)
    joiner.received(HEAD + b"3\r\nabc\r\n2\r\nde\r\n0\r\nx-sum: 1\r\n\r\n")
    assert joiner.for_h11() == HEAD  # the head alone: h11 has no data to take
    assert joiner.body_data() == b"abcde"  # the chunks of one read, as one piece
    assert joiner.body_data() == b""  # the last chunk is next: h11's
    assert joiner.for_h11() == b"0\r\nx-sum: 1\r\n\r\n"
    assert joiner.for_h11() is None
    assert joiner.body_data() == b""  # no chunked body now: a reader goes to h11
    joiner.sent(REQUEST)
    joiner.received(NEXT)  # a Content-Length body is h11's, whole
    assert joiner.body_data() == b""
    assert joiner.for_h11() == NEXT


def test_a_fault_reaches_the_body_reader_after_the_data_before_it() -> None:
    joiner = JoinedChunks()
    joiner.sent(REQUEST)
    _handed(joiner, HEAD)
    joiner.received(b"3\r\nabc\r\nzz\r\n")
    assert joiner.body_data() == b"abc"
    with pytest.raises(ChunkedFramingError, match="not a hex size"):
        joiner.body_data()
    with pytest.raises(ChunkedFramingError, match="not a hex size"):
        joiner.received(b"more")


def test_bytes_held_back_are_only_a_size_line_or_crlf() -> None:
    joiner = JoinedChunks()
    joiner.sent(REQUEST)
    assert _handed(joiner, HEAD + b"1") == HEAD
    assert _handed(joiner, b"0") == b""  # "10" so far: a size line is never handed on in parts
    assert _handed(joiner, b"\r\n0123456789abcdef") == b"10\r\n0123456789abcdef\r\n"


# ------------------------------------------------------------------ heads and framings


@pytest.mark.parametrize(
    ("request_line", "response", "follows"),
    [
        (b"HEAD / HTTP/1.1\r\n", b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", True),
        (REQUEST, b"HTTP/1.1 204 No Content\r\n\r\n", True),
        (REQUEST, b"HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n", True),
        (REQUEST, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", True),
        (REQUEST, b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc", True),
        (REQUEST, b"HTTP/1.1 100 Continue\r\n\r\n" + HEAD + b"0\r\n\r\n", True),
        (
            REQUEST,
            b"HTTP/1.1 500 X\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
            True,
        ),
    ],
)
@pytest.mark.parametrize("direct", [False, True], ids=["through-h11", "direct"])
def test_framings_are_followed_as_h11_follows_them(
    request_line: bytes, response: bytes, follows: bool, direct: bool
) -> None:
    client = _Client(direct)
    client.send(request_line)
    for byte in range(len(response)):  # a byte at a time: the hardest split
        client.feed(response[byte : byte + 1])
    assert client.ended
    client.next_cycle()
    client.send(REQUEST)
    client.feed(HEAD + b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
    assert client.ended
    assert bytes(client.body) == b"abcdefg"
    # Still followed: the chunks were joined (or the data taken past h11 in one piece).
    assert (client.data_events, client.reads) == ((0, 1) if direct else (1, 0))
    assert not client.joiner.passing


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n3\r\nabc\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n3\r\nabc\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\n3\r\nabc\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n3\r\nabc\r\n",  # ends with the connection
        b"HTTP/1.1 200 OK\r\nx: 1\r\n folded\r\n\r\n3\r\nabc\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n3\r\nabc\r\n",
        b"SPDY 200 OK\r\n\r\n3\r\nabc\r\n",
    ],
)
def test_what_is_not_followed_passes_through_untouched(response: bytes) -> None:
    joiner = JoinedChunks()
    joiner.sent(REQUEST)
    out = b"".join(_handed(joiner, response[i : i + 7]) for i in range(0, len(response), 7))
    assert out == response
    assert joiner.passing
    assert _handed(joiner, b"5\r\nhello\r\n") == b"5\r\nhello\r\n"


def test_bytes_nobody_asked_for_pass_through() -> None:
    joiner = JoinedChunks()
    assert _handed(joiner, b"HTTP/1.1 408 X\r\n\r\n") == b"HTTP/1.1 408 X\r\n\r\n"
    assert joiner.passing


def test_a_head_too_long_to_follow_passes_through() -> None:
    joiner = JoinedChunks()
    joiner.sent(REQUEST)
    head = b"HTTP/1.1 200 OK\r\n" + b"x-long: " + b"a" * (80 * 1024)
    assert _handed(joiner, head) == head
    assert joiner.passing


# ------------------------------------------------------------------ hostile bodies


def _body_fault(wire: bytes) -> tuple[bytes, ChunkedFramingError]:
    """What the joiner hands on before a fault, and the fault (raised at the next read)."""
    joiner = JoinedChunks()
    joiner.sent(REQUEST)
    handed = bytearray()
    try:
        handed += _handed(joiner, HEAD + wire)
        handed += _handed(joiner, b"more")
    except ChunkedFramingError as error:
        with pytest.raises(ChunkedFramingError):
            _handed(joiner, b"")  # it stays broken
        return bytes(handed), error
    raise AssertionError("no fault found")


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"3\r\nabc\r\n-5\r\nhello\r\n", "not a hex size"),
        (b"3\r\nabc\r\n" + b"f" * 21 + b"\r\n", "not a hex size"),
        (b"3\r\nabc\r\n0x5\r\n", "not a hex size"),
        (b"3\r\nabc\r\n\r\n", "not a hex size"),
        (b"3\r\nabc\r\n5\nhello\r\n", "not a hex size"),  # bare LF
        (b"3\r\nabc\r\n 5\r\nhello\r\n", "not a hex size"),
        (b"3\r\nabcXX5\r\nhello\r\n", "not followed by CRLF"),
        (b"3\r\nabc\n\r5\r\nhello\r\n", "not followed by CRLF"),
        (b"3\r\nabc\r\n" + b"1" * (MAX_SIZE_LINE + 10), "too long"),
        (b"3\r\nabc\r\n5;" + b"e" * (MAX_SIZE_LINE + 10) + b"\r\nhello\r\n", "too long"),
    ],
)
def test_malformed_chunks_fail_after_what_came_before(wire: bytes, message: str) -> None:
    handed, error = _body_fault(wire)
    assert message in str(error)
    assert handed == HEAD + b"3\r\nabc\r\n"  # h11 gets the good chunk first, whole


def test_a_fault_in_the_first_read_of_a_body_is_raised_at_once() -> None:
    joiner = JoinedChunks()
    joiner.sent(REQUEST)
    _handed(joiner, HEAD)
    with pytest.raises(ChunkedFramingError, match="not a hex size"):
        _handed(joiner, b"zz\r\n")


def test_a_huge_size_line_is_never_buffered_beyond_its_bound() -> None:
    joiner = JoinedChunks()
    joiner.sent(REQUEST)
    _handed(joiner, HEAD)
    handed = [_handed(joiner, b"1" * 1000) for _ in range(MAX_SIZE_LINE // 1000)]
    assert handed == [b""] * len(handed)  # held back, up to the bound
    assert len(joiner._buffer) <= MAX_SIZE_LINE
    with pytest.raises(ChunkedFramingError, match="too long"):
        _handed(joiner, b"1" * 1000)


def test_trailers_pass_to_h11_which_checks_them() -> None:
    client = _Client()
    client.send()
    client.feed(HEAD + b"3\r\nabc\r\n0;last\r\nx-sum: 1\r\nx-more: 2\r\n\r\n")
    assert client.ended
    assert client.trailers == [(b"x-sum", b"1"), (b"x-more", b"2")]
    client = _Client()
    client.send()
    with pytest.raises(h11.RemoteProtocolError):
        client.feed(HEAD + b"0\r\nno colon here\r\n\r\n")


def test_trailers_without_end_are_bounded() -> None:
    joiner = JoinedChunks()
    joiner.sent(REQUEST)
    _handed(joiner, HEAD + b"0\r\n")
    for _ in range(MAX_TRAILERS // 1000):
        _handed(joiner, b"x" * 999 + b"\r")  # passed on as they come, up to the bound
    with pytest.raises(ChunkedFramingError, match="trailer"):
        _handed(joiner, b"x" * 2000)


def test_a_never_ending_chunk_is_handed_on_as_it_comes_and_holds_nothing() -> None:
    joiner = JoinedChunks()
    joiner.sent(REQUEST)
    assert _handed(joiner, HEAD + b"f" * 20 + b"\r\n") == HEAD  # the largest size h11 takes
    for _ in range(1000):
        assert _handed(joiner, b"x" * 4096) == b"1000\r\n" + b"x" * 4096 + b"\r\n"
        assert joiner._buffer == b""


# ------------------------------------------------------------------ the transports


def _serve(answers: list[bytes]) -> tuple[str, list[int], threading.Thread]:
    """A raw server answering each request with the next answer as is (a thread a connection)."""
    listener = socket.create_server(("127.0.0.1", 0))
    connections: list[int] = []
    lock = threading.Lock()

    def answer() -> bytes | None:
        with lock:
            return answers.pop(0) if answers else None

    def serve(conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                        while len(buffer) < length:
                            buffer += conn.recv(65536)
                        buffer = buffer[length:]
                reply = answer()
                if reply is None:
                    return
                conn.sendall(reply)

    def run() -> None:
        with listener:
            listener.settimeout(10)
            while answers:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                connections.append(1)
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", connections, thread


FRAMES = [
    b'data: {"message_type":"assistant_message","id":"m","content":"Hel"}\n\n',
    b'data: {"message_type":"assistant_message","id":"m","content":"lo"}\n\n',
]
DONE = [b'data: {"message_type":"stop_reason","stop_reason":"end_turn"}\n\n', b"data: [DONE]\n\n"]
ANSWER = HEAD + _chunked(FRAMES + DONE)


def _said(event: object) -> bool:
    return getattr(event, "message_type", None) == "assistant_message"


HEALTH = b'HTTP/1.1 200 OK\r\ncontent-length: 20\r\n\r\n{"version":"0.16.8"}'


def test_the_default_clients_use_the_joining_transports() -> None:
    assert isinstance(LettaClient()._http._transport, JoiningTransport)
    assert isinstance(AsyncLettaClient()._http._transport, AsyncJoiningTransport)
    mine = httpx.Client()
    assert LettaClient(http_client=mine)._http is mine  # a client passed in is used as it is


def test_a_proxy_in_the_environment_keeps_httpx_own_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert not isinstance(LettaClient()._http._transport, JoiningTransport)
    assert not isinstance(AsyncLettaClient()._http._transport, AsyncJoiningTransport)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_one_connection_carries_the_probe_and_many_streams(mode: str) -> None:
    url, connections, _ = _serve([HEALTH] + [ANSWER] * 5)
    request = StreamRequest(messages=[OutgoingMessage(content="hi")])
    texts: list[str] = []
    if mode == "sync":
        client = LettaClient(base_url=url, background=False)
        for _ in range(5):
            events = list(client.stream("agent-1", request))
            texts.append("".join(getattr(e, "text", "") for e in events if _said(e)))
            time.sleep(0.01)  # the response's ending is read in the background
        client.close()
    else:

        async def run() -> None:
            async with AsyncLettaClient(base_url=url, background=False) as client:
                for _ in range(5):
                    events = [e async for e in client.stream("agent-1", request)]
                    texts.append("".join(getattr(e, "text", "") for e in events if _said(e)))
                    await asyncio.sleep(0.01)  # the response's ending is read in the background

        asyncio.run(run())
    assert texts == ["Hello"] * 5
    assert len(connections) == 1


def _h11_events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the events every h11 connection gives from now on, in order."""
    seen: list[str] = []
    next_event = h11.Connection.next_event

    def counted(self: h11.Connection) -> Any:
        event = next_event(self)
        seen.append(type(event).__name__)
        return event

    monkeypatch.setattr(h11.Connection, "next_event", counted)
    return seen


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_chunked_body_is_read_past_h11_and_the_connection_still_reused(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _h11_events(monkeypatch)
    pieces = [b"data: " + b"x" * size + b"\n\n" for size in (1, 70_000, 5)]
    body = b"".join(pieces)
    url, connections, _ = _serve([HEAD + _chunked(pieces), NEXT])

    async def read_async(transport: httpx.AsyncBaseTransport) -> tuple[bytes, bytes]:
        async with httpx.AsyncClient(base_url=url, transport=transport) as client:
            async with client.stream("POST", "/v1/agents/a/messages/stream") as response:
                first = b"".join([part async for part in response.aiter_raw()])
            return first, (await client.get("/v1/health/")).content

    context = ssl.create_default_context()
    if mode == "sync":
        with httpx.Client(base_url=url, transport=JoiningTransport(context)) as client:
            with client.stream("POST", "/v1/agents/a/messages/stream") as response:
                first = b"".join(response.iter_raw())
            second = client.get("/v1/health/").content
    else:
        first, second = asyncio.run(read_async(AsyncJoiningTransport(context)))
    assert (first, second) == (body, b"hello")
    assert seen.count("Data") == 1  # the Content-Length body only: h11 saw no chunk's data
    assert seen.count("EndOfMessage") == 2
    assert len(connections) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    "fault",
    [b"-5\r\nhello\r\n", b"5\r\nhelloXX", b"1" * (MAX_SIZE_LINE + 100)],
    ids=["negative", "no-crlf", "long-line"],
)
def test_malformed_framing_is_a_typed_error_after_the_events_before_it(
    mode: str, fault: bytes
) -> None:
    wire = HEAD + b"".join(b"%x\r\n%b\r\n" % (len(f), f) for f in FRAMES) + fault
    url, _, _ = _serve([HEALTH, wire])
    request = StreamRequest(messages=[OutgoingMessage(content="hi")])
    seen: list[str] = []

    def read() -> None:
        if mode == "sync":
            with LettaClient(base_url=url, background=False, max_retries=0) as client:
                for event in client.stream("agent-1", request):
                    seen.append(event.text)  # type: ignore[union-attr]
            return

        async def run() -> None:
            settings = {"base_url": url, "background": False, "max_retries": 0}
            async with AsyncLettaClient(**settings) as client:  # type: ignore[arg-type]
                async for event in client.stream("agent-1", request):
                    seen.append(event.text)  # type: ignore[union-attr]

        asyncio.run(run())

    with pytest.raises(LettaStreamInterruptedError) as caught:
        read()
    assert seen == ["Hel", "lo"]
    assert caught.value.request_accepted
    assert "RemoteProtocolError" in str(caught.value)


def test_a_chunked_body_over_tls_is_read_past_h11_by_the_sync_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sync TLS goes through httpcore's stream; the body's data is still read past h11."""
    seen = _h11_events(monkeypatch)
    authority = trustme.CA()
    pieces = [b"data: one\n\n", b"data: two\n\n"]
    port, thread, requests = tls_server(authority.issue_cert("localhost"), HEAD + _chunked(pieces))
    context = ssl.create_default_context()
    authority.configure_trust(context)
    with httpx.Client(transport=JoiningTransport(context)) as client:
        with client.stream("GET", f"https://localhost:{port}/v1/stream") as response:
            assert response.extensions["network_stream"].get_extra_info("ssl_object") is not None
            assert b"".join(response.iter_raw()) == b"".join(pieces)
    thread.join(5)
    assert requests[0].startswith(b"GET /v1/stream HTTP/1.1")
    assert "Data" not in seen
    assert seen.count("EndOfMessage") == 1


def _serve_once(parts: list[bytes]) -> str:
    """A server that answers one request with ``parts``, 1 ms apart, then hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        with listener:
            listener.settimeout(10)
            conn, _ = listener.accept()
            with conn:
                received = b""
                while b"\r\n\r\n" not in received:
                    received += conn.recv(65536)
                for part in parts:
                    try:
                        conn.sendall(part)
                    except OSError:
                        return  # the client gave up on a broken body first
                    time.sleep(0.001)

    threading.Thread(target=run, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/v1/agents/a/messages/stream"


def _random_wire(rng: random.Random) -> list[bytes]:
    """A chunked response (CRLF or bare LF head), whole, cut short or with one byte changed,
    in 1 to 6 writes."""
    chunks = [rng.randbytes(rng.randint(1, 30)) for _ in range(rng.randint(0, 6))]
    head = rng.choice([HEAD, HEAD_LF])
    wire = head + b"".join(b"%x\r\n%b\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    kind = rng.random()
    if kind < 0.3:
        wire = wire[: rng.randint(len(head), len(wire))]
    elif kind < 0.6:
        at = rng.randint(len(head), len(wire) - 1)
        wire = wire[:at] + bytes([rng.randrange(256)]) + wire[at + 1 :]
    return [part for part in _split(wire, [rng.randint(0, len(wire)) for _ in range(5)]) if part]


def _outcome_sync(parts: list[bytes], transport: httpx.BaseTransport) -> tuple[str, object]:
    with httpx.Client(transport=transport, timeout=5) as client:
        try:
            with client.stream("POST", _serve_once(parts)) as response:
                return "body", b"".join(response.iter_raw())
        except httpx.HTTPError as error:
            return "error", type(error)


async def _outcome_async(
    parts: list[bytes], transport: httpx.AsyncBaseTransport
) -> tuple[str, object]:
    async with httpx.AsyncClient(transport=transport, timeout=5) as client:
        try:
            async with client.stream("POST", _serve_once(parts)) as response:
                return "body", b"".join([part async for part in response.aiter_raw()])
        except httpx.HTTPError as error:
            return "error", type(error)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_random_bodies_end_as_they_do_on_httpx_own_transport(mode: str) -> None:
    """Over real sockets: the same body, or the same error class, as httpx's own transport."""
    rng = random.Random(11)  # noqa: S311
    context = ssl.create_default_context()
    for _ in range(40):
        parts = _random_wire(rng)
        if mode == "sync":
            ours = _outcome_sync(parts, JoiningTransport(context))
            theirs = _outcome_sync(parts, httpx.HTTPTransport())
        else:
            ours = asyncio.run(_outcome_async(parts, AsyncJoiningTransport(context)))
            theirs = asyncio.run(_outcome_async(parts, httpx.AsyncHTTPTransport()))
        assert ours == theirs, parts


def test_a_mock_of_httpx_own_transport_still_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recorders and mocks (vcrpy, pytest-httpx) replace httpx's transport: requests go there."""

    def handle(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"mocked")

    async def handle_async(
        self: httpx.AsyncHTTPTransport, request: httpx.Request
    ) -> httpx.Response:
        return httpx.Response(200, content=b"mocked too")

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", handle)
    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", handle_async)
    with LettaClient(base_url="http://127.0.0.1:9") as client:
        assert client._http.get("/v1/health/").content == b"mocked"

    async def run() -> bytes:
        async with AsyncLettaClient(base_url="http://127.0.0.1:9") as client:
            return (await client._http.get("/v1/health/")).content

    assert asyncio.run(run()) == b"mocked too"
