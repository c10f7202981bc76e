"""Answering approvals and offering client tools on the wire (the groundwork of tool loops).

The bodies are checked against the requests that real Letta 0.16.8 accepted in the lab
captures (``tests/data/letta-streams/0.16.8/lab-features``), and each is sent through both
clients to the fake server replaying what the real server answered.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from langchain_letta import (
    ApprovalDecision,
    ClientTool,
    OutgoingApproval,
    OutgoingMessage,
    StreamRequest,
    ToolResult,
)
from langchain_letta._wire.requests import build_body
from langchain_letta.errors import LettaUnsupportedFeatureError
from langchain_letta.events import AssistantMessage, ToolReturnMessage
from langchain_letta.testing import FakeLettaServer, Reply
from tests.conftest import CAPTURES, MODES, Mode, read_through

LAB = CAPTURES / "0.16.8/lab-features"
AGENT = "agent-602d2229-b8a0-48e9-961d-0c0373112e59"
WEATHER = ClientTool(
    name="get_weather",
    description="The current weather in a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city's name."}},
        "required": ["city"],
    },
)


def _captured(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((LAB / f"{name}.request.json").read_text())
    return body


def _without_otids(body: dict[str, Any]) -> dict[str, Any]:
    return {
        **body,
        "messages": [{k: v for k, v in m.items() if k != "otid"} for m in body["messages"]],
    }


def test_an_approval_is_written_as_the_real_server_took_it() -> None:
    captured = _captured("07-approve-steps")
    call_id = captured["messages"][0]["approvals"][0]["tool_call_id"]
    request = StreamRequest(
        messages=[
            OutgoingApproval(approvals=[ApprovalDecision(tool_call_id=call_id, approve=True)])
        ],
        stream_tokens=False,
    )
    body = build_body(request, "current")
    assert _without_otids(body)["messages"] == captured["messages"]
    assert body["messages"][0]["otid"]  # a retry of the same answer is recognised


def test_a_denial_carries_its_reason() -> None:
    denial = ApprovalDecision(tool_call_id="call_1", approve=False, reason="Not now, thanks.")
    captured = _captured("09-deny-with-reason-tokens")["messages"][0]["approvals"][0]
    assert denial.wire() == {**captured, "tool_call_id": "call_1"}


def test_client_tools_and_their_results_are_written_as_the_real_server_took_them() -> None:
    captured = _captured("21-client-tool-return")
    call_id = captured["messages"][0]["approvals"][0]["tool_call_id"]
    result = ToolResult(tool_call_id=call_id, tool_return="Sunny, 21 degrees")
    request = StreamRequest(
        messages=[OutgoingApproval(approvals=[result])],
        client_tools=[WEATHER],
        stream_tokens=False,
    )
    body = build_body(request, "current")
    assert _without_otids(body)["messages"] == captured["messages"]
    assert body["client_tools"] == captured["client_tools"]


def test_an_empty_answer_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        OutgoingApproval(approvals=[])


@pytest.mark.parametrize("dialect", ["seed", "transitional"])
def test_servers_of_the_older_dialects_have_no_approvals(dialect: Any) -> None:
    answer = OutgoingApproval(approvals=[ApprovalDecision(tool_call_id="c", approve=True)])
    with pytest.raises(ValueError, match="approvals"):
        build_body(StreamRequest(messages=[answer]), dialect)


@pytest.mark.parametrize("mode", MODES)
def test_an_approval_streams_the_tool_result_and_the_answer(mode: Mode) -> None:
    captured = _captured("07-approve-steps")
    call_id = captured["messages"][0]["approvals"][0]["tool_call_id"]
    answer = OutgoingApproval(approvals=[ApprovalDecision(tool_call_id=call_id, approve=True)])
    request = StreamRequest(messages=[answer], stream_tokens=False)
    with FakeLettaServer([Reply.from_capture(LAB / "07-approve-steps.sse")]) as server:
        events, error = read_through(
            mode, lambda client: client.stream(AGENT, request), base_url=server.base_url
        )
    assert error is None
    (result,) = [e for e in events if isinstance(e, ToolReturnMessage)]
    assert result.returns[0].tool_call_id == call_id
    assert any(isinstance(e, AssistantMessage) for e in events)
    sent = server.stream_requests[0].json()
    assert _without_otids(sent)["messages"] == captured["messages"]


@pytest.mark.parametrize(
    ("version", "feature", "request_"),
    [
        (
            "0.12.1",
            "approvals",
            StreamRequest(
                messages=[
                    OutgoingApproval(approvals=[ApprovalDecision(tool_call_id="c", approve=True)])
                ]
            ),
        ),
        (
            "0.16.1",
            "client_tools",
            StreamRequest(messages=[OutgoingMessage(content="hi")], client_tools=[WEATHER]),
        ),
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_a_server_without_them_refuses_before_anything_is_sent(
    version: str, feature: str, request_: StreamRequest, mode: Mode
) -> None:
    with FakeLettaServer(
        [Reply.from_capture(LAB / "07-approve-steps.sse")], version=version
    ) as server:
        _, error = read_through(
            mode,
            lambda client: client.stream(AGENT, request_),
            base_url=server.base_url,
            dialect="current",
            background=False,
        )
    assert isinstance(error, LettaUnsupportedFeatureError)
    assert error.feature == feature
    assert error.request_accepted is False
    assert server.stream_requests == []
