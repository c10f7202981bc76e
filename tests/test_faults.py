"""The fault matrix: each fault the fake server injects, what the user gets, how many turns.

"Accepted" counts the message requests the server took into the agent's memory; it
must be exactly one whenever the turn happened, whatever broke on the way.

Every fault runs through both clients (``LettaClient`` and ``AsyncLettaClient``, or
``invoke``/``stream`` and ``ainvoke``/``astream``), the async one on asyncio's own event
loop and on uvloop's: the retry and resume decisions live in one sans-I/O flow
(``StreamFlow``), and these tests check that both shells carry them out.

| fault | tests (section) |
|---|---|
| 429, 502, 503, 504, 409 busy; ``Retry-After``; storms; 500; | before acceptance |
| connection refused; callbacks; background refused (no Redis) | |
| drops in a background run (once, several, random, real captures); | after acceptance |
| stall; drop in a foreground stream; resumes that keep failing | |
| error events of every shape; malformed, unknown, oversized frames | bad streams |
| ``break`` and ``close()``/``aclose()``; a consumer stopped mid-stream | stopping early |
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_aiohttp import HttpxAiohttpClient
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda

from langchain_letta import AsyncLettaClient, ChatLetta, LettaClient, OutgoingMessage, StreamRequest
from langchain_letta.errors import (
    LettaAPIError,
    LettaAuthenticationError,
    LettaConnectionError,
    LettaContextOverflowError,
    LettaError,
    LettaNotFoundError,
    LettaProtocolError,
    LettaRateLimitError,
    LettaStreamInterruptedError,
    LettaTimeoutError,
    StreamProgress,
)
from langchain_letta.events import LettaEvent, UnknownEvent
from langchain_letta.testing import FakeLettaServer, Reply
from tests.conftest import CAPTURES, LOOP_MODES, Mode, read_through, run_async

AGENT = "agent-55573f99-7c7b-4e3c-a4ac-cada9620ce68"
REQUEST = StreamRequest(messages=[OutgoingMessage(content="hi")])
# A real 0.16.8 turn with a tool call, token-streamed: 22 frames with [DONE].
TURN = CAPTURES / "0.16.8/background-redis/32-bg-disconnect-full-reread.sse"
FRAMES = len(Reply.from_capture(TURN).frames())
HELLO = "Hello from the fake model"
QUICK_WAIT = (("retry-after", "0"),)


@pytest.fixture(autouse=True)
def no_backoff(waits: list[float]) -> list[float]:
    """Record the retry waits instead of sleeping them, sync and async."""
    return waits


def turn(**faults: Any) -> Reply:
    return Reply.from_capture(TURN).with_faults(**faults)


def drain(
    server: FakeLettaServer,
    mode: Mode,
    open_stream: Callable[[Any], Any] = lambda client: client.stream(AGENT, REQUEST),
    **options: Any,
) -> tuple[list[LettaEvent], LettaError | None]:
    """Read one stream with the sync or async client: events delivered, error that ended it."""
    return read_through(mode, open_stream, base_url=server.base_url, **options)


def events_of(server: FakeLettaServer, mode: Mode = "sync", **options: Any) -> list[Any]:
    """The raw events of one streamed request; the error that ended it is raised."""
    events, error = drain(server, mode, **options)
    if error is not None:
        raise error
    return [event.raw for event in events]


@functools.cache
def undisturbed() -> list[Any]:
    """The events of the turn without faults (read once, by the sync client)."""
    with FakeLettaServer([turn()]) as server:
        return events_of(server)


def http_client(mode: Mode, timeout: float, transport: str = "httpx") -> Any:
    """An ``httpx.Client`` or ``httpx.AsyncClient`` with this timeout.

    ``transport``: ``"httpx"`` (httpx's own) or ``"aiohttp"`` (httpx-aiohttp, async only).
    """
    if mode == "sync":
        return httpx.Client(timeout=timeout)
    if transport == "aiohttp":
        return HttpxAiohttpClient(timeout=timeout)
    return httpx.AsyncClient(timeout=timeout)


def invoke(
    model: ChatLetta, mode: Mode, text: str = "hi", config: RunnableConfig | None = None
) -> BaseMessage:
    """``invoke`` or ``ainvoke``."""
    if mode == "sync":
        return model.invoke(text, config)
    return run_async(mode, model.ainvoke(text, config))


def chunks_of(model: ChatLetta, mode: Mode, text: Any, **kwargs: Any) -> list[AIMessageChunk]:
    """``stream`` or ``astream`` to the end; an error is raised."""
    if mode == "sync":
        return list(model.stream(text, **kwargs))

    async def consume() -> list[AIMessageChunk]:
        return [chunk async for chunk in model.astream(text, **kwargs)]

    return run_async(mode, consume())


def aggregate(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full


# ------------------------------------------------------------------ before acceptance


@pytest.mark.parametrize("mode", LOOP_MODES)
@pytest.mark.parametrize(
    "refusal",
    [
        Reply.json(429, {"detail": "rate limited"}, headers=QUICK_WAIT),
        Reply.json(502, {"detail": "bad gateway"}),
        Reply.json(503, {"detail": "unavailable"}),
        Reply.json(504, {"detail": "gateway timeout"}),
        Reply.json(409, {"detail": "Agent is busy with another run"}),
    ],
    ids=["429", "502", "503", "504", "409-busy"],
)
def test_refusals_before_acceptance_are_retried_and_the_turn_happens_once(
    mode: Mode, refusal: Reply
) -> None:
    with FakeLettaServer([refusal, refusal, turn()]) as server:
        events = events_of(server, mode, max_retries=2)
    assert events == undisturbed()
    assert len(server.stream_requests) == 3
    assert len(server.accepted) == 1


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_a_busy_thread_is_waited_for_beyond_max_retries(mode: Mode) -> None:
    # Another process's turn (or an abandoned run) holds the thread: the refusal proves
    # nothing was taken, and the run ends when it ends; the deadline bounds the wait.
    busy = Reply.json(409, {"detail": "CONFLICT: Another request is being processed"})
    with FakeLettaServer([busy] * 5 + [turn()]) as server:
        events = events_of(server, mode, max_retries=1)
    assert events == undisturbed()
    assert len(server.stream_requests) == 6
    assert len(server.accepted) == 1


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_retry_after_is_honoured(mode: Mode, no_backoff: list[float]) -> None:
    refusal = Reply.json(429, {"detail": "slow down"}, headers=(("retry-after", "7"),))
    with FakeLettaServer([refusal, turn()]) as server:
        events_of(server, mode)
    assert no_backoff
    assert no_backoff[0] >= 7


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_a_storm_longer_than_max_retries_fails_typed_with_nothing_accepted(mode: Mode) -> None:
    refusal = Reply.json(429, {"detail": "rate limited"}, headers=QUICK_WAIT)
    with FakeLettaServer([refusal] * 4) as server:
        with pytest.raises(LettaRateLimitError):
            events_of(server, mode, max_retries=2)
    assert len(server.stream_requests) == 3
    assert server.accepted == []


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_a_500_is_never_retried_because_the_message_may_be_stored(mode: Mode) -> None:
    with FakeLettaServer([Reply.json(500, {"detail": "boom"}), turn()]) as server:
        with pytest.raises(LettaAPIError) as caught:
            events_of(server, mode, max_retries=3)
    assert len(server.stream_requests) == 1
    assert not caught.value.is_retryable
    assert caught.value.request_accepted  # it may be stored: never sent again


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_refused_connection_is_retried_then_fails_typed(
    mode: Mode, no_backoff: list[float]
) -> None:
    with FakeLettaServer([turn()]) as server:
        pass
    with pytest.raises(LettaConnectionError) as caught:
        events_of(server, mode, max_retries=1, dialect="current")
    assert len(no_backoff) == 1  # retried once
    assert caught.value.is_retryable
    assert not caught.value.request_accepted


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_retries_and_resumes_reach_the_callbacks(mode: Mode) -> None:
    class Recorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.retries: list[Any] = []
            self.custom: list[str] = []

        def on_retry(self, retry_state: Any, **kwargs: Any) -> None:
            self.retries.append(retry_state)

        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            self.custom.append(name)

    async def ainvoke(text: str) -> BaseMessage:
        return await model.ainvoke(text)

    refusal = Reply.json(503, {"detail": "unavailable"})
    recorder = Recorder()
    config: RunnableConfig = {"callbacks": [recorder]}
    with FakeLettaServer([refusal, turn(), refusal, turn(drops=[5])]) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        invoke(model, mode, config=config)  # the LLM run's on_retry
        # and the parent run's custom events
        if mode == "sync":
            RunnableLambda(lambda text: model.invoke(text)).invoke("hi", config)
        else:
            run_async(mode, RunnableLambda(ainvoke).ainvoke("hi", config))
    assert len(recorder.retries) == 2  # one per call: the nested model run reports it too
    assert "letta.retry" in recorder.custom
    assert "letta.resume" in recorder.custom
    assert len(server.accepted) == 2


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_background_refused_without_redis_falls_back_to_one_foreground_turn(mode: Mode) -> None:
    with FakeLettaServer([turn()], redis=False) as server:
        events = events_of(server, mode)
    assert [request.json().get("background") for request in server.stream_requests] == [
        True,
        None,
    ]
    assert len(server.accepted) == 1
    assert [e["message_type"] for e in events][-1] == "usage_statistics"


# ------------------------------------------------------------------ after acceptance


@pytest.mark.parametrize("mode", LOOP_MODES)
@pytest.mark.parametrize("drop_after", [1, 2, 5, 12, FRAMES - 3, FRAMES - 2, FRAMES - 1])
def test_a_drop_in_a_background_run_is_resumed_exactly(mode: Mode, drop_after: int) -> None:
    with FakeLettaServer([turn(drops=[drop_after])]) as server:
        events = events_of(server, mode)
    assert events == undisturbed()  # none lost, none twice, in order
    assert len(server.accepted) == 1
    assert len(server.stream_requests) == 1
    (resume,) = server.resume_requests
    assert resume.json()["starting_after"] == drop_after


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_several_drops_are_each_resumed(mode: Mode) -> None:
    with FakeLettaServer([turn(drops=[3, 4, 1, 6])]) as server:
        events = events_of(server, mode)
    assert events == undisturbed()
    assert [r.json()["starting_after"] for r in server.resume_requests] == [3, 7, 8, 14]
    assert len(server.accepted) == 1


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_two_drops_are_resumed_exactly(mode: Mode) -> None:
    with FakeLettaServer([turn(drops=[7, 3])]) as server:
        events = events_of(server, mode)
    assert events == undisturbed()
    assert [r.json()["starting_after"] for r in server.resume_requests] == [7, 10]
    assert len(server.accepted) == 1


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_twenty_random_drop_points_give_the_same_message_and_one_turn_each(mode: Mode) -> None:
    picker = random.Random(20261127)  # noqa: S311 - reproducible test data
    reference: BaseMessage | None = None
    for _ in range(20):
        drops = [picker.randrange(1, FRAMES) for _ in range(picker.randrange(1, 3))]
        with FakeLettaServer([turn(drops=drops)]) as server:
            message = invoke(ChatLetta(agent_id=AGENT, base_url=server.base_url), mode)
        assert len(server.accepted) == 1, drops
        assert server.resume_requests, drops
        assert message.text == HELLO
        reference = reference or message
        assert message.content == reference.content, drops
        assert isinstance(message, AIMessage)
        assert isinstance(reference, AIMessage)
        assert message.usage_metadata == reference.usage_metadata


@pytest.mark.parametrize(
    ("mode", "transport"),
    [("sync", "httpx")]
    + [(mode, transport) for mode in LOOP_MODES[1:] for transport in ("httpx", "aiohttp")],
)
def test_a_silent_dead_connection_is_detected_by_the_read_timeout_and_resumed(
    mode: Mode, transport: str
) -> None:
    with FakeLettaServer([turn(stall_after=4)]) as server:
        client = http_client(mode, timeout=0.5, transport=transport)
        events = events_of(server, mode, http_client=client)
    assert events == undisturbed()
    assert server.resume_requests[0].json()["starting_after"] == 4
    assert len(server.accepted) == 1


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_a_drop_in_a_foreground_stream_fails_loudly_with_the_partial_answer(mode: Mode) -> None:
    with FakeLettaServer([turn(drops=[12])]) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, background=False)
        with pytest.raises(LettaStreamInterruptedError) as caught:
            invoke(model, mode)
    assert len(server.stream_requests) == 1  # never re-sent
    error = caught.value
    assert error.request_accepted
    assert not error.is_retryable
    assert error.progress is not None
    assert error.progress.events_received == 11  # the ping is not counted
    partial = error.partial_message
    assert isinstance(partial, AIMessage)
    assert any(b.get("type") == "server_tool_call_chunk" for b in partial.content)  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_an_unresumable_background_run_raises_with_progress_and_resumes_later(mode: Mode) -> None:
    # The first connection drops after 5 frames and every resume right away: the
    # client gives up, telling where the run is; later the run is read from there.
    with FakeLettaServer([turn(drops=[5, 0, 0, 0])]) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, max_retries=2)
        with pytest.raises(LettaStreamInterruptedError) as caught:
            chunks_of(model, mode, "hi")
        progress = caught.value.progress
        assert progress is not None
        assert progress.run_id is not None
        assert progress.last_seq_id == 5
        first_part = caught.value.partial_message
        rest = chunks_of(model, mode, [], resume_from=progress)
    assert len(server.accepted) == 1
    assert first_part is not None
    # The part received before the failure and the part read later make the whole answer.
    joined = AIMessageChunk(content=first_part.content) + aggregate(rest)
    with FakeLettaServer([turn()]) as server:
        reference = ChatLetta(agent_id=AGENT, base_url=server.base_url).invoke("hi")
    assert joined.text == reference.text == HELLO
    (call,) = [b for b in joined.content if isinstance(b, dict) and "args" in b]
    (expected,) = [b for b in reference.content if isinstance(b, dict) and "args" in b]
    assert json.loads(call["args"]) == expected["args"]
    assert joined.usage_metadata == reference.usage_metadata


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_resuming_an_unknown_run_is_a_typed_not_found(mode: Mode) -> None:
    unknown = StreamProgress(run_id="run-unknown", last_seq_id=3)
    with FakeLettaServer([]) as server:
        events, error = drain(server, mode, lambda client: client.resume(AGENT, unknown))
    assert events == []
    assert isinstance(error, LettaNotFoundError)


# ------------------------------------------------------------------ bad streams


@pytest.mark.parametrize("mode", LOOP_MODES)
@pytest.mark.parametrize(
    ("body", "error_class"),
    [
        (
            b'data: {"error":"Stream failed (internal error occured)"}\n\ndata: [DONE]\n\n',
            LettaAPIError,
        ),
        (
            b'data: {"error":"Stream failed: CONTEXT_WINDOW_EXCEEDED: too long",'
            b'"code":"CONTEXT_WINDOW_EXCEEDED"}\n\ndata: [DONE]\n\n',
            LettaContextOverflowError,
        ),
        (
            b'event: error\ndata: {"error": {"type": "llm_rate_limit", "message": "slow"}}\n\n',
            LettaRateLimitError,
        ),
        (
            b'event: error\ndata: {"error": "INTERNAL_SERVER_ERROR: x", "code": '
            b'"INTERNAL_SERVER_ERROR"}\n\n',
            LettaAPIError,
        ),
        (
            b'event: error\ndata: {"message_type":"error_message",'
            b'"error_type":"llm_authentication","message":"bad key","detail":"401"}\n\n'
            b"data: [DONE]\n\n",
            LettaAuthenticationError,
        ),
        (
            b'event: error\ndata: {"message_type":"error_message","error_type":"llm_timeout",'
            b'"message":"slow","detail":null}\n\ndata: [DONE]\n\n',
            LettaTimeoutError,
        ),
    ],
    ids=["seed-string", "seed-code", "event-error-object", "event-error-code", "auth", "timeout"],
)
def test_error_events_of_every_shape_fail_typed_and_are_never_retried(
    mode: Mode, body: bytes, error_class: type[LettaError]
) -> None:
    with FakeLettaServer([Reply(body=body), turn()]) as server:
        with pytest.raises(error_class) as caught:
            events_of(server, mode, max_retries=3)
    assert type(caught.value) is error_class
    assert not caught.value.is_retryable
    assert len(server.stream_requests) == 1


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_a_malformed_frame_fails_typed_after_the_good_events(mode: Mode) -> None:
    frames = Reply.from_capture(TURN).frames()
    body = b"".join(frames[:4]) + b"data: {not json\n\n" + b"".join(frames[4:])
    with FakeLettaServer([Reply(body=body)]) as server:
        delivered, error = drain(server, mode)
    assert isinstance(error, LettaProtocolError)
    assert "malformed frame #5" in str(error)
    assert len(delivered) == 3  # ping hidden
    assert len(server.stream_requests) == 1


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_unknown_event_types_are_delivered_not_dropped(mode: Mode) -> None:
    frames = Reply.from_capture(TURN).frames()
    body = b"".join(frames[:3]) + b'data: {"message_type":"new_thing","x":1}\n\n'
    body += b"".join(frames[3:])
    with FakeLettaServer([Reply(body=body)]) as server:
        events = events_of(server, mode)
    unknown = [e for e in events if e["message_type"] == "new_thing"]
    assert unknown == [{"message_type": "new_thing", "x": 1}]
    assert len(events) == len(undisturbed()) + 1


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_an_oversized_frame_is_refused_typed(mode: Mode) -> None:
    body = b'data: {"message_type":"assistant_message","content":"' + b"x" * (9 << 20) + b'"}\n\n'
    with FakeLettaServer([Reply(body=body, split_frames=False)]) as server:
        with pytest.raises(LettaProtocolError, match="exceeded"):
            events_of(server, mode)


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_unknown_event_type_stays_an_unknown_event_object(mode: Mode) -> None:
    body = b'data: {"message_type":"new_thing"}\n\ndata: [DONE]\n\n'
    with FakeLettaServer([Reply(body=body)]) as server:
        (event,), error = drain(server, mode)
    assert error is None
    assert isinstance(event, UnknownEvent)


# ------------------------------------------------------------------ stopping early


@pytest.mark.parametrize("mode", LOOP_MODES)
@pytest.mark.parametrize(("cancel", "cancelled"), [(False, 0), (True, 1)])
def test_stopping_early_hangs_up_and_cancels_only_when_asked(
    mode: Mode, cancel: bool, cancelled: int
) -> None:
    async def stop_async(server: FakeLettaServer) -> None:
        async with AsyncLettaClient(base_url=server.base_url, cancel_on_close=cancel) as client:
            stream = client.stream(AGENT, REQUEST)
            async for _ in stream:
                break
            await stream.aclose()

    with FakeLettaServer([turn(stall_after=6)]) as server:
        if mode == "sync":
            with LettaClient(base_url=server.base_url, cancel_on_close=cancel) as client:
                stream = client.stream(AGENT, REQUEST)
                for _ in stream:
                    break
                stream.close()
        else:
            run_async(mode, stop_async(server))
        run_ids = server.cancelled_runs
    assert len(run_ids) == cancelled
    assert len(server.accepted) == 1


def test_breaking_out_of_a_plain_loop_hangs_up_at_once() -> None:
    """The README's iterator pattern, without ``with`` or ``close()``."""
    with FakeLettaServer([turn(stall_after=6)]) as server:
        with LettaClient(base_url=server.base_url, cancel_on_close=True) as client:
            stream = client.stream(AGENT, REQUEST)
            for _ in stream:
                break
            assert len(server.cancelled_runs) == 1  # hung up (and cancelled) before close()
            with pytest.raises(StopIteration):
                next(iter(stream))  # a closed stream stays closed


async def test_breaking_out_of_a_plain_async_loop_hangs_up_at_once() -> None:
    """The async twin of the test above: the loop lets go, the event loop finalises it."""
    with FakeLettaServer([turn(stall_after=6)]) as server:
        async with AsyncLettaClient(base_url=server.base_url, cancel_on_close=True) as client:
            stream = client.stream(AGENT, REQUEST)
            async for _ in stream:
                break
            loop = asyncio.get_running_loop()
            for _ in range(500):  # the finaliser runs as a task of the loop
                if server.cancelled_runs:
                    break
                # asyncio.sleep is stubbed in this module (no_backoff): sleep in a thread.
                await loop.run_in_executor(None, time.sleep, 0.01)
            assert len(server.cancelled_runs) == 1  # hung up (and cancelled) before aclose()
            await loop.run_in_executor(None, time.sleep, 0.5)  # until the cancel is answered
            rest = [event async for event in stream]
            assert rest == []  # a closed stream stays closed
            await stream.aclose()  # and closing it again is harmless


class Stop(Exception):
    """The consumer stops while the server holds the stream open."""


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_a_consumer_that_stops_mid_stream_closes_it_and_cancels_the_run(mode: Mode) -> None:
    """Sync: the loop raises; async: the consuming task is cancelled while it waits."""

    async def cancel_the_task(client: AsyncLettaClient) -> None:
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in client.stream(AGENT, REQUEST):
                first.set()

        task = asyncio.create_task(consume())
        await first.wait()
        await asyncio.sleep(0)  # the task waits for the stalled stream
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def cancel_in_async(server: FakeLettaServer) -> None:
        async with AsyncLettaClient(base_url=server.base_url, cancel_on_close=True) as client:
            await cancel_the_task(client)

    def raise_in_the_loop(client: LettaClient) -> None:
        for _ in client.stream(AGENT, REQUEST):
            raise Stop

    with FakeLettaServer([turn(stall_after=6)]) as server:
        if mode == "sync":
            with LettaClient(base_url=server.base_url, cancel_on_close=True) as client:
                with pytest.raises(Stop):
                    raise_in_the_loop(client)
        else:
            run_async(mode, cancel_in_async(server))
        assert len(server.cancelled_runs) == 1
    assert len(server.accepted) == 1


def test_fault_matrix_capture_is_a_real_background_run() -> None:
    text = Path(TURN).read_text()
    assert '"seq_id":1,' in text
    assert FRAMES == 23


@pytest.mark.parametrize("mode", LOOP_MODES)
@pytest.mark.parametrize("release", ["0.11.7", "0.16.8"])
@pytest.mark.parametrize(
    ("cut", "resumed"),
    [
        ("30-bg-disconnect-part1", "31-bg-disconnect-part2-resume"),
        ("33-bg-headc-part1", "34-bg-headc-part2-resume"),
    ],
    ids=["disconnect", "cut-inside-a-frame"],
)
def test_resume_is_exact_on_real_background_captures(
    mode: Mode, release: str, cut: str, resumed: str
) -> None:
    # A real stream that broke (part 1), the real server's answer to the resume the
    # capture made (part 2): the client must ask for the same cursor the capture did,
    # and deliver exactly the events of the whole run.
    folder = CAPTURES / release / "background-redis"
    part1 = Reply.from_capture(folder / f"{cut}.sse")
    part2 = Reply.from_capture(folder / f"{resumed}.sse")
    with FakeLettaServer([part1], resume_replies=[part2]) as server:
        events = events_of(server, mode)
    (resume,) = server.resume_requests
    recorded = json.loads((folder / f"{resumed}.request.json").read_text())
    assert resume.json()["starting_after"] == recorded["starting_after"]
    whole = [p for p in whole_run(folder, cut) if p.get("message_type") != "ping"]
    assert events == whole
    assert len(server.accepted) == 1


def whole_run(folder: Path, cut: str) -> list[dict[str, Any]]:
    """The run read back whole: the full re-read where captured, else both parts."""
    from tests.conftest import expected_payloads

    if cut.startswith("30"):
        return [p for _, p in expected_payloads(folder / "32-bg-disconnect-full-reread.sse")]
    part1 = [p for _, p in expected_payloads(folder / f"{cut}.sse")]
    part2 = [p for _, p in expected_payloads(folder / "34-bg-headc-part2-resume.sse")]
    return part1 + part2


def test_each_retry_reaches_on_retry_with_its_own_attempt_and_error() -> None:
    """tenacity reuses its state object: the callbacks must see each retry as it was."""
    from langchain_core.callbacks import BaseCallbackHandler

    seen: list[tuple[int, str]] = []

    class Retries(BaseCallbackHandler):
        def on_retry(self, retry_state: Any, **kwargs: Any) -> None:
            error = retry_state.outcome.exception() if retry_state.outcome else None
            seen.append((retry_state.attempt_number, type(error).__name__))

    busy = Reply.json(409, {"detail": "CONFLICT: Another request is being processed"})
    with FakeLettaServer([busy, busy, turn()]) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, max_retries=3)
        model.invoke("hi", {"callbacks": [Retries()]})
    assert seen == [(1, "LettaConflictError"), (2, "LettaConflictError")]
