"""Every wait ends, every credential stays secret, and the turn happens once (issue 10).

Each behaviour runs through both clients (or ``invoke`` and ``ainvoke``), the async one on
asyncio's own event loop and on uvloop's: the decisions live in one sans-I/O flow, and
these tests check that both shells carry them out.
"""

from __future__ import annotations

import asyncio
import logging
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from langchain_letta import ChatLetta, LettaClient, OutgoingMessage, StreamRequest
from langchain_letta._wire import settings as client_module
from langchain_letta._wire.actions import Deliver, Opened, Probe, Read, Send, TakeTurn
from langchain_letta._wire.failures import error_from_transport
from langchain_letta._wire.flow import StreamFlow
from langchain_letta.errors import (
    LettaAPIError,
    LettaError,
    LettaInvalidRequestError,
    LettaProtocolError,
    LettaStreamInterruptedError,
    LettaTimeoutError,
)
from langchain_letta.events import LettaEvent
from langchain_letta.testing import FakeLettaServer, Reply
from tests.conftest import CAPTURES, LOOP_MODES, Mode, read_through, run_async

AGENT = "agent-0b5c3f0e-bounds"
REQUEST = StreamRequest(messages=[OutgoingMessage(content="hi")])
SECRET = "sk-top-secret-value"
TURN = CAPTURES / "0.16.8/letta_v1_agent/01-stream-steps.sse"
PING = {"message_type": "ping", "id": "ping-1", "run_id": "run-1", "seq_id": 1}


def collect(
    base_url: str, mode: Mode, **options: Any
) -> tuple[list[LettaEvent], LettaError | None]:
    """Stream ``REQUEST`` with the sync or async client; the events and the error, if any."""
    return read_through(
        mode, lambda client: client.stream(AGENT, REQUEST), base_url=base_url, **options
    )


# ------------------------------------------------------------------ a hostile server


class _Handler(socketserver.StreamRequestHandler):
    server: _RawServer

    def handle(self) -> None:
        while True:
            line = self.rfile.readline()
            if not line:
                return
            method, path, _ = line.decode().split(" ", 2)
            length = 0
            while (header := self.rfile.readline()) not in (b"\r\n", b""):
                name, _, value = header.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            self.rfile.read(length)
            self.server.requests.append((method, path))
            status, content_type, pieces = self.server.answer(method, path)
            head = f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n"
            self.wfile.write((head + "transfer-encoding: chunked\r\n\r\n").encode())
            try:
                for delay, piece in pieces:
                    time.sleep(delay)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                return  # the client hung up: what these tests want


Answer = tuple[int, str, Iterator[tuple[float, bytes]]]


class _RawServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answer: Callable[[str, str], Answer]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = answer
        self.requests: list[tuple[str, str]] = []
        self.base_url = f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> _RawServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()


def _health(method: str, path: str) -> Answer | None:
    if path.startswith("/v1/health"):
        return 200, "application/json", iter([(0.0, b'{"version":"0.16.8"}')])
    return None


def _forever(delay: float, piece: bytes) -> Iterator[tuple[float, bytes]]:
    while True:
        yield delay, piece


# ------------------------------------------------------------------ 5: an overall deadline


@pytest.mark.parametrize("mode", LOOP_MODES)
@pytest.mark.parametrize(
    "trickle",
    [
        pytest.param(b'data: {"message_type":"ping","id":"p","run_id":"run-1"}\n\n', id="pings"),
        pytest.param(b" ", id="one-byte"),
    ],
)
def test_a_server_that_trickles_forever_is_stopped_by_the_deadline(
    mode: Mode, trickle: bytes
) -> None:
    """Pings, or a byte at a time, keep every read alive: only the deadline ends the call."""

    def answer(method: str, path: str) -> Answer:
        return _health(method, path) or (200, "text/event-stream", _forever(0.05, trickle))

    with _RawServer(answer) as server:
        events, error = collect(server.base_url, mode, total_timeout=1.0, background=False)
    assert isinstance(error, LettaTimeoutError)
    assert "total_timeout" in str(error)
    assert error.request_accepted  # the message was sent: never sent again
    assert not error.is_retryable
    assert error.progress is not None
    assert events == []


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_a_deadline_that_comes_during_a_silence_ends_the_call_within_one_read_timeout(
    mode: Mode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read timeout (3 s) outlasts the deadline (3.5 s) once the server falls silent at 2 s.

    The async client bounds the reads near the deadline with a timer: the call ends at
    the deadline. httpx's sync transport takes a response's read timeout when the
    request is sent, so a silence near the deadline ends the sync call one read timeout
    after it began (5 s), never later.
    """
    monkeypatch.setattr(client_module, "MIN_READ_TIMEOUT", 0.1)  # a 3 s read timeout

    def then_silent() -> Iterator[tuple[float, bytes]]:
        for _ in range(20):
            yield 0.1, b'data: {"message_type":"ping","id":"p","run_id":"run-1"}\n\n'
        yield 60.0, b" "

    def answer(method: str, path: str) -> Answer:
        return _health(method, path) or (200, "text/event-stream", then_silent())

    with _RawServer(answer) as server:
        started = time.monotonic()
        _, error = collect(server.base_url, mode, total_timeout=3.5, timeout=3.0, background=False)
        elapsed = time.monotonic() - started
    assert isinstance(error, LettaTimeoutError)
    assert "total_timeout" in str(error)
    if mode == "sync":
        assert 4.9 < elapsed < 5.6
    else:
        assert 3.4 < elapsed < 4.5


def test_the_deadline_is_a_chatletta_field_and_a_call_keyword() -> None:
    def answer(method: str, path: str) -> Answer:
        return _health(method, path) or (200, "text/event-stream", _forever(0.05, b" "))

    with _RawServer(answer) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, total_timeout=0.5)
        with pytest.raises(LettaTimeoutError, match="total_timeout"):
            model.invoke("hi")
        with pytest.raises(LettaTimeoutError, match=r"total_timeout \(0.3 s\)"):
            ChatLetta(agent_id=AGENT, base_url=server.base_url).invoke("hi", total_timeout=0.3)
    assert ChatLetta(agent_id=AGENT).total_timeout == 900.0  # the documented default


def test_the_deadline_bounds_waits_between_retries() -> None:
    """A ``Retry-After`` longer than what is left of the deadline ends the call at once."""
    refusal = Reply.json(429, {"detail": "slow down"}, headers=(("retry-after", "100000"),))
    with FakeLettaServer([refusal, refusal]) as server:
        started = time.monotonic()
        _, error = collect(server.base_url, "sync", total_timeout=5.0, retry_timeout=10**6)
        elapsed = time.monotonic() - started
    assert isinstance(error, LettaTimeoutError)
    assert error.request_accepted is False  # refused: nothing was accepted
    assert error.is_retryable
    assert elapsed < 5.0  # it did not sleep into the deadline
    assert len(server.stream_requests) == 1


def test_the_flow_checks_the_deadline_between_reads_with_a_fake_clock() -> None:
    """The sans-I/O flow alone: every read takes 10 s of a fake clock."""
    now = [0.0]
    client = LettaClient(base_url="http://127.0.0.1:9", total_timeout=35.0, dialect="current")
    flow = StreamFlow(client, AGENT, REQUEST, clock=lambda: now[0])
    actions = flow.run()
    action = next(actions)
    assert isinstance(action, Probe)
    action = actions.send(None)
    while not isinstance(action, Send):
        action = actions.send(isinstance(action, TakeTurn) or None)  # the turn is granted
    action = actions.send(Opened(200, {"content-type": "text/event-stream"}))
    reads = 0

    def read_until_the_deadline() -> None:
        nonlocal action, reads
        while True:
            assert isinstance(action, (Read, Deliver))
            if isinstance(action, Read):
                reads += 1
                now[0] += 10.0
                action = actions.send(b'data: {"message_type":"ping","id":"p"}\n\n')
            else:
                action = actions.send(None)

    with pytest.raises(LettaTimeoutError):
        read_until_the_deadline()
    assert reads == 4  # 10, 20, 30 s are within 35 s; the read ending at 40 s is the last


# ------------------------------------------------------------------ 6: the health probe


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_a_health_probe_with_an_endless_body_is_cut_short(mode: Mode) -> None:
    def answer(method: str, path: str) -> Answer:
        if path.startswith("/v1/health"):
            return 200, "application/json", _forever(0.0, b"x" * 65536)
        body = (CAPTURES / "0.16.8/letta_v1_agent/01-stream-steps.sse").read_bytes()
        return 200, "text/event-stream", iter([(0.0, body)])

    with _RawServer(answer) as server:
        events, error = collect(server.base_url, mode)
    assert error is None
    assert events  # the call went on, the server's release unknown
    assert [path for _, path in server.requests][-1].endswith("/messages/stream")


# ------------------------------------------------------------------ 7, 8: resumes


def _background_turn() -> Reply:
    return Reply.from_capture(CAPTURES / "0.16.8/background-redis/03-bg-tool-steps.sse")


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_resumes_that_bring_only_pings_are_bounded(mode: Mode) -> None:
    only_ping = Reply.events({**PING, "run_id": None}, done=False)
    turn = _background_turn().with_faults(drops=[2])
    with FakeLettaServer([turn], resume_replies=[only_ping] * 50) as server:
        events, error = collect(server.base_url, mode, max_retries=2)
    assert isinstance(error, LettaStreamInterruptedError)
    assert len(server.resume_requests) == 3  # max_retries fruitless resumes after the first
    assert len(events) == 1  # the one event before the drop (pings are never events)
    assert len(server.accepted) == 1


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_replayed_events_are_never_delivered_twice(mode: Mode) -> None:
    """The server goes back: ``ABC`` then ``ABCD``; the consumer gets ``ABCD``."""
    frames = _background_turn().frames()
    body = b"".join(frames[:4]) + b"".join(frames[1:])
    with FakeLettaServer([Reply(body=body)]) as server:
        events, error = collect(server.base_url, mode)
    assert error is None
    reference, _ = _undisturbed(mode)
    assert [e.raw for e in events] == [e.raw for e in reference]


def _undisturbed(mode: Mode) -> tuple[list[LettaEvent], LettaError | None]:
    with FakeLettaServer([_background_turn()]) as server:
        return collect(server.base_url, mode)


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_a_resume_that_switches_runs_is_a_protocol_error(mode: Mode) -> None:
    frames = _background_turn().frames()
    other = b"".join(frames[3:]).replace(b'"run_id":"run-', b'"run_id":"run-other-')
    turn = _background_turn().with_faults(drops=[3])
    with FakeLettaServer([turn], resume_replies=[Reply(body=other)]) as server:
        events, error = collect(server.base_url, mode)
    assert isinstance(error, LettaProtocolError)
    assert "switched to run" in str(error)
    assert error.request_accepted
    assert len(events) == 2  # what came before the drop (the first frame is a ping)


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_a_run_id_that_is_not_an_id_never_reaches_a_url(mode: Mode) -> None:
    frames = _background_turn().frames()
    first = frames[0].replace(b'"run_id":"run-', b'"run_id":"../../v1/agents/x/run-')
    body = first + b"".join(frames[1:])
    with FakeLettaServer([Reply(body=body).with_faults(drops=[3])]) as server:
        _, error = collect(server.base_url, mode)
    assert isinstance(error, LettaProtocolError)
    assert "invalid run id" in str(error)
    assert server.resume_requests == []


# ------------------------------------------------------------------ 1, 2, 3: credentials


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_a_key_read_from_a_file_with_its_newline_works(mode: Mode) -> None:
    with FakeLettaServer([Reply.from_capture(TURN)]) as server:
        _, error = collect(server.base_url, mode, api_key=SECRET + "\n", password=" pw \r\n")
    assert error is None
    headers = server.stream_requests[0].headers
    assert headers["authorization"] == f"Bearer {SECRET}"
    assert headers["x-bare-password"] == "password pw"


@pytest.mark.parametrize("bad", [f"{SECRET}\nX-Injected: 1", f"{SECRET}\x00", f"{SECRET}\u2028x"])
def test_a_credential_that_cannot_be_a_header_is_refused_without_showing_it(bad: str) -> None:
    with pytest.raises(ValueError, match="api_key") as caught:
        LettaClient(api_key=bad)
    assert SECRET not in str(caught.value)
    with pytest.raises(ValidationError) as invalid:
        ChatLetta(agent_id=AGENT, password=bad)
    assert SECRET not in str(invalid.value)


def test_an_invalid_extra_header_is_refused_before_anything_is_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Extra headers may carry credentials too: checked alike, never shown."""
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ValueError, match="X-Token") as caught:
        LettaClient(headers={"X-Token": f"{SECRET}\nX-Injected: 1"})
    assert SECRET not in str(caught.value)
    assert SECRET not in caplog.text


def test_a_request_httpx_refuses_is_typed_and_not_accepted() -> None:
    """The last line of defence: whatever httpx refuses to send says so, without values."""
    error = error_from_transport(httpx.LocalProtocolError(f"Illegal header value b'{SECRET}'"))
    assert isinstance(error, LettaInvalidRequestError)
    assert error.request_accepted is False
    assert "nothing was sent" in str(error)
    assert SECRET not in str(error)


def test_no_secret_in_debug_logs_of_a_whole_call(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeLettaServer([Reply.from_capture(TURN)]) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, api_key=SECRET + "\n")
        model.invoke("hi")
    assert caplog.records  # httpx and httpcore did log
    assert SECRET not in caplog.text
    assert SECRET not in repr(model)


@pytest.mark.parametrize("url", ["http://user:hunter2@localhost:8283", "http://:hunter2@h:1"])
def test_credentials_in_the_base_url_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="credentials") as caught:
        LettaClient(base_url=url)
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ValidationError) as invalid:
        ChatLetta(agent_id=AGENT, base_url=url)
    assert "hunter2" not in str(invalid.value)


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_no_credential_follows_a_redirect_to_another_host(mode: Mode) -> None:
    with FakeLettaServer([Reply.from_capture(TURN)]) as elsewhere:
        target = f"{elsewhere.base_url}/v1/agents/{AGENT}/messages/stream"
        redirect = Reply.json(307, {}, headers=(("location", target),))
        with FakeLettaServer([redirect]) as server:
            http: Any = (
                httpx.Client(base_url=server.base_url, follow_redirects=True)
                if mode == "sync"
                else httpx.AsyncClient(base_url=server.base_url, follow_redirects=True)
            )
            _, error = collect(server.base_url, mode, password=SECRET, http_client=http)
    assert isinstance(error, LettaAPIError)
    assert "redirect" in str(error)
    assert error.request_accepted is False
    assert elsewhere.received == []  # nothing, and no password, reached the other host


# ------------------------------------------------------------------ 18, 19: once per server


def test_a_server_without_redis_is_found_out_once_and_nothing_is_printed(
    capfd: pytest.CaptureFixture[str],
) -> None:
    turn = Reply.from_capture(TURN)

    async def ten_calls(base_url: str) -> None:
        model = ChatLetta(agent_id=AGENT, base_url=base_url)
        await asyncio.gather(*(model.ainvoke(f"call {n}") for n in range(10)))

    with FakeLettaServer(lambda _request: turn, redis=False) as server:
        asyncio.run(ten_calls(server.base_url))
        ChatLetta(agent_id=AGENT, base_url=server.base_url).invoke("a new model, same server")
    asked = [r.json().get("background", False) for r in server.stream_requests]
    assert asked.count(True) == 1  # one request found out; nobody asked again
    assert len(asked) == 12  # 11 calls, and the one refusal
    assert len(server.accepted) == 11
    out, err = capfd.readouterr()
    assert out == ""
    assert err == ""


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_calls_of_one_model_reuse_one_connection(mode: Mode) -> None:
    turn = Reply.from_capture(TURN)

    async def twenty(model: ChatLetta) -> None:
        for n in range(20):
            await model.ainvoke(f"call {n}")
            await asyncio.sleep(0.01)  # the connection's ending is read in the background

    with FakeLettaServer(lambda _request: turn) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        if mode == "sync":
            for n in range(20):
                model.invoke(f"call {n}")
                time.sleep(0.01)
        else:
            run_async(mode, twenty(model))
    connections = {request.peer for request in server.received}
    assert len(server.stream_requests) == 20
    assert len(connections) <= 2  # one, or two when a call starts before an ending is read


def test_the_finish_never_holds_up_the_consumer() -> None:
    """A server that keeps the response open after ``[DONE]`` delays nobody."""
    body = (CAPTURES / "0.16.8/letta_v1_agent/01-stream-steps.sse").read_bytes()

    def answer(method: str, path: str) -> Answer:
        pieces = iter([(0.0, body), (30.0, b"data: late\n\n")])
        return _health(method, path) or (200, "text/event-stream", pieces)

    with _RawServer(answer) as server:
        started = time.monotonic()
        message = ChatLetta(agent_id=AGENT, base_url=server.base_url).invoke("hi")
        elapsed = time.monotonic() - started
    assert message.text == "Hello from the fake model"
    assert elapsed < 10.0  # not the server's 30 s


def test_retries_are_logged_not_printed(capfd: pytest.CaptureFixture[str]) -> None:
    busy = Reply.json(503, {"detail": "busy"})
    with FakeLettaServer([busy, Reply.from_capture(TURN)]) as server:
        events, error = collect(server.base_url, "sync")
    assert error is None
    assert events
    assert capfd.readouterr().err == ""


def test_a_foreground_stream_keeps_every_frame_it_sends() -> None:
    """Only a background run (with seq_ids) can be replayed: a foreground one loses nothing."""
    from langchain_letta._wire.state import StreamState

    stop = b'data: {"message_type":"stop_reason","stop_reason":"end_turn"}\n\n'
    usage = b'data: {"message_type":"usage_statistics","total_tokens":1}\n\n'
    foreground = StreamState()
    assert len(foreground.feed((stop + usage) * 2)) == 4
    background = StreamState()
    seq = b'data: {"message_type":"assistant_message","id":"m","content":"x","seq_id":1}\n\n'
    assert len(background.feed(seq + stop + usage + seq + stop + usage)) == 3
