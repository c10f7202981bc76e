"""Every real capture, replayed over a local socket through the client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from langchain_letta import AsyncLettaClient, LettaClient, OutgoingMessage, StreamRequest
from langchain_letta.errors import (
    LettaAPIError,
    LettaError,
    LettaInvalidRequestError,
    LettaNotFoundError,
    LettaPendingApprovalError,
    LettaStreamInterruptedError,
    LettaTimeoutError,
)
from langchain_letta.events import UnknownEvent
from langchain_letta.testing import FakeLettaServer, Reply
from tests.conftest import CAPTURES, capture_status, expected_payloads

REQUEST = StreamRequest(messages=[OutgoingMessage(content="hi")])
AGENT = "agent-47c2ea9a-30ee-4910-923a-393bbc26a7d7"

ALL_SSE = sorted(CAPTURES.rglob("*.sse"))


def _is_clean_stream(path: Path) -> bool:
    """A 200 stream that ends with [DONE] and carries no error frame."""
    if capture_status(path) != 200:
        return False
    text = path.read_text()
    return "data: [DONE]" in text and "event: error" not in text and '{"error"' not in text


CLEAN = [path for path in ALL_SSE if _is_clean_stream(path)]


def _id(path: Path) -> str:
    return str(path.relative_to(CAPTURES))


def _replay(path: Path, **client_args: Any) -> list[object]:
    client_args.setdefault("max_retries", 0)  # one capture, one answer
    client_args.setdefault("background", False)  # byte-exact: the fake numbers background runs
    with (
        FakeLettaServer([Reply.from_capture(path)]) as server,
        LettaClient(base_url=server.base_url, **client_args) as client,  # type: ignore[arg-type]
    ):
        return list(client.stream(AGENT, REQUEST))


def test_there_are_captures_of_every_release() -> None:
    releases = {path.relative_to(CAPTURES).parts[0] for path in CLEAN}
    assert releases == {"0.6.14", "0.11.7", "0.16.8"}
    assert len(CLEAN) >= 60


@pytest.mark.parametrize("path", CLEAN, ids=_id)
def test_clean_capture_yields_exactly_its_events(path: Path) -> None:
    events = _replay(path)
    expected = [payload for _, payload in expected_payloads(path)]
    expected = [p for p in expected if isinstance(p, dict) and p.get("message_type") != "ping"]
    assert [event.raw for event in events] == expected  # type: ignore[attr-defined]
    assert not [event for event in events if isinstance(event, UnknownEvent)]


@pytest.mark.parametrize(
    ("capture", "text", "reasoning", "tools"),
    [
        ("0.6.14/memgpt_agent/03-tool-call-steps.sse", "Hello from the fake model", 2, 1),
        ("0.11.7/memgpt_v2_agent/04-tool-call-tokens.sse", "Hello from the fake model", 2, 1),
        ("0.16.8/letta_v1_agent/04-tool-call-tokens.sse", "Hello from the fake model", 0, 1),
        ("0.16.8/memgpt_v2_agent/04-tool-call-tokens.sse", "Hello from the fake model", 2, 1),
    ],
)
def test_normalised_view_reads_the_same_across_releases(
    capture: str, text: str, reasoning: int, tools: int
) -> None:
    events = _replay(CAPTURES / capture)
    by_type: dict[str, list[object]] = {}
    for event in events:
        by_type.setdefault(event.message_type, []).append(event)  # type: ignore[attr-defined]
    assert "".join(e.text for e in by_type["assistant_message"]) == text  # type: ignore[attr-defined]
    reasoning_ids = {e.otid or e.id for e in by_type.get("reasoning_message", [])}  # type: ignore[attr-defined]
    assert len(reasoning_ids) == reasoning
    calls = [call for e in by_type["tool_call_message"] for call in e.calls]  # type: ignore[attr-defined]
    arguments = "".join(call.arguments or "" for call in calls)
    assert '"The user likes tea."' in arguments
    assert {call.name for call in calls if call.name} in ({"core_memory_append"}, {"memory_insert"})
    returns = [r for e in by_type["tool_return_message"] for r in e.returns]  # type: ignore[attr-defined]
    assert len(returns) == tools
    assert returns[0].status == "success"
    assert by_type["usage_statistics"][0].total_tokens > 0  # type: ignore[attr-defined]


def test_seed_era_assistant_text_lives_in_assistant_message_field() -> None:
    events = _replay(CAPTURES / "0.6.14/memgpt_agent/01-stream-steps.sse")
    assistant = [e for e in events if e.message_type == "assistant_message"]  # type: ignore[attr-defined]
    assert assistant[0].assistant_message == "Hello from the fake model"  # type: ignore[attr-defined]
    assert assistant[0].content is None  # type: ignore[attr-defined]
    assert assistant[0].text == "Hello from the fake model"  # type: ignore[attr-defined]


def test_zero_six_token_stream_keeps_the_servers_json_prefix_leak() -> None:
    # Letta 0.6.14's own parser leaks '{"message":"' into the first delta; we report
    # what the server sent rather than guess (the README says so).
    events = _replay(CAPTURES / "0.6.14/memgpt_agent/02-stream-tokens.sse")
    deltas = [e.text for e in events if e.message_type == "assistant_message"]  # type: ignore[attr-defined]
    assert deltas[0].startswith('{"message":"')


def test_run_id_and_seq_ids_are_tracked_and_pings_hidden() -> None:
    path = CAPTURES / "0.16.8/background-redis/02-bg-tokens.sse"
    with (
        FakeLettaServer([Reply.from_capture(path)]) as server,
        LettaClient(base_url=server.base_url) as client,
    ):
        stream = client.stream(AGENT, REQUEST)
        events = list(stream)
    assert all(event.message_type != "ping" for event in events)  # type: ignore[attr-defined]
    seq_ids = [e.seq_id for e in events if getattr(e, "seq_id", None) is not None]
    assert seq_ids == sorted(seq_ids)
    # stop_reason and usage_statistics take a seq number each without showing it
    assert stream.progress.last_seq_id == seq_ids[-1] + 2
    assert stream.progress.run_id is not None
    assert stream.progress.run_id.startswith("run-")
    assert stream.progress.stop_reason == "end_turn"
    assert stream.progress.events_received == len(events)


def test_batches_group_the_frames_of_one_network_read() -> None:
    path = CAPTURES / "0.16.8/memgpt_v2_agent/04-tool-call-tokens.sse"
    reply = Reply(body=path.read_bytes(), split_frames=False)
    with FakeLettaServer([reply]) as server, LettaClient(base_url=server.base_url) as client:
        batches = list(client.stream(AGENT, REQUEST).batches())
    assert all(batches)
    assert len(batches) < sum(len(batch) for batch in batches)


ERROR_CAPTURES = [
    ("0.6.14/memgpt_agent/14-llm-error-steps.sse", LettaAPIError, None, "Stream failed"),
    ("0.6.14/memgpt_agent/15-llm-error-tokens.sse", LettaAPIError, None, "Stream failed"),
    ("0.11.7/memgpt_agent/14-llm-error-steps.sse", LettaAPIError, 500, "fake upstream failure"),
    ("0.11.7/memgpt_v2_agent/15-llm-error-tokens.sse", LettaAPIError, 500, "fake upstream"),
    ("0.16.8/memgpt_v2_agent/14-llm-error-steps.sse", LettaAPIError, None, "fake upstream"),
    ("0.16.8/letta_v1_agent/15-llm-error-tokens.sse", LettaAPIError, None, "fake upstream"),
    ("0.16.8/background-redis/45-bg-llm-error.sse", LettaAPIError, None, "fake upstream"),
    ("0.6.14/memgpt_agent/06-unknown-agent.txt", LettaNotFoundError, 500, "Agent not found"),
    ("0.11.7/memgpt_agent/06-unknown-agent.txt", LettaNotFoundError, 404, "not found"),
    ("0.16.8/letta_v1_agent/06-unknown-agent.txt", LettaNotFoundError, 404, "not found"),
    ("0.6.14/memgpt_agent/07-invalid-body.txt", LettaInvalidRequestError, 422, "messages"),
    ("0.11.7/memgpt_v2_agent/08-missing-messages.txt", LettaInvalidRequestError, 422, "messages"),
    ("0.16.8/memgpt_v2_agent/07-invalid-body.txt", LettaInvalidRequestError, 422, "messages"),
    ("0.16.8/memgpt_v2_agent/08-missing-messages.txt", LettaInvalidRequestError, 422, "input"),
    # a user message while tool calls wait for approval: refused inside a 200 stream
    (
        "0.16.8/lab-features/05-message-while-pending.sse",
        LettaPendingApprovalError,
        None,
        "waiting",
    ),
    (
        "0.16.8/lab-features/06-message-while-pending-background.sse",
        LettaPendingApprovalError,
        None,
        "waiting for approval",
    ),
    (
        "0.16.8/lab-features/27-new-message-instead-of-tool-return.sse",
        LettaPendingApprovalError,
        None,
        "waiting for approval",
    ),
]


@pytest.mark.parametrize(("capture", "error_class", "status", "words"), ERROR_CAPTURES)
def test_error_capture_raises_its_typed_error(
    capture: str, error_class: type[LettaError], status: int | None, words: str
) -> None:
    with pytest.raises(error_class) as caught:
        _replay(CAPTURES / capture, dialect="current")
    assert type(caught.value) is error_class
    assert caught.value.status_code == status
    assert words.lower() in str(caught.value).lower()


@pytest.mark.parametrize(
    "capture",
    ["0.6.14/memgpt_agent/14-llm-error-steps.sse", "0.16.8/letta_v1_agent/14-llm-error-steps.sse"],
)
def test_in_stream_errors_are_never_retryable(capture: str) -> None:
    with pytest.raises(LettaError) as caught:
        _replay(CAPTURES / capture)
    assert caught.value.request_accepted
    assert not caught.value.is_retryable


def test_in_stream_error_keeps_run_id_and_letta_error_type() -> None:
    with pytest.raises(LettaAPIError) as caught:
        _replay(CAPTURES / "0.16.8/memgpt_v2_agent/14-llm-error-steps.sse")
    assert caught.value.error_type == "internal_error"
    assert caught.value.run_id == "run-751c90cb-bc93-459f-8b8b-da27096c0f40"
    assert caught.value.progress is not None
    assert caught.value.progress.stop_reason == "error"


def test_background_refused_without_redis_falls_back_to_foreground() -> None:
    refusal = Reply.from_capture(CAPTURES / "0.16.8/memgpt_v2_agent/16-background-no-redis.txt")
    turn = Reply.from_capture(CAPTURES / "0.16.8/memgpt_v2_agent/01-stream-steps.sse")
    with FakeLettaServer([refusal, turn]) as server:
        with LettaClient(base_url=server.base_url, max_retries=0) as client:
            events = list(client.stream(AGENT, REQUEST))
    first, second = (request.json() for request in server.stream_requests)
    assert first["background"] is True
    assert "background" not in second
    assert [e.message_type for e in events][-1] == "usage_statistics"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("capture", "events_before_cut"),
    [
        ("0.16.8/background-redis/30-bg-disconnect-part1.sse", 5),
        ("0.16.8/background-redis/33-bg-headc-part1.sse", 3),
        ("0.11.7/background-redis/30-bg-disconnect-part1.sse", 6),
    ],
)
def test_stream_cut_before_done_raises_interrupted_with_progress(
    capture: str, events_before_cut: int
) -> None:
    path = CAPTURES / capture
    delivered: list[object] = []
    with (
        FakeLettaServer([Reply.from_capture(path)]) as server,
        LettaClient(base_url=server.base_url, background=False, max_retries=0) as client,
    ):
        stream = client.stream(AGENT, REQUEST)
        with pytest.raises(LettaStreamInterruptedError) as caught:
            delivered.extend(stream)
    assert len(delivered) == events_before_cut
    progress = caught.value.progress
    assert progress is not None
    assert progress.events_received == events_before_cut
    assert progress.run_id is not None
    assert progress.last_seq_id == max(e.seq_id for e in delivered)  # type: ignore[attr-defined]
    assert caught.value.request_accepted


def test_server_that_never_answers_times_out_typed() -> None:
    path = CAPTURES / "0.16.8/background-redis/21-resume-tokens-after-999.sse"
    assert capture_status(path) == 0
    with FakeLettaServer([Reply.from_capture(path)]) as server:
        http = httpx.Client(timeout=0.3)
        client = LettaClient(http_client=http, base_url=server.base_url, dialect="current")
        with pytest.raises(LettaTimeoutError) as caught:
            list(client.stream(AGENT, REQUEST))
        client.close()
    assert caught.value.request_accepted


@pytest.mark.parametrize(
    "capture",
    [
        "0.6.14/memgpt_agent/04-tool-call-tokens.sse",
        "0.16.8/memgpt_v2_agent/04-tool-call-tokens.sse",
    ],
)
async def test_async_client_yields_the_same_events(capture: str) -> None:
    path = CAPTURES / capture
    sync_events = _replay(path)
    with FakeLettaServer([Reply.from_capture(path)]) as server:
        async with AsyncLettaClient(base_url=server.base_url, background=False) as client:
            async_events = [event async for event in client.stream(AGENT, REQUEST)]
    assert [e.raw for e in async_events] == [e.raw for e in sync_events]  # type: ignore[attr-defined]


async def test_async_client_raises_the_same_typed_errors() -> None:
    with FakeLettaServer(
        [Reply.from_capture(CAPTURES / "0.11.7/memgpt_agent/14-llm-error-steps.sse")]
    ) as server:
        async with AsyncLettaClient(base_url=server.base_url) as client:
            with pytest.raises(LettaAPIError) as caught:
                async for _ in client.stream(AGENT, REQUEST):
                    pass
    assert caught.value.status_code == 500
    assert "fake upstream failure" in str(caught.value)
