"""Every event model and ``parse_event``, mostly on payloads taken from real captures."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from langchain_letta.events import (
    KNOWN_STOP_REASONS,
    ApprovalRequestMessage,
    ApprovalResponseMessage,
    ApprovalReturn,
    AssistantMessage,
    ErrorMessage,
    EventMessage,
    HiddenReasoningMessage,
    Ping,
    ReasoningMessage,
    StopReason,
    StreamErrorFrame,
    SummaryMessage,
    SystemMessage,
    ToolCall,
    ToolCallMessage,
    ToolReturn,
    ToolReturnMessage,
    UnknownEvent,
    UsageStatistics,
    UserMessage,
    parse_event,
)
from tests.conftest import CAPTURES


def _payloads(capture: str) -> list[str]:
    """The ``data:`` payloads of a capture, as the server sent them (``[DONE]`` left out)."""
    text = (CAPTURES / capture).read_text()
    return [
        line[len("data: ") :]
        for line in text.split("\n")
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


def _payload(capture: str, message_type: str, index: int = 0) -> str:
    """The ``index``-th payload of ``message_type`` in a capture."""
    found = [p for p in _payloads(capture) if json.loads(p).get("message_type") == message_type]
    return found[index]


def _listed(capture: str, message_type: str) -> str:
    """The first message of ``message_type`` from a ``GET /messages`` capture, as JSON text."""
    messages = json.loads((CAPTURES / capture).read_text())
    return json.dumps(next(m for m in messages if m.get("message_type") == message_type))


def _parse(payload: dict[str, Any]) -> Any:
    return parse_event(json.dumps(payload))


V16_STEPS = "0.16.8/memgpt_v2_agent/03-tool-call-steps.sse"
V16_TOKENS = "0.16.8/memgpt_v2_agent/04-tool-call-tokens.sse"
V11_STEPS = "0.11.7/memgpt_agent/03-tool-call-steps.sse"
V6_STEPS = "0.6.14/memgpt_agent/03-tool-call-steps.sse"
V6_TOKENS = "0.6.14/memgpt_agent/04-tool-call-tokens.sse"

CUT_CAPTURES = {
    "0.11.7/background-redis/33-bg-headc-part1.sse",
    "0.11.7/background-redis/sqlite-resume-500/33-bg-headc-part1.sse",
    "0.16.8/background-redis/33-bg-headc-part1.sse",
}
"""Captures cut with ``head -c``: their last payload is deliberately incomplete JSON."""

SSE_CAPTURES = sorted(str(path.relative_to(CAPTURES)) for path in CAPTURES.rglob("*.sse"))


# --- every captured payload -------------------------------------------------------------


@pytest.mark.parametrize("capture", SSE_CAPTURES)
def test_every_captured_payload_parses_to_a_known_model_keeping_every_field(capture: str) -> None:
    payloads = _payloads(capture)
    if capture in CUT_CAPTURES:
        payloads = payloads[:-1]
    for payload in payloads:
        event = parse_event(payload)
        assert not isinstance(event, UnknownEvent), payload
        assert event.raw == json.loads(payload), payload


# --- reasoning ----------------------------------------------------------------------------


def test_reasoning_message_current_release_fields() -> None:
    event = parse_event(_payload(V16_STEPS, "reasoning_message"))
    assert isinstance(event, ReasoningMessage)
    assert event.reasoning == "thinking..."
    assert event.text == "thinking..."
    assert event.source == "non_reasoner_model"
    assert event.signature is None
    assert event.id == "message-842c3bc5-161d-4efb-9e21-a06c4b37c5f2"
    assert event.otid == "842c3bc5-161d-4efb-9e21-a06c4b37c580"
    assert event.step_id == "step-06e9b9a4-f577-4859-aac8-96c48516e6f2"
    assert event.run_id == "run-c6cc2388-fadf-47ab-bb5c-d156807d1701"
    assert event.seq_id is None


def test_reasoning_message_native_thinking_keeps_source_and_signature() -> None:
    event = _parse(
        {
            "message_type": "reasoning_message",
            "source": "reasoner_model",
            "reasoning": "",
            "signature": "EqQBCkYIBxgCKkB",
        }
    )
    assert isinstance(event, ReasoningMessage)
    assert (event.source, event.signature, event.text) == ("reasoner_model", "EqQBCkYIBxgCKkB", "")


def test_reasoning_message_seed_release_has_only_id_and_date() -> None:
    event = parse_event(_payload(V6_STEPS, "reasoning_message"))
    assert isinstance(event, ReasoningMessage)
    assert event.text == "thinking..."
    assert event.id == "message-9d0091d5-6233-4ee0-ac96-d3dd5794851b"
    assert event.date == "2026-11-27T09:47:01+00:00"
    assert (event.otid, event.step_id, event.run_id, event.seq_id) == (None, None, None, None)


def test_reasoning_token_deltas_are_fragments() -> None:
    deltas = [
        parse_event(p)
        for p in _payloads(V16_TOKENS)
        if json.loads(p).get("message_type") == "reasoning_message"
    ]
    assert [d.text for d in deltas][:2] == ["thinking", "..."]


def test_hidden_reasoning_message_state_and_text() -> None:
    event = _parse(
        {
            "id": "message-a1",
            "message_type": "hidden_reasoning_message",
            "state": "redacted",
            "hidden_reasoning": "<opaque>",
        }
    )
    assert isinstance(event, HiddenReasoningMessage)
    assert event.state == "redacted"
    assert event.text == "<opaque>"


def test_hidden_reasoning_message_without_text_reads_as_empty() -> None:
    event = _parse({"message_type": "hidden_reasoning_message", "state": "omitted"})
    assert isinstance(event, HiddenReasoningMessage)
    assert event.text == ""


# --- tool calls -------------------------------------------------------------------------


def test_tool_call_message_seed_release_has_tool_call_only() -> None:
    event = parse_event(_payload(V6_STEPS, "tool_call_message"))
    assert isinstance(event, ToolCallMessage)
    assert event.tool_calls is None
    [call] = event.calls
    assert call.name == "core_memory_append"
    assert call.tool_call_id == "call_fake000086"
    assert json.loads(call.arguments or "")["content"] == "The user likes tea."


def test_tool_call_message_0_11_has_tool_call_only() -> None:
    event = parse_event(_payload(V11_STEPS, "tool_call_message"))
    assert isinstance(event, ToolCallMessage)
    assert event.tool_calls is None
    assert [(c.name, c.tool_call_id) for c in event.calls] == [
        ("core_memory_append", "call_fake000064")
    ]


def test_tool_call_message_current_release_reads_tool_calls_list() -> None:
    event = parse_event(_payload(V16_STEPS, "tool_call_message"))
    assert isinstance(event, ToolCallMessage)
    assert isinstance(event.tool_calls, list)
    [call] = event.calls
    assert call.name == "memory_insert"
    assert call.tool_call_id == "call_fake000006"
    assert json.loads(call.arguments or "")["new_string"] == "The user likes tea."


def test_tool_calls_list_wins_over_deprecated_tool_call() -> None:
    event = _parse(
        {
            "message_type": "tool_call_message",
            "tool_call": {"name": "a", "arguments": "{}", "tool_call_id": "call_1"},
            "tool_calls": [
                {"name": "a", "arguments": "{}", "tool_call_id": "call_1"},
                {"name": "b", "arguments": "{}", "tool_call_id": "call_2"},
            ],
        }
    )
    assert [c.tool_call_id for c in event.calls] == ["call_1", "call_2"]


def test_tool_calls_as_single_delta_dict_during_token_streaming() -> None:
    event = parse_event(_payload(V16_TOKENS, "tool_call_message", 0))
    assert isinstance(event, ToolCallMessage)
    assert isinstance(event.tool_calls, ToolCall)
    [call] = event.calls
    assert call.name == "memory_insert"
    assert call.arguments is None
    assert call.tool_call_id == "call_fake000010"


def test_tool_call_fragment_without_name_carries_only_arguments() -> None:
    event = parse_event(_payload(V16_TOKENS, "tool_call_message", 1))
    [call] = event.calls
    assert call.name is None
    assert call.arguments == '{"label":"human'
    assert call.tool_call_id == "call_fake000010"


def test_tool_call_fragments_join_into_the_full_arguments() -> None:
    calls = [
        call
        for p in _payloads(V16_TOKENS)
        if json.loads(p).get("message_type") == "tool_call_message"
        for call in parse_event(p).calls
    ]
    arguments = "".join(c.arguments or "" for c in calls if c.tool_call_id == "call_fake000010")
    assert json.loads(arguments) == {
        "label": "human",
        "new_string": "The user likes tea.",
        "request_heartbeat": True,
    }


def test_seed_tool_call_fragment_without_id_or_name() -> None:
    event = parse_event(_payload(V6_TOKENS, "tool_call_message", 1))
    [call] = event.calls
    assert (call.name, call.tool_call_id) == (None, None)
    assert call.arguments == '{"label":"human'


def test_tool_call_message_without_any_call_has_no_calls() -> None:
    event = _parse({"message_type": "tool_call_message"})
    assert isinstance(event, ToolCallMessage)
    assert event.calls == []


def test_approval_request_message_reads_its_calls() -> None:
    call = {"name": "delete_file", "arguments": '{"path":"/tmp/x"}', "tool_call_id": "call_9"}
    event = _parse(
        {
            "id": "message-d4",
            "message_type": "approval_request_message",
            "run_id": "run-1",
            "tool_call": call,
            "tool_calls": [call],
        }
    )
    assert isinstance(event, ApprovalRequestMessage)
    assert not isinstance(event, ToolCallMessage)
    assert [(c.name, c.arguments, c.tool_call_id) for c in event.calls] == [
        ("delete_file", '{"path":"/tmp/x"}', "call_9")
    ]


def test_approval_request_delta_dict() -> None:
    event = _parse(
        {
            "message_type": "approval_request_message",
            "tool_calls": {"arguments": '{"pa', "tool_call_id": "call_9"},
        }
    )
    assert [(c.name, c.arguments) for c in event.calls] == [(None, '{"pa')]


def test_approval_response_message_is_typed() -> None:
    event = _parse({"message_type": "approval_response_message", "approvals": [{"approve": True}]})
    assert isinstance(event, ApprovalResponseMessage)
    assert event.raw["approvals"] == [{"approve": True}]


def test_approval_response_reads_each_decision_and_client_tool_return() -> None:
    # 0.16.8 echoes the client's answer: one decision per call, or a tool the client ran.
    approvals = [
        {"type": "approval", "tool_call_id": "call_1", "approve": False, "reason": "not today"},
        {"type": "tool", "tool_call_id": "call_2", "tool_return": "done", "status": "success"},
    ]
    event = _parse(
        {"message_type": "approval_response_message", "id": "message-r", "approvals": approvals}
    )
    assert isinstance(event, ApprovalResponseMessage)
    assert event.approvals is not None
    decision, ran = event.approvals
    assert isinstance(decision, ApprovalReturn)
    assert (decision.tool_call_id, decision.approve, decision.reason) == (
        "call_1",
        False,
        "not today",
    )
    assert isinstance(ran, ToolReturn)
    assert (ran.tool_call_id, ran.output, ran.status) == ("call_2", "done", "success")
    assert event.raw["approvals"] == approvals


def test_approval_response_deprecated_single_decision_fields() -> None:
    event = _parse(
        {
            "message_type": "approval_response_message",
            "approve": True,
            "approval_request_id": "message-d4",
            "reason": "fine",
        }
    )
    assert isinstance(event, ApprovalResponseMessage)
    assert (event.approve, event.approval_request_id, event.reason) == (True, "message-d4", "fine")
    assert event.approvals is None


# --- tool returns -----------------------------------------------------------------------


def test_tool_return_message_seed_top_level_fields() -> None:
    event = parse_event(_payload(V6_STEPS, "tool_return_message"))
    assert isinstance(event, ToolReturnMessage)
    [result] = event.returns
    assert result.output == "None"
    assert result.status == "success"
    assert result.tool_call_id == "call_fake000086"
    assert (result.stdout, result.stderr) == (None, None)


def test_tool_return_message_current_release_reads_tool_returns() -> None:
    event = parse_event(_payload(V16_STEPS, "tool_return_message"))
    assert isinstance(event, ToolReturnMessage)
    assert event.name == "memory_insert"
    [result] = event.returns
    assert result.output == "The human's name is Tester.\nThe user likes tea."
    assert result.tool_call_id == "call_fake000006"
    assert result.raw["type"] == "tool"


def test_tool_returns_list_wins_over_top_level_fields() -> None:
    event = _parse(
        {
            "message_type": "tool_return_message",
            "tool_return": "first",
            "status": "success",
            "tool_call_id": "call_1",
            "tool_returns": [
                {"tool_return": "first", "status": "success", "tool_call_id": "call_1"},
                {"tool_return": "boom", "status": "error", "tool_call_id": "call_2"},
            ],
        }
    )
    assert [(r.tool_call_id, r.status, r.output) for r in event.returns] == [
        ("call_1", "success", "first"),
        ("call_2", "error", "boom"),
    ]


def test_tool_return_as_list_of_parts_reads_only_the_text() -> None:
    event = _parse(
        {
            "message_type": "tool_return_message",
            "tool_returns": [
                {
                    "tool_call_id": "call_1",
                    "status": "success",
                    "tool_return": [
                        {"type": "text", "text": "page 1, "},
                        {"type": "image", "source": {"type": "base64", "data": "AAAA"}},
                        {"type": "text", "text": "page 2"},
                    ],
                }
            ],
        }
    )
    [result] = event.returns
    assert result.output == "page 1, page 2"


def test_top_level_tool_return_as_list_of_parts() -> None:
    event = _parse(
        {
            "message_type": "tool_return_message",
            "tool_return": [{"type": "text", "text": "ok"}],
            "status": "success",
            "tool_call_id": "call_1",
            "stdout": ["printed"],
            "stderr": [],
        }
    )
    [result] = event.returns
    assert (result.output, result.stdout, result.stderr) == ("ok", ["printed"], [])


# --- assistant, user, system ------------------------------------------------------------


def test_assistant_message_seed_release_text_in_assistant_message_field() -> None:
    event = parse_event(_payload(V6_STEPS, "assistant_message"))
    assert isinstance(event, AssistantMessage)
    assert event.content is None
    assert event.text == "Hello from the fake model"


def test_assistant_message_content_string() -> None:
    event = parse_event(_payload(V16_STEPS, "assistant_message"))
    assert isinstance(event, AssistantMessage)
    assert event.content == "Hello from the fake model"
    assert event.text == "Hello from the fake model"


def test_assistant_message_content_parts_join_their_text() -> None:
    event = _parse(
        {
            "message_type": "assistant_message",
            "content": [
                {"type": "text", "text": "Hello "},
                {"type": "image", "source": {"type": "url", "url": "https://x"}},
                {"type": "text", "text": "Bob"},
            ],
        }
    )
    assert event.text == "Hello Bob"
    assert event.content[1].raw["source"] == {"type": "url", "url": "https://x"}


def test_assistant_token_deltas_join_into_the_full_text() -> None:
    capture = "0.16.8/letta_v1_agent/02-stream-tokens.sse"
    deltas = [
        parse_event(p)
        for p in _payloads(capture)
        if json.loads(p).get("message_type") == "assistant_message"
    ]
    assert len(deltas) > 1
    assert "".join(d.text for d in deltas) == "Hello from the fake model"


def test_assistant_message_without_text_reads_as_empty() -> None:
    assert _parse({"message_type": "assistant_message"}).text == ""


def test_user_message_seed_release_message_field() -> None:
    event = parse_event(_listed("0.6.14/memgpt_agent/11-list-messages.json", "user_message"))
    assert isinstance(event, UserMessage)
    assert event.content is None
    assert '"type": "login"' in event.text


def test_user_message_content_field() -> None:
    event = parse_event(_listed("0.16.8/letta_v1_agent/11-list-messages.json", "user_message"))
    assert isinstance(event, UserMessage)
    assert event.message is None
    assert event.text == "hi"
    assert event.otid == "bd6026b4-9eb5-4a5e-bab2-c06ff9529add"


def test_user_message_content_parts() -> None:
    event = _parse({"message_type": "user_message", "content": [{"type": "text", "text": "hi"}]})
    assert event.text == "hi"


def test_system_message_seed_release_message_field() -> None:
    event = parse_event(_listed("0.6.14/memgpt_agent/11-list-messages.json", "system_message"))
    assert isinstance(event, SystemMessage)
    assert event.text.startswith("You are Letta")


def test_system_message_content_field() -> None:
    event = parse_event(_listed("0.11.7/memgpt_agent/11-list-messages.json", "system_message"))
    assert isinstance(event, SystemMessage)
    assert event.text.startswith("<base_instructions>")


def test_summary_message_is_typed() -> None:
    event = _parse(
        {
            "message_type": "summary_message",
            "summary": "We talked about tea.",
            "compaction_stats": {"messages_before": 40, "messages_after": 3},
        }
    )
    assert isinstance(event, SummaryMessage)
    assert event.summary == "We talked about tea."
    assert event.raw["compaction_stats"] == {"messages_before": 40, "messages_after": 3}


def test_summary_message_compaction_stats_of_0_16_8() -> None:
    stats = {
        "trigger": "context_window_exceeded",
        "context_tokens_before": 30000,
        "context_tokens_after": 4000,
        "context_window": 32000,
        "messages_count_before": 40,
        "messages_count_after": 3,
    }
    event = _parse({"message_type": "summary_message", "summary": "s", "compaction_stats": stats})
    assert isinstance(event, SummaryMessage)
    assert event.compaction_stats is not None
    assert event.compaction_stats.trigger == "context_window_exceeded"
    assert event.compaction_stats.context_window == 32000
    assert event.compaction_stats.messages_count_after == 3
    assert event.raw["compaction_stats"] == stats


def test_event_message_is_typed() -> None:
    event = _parse(
        {"message_type": "event_message", "event_type": "compaction", "event_data": {"n": 1}}
    )
    assert isinstance(event, EventMessage)
    assert (event.event_type, event.event_data) == ("compaction", {"n": 1})


# --- usage, stop reason, ping -------------------------------------------------------------


def test_usage_statistics_without_message_type_from_before_0_6_7() -> None:
    event = parse_event(
        '{"completion_tokens":87,"prompt_tokens":2301,"total_tokens":2388,"step_count":2}'
    )
    assert isinstance(event, UsageStatistics)
    assert (event.completion_tokens, event.prompt_tokens, event.total_tokens) == (87, 2301, 2388)
    assert event.step_count == 2
    assert "message_type" not in event.raw


def test_usage_statistics_seed_release() -> None:
    event = parse_event(_payload(V6_STEPS, "usage_statistics"))
    assert isinstance(event, UsageStatistics)
    assert (event.completion_tokens, event.prompt_tokens, event.total_tokens) == (20, 3372, 3392)
    assert event.cached_input_tokens is None
    assert event.context_tokens is None


def test_usage_statistics_0_11_keeps_steps_messages() -> None:
    event = parse_event(_payload("0.11.7/memgpt_agent/01-stream-steps.sse", "usage_statistics"))
    assert isinstance(event, UsageStatistics)
    assert event.total_tokens == 1787
    assert "steps_messages" in event.raw
    assert event.run_ids is None


def test_usage_statistics_current_release_cache_and_reasoning_fields() -> None:
    event = parse_event(_payload(V16_STEPS, "usage_statistics"))
    assert isinstance(event, UsageStatistics)
    assert event.cached_input_tokens == 0
    assert event.cache_write_tokens == 0
    assert event.reasoning_tokens == 0
    assert event.context_tokens is None
    assert event.step_count == 2


def test_usage_statistics_all_token_details() -> None:
    event = _parse(
        {
            "message_type": "usage_statistics",
            "completion_tokens": 120,
            "prompt_tokens": 5400,
            "total_tokens": 5520,
            "step_count": 2,
            "run_ids": ["run-1"],
            "cached_input_tokens": 4000,
            "cache_write_tokens": 300,
            "reasoning_tokens": 50,
            "context_tokens": 5311,
        }
    )
    assert (event.cached_input_tokens, event.cache_write_tokens) == (4000, 300)
    assert (event.reasoning_tokens, event.context_tokens) == (50, 5311)
    assert event.run_ids == ["run-1"]


def test_stop_reason() -> None:
    event = parse_event(_payload(V16_STEPS, "stop_reason"))
    assert isinstance(event, StopReason)
    assert event.stop_reason == "end_turn"


def test_every_stop_reason_of_0_16_8_is_known() -> None:
    # letta/schemas/letta_stop_reason.py StopReasonType at 0.16.8
    assert {
        "end_turn",
        "error",
        "llm_api_error",
        "invalid_llm_response",
        "invalid_tool_call",
        "max_steps",
        "max_tokens_exceeded",
        "no_tool_call",
        "tool_rule",
        "cancelled",
        "insufficient_credits",
        "requires_approval",
        "context_window_overflow_in_system_prompt",
    } == KNOWN_STOP_REASONS
    for value in KNOWN_STOP_REASONS:
        assert _parse({"message_type": "stop_reason", "stop_reason": value}).stop_reason == value


def test_an_unknown_stop_reason_is_kept_as_sent() -> None:
    event = _parse({"message_type": "stop_reason", "stop_reason": "quota_paused"})
    assert isinstance(event, StopReason)
    assert event.stop_reason == "quota_paused"
    assert event.stop_reason not in KNOWN_STOP_REASONS


def test_stop_reason_with_spaced_json_from_cancellation() -> None:
    event = parse_event('{"message_type": "stop_reason", "stop_reason": "cancelled"}')
    assert isinstance(event, StopReason)
    assert event.stop_reason == "cancelled"


def test_bare_ping_from_0_10() -> None:
    event = parse_event('{"message_type":"ping"}')
    assert isinstance(event, Ping)
    assert event.run_id is None
    assert event.raw == {"message_type": "ping"}


def test_full_ping_carries_the_run_id() -> None:
    event = parse_event(_payload(V16_STEPS, "ping"))
    assert isinstance(event, Ping)
    assert event.id == "ping-336b6142-291c-45c0-a2a5-446deeecffa0"
    assert event.run_id == "run-c6cc2388-fadf-47ab-bb5c-d156807d1701"


# --- errors -----------------------------------------------------------------------------


def test_error_message_from_current_release() -> None:
    event = parse_event(_payload("0.16.8/memgpt_v2_agent/14-llm-error-steps.sse", "error_message"))
    assert isinstance(event, ErrorMessage)
    assert event.error_type == "internal_error"
    assert event.message == "An unknown error occurred with the LLM streaming request."
    assert event.detail is not None
    assert "fake upstream failure" in event.detail
    assert event.run_id == "run-751c90cb-bc93-459f-8b8b-da27096c0f40"


def test_seed_error_string_without_code() -> None:
    [payload] = _payloads("0.6.14/memgpt_agent/14-llm-error-steps.sse")
    event = parse_event(payload)
    assert isinstance(event, StreamErrorFrame)
    assert event.message == "Stream failed (internal error occured)"
    assert event.error_type is None
    assert event.detail is None
    assert "message_type" not in event.raw


def test_error_string_with_code_from_0_11() -> None:
    payload = _payloads("0.11.7/memgpt_agent/14-llm-error-steps.sse")[-1]
    event = parse_event(payload)
    assert isinstance(event, StreamErrorFrame)
    assert event.code == "INTERNAL_SERVER_ERROR"
    assert event.error_type == "INTERNAL_SERVER_ERROR"
    assert event.message.startswith("INTERNAL_SERVER_ERROR: OpenAI API error")
    assert event.detail is None


def test_error_object_with_type_message_and_detail() -> None:
    event = parse_event(
        '{"error": {"type": "llm_timeout", "message": "timed out", "detail": "after 60s"}}'
    )
    assert isinstance(event, StreamErrorFrame)
    assert event.error_type == "llm_timeout"
    assert event.message == "timed out"
    assert event.detail == "after 60s"


def test_error_object_with_message_only() -> None:
    event = parse_event('{"error": {"message": "Redis stream failed"}}')
    assert isinstance(event, StreamErrorFrame)
    assert (event.error_type, event.message, event.detail) == (None, "Redis stream failed", None)


def test_error_object_without_type_falls_back_to_code() -> None:
    event = parse_event('{"error": {"message": "boom"}, "code": "INTERNAL_SERVER_ERROR"}')
    assert event.error_type == "INTERNAL_SERVER_ERROR"


def test_error_object_without_message_still_reads_as_text() -> None:
    event = parse_event('{"error": {"type": "internal_error"}}')
    assert "internal_error" in event.message


# --- unknown types and extra fields -----------------------------------------------------


def test_unknown_message_type_is_kept_with_all_raw_fields() -> None:
    payload = {
        "id": "message-1",
        "message_type": "video_message",
        "frames": [{"t": 0, "url": "https://x"}],
        "codec": None,
    }
    event = _parse(payload)
    assert isinstance(event, UnknownEvent)
    assert event.message_type == "video_message"
    assert event.raw == payload


def test_payload_without_message_type_or_known_shape_is_unknown() -> None:
    event = parse_event('{"hello": "world"}')
    assert isinstance(event, UnknownEvent)
    assert event.raw == {"hello": "world"}


def test_unknown_extra_fields_on_known_types_are_kept() -> None:
    payload = {
        "message_type": "reasoning_message",
        "reasoning": "hmm",
        "confidence": 0.5,
        "annotations": {"lang": "en"},
    }
    event = _parse(payload)
    assert isinstance(event, ReasoningMessage)
    assert event.raw == payload
    assert event.model_extra == {"confidence": 0.5, "annotations": {"lang": "en"}}


def test_unknown_extra_fields_inside_nested_models_are_kept() -> None:
    payload = {
        "message_type": "tool_call_message",
        "tool_calls": [{"name": "f", "arguments": "{}", "tool_call_id": "c", "index": 3}],
    }
    event = _parse(payload)
    assert event.calls[0].raw["index"] == 3
    assert event.raw == payload


def test_common_fields_are_read_on_every_message() -> None:
    event = _parse(
        {
            "id": "message-1",
            "date": "2026-05-14T17:00:00+00:00",
            "name": "bob",
            "message_type": "assistant_message",
            "otid": "otid-1",
            "sender_id": "agent-2",
            "step_id": "step-3",
            "is_err": True,
            "seq_id": 42,
            "run_id": "run-4",
            "content": "x",
        }
    )
    assert (event.id, event.date, event.name) == ("message-1", "2026-05-14T17:00:00+00:00", "bob")
    assert (event.otid, event.sender_id, event.step_id) == ("otid-1", "agent-2", "step-3")
    assert (event.seq_id, event.run_id, event.is_err) == (42, "run-4", True)


def test_raw_leaves_out_fields_the_server_did_not_send() -> None:
    event = parse_event('{"message_type":"assistant_message","content":"x"}')
    assert event.raw == {"message_type": "assistant_message", "content": "x"}


def test_parse_event_accepts_bytes_with_multibyte_text() -> None:
    event = parse_event('{"message_type":"assistant_message","content":"Grüße 👋"}'.encode())
    assert event.text == "Grüße 👋"


# --- malformed input ----------------------------------------------------------------------


def test_not_json_raises_value_error_naming_json() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_event("data: oops")


def test_json_cut_in_the_middle_raises_value_error() -> None:
    payload = _payloads("0.16.8/background-redis/33-bg-headc-part1.sse")[-1]
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_event(payload)


@pytest.mark.parametrize("payload", ["[1, 2]", '[{"message_type": "ping"}]', '"ping"', "null", "3"])
def test_json_that_is_not_an_object_raises_value_error(payload: str) -> None:
    with pytest.raises(ValueError, match="must be a JSON object"):
        parse_event(payload)


@pytest.mark.parametrize(
    ("message_type", "field", "value"),
    [
        ("reasoning_message", "reasoning", 5),
        ("assistant_message", "content", {"text": "x"}),
        ("tool_call_message", "tool_calls", "call"),
        ("tool_return_message", "tool_returns", {"tool_return": "x"}),
        ("usage_statistics", "total_tokens", "many"),
        ("ping", "seq_id", "seven"),
        ("error_message", "detail", ["a", "b"]),
    ],
)
def test_known_type_with_a_wrong_field_type_raises_value_error_naming_the_field(
    message_type: str, field: str, value: object
) -> None:
    payload = json.dumps({"message_type": message_type, field: value})
    with pytest.raises(ValueError, match=re.escape(f"{message_type}.{field}")) as caught:
        parse_event(payload)
    assert "must be a JSON object" not in str(caught.value)
    assert "not valid JSON" not in str(caught.value)


def test_stop_reason_without_its_value_raises_value_error() -> None:
    with pytest.raises(ValueError, match=re.escape("stop_reason.stop_reason")):
        parse_event('{"message_type":"stop_reason"}')


def test_error_frame_with_an_error_of_the_wrong_type_raises_value_error() -> None:
    with pytest.raises(ValueError, match=re.escape("stream_error.error")):
        parse_event('{"error": 42}')


def test_message_type_that_is_not_a_string_raises_value_error() -> None:
    with pytest.raises(ValueError, match=re.escape("unknown.message_type")):
        parse_event('{"message_type": 5}')
