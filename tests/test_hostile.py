"""A hostile or broken server, and bad input: typed errors and nothing lost, sync and async.

Each test runs both clients (or ``invoke`` and ``ainvoke``) against the same server, the
async one on asyncio's own event loop and on uvloop's.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import re
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig

from langchain_letta import AsyncLettaClient, ChatLetta, LettaClient, OutgoingMessage, StreamRequest
from langchain_letta._wire.sse import SSEFrameDecoder
from langchain_letta.errors import (
    LettaAPIError,
    LettaAuthenticationError,
    LettaError,
    LettaInvalidRequestError,
    LettaNotFoundError,
    LettaProtocolError,
    LettaRateLimitError,
    LettaStreamCancelledError,
)
from langchain_letta.events import LettaEvent
from langchain_letta.testing import FakeLettaServer, Reply
from tests.conftest import LOOP_MODES, Mode, read_through, run_async

AGENT = "agent-0b5c3f0e-hostile"
REQUEST = StreamRequest(messages=[OutgoingMessage(content="hi")])
HELLO = {"message_type": "assistant_message", "id": "message-1", "content": "Hello"}
FROM_THE_AGENT = {"model_provider": "letta", "agent_id": AGENT}
DEEP_ARRAY = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"detail":' * 100_000 + "1" + "}" * 100_000


def drain(
    server: FakeLettaServer, mode: Mode, agent_id: str = AGENT, **options: Any
) -> tuple[list[LettaEvent], LettaError | None]:
    """Stream one request with the sync or async client: events delivered, error that ended it."""
    options.setdefault("max_retries", 0)
    return read_through(
        mode, lambda client: client.stream(agent_id, REQUEST), base_url=server.base_url, **options
    )


def drain_mocked(
    answer: Callable[[httpx.Request], httpx.Response],
    mode: Mode,
    base_url: str = "http://letta.test",
    **options: Any,
) -> LettaError | None:
    """Stream one request through an ``httpx.MockTransport``: the error that ended it, if any."""
    transport = httpx.MockTransport(answer)
    try:
        if mode == "sync":
            http = httpx.Client(transport=transport)
            with LettaClient(
                http_client=http, base_url=base_url, max_retries=0, **options
            ) as client:
                list(client.stream(AGENT, REQUEST))
        else:

            async def consume() -> None:
                http = httpx.AsyncClient(transport=transport)
                async with AsyncLettaClient(
                    http_client=http, base_url=base_url, max_retries=0, **options
                ) as client:
                    async for _ in client.stream(AGENT, REQUEST):
                        pass

            run_async(mode, consume())
    except LettaError as error:
        return error
    return None


def chat(
    server: FakeLettaServer,
    mode: Mode,
    text: str | list[BaseMessage] = "hi",
    config: RunnableConfig | None = None,
) -> AIMessage:
    """``invoke`` or ``ainvoke`` one ChatLetta turn against the server."""
    model = ChatLetta(agent_id=AGENT, base_url=server.base_url, max_retries=0)
    if mode == "sync":
        return model.invoke(text, config)
    return run_async(mode, model.ainvoke(text, config))


# ------------------------------------------------------------------ deeply nested JSON


@pytest.mark.parametrize("mode", LOOP_MODES)
@pytest.mark.parametrize(
    ("status", "error_class"), [(401, LettaAuthenticationError), (422, LettaInvalidRequestError)]
)
@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
def test_a_deeply_nested_error_body_gives_its_typed_error(
    mode: Mode, status: int, error_class: type[LettaError], body: str
) -> None:
    reply = Reply(status=status, body=body.encode(), content_type="application/json")
    with FakeLettaServer([reply]) as server:
        events, error = drain(server, mode)
    assert events == []
    assert type(error) is error_class
    assert error.status_code == status
    assert error.detail is not None
    assert error.detail.startswith(body[:20])  # an excerpt of the body as text
    assert len(str(error)) < 1000
    assert not error.request_accepted


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_a_deeply_nested_stream_frame_is_a_protocol_error_after_the_good_events(
    mode: Mode,
) -> None:
    deep = f'data: {{"message_type": "assistant_message", "content": {DEEP_ARRAY}}}\n\n'
    reply = Reply(body=f"data: {json.dumps(HELLO)}\n\n{deep}data: [DONE]\n\n".encode())
    with FakeLettaServer([reply]) as server:
        events, error = drain(server, mode)
    assert [event.raw for event in events] == [HELLO]
    assert isinstance(error, LettaProtocolError)
    assert "recursion limit" in str(error)


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_deeply_nested_tool_arguments_stay_the_text_the_server_sent(mode: Mode) -> None:
    call = {"name": "f", "arguments": DEEP_ARRAY, "tool_call_id": "call-1"}
    reply = Reply.events(
        {"message_type": "tool_call_message", "id": "message-0", "tool_call": call}, HELLO
    )
    with FakeLettaServer([reply]) as server:
        message = chat(server, mode)
    assert message.text == "Hello"
    (block,) = [b for b in message.content if isinstance(b, dict) and "args" in b]
    assert block["type"] == "server_tool_call_chunk"
    assert block["args"] == DEEP_ARRAY


class BreaksOff(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that sends its start, then the connection breaks."""

    def __init__(self, start: bytes) -> None:
        self.start = start

    def __iter__(self) -> Iterator[bytes]:
        yield self.start
        raise httpx.RemoteProtocolError("peer closed connection without a complete body")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self:
            yield chunk


BROKEN_GZIP = gzip.compress(b'{"detail": "bad key"}' * 50)[:30] + b"\x00not gzip" * 100


@pytest.mark.parametrize("mode", LOOP_MODES)
@pytest.mark.parametrize(
    ("status", "stream", "headers", "error_class"),
    [
        (
            401,
            httpx.ByteStream(BROKEN_GZIP),
            {"content-encoding": "gzip"},
            LettaAuthenticationError,
        ),
        (503, BreaksOff(b'{"detail": "busy'), {}, LettaAPIError),
    ],
    ids=["undecodable-401", "cut-503"],
)
def test_an_error_body_that_breaks_off_or_cannot_be_decoded_keeps_its_typed_error(
    mode: Mode,
    status: int,
    stream: httpx.SyncByteStream,
    headers: dict[str, str],
    error_class: type[LettaError],
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/health/":
            return httpx.Response(404)
        return httpx.Response(status, headers=headers, stream=stream)

    error = drain_mocked(answer, mode)
    assert type(error) is error_class
    assert error.status_code == status
    assert error.is_retryable is (status == 503)


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_a_deeply_nested_health_answer_only_leaves_the_version_unknown(mode: Mode) -> None:
    stream = b'data: {"message_type": "assistant_message", "content": "Hello"}\n\ndata: [DONE]\n\n'
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/health/":
            return httpx.Response(200, content=DEEP_ARRAY.encode())
        sent.append(request)
        return httpx.Response(200, content=stream, headers={"content-type": "text/event-stream"})

    assert drain_mocked(answer, mode) is None
    assert len(sent) == 1


# ------------------------------------------------------------------ bad input, odd headers


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_an_agent_id_with_a_trailing_newline_is_refused_before_anything_is_sent(
    mode: Mode,
) -> None:
    bad = AGENT + "\n"
    with FakeLettaServer([Reply.events(HELLO)]) as server:
        with pytest.raises(ValueError, match="invalid Letta agent id"):
            drain(server, mode, agent_id=bad)
        with pytest.raises(ValueError, match="invalid Letta agent id"):
            chat(server, mode, config={"configurable": {"agent_id": bad}})
        with pytest.raises(ValueError, match="invalid Letta agent id"):
            ChatLetta(agent_id=bad, base_url=server.base_url)
    assert server.stream_requests == []


@pytest.mark.parametrize("mode", LOOP_MODES)
@pytest.mark.parametrize(
    ("part", "says"),
    [
        ({"type": "text", "text": None}, "'text' must be a string"),
        ({"type": "text"}, "'text' must be a string"),
        ({"type": "image_url"}, "needs 'image_url'"),
        ({"type": "image_url", "image_url": None}, "needs 'image_url'"),
        ({"type": "image_url", "image_url": {"url": None}}, "needs 'image_url'"),
        ({"type": "image_url", "image_url": {}}, "needs 'image_url'"),
        ({"type": "image"}, "needs a 'url' or 'base64'"),
        ({"type": "image", "url": None, "base64": None}, "needs a 'url' or 'base64'"),
        ({"image_url": None}, "type None"),
    ],
)
def test_a_malformed_content_part_is_a_clear_value_error_with_nothing_sent(
    mode: Mode, part: dict[str, Any], says: str
) -> None:
    message = HumanMessage(content=["look:", part])
    with FakeLettaServer([Reply.events(HELLO)]) as server:
        with pytest.raises(ValueError, match=re.escape(says)):
            chat(server, mode, [message])
    assert server.stream_requests == []


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_the_event_stream_content_type_is_matched_whatever_its_case(mode: Mode) -> None:
    reply = Reply(body=Reply.events(HELLO).body, content_type="Text/Event-Stream; Charset=UTF-8")
    with FakeLettaServer([reply]) as server:
        events, error = drain(server, mode)
    assert error is None
    assert [event.raw for event in events] == [HELLO]


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_an_sse_error_body_is_read_whatever_the_case_of_its_content_type(mode: Mode) -> None:
    body = b'event: error\ndata: {"error": {"type": "llm_rate_limit", "message": "slow"}}\n\n'
    reply = Reply(status=500, body=body, content_type="TEXT/EVENT-STREAM")
    with FakeLettaServer([reply]) as server:
        _, error = drain(server, mode)
    assert isinstance(error, LettaRateLimitError)  # the in-stream error, not a bare "HTTP 500"
    assert error.status_code == 500
    assert "slow" in str(error)


# ------------------------------------------------------------------ nothing lost

THINKING = {"message_type": "reasoning_message", "id": "message-0", "reasoning": "Greet them."}
GOOD_FRAMES = b"".join(f"data: {json.dumps(payload)}\n\n".encode() for payload in (THINKING, HELLO))
BAD_FRAMES = {
    "malformed": (b"data: {not json\n\n", LettaProtocolError),
    "error": (
        b'event: error\ndata: {"error": {"type": "llm_rate_limit", "message": "slow"}}\n\n',
        LettaRateLimitError,
    ),
    "cancelled": (
        b'event: cancelled\ndata: {"message": "Run was cancelled"}\n\n',
        LettaStreamCancelledError,
    ),
}


def in_one_write(bad_frame: bytes) -> Reply:
    """Good frames and then a bad one in one write, so the client reads them together."""
    return Reply(body=GOOD_FRAMES + bad_frame + b"data: [DONE]\n\n", split_frames=False)


@pytest.mark.parametrize("mode", LOOP_MODES)
@pytest.mark.parametrize("bad", list(BAD_FRAMES))
def test_events_read_together_with_a_bad_frame_are_delivered_before_its_error(
    mode: Mode, bad: str
) -> None:
    frame, error_class = BAD_FRAMES[bad]
    with FakeLettaServer([in_one_write(frame)]) as server:
        events, error = drain(server, mode)
    assert [event.raw for event in events] == [THINKING, HELLO]
    assert type(error) is error_class
    assert error.progress is not None
    assert error.progress.events_received == 2


@pytest.mark.parametrize("mode", LOOP_MODES)
@pytest.mark.parametrize("bad", list(BAD_FRAMES))
def test_the_partial_message_keeps_what_came_in_the_same_read_as_a_bad_frame(
    mode: Mode, bad: str
) -> None:
    frame, error_class = BAD_FRAMES[bad]
    with FakeLettaServer([in_one_write(frame)]) as server:
        with pytest.raises(error_class) as caught:
            chat(server, mode)
    partial = caught.value.partial_message
    assert isinstance(partial, AIMessage)
    assert partial.text == "Hello"
    assert [block["type"] for block in partial.content_blocks] == ["reasoning", "text"]


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_events_read_together_with_an_oversized_frame_are_delivered_before_its_error(
    mode: Mode, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real limit is 8 MiB, more than one read; a small one puts both in one read.
    small = functools.partial(SSEFrameDecoder, max_frame_bytes=1000)
    monkeypatch.setattr("langchain_letta._wire.state.SSEFrameDecoder", small)
    with FakeLettaServer([in_one_write(b"data: " + b"x" * 2000 + b"\n\n")]) as server:
        events, error = drain(server, mode)
    assert [event.raw for event in events] == [THINKING, HELLO]
    assert isinstance(error, LettaProtocolError)
    assert "exceeded 1000" in str(error)


# ------------------------------------------------------------------ accepted once started

BEFORE_A_BAD_FRAME = f"data: {json.dumps(HELLO)}\n\n".encode()
OVERSIZED_FRAME = b"data: " + b"x" * (9 << 20) + b"\n\n"  # over the real 8 MiB limit


@pytest.mark.parametrize("mode", LOOP_MODES)
@pytest.mark.parametrize(
    "bad_frame", [b"data: {not json\n\n", OVERSIZED_FRAME], ids=["malformed", "oversized"]
)
def test_a_bad_frame_after_the_stream_started_says_the_message_was_accepted(
    mode: Mode, bad_frame: bytes
) -> None:
    with FakeLettaServer([Reply(body=BEFORE_A_BAD_FRAME + bad_frame)]) as server:
        events, error = drain(server, mode, max_retries=2)
    assert [event.raw for event in events] == [HELLO]
    assert isinstance(error, LettaProtocolError)
    assert error.request_accepted
    assert not error.is_retryable
    assert len(server.stream_requests) == 1


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_a_stream_body_that_cannot_be_decoded_is_a_typed_error_with_the_message_accepted(
    mode: Mode,
) -> None:
    frames = BEFORE_A_BAD_FRAME * 50
    broken_gzip = gzip.compress(frames)[:40] + b"\x00not gzip" * 100
    headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/health/":
            return httpx.Response(404)
        return httpx.Response(200, headers=headers, stream=httpx.ByteStream(broken_gzip))

    error = drain_mocked(answer, mode)
    assert isinstance(error, LettaProtocolError)
    assert "could not be decoded" in str(error)
    assert error.request_accepted


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_a_503_with_a_malformed_sse_body_stays_a_retryable_refusal(mode: Mode) -> None:
    reply = Reply(status=503, body=b"data: {not json\n\n")
    with FakeLettaServer([reply]) as server:
        events, error = drain(server, mode)
    assert events == []
    assert type(error) is LettaAPIError
    assert error.status_code == 503
    assert error.is_retryable
    assert not error.request_accepted


# ------------------------------------------------------------------ every wait bounded


def rate_limited(retry_after: str) -> Reply:
    return Reply.json(429, {"detail": "slow down"}, headers=(("retry-after", retry_after),))


@pytest.mark.parametrize("mode", LOOP_MODES)
@pytest.mark.parametrize("retry_after", ["100000", "inf", "1e400", "Infinity"])
def test_a_retry_after_beyond_the_retry_timeout_ends_at_once_in_the_rate_limit_error(
    mode: Mode, retry_after: str, waits: list[float]
) -> None:
    with FakeLettaServer([rate_limited(retry_after), Reply.events(HELLO)]) as server:
        events, error = drain(server, mode, max_retries=2, retry_timeout=60)
    assert events == []
    assert waits == []  # neither 100000 s nor forever (nor an OverflowError)
    assert isinstance(error, LettaRateLimitError)
    assert error.retry_after is not None
    assert error.retry_after >= 100000
    assert error.is_retryable  # nothing was accepted: the caller may try later
    assert server.accepted == []
    assert len(server.stream_requests) == 1


@pytest.mark.parametrize("mode", LOOP_MODES)
@pytest.mark.parametrize(
    ("retry_after", "retry_timeout", "waited"),
    [("5", 60, [5.0]), ("5", 4, []), ("nan", 60, "backoff")],
    ids=["fits", "longer-than-the-timeout", "not-a-number"],
)
def test_a_retry_after_is_waited_only_within_the_retry_timeout(
    mode: Mode, retry_after: str, retry_timeout: float, waited: Any, waits: list[float]
) -> None:
    with FakeLettaServer([rate_limited(retry_after), Reply.events(HELLO)]) as server:
        events, error = drain(server, mode, max_retries=2, retry_timeout=retry_timeout)
    if waited == []:
        assert isinstance(error, LettaRateLimitError)
        assert waits == []
        return
    assert error is None
    assert [event.raw for event in events] == [HELLO]
    if waited == "backoff":  # "nan" is no number: the usual back-off, under a second
        assert len(waits) == 1
        assert 0 < waits[0] < 1
    else:
        assert waits == waited


# ------------------------------------------------------------------ errors that say what to do


@pytest.mark.parametrize("mode", LOOP_MODES)
@pytest.mark.parametrize(
    ("messages", "says"),
    [
        ([], "got no messages to send: pass the user's message"),
        ([AIMessage("Hi, I am someone else")], "the input ends with a AIMessage"),
        (
            [HumanMessage("hi"), AIMessage("Hello", response_metadata=FROM_THE_AGENT)],
            "the history ends with its own answer; append the user's next message",
        ),
    ],
    ids=["empty", "ai-only", "ends-with-its-answer"],
)
def test_nothing_to_send_says_what_happened_and_what_to_do(
    mode: Mode, messages: list[BaseMessage], says: str
) -> None:
    with FakeLettaServer([Reply.events(HELLO)]) as server:
        with pytest.raises(ValueError, match=re.escape(says)):
            chat(server, mode, messages)
    assert server.stream_requests == []


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_a_base_url_ending_in_v1_names_the_url_tried_and_says_to_drop_it(mode: Mode) -> None:
    def fastapi(request: httpx.Request) -> httpx.Response:  # Letta's router: 404 elsewhere
        if request.url.path == f"/v1/agents/{AGENT}/messages/stream":
            sse = {"content-type": "text/event-stream"}
            return httpx.Response(200, content=Reply.events(HELLO).body, headers=sse)
        return httpx.Response(404, json={"detail": "Not Found"})

    secrets = {"api_key": "sk-let-me-in", "password": "hunter2"}
    error = drain_mocked(fastapi, mode, base_url="http://letta.test/v1", **secrets)
    assert isinstance(error, LettaNotFoundError)
    message = str(error)
    assert f"POST http://letta.test/v1/v1/agents/{AGENT}/messages/stream" in message
    assert "drop the /v1" in message
    assert not any(secret in message for secret in secrets.values())


class PartialChunkServer:
    """A raw HTTP/1.1 server: one whole SSE frame, then only the first byte of the next chunk.

    It sends the rest once the client has seen the first event (``seen``), or after
    ``patience`` seconds: ``held`` then says the client kept an event that had
    arrived whole until more came.
    """

    def __init__(self, patience: float = 5.0) -> None:
        self.seen = threading.Event()
        self.held = False
        self.patience = patience
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        first = b'data: {"message_type":"assistant_message","id":"m","content":"Hello"}\n\n'
        second = b'data: {"message_type":"assistant_message","id":"m","content":" there"}\n\n'
        done = b"data: [DONE]\n\n"
        with self._listener:
            connection, _ = self._listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                )
                connection.sendall(b"%x\r\n%s\r\n" % (len(first), first))
                head = b"%x\r\n" % len(second)
                connection.sendall(head[:1])  # the next chunk has begun to arrive
                self.held = not self.seen.wait(self.patience)
                connection.sendall(head[1:] + second + b"\r\n")
                connection.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
                connection.shutdown(socket.SHUT_WR)  # then read what is left: no reset
                connection.settimeout(self.patience)
                with contextlib.suppress(OSError):
                    while connection.recv(65536):
                        pass


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_an_event_that_arrived_is_delivered_while_the_next_chunk_is_still_partial(
    mode: Mode,
) -> None:
    server = PartialChunkServer()
    options = {"base_url": server.base_url, "dialect": "current", "background": False}
    request = StreamRequest(messages=[OutgoingMessage(content="hi")])

    def seen(event: LettaEvent) -> str:
        server.seen.set()
        return str(getattr(event, "text", ""))

    async def consume() -> list[str]:
        async with AsyncLettaClient(**options) as client:
            return [seen(event) async for event in client.stream(AGENT, request)]

    if mode == "sync":
        with LettaClient(**options) as client:
            texts = [seen(event) for event in client.stream(AGENT, request)]
    else:
        texts = run_async(mode, consume())
    assert texts == ["Hello", " there"]
    assert not server.held  # the first event came while the next chunk was still partial
