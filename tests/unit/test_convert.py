"""Letta events to LangChain chunks: every mapping, on single chunks and on their aggregate."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk

from langchain_letta._chunks import REQUIRES_APPROVAL, ChunkBuilder, finalize_content
from langchain_letta._merge import continues
from langchain_letta.events import parse_event
from tests.conftest import approval_delta

AGENT = "agent-1"


def _chunks(*payloads: dict[str, Any]) -> list[AIMessageChunk]:
    builder = ChunkBuilder(AGENT, "letta-agent")
    chunks = [builder.chunk(parse_event(json.dumps(payload))) for payload in payloads]
    return [chunk for chunk in chunks if chunk is not None] + [builder.last_chunk()]


def _summed(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full


def _invoked(*payloads: dict[str, Any]) -> AIMessage:
    """What ``invoke`` returns: the merged chunks with tool-call arguments parsed."""
    full = _summed(_chunks(*payloads))
    message = AIMessage(content=full.content, response_metadata=full.response_metadata)
    return finalize_content(message)


def _blocks(message: AIMessage, kind: str) -> list[dict[str, Any]]:
    return [b for b in message.content if isinstance(b, dict) and b.get("type") == kind]


# --- approval requests --------------------------------------------------------------------

CALL = {"name": "delete_file", "arguments": '{"path": "notes.txt"}', "tool_call_id": "call_9"}
STEP_APPROVAL = {
    "message_type": "approval_request_message",
    "id": "message-d4",
    "otid": "d4",
    "tool_call": CALL,
    "tool_calls": [CALL],
}
REQUIRES_APPROVAL_STOP = {"message_type": "stop_reason", "stop_reason": "requires_approval"}


def test_an_approval_request_is_a_server_tool_call_waiting_for_approval() -> None:
    message = _invoked(STEP_APPROVAL, REQUIRES_APPROVAL_STOP)
    (call,) = _blocks(message, "server_tool_call")
    assert call["id"] == "call_9"
    assert call["name"] == "delete_file"
    assert call["args"] == {"path": "notes.txt"}
    assert call["extras"] == {REQUIRES_APPROVAL: True}
    assert message.tool_calls == []  # ToolNode must never run it
    assert message.response_metadata["stop_reason"] == "requires_approval"
    assert "message-d4" in message.response_metadata["letta_message_ids"]


def test_an_ordinary_tool_call_is_not_marked() -> None:
    tool_call = {**STEP_APPROVAL, "message_type": "tool_call_message"}
    (call,) = _blocks(_invoked(tool_call), "server_tool_call")
    assert "extras" not in call


PARALLEL_TOKENS = [
    approval_delta(name="delete_file", tool_call_id="call_1"),
    approval_delta(arguments='{"path": ', tool_call_id="call_1"),
    approval_delta(name="send_email", tool_call_id="call_2"),
    approval_delta(arguments='{"to": "bob"}', tool_call_id="call_2"),
    approval_delta(arguments='"notes.txt"}', tool_call_id="call_1"),
    REQUIRES_APPROVAL_STOP,
]


def test_token_mode_approval_deltas_make_one_block_per_parallel_call() -> None:
    message = _invoked(*PARALLEL_TOKENS)
    calls = _blocks(message, "server_tool_call")
    assert [(c["id"], c["name"], c["args"]) for c in calls] == [
        ("call_1", "delete_file", {"path": "notes.txt"}),
        ("call_2", "send_email", {"to": "bob"}),
    ]
    assert all(c["extras"] == {REQUIRES_APPROVAL: True} for c in calls)
    assert message.tool_calls == []


def test_summed_stream_chunks_keep_the_marker_and_the_raw_arguments() -> None:
    full = _summed(_chunks(*PARALLEL_TOKENS))
    calls = [b for b in full.content if isinstance(b, dict) and b.get("id") == "call_1"]
    (call,) = calls
    assert call["type"] == "server_tool_call_chunk"
    assert call["args"] == '{"path": "notes.txt"}'
    assert call["extras"] == {REQUIRES_APPROVAL: True}  # merged once, not repeated
    assert full.tool_call_chunks == []


def test_parallel_calls_in_one_step_approval_request_make_several_blocks() -> None:
    second = {"name": "send_email", "arguments": '{"to": "bob"}', "tool_call_id": "call_10"}
    message = _invoked({**STEP_APPROVAL, "tool_calls": [CALL, second]}, REQUIRES_APPROVAL_STOP)
    assert [c["id"] for c in _blocks(message, "server_tool_call")] == ["call_9", "call_10"]


def test_v1_stream_aggregate_parses_the_approval_arguments() -> None:
    chunks = _chunks(*PARALLEL_TOKENS)
    for chunk in chunks:
        chunk.response_metadata["output_version"] = "v1"
    full = _summed(chunks)
    calls = [b for b in full.content_blocks if b["type"] == "server_tool_call"]
    assert [c["args"] for c in calls] == [{"path": "notes.txt"}, {"to": "bob"}]
    assert all(c.get("extras") == {REQUIRES_APPROVAL: True} for c in calls)


# --- reasoning ----------------------------------------------------------------------------


def test_native_reasoning_keeps_source_and_signature_once_in_extras() -> None:
    deltas = [
        {"message_type": "reasoning_message", "otid": "r1", "source": "reasoner_model", **part}
        for part in (
            {"reasoning": "Think"},
            {"reasoning": "ing"},
            {"reasoning": "", "signature": "Eq"},
        )
    ]
    chunks = _chunks(*deltas)
    assert chunks[0].content[0]["extras"] == {"source": "reasoner_model"}  # type: ignore[index]
    assert "extras" not in chunks[1].content[0]  # type: ignore[operator]
    (block,) = _blocks(_invoked(*deltas), "reasoning")
    assert block["reasoning"] == "Thinking"
    assert block["extras"] == {"source": "reasoner_model", "signature": "Eq"}


def test_prompted_reasoning_names_its_source() -> None:
    step = {"message_type": "reasoning_message", "source": "non_reasoner_model", "reasoning": "hm"}
    (block,) = _blocks(_invoked(step), "reasoning")
    assert block["extras"] == {"source": "non_reasoner_model"}


def test_seed_reasoning_without_source_has_no_extras() -> None:
    (block,) = _blocks(
        _invoked({"message_type": "reasoning_message", "reasoning": "hm"}), "reasoning"
    )
    assert "extras" not in block


def test_hidden_reasoning_state_is_not_repeated_by_merging() -> None:
    hidden = {"message_type": "hidden_reasoning_message", "otid": "h", "state": "redacted"}
    (block,) = _blocks(_invoked(hidden, {**hidden, "hidden_reasoning": "x"}), "reasoning")
    assert block["extras"] == {"hidden": True, "state": "redacted"}


# --- messages without a standard block ----------------------------------------------------

APPROVAL_RESPONSE = {
    "message_type": "approval_response_message",
    "id": "message-r1",
    "approvals": [{"type": "approval", "tool_call_id": "call_9", "approve": True, "reason": None}],
}
SUMMARY = {
    "message_type": "summary_message",
    "id": "message-s1",
    "summary": "The user likes tea.",
    "compaction_stats": {
        "trigger": "post_step_context_check",
        "context_window": 32000,
        "messages_count_before": 40,
        "messages_count_after": 3,
    },
}
COMPACTION = {
    "message_type": "event_message",
    "id": "message-e1",
    "event_type": "compaction",
    "event_data": {"trigger": "post_step_context_check"},
}


def test_approval_response_summary_and_compaction_event_are_kept_whole() -> None:
    answer = {"message_type": "assistant_message", "otid": "a", "content": "Done."}
    message = _invoked(APPROVAL_RESPONSE, COMPACTION, SUMMARY, answer)
    kept = [block["value"] for block in _blocks(message, "non_standard")]
    assert kept == [APPROVAL_RESPONSE, COMPACTION, SUMMARY]
    assert message.text == "Done."  # a summary is context, not part of the answer
    assert {"message-r1", "message-s1", "message-e1"} <= set(
        message.response_metadata["letta_message_ids"]
    )


def test_non_standard_blocks_survive_summing_stream_chunks_unmerged() -> None:
    full = _summed(_chunks(SUMMARY, COMPACTION, SUMMARY))
    values = [b["value"] for b in full.content if isinstance(b, dict)]
    assert values == [SUMMARY, COMPACTION, SUMMARY]
    assert [b["type"] for b in full.content_blocks] == ["non_standard"] * 3


def test_an_unknown_message_type_reaches_the_message_too() -> None:
    future = {"message_type": "memory_diff_message", "id": "message-f", "diff": "+tea"}
    (block,) = _blocks(_invoked(future), "non_standard")
    assert block["value"] == future


def test_every_stop_reason_is_passed_on_as_sent() -> None:
    for reason in ("max_steps", "insufficient_credits", "a_future_reason"):
        message = _invoked({"message_type": "stop_reason", "stop_reason": reason})
        assert message.response_metadata["stop_reason"] == reason


def _event(**payload: Any) -> Any:
    return parse_event(json.dumps(payload))


def _batched(*payloads: dict[str, Any]) -> list[list[dict[str, Any]] | None]:
    """The content of each event's chunk when the events arrive in one read."""
    builder = ChunkBuilder(AGENT, "letta-agent")
    pairs = builder.batch([_event(**payload) for payload in payloads])
    return [None if chunk is None else chunk.content for _event, chunk in pairs]


def _text(content: str, otid: str = "o1") -> dict[str, Any]:
    return {"message_type": "assistant_message", "otid": otid, "content": content}


def _thought(reasoning: str, otid: str = "r1", **fields: Any) -> dict[str, Any]:
    return {"message_type": "reasoning_message", "otid": otid, "reasoning": reasoning, **fields}


def test_deltas_of_one_block_read_together_become_one_chunk_on_the_last_event() -> None:
    assert _batched(_text("a"), _text("b"), _text("c")) == [
        None,
        None,
        [{"type": "text", "text": "abc", "index": 0}],
    ]


def test_the_first_delta_keeps_its_extras_and_later_plain_deltas_join_it() -> None:
    source = "reasoner_model"
    assert _batched(_thought("x", source=source), _thought("y", source=source)) == [
        None,
        [{"type": "reasoning", "reasoning": "xy", "index": 0, "extras": {"source": source}}],
    ]


def test_a_delta_with_anything_new_starts_a_chunk_of_its_own() -> None:
    # the signature comes with the last reasoning delta: merged, it would be a new key
    assert _batched(_thought("x"), _thought("y", signature="sig")) == [
        [{"type": "reasoning", "reasoning": "x", "index": 0}],
        [{"type": "reasoning", "reasoning": "y", "index": 0, "extras": {"signature": "sig"}}],
    ]


def test_other_blocks_tool_calls_and_events_without_a_chunk_are_never_merged_across() -> None:
    call = {
        "message_type": "tool_call_message",
        "otid": "t1",
        "tool_call": {"name": "f", "arguments": "{}", "tool_call_id": "c1"},
    }
    stop = {"message_type": "stop_reason", "stop_reason": "end_turn"}
    contents = _batched(
        _thought("x"), _text("a"), _text("b"), call, _text("c"), stop, _text("d"), _thought("y")
    )
    texts = [[block.get("text") for block in content] if content else None for content in contents]
    assert texts == [[None], None, ["ab"], [None], ["c"], None, ["d"], [None]]


TEXT_A = {"type": "text", "text": "a", "index": 0}


@pytest.mark.parametrize(
    ("block", "first", "expected"),
    [
        ({"type": "text", "text": "b", "index": 0}, TEXT_A, True),
        ({"type": "text", "text": "b", "index": 1}, TEXT_A, False),
        ({"type": "text", "text": "b", "id": "x"}, {"type": "text", "text": "a", "id": "x"}, False),
        ({"type": "reasoning", "reasoning": "b", "index": 0}, TEXT_A, False),
        (
            {"type": "server_tool_call_chunk", "args": "}", "index": 0},
            {"type": "server_tool_call_chunk", "args": "{", "index": 0},
            False,
        ),
        ({"type": "text", "text": 7, "index": 0}, TEXT_A, False),
        (
            {"type": "text", "text": "b", "index": "lc_1"},
            {"type": "text", "text": "a", "index": "lc_1"},
            False,
        ),
    ],
)
def test_only_a_plain_continuation_of_text_or_reasoning_continues(
    block: dict[str, Any], first: dict[str, Any], expected: bool
) -> None:
    assert continues(block, first) is expected
