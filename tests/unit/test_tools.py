"""Tool loops without a network: tools to client tools, tool_choice, answers to waiting calls."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from langchain_letta import ApprovalDecision, ToolResult
from langchain_letta._chunks import ChunkBuilder, as_chunk
from langchain_letta._requests import pending_approval_calls
from langchain_letta._tools import client_tools, offered_tools, outgoing
from langchain_letta._wire.requests import OutgoingApproval, OutgoingMessage
from langchain_letta.events import parse_event, waiting_in
from tests.conftest import approval_delta
from tests.conftest import waiting_answer as shared_waiting_answer

AGENT = "agent-1"


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"sunny in {city}"


class Joke(BaseModel):
    """A joke to tell."""

    setup: str = Field(description="The question")
    punchline: str


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def test_every_kind_of_langchain_tool_becomes_a_client_tool() -> None:
    as_dict = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
    converted = client_tools([get_weather, Joke, add, as_dict])
    assert [tool.name for tool in converted] == ["get_weather", "Joke", "add", "lookup"]
    assert converted[0].description == "The current weather in a city."
    assert converted[0].parameters == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    assert converted[1].parameters is not None
    assert converted[1].parameters["required"] == ["setup", "punchline"]
    assert converted[3].description is None  # an empty description is not sent


def test_two_tools_with_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match=r"distinct names.*\['add'\]"):
        client_tools([add, add])


@pytest.mark.parametrize("choice", [None, "auto"])
def test_auto_offers_every_tool(choice: str | None) -> None:
    offered = offered_tools([get_weather, add], choice)
    assert [tool.name for tool in offered or []] == ["get_weather", "add"]


@pytest.mark.parametrize("choice", ["none", False])
def test_none_offers_no_tool(choice: Any) -> None:
    assert offered_tools([get_weather], choice) is None
    assert offered_tools([], None) is None


@pytest.mark.parametrize(
    "choice", ["any", "required", True, "add", {"type": "function", "function": {"name": "add"}}]
)
def test_a_forcing_tool_choice_is_refused_with_the_way_out(choice: Any) -> None:
    with pytest.raises(ValueError, match="cannot force a tool call") as refused:
        offered_tools([get_weather, add], choice)
    assert "lenient_tool_choice" in str(refused.value)


def test_lenient_offers_the_named_tool_alone_or_every_tool() -> None:
    named = offered_tools([get_weather, add], "add", lenient=True)
    assert [tool.name for tool in named or []] == ["add"]
    anything = offered_tools([get_weather, add], "any", lenient=True)
    assert [tool.name for tool in anything or []] == ["get_weather", "add"]


def test_a_tool_choice_naming_an_unbound_tool_is_refused() -> None:
    with pytest.raises(ValueError, match="'nope', which is not one of the bound tools"):
        offered_tools([add], "nope", lenient=True)


def waiting_answer(*, client: list[str], gated: Sequence[str] = ()) -> AIMessage:
    """An answer of the agent that stopped for client tool calls and gated server calls."""
    return shared_waiting_answer(AGENT, client=client, gated=gated)


def test_tool_messages_answer_the_waiting_calls_in_their_order_then_the_rest() -> None:
    answer = waiting_answer(client=["c1", "c2"], gated=["s1"])
    selected = [
        ToolMessage("3", tool_call_id="c2", status="error"),
        ToolMessage([{"type": "text", "text": "2"}], tool_call_id="c1"),
        HumanMessage("and then?"),
    ]
    deny = ApprovalDecision(tool_call_id="s1", approve=False, reason="not now")
    sent = outgoing(selected, answer, [deny])
    assert isinstance(sent[0], OutgoingApproval)
    assert [item.tool_call_id for item in sent[0].approvals] == ["s1", "c1", "c2"]
    assert sent[0].approvals[1] == ToolResult(tool_call_id="c1", tool_return="2")
    assert sent[0].approvals[2] == ToolResult(tool_call_id="c2", tool_return="3", status="error")
    assert isinstance(sent[1], OutgoingMessage)
    assert sent[1].content == "and then?"
    assert len(sent) == 2


def test_a_partial_answer_is_refused_before_sending() -> None:
    answer = waiting_answer(client=["c1", "c2"])
    with pytest.raises(ValueError, match=r"every waiting call at once; none given for \['c2'\]"):
        outgoing([ToolMessage("2", tool_call_id="c1")], answer)


def test_an_answer_to_a_call_nobody_waits_for_is_refused() -> None:
    answer = waiting_answer(client=["c1"])
    with pytest.raises(ValueError, match=r"nothing waits for the tool calls \['zz'\]"):
        outgoing([ToolMessage("2", tool_call_id="c1"), ToolMessage("?", tool_call_id="zz")], answer)
    with pytest.raises(ValueError, match=r"more than one answer for the tool calls \['c1'\]"):
        outgoing(
            [ToolMessage("2", tool_call_id="c1")],
            answer,
            [ToolResult(tool_call_id="c1", tool_return="x")],
        )


def test_an_answer_that_stopped_normally_waits_for_nothing() -> None:
    finished = AIMessage(
        content="done", response_metadata={"agent_id": AGENT, "stop_reason": "end_turn"}
    )
    with pytest.raises(ValueError, match="waits for nothing"):
        outgoing([ToolMessage("2", tool_call_id="c1")], finished)


def test_without_the_agents_answer_the_given_answers_go_as_they_are() -> None:
    # e.g. recovering a pending approval read from the server, with no history at hand
    sent = outgoing([], None, [ApprovalDecision(tool_call_id="s9", approve=True)])
    assert isinstance(sent[0], OutgoingApproval)
    assert sent[0].wire()["approvals"] == [
        {"type": "approval", "tool_call_id": "s9", "approve": True}
    ]


def test_plain_messages_go_without_an_approval() -> None:
    sent = outgoing([HumanMessage("hi")], None)
    assert [type(item) for item in sent] == [OutgoingMessage]


def test_pending_calls_name_client_and_server_calls() -> None:
    answer = waiting_answer(client=["c1"], gated=["s1"])
    pending = pending_approval_calls([HumanMessage("x"), answer], AGENT)
    assert [call["id"] for call in pending] == ["s1", "c1"]
    assert pending[1]["name"] == "add"


def test_a_client_tool_call_streams_as_tool_call_chunks_and_a_server_one_as_a_block() -> None:
    builder = ChunkBuilder(AGENT, "letta-agent", client_tools=["get_weather"])
    deltas = [
        approval_delta(name="get_weather", arguments=None, tool_call_id="call-1"),
        approval_delta(name=None, arguments='{"city": ', tool_call_id="call-1"),
        approval_delta(name=None, arguments='"Paris"}', tool_call_id="call-1"),
    ]
    gated = {
        "message_type": "approval_request_message",
        "id": "message-d4",
        "tool_calls": [{"name": "memory_insert", "arguments": "{}", "tool_call_id": "call-2"}],
    }
    chunks = [builder.chunk(parse_event(json.dumps(payload))) for payload in [*deltas, gated]]
    assert all(chunk is not None for chunk in chunks)
    assert chunks[1] is not None
    assert chunks[1].tool_call_chunks == [
        {"name": None, "args": '{"city": ', "id": "call-1", "index": 0, "type": "tool_call_chunk"}
    ]
    assert chunks[1].content == []
    message = builder.message()
    assert message.tool_calls == [
        {"name": "get_weather", "args": {"city": "Paris"}, "id": "call-1", "type": "tool_call"}
    ]
    assert message.content == [
        {
            "type": "server_tool_call",
            "name": "memory_insert",
            "id": "call-2",
            "args": {},
            "extras": {"requires_approval": True},
            "index": 1,
        }
    ]
    summed = chunks[0]
    for chunk in [*chunks[1:], builder.last_chunk()]:
        summed = summed + chunk  # type: ignore[operator]
    assert summed is not None
    assert summed.tool_calls == message.tool_calls


def test_without_bound_tools_every_approval_request_stays_a_server_block() -> None:
    builder = ChunkBuilder(AGENT, "letta-agent")
    chunk = builder.chunk(
        parse_event(
            json.dumps(approval_delta(name="get_weather", arguments="{}", tool_call_id="c"))
        )
    )
    assert chunk is not None
    assert chunk.tool_call_chunks == []
    assert builder.message().tool_calls == []


def test_a_whole_answer_as_one_chunk_adds_up_to_itself() -> None:
    answer = waiting_answer(client=["c1", "c2"], gated=["s1"])
    chunk = as_chunk(answer)
    assert chunk.chunk_position == "last"
    assert chunk.tool_calls == answer.tool_calls
    assert chunk.content == answer.content
    assert [c["args"] for c in chunk.tool_call_chunks] == ['{"a": 1}', '{"a": 1}']


def test_the_calls_waiting_are_those_of_the_named_approval_request() -> None:
    def ask(message_id: str, *ids: str) -> dict[str, Any]:
        calls = [{"name": "t", "arguments": "{}", "tool_call_id": call} for call in ids]
        return {"message_type": "approval_request_message", "id": message_id, "tool_calls": calls}

    listed = [
        ask("m1", "a", "b"),
        {"message_type": "reasoning_message", "id": "m2", "reasoning": "hm"},
        ask("m2", "c", "d"),  # one stored message lists as its reasoning, then its request
        {"message_type": "assistant_message", "id": "m3", "content": "done"},
        {"message_type": "something_new", "id": "m2"},
        "not a message",
        {"message_type": "approval_request_message", "id": "m2", "tool_calls": "broken"},
    ]
    assert [call.tool_call_id for call in waiting_in(listed, "m2")] == ["c", "d"]
    assert [call.tool_call_id for call in waiting_in(listed, "m1")] == ["a", "b"]
    assert waiting_in(listed, "m3") == []  # an answer waits for nothing
    assert waiting_in(listed, "absent") == []
