"""Tool loops over real 0.16.8 streams replayed by the fake server: client tools and approvals.

The replies are the lab captures of ``lab-features`` (see its README): a client tool
``get_weather`` called once (20, steps) or twice in one turn (22, tokens), the
answers to them (21, 23), and a server tool ``memory_insert`` gated for approval
(04), approved (07) and denied with a reason (18).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain.agents.structured_output import ToolStrategy
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_json_schema
from langchain_tests.integration_tests.chat_models import _get_joke_class
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command
from pydantic import BaseModel

from langchain_letta import ApprovalDecision, ChatLetta, letta_node
from langchain_letta._tools import decisions_from
from langchain_letta.errors import LettaProtocolError, LettaUnsupportedFeatureError
from langchain_letta.testing import FakeLettaServer, RecordedRequest, Reply
from tests.conftest import CAPTURES, MODES, Mode

LAB = CAPTURES / "0.16.8/lab-features"
CLIENT_AGENT = "agent-dfad0d8e-6a85-448f-945f-ad79ca39ac5e"
GATED_AGENT = "agent-602d2229-b8a0-48e9-961d-0c0373112e59"
MODES_AGENT = "agent-624a3f5b-a2a4-479d-8170-34f75d5c5eff"
WEATHER = ("20-client-tool-request.sse", "21-client-tool-return.sse")


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"Sunny in {city}"


def by_message(ask: str, answer: str) -> Callable[[RecordedRequest], Reply]:
    """Reply with capture ``ask`` to a user message and ``answer`` to an approval message."""
    replies = {False: Reply.from_capture(LAB / ask), True: Reply.from_capture(LAB / answer)}
    return lambda request: replies[request.json()["messages"][0].get("type") == "approval"]


def sent_messages(server: FakeLettaServer) -> list[list[dict[str, Any]]]:
    """The ``messages`` of every stream request, otids left out."""
    return [
        [{key: value for key, value in item.items() if key != "otid"} for item in body["messages"]]
        for body in (request.json() for request in server.stream_requests)
    ]


def run(mode: Mode, sync: Callable[[], Any], coroutine: Callable[[], Any]) -> Any:
    return sync() if mode == "sync" else asyncio.run(coroutine())


@pytest.mark.parametrize("mode", MODES)
def test_create_agent_runs_a_client_tool_and_sends_its_result_once(mode: Mode) -> None:
    with FakeLettaServer(by_message(*WEATHER)) as server:
        agent = create_agent(
            ChatLetta(agent_id=CLIENT_AGENT, base_url=server.base_url), [get_weather]
        )
        question = {"messages": [HumanMessage("What is the weather in Paris?")]}
        state = run(mode, lambda: agent.invoke(question), lambda: agent.ainvoke(question))
        call = state["messages"][1].tool_calls[0]
        assert call["name"] == "get_weather"
        assert call["args"] == {"city": "Paris"}
        assert call["id"].startswith("call_fake")
        assert state["messages"][1].response_metadata["stop_reason"] == "requires_approval"
        assert state["messages"][2].content == "Sunny in Paris"
        assert state["messages"][3].text == "Hello from the fake model"
        assert sent_messages(server) == [
            [{"role": "user", "content": "What is the weather in Paris?"}],
            [
                {
                    "type": "approval",
                    "approvals": [
                        {
                            "type": "tool",
                            "tool_call_id": call["id"],
                            "tool_return": "Sunny in Paris",
                            "status": "success",
                        }
                    ],
                }
            ],
        ]
        bodies = [request.json() for request in server.stream_requests]
        assert all(body["client_tools"][0]["name"] == "get_weather" for body in bodies)


def toolnode_graph(model: ChatLetta, tools: list[Any]) -> Any:
    """The usual tool loop: the model with ``tools`` bound, a ToolNode, back to the model."""
    bound = model.bind_tools(tools)

    def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [bound.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile()


def test_a_toolnode_graph_answers_parallel_calls_in_one_message() -> None:
    ask, answer = "22-client-tools-parallel-request.sse", "23-client-tools-parallel-return.sse"
    with FakeLettaServer(by_message(ask, answer)) as server:
        model = ChatLetta(agent_id=CLIENT_AGENT, base_url=server.base_url)
        graph = toolnode_graph(model, [get_weather])
        state = graph.invoke({"messages": [HumanMessage("Paris and Rome?")]})
        calls = state["messages"][1].tool_calls
        assert [call["args"] for call in calls] == [{"city": "Paris"}, {"city": "Rome"}]
        assert state["messages"][-1].text == "Hello from the fake model"
        approvals = sent_messages(server)[1][0]["approvals"]
        assert [item["tool_call_id"] for item in approvals] == [call["id"] for call in calls]
        assert [item["tool_return"] for item in approvals] == ["Sunny in Paris", "Sunny in Rome"]
        assert len(server.stream_requests) == 2


@pytest.mark.parametrize("mode", MODES)
def test_streamed_tool_call_chunks_add_up_to_the_invoked_calls(mode: Mode) -> None:
    reply = Reply.from_capture(LAB / "22-client-tools-parallel-request.sse")
    with FakeLettaServer(lambda _request: reply) as server:
        model = ChatLetta(agent_id=CLIENT_AGENT, base_url=server.base_url).bind_tools([get_weather])

        async def astreamed() -> list[Any]:
            return [chunk async for chunk in model.astream("Paris and Rome?")]

        chunks = run(mode, lambda: list(model.stream("Paris and Rome?")), astreamed)
        invoked = model.invoke("Paris and Rome?")
    summed = chunks[0]
    for chunk in chunks[1:]:
        summed = summed + chunk
    assert summed.tool_calls == invoked.tool_calls
    assert [call["args"] for call in invoked.tool_calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert sum(bool(chunk.tool_call_chunks) for chunk in chunks) > 2  # argument pieces streamed
    assert [block["type"] for block in invoked.content_blocks] == ["tool_call", "tool_call"]


def test_human_in_the_loop_rejects_a_client_tool_call_and_letta_hears_why() -> None:
    with FakeLettaServer(by_message(*WEATHER)) as server:
        agent = create_agent(
            ChatLetta(agent_id=CLIENT_AGENT, base_url=server.base_url),
            [get_weather],
            middleware=[HumanInTheLoopMiddleware(interrupt_on={"get_weather": True})],
            checkpointer=InMemorySaver(),
        )
        config: Any = {"configurable": {"thread_id": "one"}}
        paused = agent.invoke({"messages": [HumanMessage("Weather in Paris?")]}, config)
        request = paused["__interrupt__"][0].value["action_requests"][0]
        assert request["name"] == "get_weather"
        assert request["args"] == {"city": "Paris"}
        assert len(server.stream_requests) == 1
        decision = {"decisions": [{"type": "reject", "message": "not today"}]}
        agent.invoke(Command(resume=decision), config)
        (answer,) = sent_messages(server)[1][0]["approvals"]
        assert answer["status"] == "error"
        assert "not today" in answer["tool_return"]


APPROVE = ("04-approval-request-steps.sse", "07-approve-steps.sse", GATED_AGENT, True, None)
DENY = ("17-approval-request-steps.sse", "18-deny-with-reason-steps.sse", MODES_AGENT, False, "No.")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("ask", "answer", "agent_id", "approve", "reason"), [APPROVE, DENY])
def test_a_gated_server_tool_is_approved_or_denied_on_the_next_call(
    mode: Mode, ask: str, answer: str, agent_id: str, approve: bool, reason: str | None
) -> None:
    with FakeLettaServer(by_message(ask, answer)) as server:
        model = ChatLetta(agent_id=agent_id, base_url=server.base_url)
        history: list[BaseMessage] = [HumanMessage("call:memory_insert please")]
        asked = model.invoke(history)
        assert asked.tool_calls == []  # a server tool: never for ToolNode
        (pending,) = [block for block in asked.content if block["type"] == "server_tool_call"]
        assert pending["extras"] == {"requires_approval": True}
        decision = ApprovalDecision(tool_call_id=pending["id"], approve=approve, reason=reason)
        history.append(asked)
        reply = run(
            mode,
            lambda: model.invoke(history, approvals=[decision]),
            lambda: model.ainvoke(history, approvals=[decision]),
        )
        (result,) = [block for block in reply.content if block["type"] == "server_tool_result"]
        assert result["tool_call_id"] == pending["id"]
        assert result["status"] == ("success" if approve else "error")
        approval = {"type": "approval", "approvals": [decision.wire()]}
        assert sent_messages(server)[1] == [approval]


def test_answering_only_some_waiting_calls_is_refused_before_sending() -> None:
    reply = Reply.from_capture(LAB / "22-client-tools-parallel-request.sse")
    with FakeLettaServer(lambda _request: reply) as server:
        model = ChatLetta(agent_id=CLIENT_AGENT, base_url=server.base_url).bind_tools([get_weather])
        asked = model.invoke("Paris and Rome?")
        first = ToolMessage("Sunny", tool_call_id=asked.tool_calls[0]["id"])
        with pytest.raises(ValueError, match="every waiting call at once"):
            model.invoke([HumanMessage("Paris and Rome?"), asked, first])
        assert len(server.stream_requests) == 1


def test_client_tools_on_a_server_without_them_fail_typed_before_sending() -> None:
    reply = Reply.from_capture(LAB / "20-client-tool-request.sse")
    with FakeLettaServer(lambda _request: reply, version="0.11.7") as server:
        model = ChatLetta(agent_id=CLIENT_AGENT, base_url=server.base_url).bind_tools([get_weather])
        with pytest.raises(LettaUnsupportedFeatureError, match="client_tools") as refused:
            model.invoke("Weather in Paris?")
        assert refused.value.request_accepted is False
        assert server.stream_requests == []


def test_a_tool_choice_letta_cannot_honour_is_refused_before_sending() -> None:
    reply = Reply.from_capture(LAB / "20-client-tool-request.sse")
    with FakeLettaServer(lambda _request: reply) as server:
        model = ChatLetta(agent_id=CLIENT_AGENT, base_url=server.base_url)
        with pytest.raises(ValueError, match="cannot force a tool call"):
            model.bind_tools([get_weather], tool_choice="any").invoke("Weather in Paris?")
        assert server.stream_requests == []
        lenient = model.model_copy(update={"lenient_tool_choice": True})
        asked = lenient.bind_tools([get_weather], tool_choice="get_weather").invoke("Paris?")
        assert asked.tool_calls[0]["name"] == "get_weather"
        assert len(server.stream_requests) == 1


def test_tool_choice_none_offers_no_tool() -> None:
    reply = Reply.from_capture(CAPTURES / "0.16.8/letta_v1_agent/02-stream-tokens.sse")
    with FakeLettaServer(lambda _request: reply) as server:
        model = ChatLetta(agent_id=CLIENT_AGENT, base_url=server.base_url)
        model.bind_tools([get_weather], tool_choice="none").invoke("hi")
        assert "client_tools" not in server.stream_requests[0].json()


@pytest.mark.parametrize("mode", MODES)
def test_a_drop_while_a_call_waits_resumes_and_delivers_each_call_once(mode: Mode) -> None:
    ask = Reply.from_capture(LAB / "22-client-tools-parallel-request.sse")
    with FakeLettaServer([ask.with_faults(drops=[6])]) as server:
        model = ChatLetta(agent_id=CLIENT_AGENT, base_url=server.base_url).bind_tools([get_weather])
        asked = run(
            mode, lambda: model.invoke("Paris and Rome?"), lambda: model.ainvoke("Paris and Rome?")
        )
        assert len(server.stream_requests) == 1
        assert len(server.resume_requests) == 1
    assert [call["args"] for call in asked.tool_calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert asked.response_metadata["stop_reason"] == "requires_approval"


@pytest.mark.parametrize("mode", MODES)
def test_a_drop_after_the_results_were_sent_resumes_and_never_sends_them_again(
    mode: Mode,
) -> None:
    ask = Reply.from_capture(LAB / "22-client-tools-parallel-request.sse")
    answer = Reply.from_capture(LAB / "23-client-tools-parallel-return.sse")
    with FakeLettaServer([ask, answer.with_faults(drops=[3])]) as server:
        model = ChatLetta(agent_id=CLIENT_AGENT, base_url=server.base_url).bind_tools([get_weather])
        asked = model.invoke("Paris and Rome?")
        results = [ToolMessage("Sunny", tool_call_id=call["id"]) for call in asked.tool_calls]
        history = [HumanMessage("Paris and Rome?"), asked, *results]
        reply = run(mode, lambda: model.invoke(history), lambda: model.ainvoke(history))
        assert len(server.stream_requests) == 2  # the question, the results: each once
        assert len(server.resume_requests) == 1
    assert reply.text == "Hello from the fake model"


def test_an_answer_without_history_names_the_calls_itself() -> None:
    # Recovery: the history is gone, the pending call's id is known (from the error or the
    # server): the decision alone is sent, first.
    with FakeLettaServer(
        by_message("04-approval-request-steps.sse", "07-approve-steps.sse")
    ) as server:
        model = ChatLetta(agent_id=GATED_AGENT, base_url=server.base_url)
        decision = ApprovalDecision(tool_call_id="call_fake000062", approve=True)
        reply = model.invoke([], approvals=[decision])
        assert isinstance(reply, AIMessage)
        assert sent_messages(server) == [[{"type": "approval", "approvals": [decision.wire()]}]]


class Joke(BaseModel):
    """A joke to tell the user."""

    setup: str
    punchline: str


def joke_turn(arguments: str) -> Reply:
    """A run that calls the client tool ``Joke`` and waits (0.16.8 shape, steps mode)."""
    call = {"name": "Joke", "arguments": arguments, "tool_call_id": "call-joke"}
    return Reply.events(
        {"message_type": "approval_request_message", "id": "message-1", "tool_calls": [call]},
        {"message_type": "stop_reason", "stop_reason": "requires_approval"},
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("include_raw", [False, True])
def test_structured_output_is_the_tool_call_and_the_agent_is_not_left_waiting(
    mode: Mode, include_raw: bool
) -> None:
    turns = [
        joke_turn('{"setup": "Why?", "punchline": "Because."}'),
        Reply.from_capture(LAB / WEATHER[1]),
    ]
    with FakeLettaServer(turns) as server:
        model = ChatLetta(agent_id=CLIENT_AGENT, base_url=server.base_url)
        structured = model.with_structured_output(Joke, include_raw=include_raw)
        starts: list[dict[str, Any]] = []

        class Starts(BaseCallbackHandler):
            def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
                starts.append(kwargs)

        config: Any = {"callbacks": [Starts()]}
        out = run(
            mode,
            lambda: structured.invoke("Tell me a joke", config),
            lambda: structured.ainvoke("Tell me a joke", config),
        )
        parsed = out["parsed"] if include_raw else out
        assert parsed == Joke(setup="Why?", punchline="Because.")
        if include_raw:
            assert out["raw"].tool_calls[0]["name"] == "Joke"
            assert out["parsing_error"] is None
        assert len(starts) == 1  # the closing request is housekeeping, not a second answer
        schema = starts[0]["options"]["ls_structured_output_format"]["schema"]
        assert schema == convert_to_json_schema(Joke)
        sent = sent_messages(server)
        assert sent[1] == [
            {
                "type": "approval",
                "approvals": [
                    {
                        "type": "tool",
                        "tool_call_id": "call-joke",
                        "tool_return": "Structured output received.",
                        "status": "success",
                    }
                ],
            }
        ]


@pytest.mark.parametrize("method", ["function_calling", "json_schema", "json_mode"])
def test_every_structured_output_method_is_the_same_client_tool(method: Any) -> None:
    turns = [joke_turn('{"setup": "A", "punchline": "B"}'), Reply.from_capture(LAB / WEATHER[1])]
    with FakeLettaServer(turns) as server:
        model = ChatLetta(agent_id=CLIENT_AGENT, base_url=server.base_url)
        assert model.with_structured_output(Joke, method=method, strict=True).invoke(
            "joke"
        ) == Joke(setup="A", punchline="B")
        (tool,) = server.stream_requests[0].json()["client_tools"]
    assert tool["name"] == "Joke"
    assert tool["parameters"]["required"] == ["setup", "punchline"]


def test_structured_output_needs_a_schema() -> None:
    with pytest.raises(ValueError, match="needs a schema"):
        ChatLetta(agent_id=CLIENT_AGENT).with_structured_output(method="json_mode")


def approval_graph(model: ChatLetta, saver: InMemorySaver, **node_args: Any) -> Any:
    graph = StateGraph(MessagesState)
    graph.add_node("letta", letta_node(model, **node_args))
    graph.add_edge(START, "letta")
    graph.add_edge("letta", END)
    return graph.compile(checkpointer=saver)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("ask", "answer", "agent_id", "approve", "reason"), [APPROVE, DENY])
def test_letta_node_pauses_for_an_approval_and_resumes_without_sending_twice(
    mode: Mode, ask: str, answer: str, agent_id: str, approve: bool, reason: str | None
) -> None:
    saver = InMemorySaver()
    config: Any = {"configurable": {"thread_id": "t"}}
    with FakeLettaServer(by_message(ask, answer)) as server:
        graph = approval_graph(ChatLetta(agent_id=agent_id, base_url=server.base_url), saver)
        question = {"messages": [HumanMessage("call:memory_insert please")]}
        paused = run(
            mode, lambda: graph.invoke(question, config), lambda: graph.ainvoke(question, config)
        )
        (interrupted,) = paused["__interrupt__"]
        (action,) = interrupted.value["action_requests"]
        assert action["name"] == "memory_insert"
        assert interrupted.value["review_configs"][0]["allowed_decisions"] == ["approve", "reject"]
        assert len(server.stream_requests) == 1
        # a new process: a new model and graph over the same checkpoints
        restarted = approval_graph(ChatLetta(agent_id=agent_id, base_url=server.base_url), saver)
        decision = {"type": "approve"} if approve else {"type": "reject", "message": reason}
        resume = Command(resume={"decisions": [decision]})
        final = run(
            mode,
            lambda: restarted.invoke(resume, config),
            lambda: restarted.ainvoke(resume, config),
        )
        sent = sent_messages(server)
    assert len(sent) == 2  # the question once, then the decision
    assert sent[0] == [{"role": "user", "content": "call:memory_insert please"}]
    wire = ApprovalDecision(tool_call_id=action["id"], approve=approve, reason=reason).wire()
    assert sent[1] == [{"type": "approval", "approvals": [wire]}]
    kinds = [type(message).__name__ for message in final["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "AIMessage"]
    assert final["messages"][-1].response_metadata["stop_reason"] == "end_turn"


def test_letta_node_offers_client_tools_to_a_toolnode() -> None:
    with FakeLettaServer(by_message(*WEATHER)) as server:
        model = ChatLetta(agent_id=CLIENT_AGENT, base_url=server.base_url)
        graph = StateGraph(MessagesState)
        graph.add_node("letta", letta_node(model, tools=[get_weather]))
        graph.add_node("tools", ToolNode([get_weather]))
        graph.add_edge(START, "letta")
        graph.add_conditional_edges("letta", tools_condition)
        graph.add_edge("tools", "letta")
        final = graph.compile().invoke({"messages": [HumanMessage("Weather in Paris?")]})
        sent = sent_messages(server)
    assert [type(message).__name__ for message in final["messages"]] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert sent[1][0]["approvals"][0]["tool_return"] == "Sunny in Paris"


@pytest.mark.parametrize(
    ("resume", "expected"),
    [
        (True, [(True, None)]),
        (False, [(False, None)]),
        ({"decisions": [{"type": "reject", "message": "no"}]}, [(False, "no")]),
    ],
)
def test_resume_values_become_decisions(resume: Any, expected: list[Any]) -> None:
    calls = [{"id": "c1", "name": "memory_insert", "args": {}}]
    decisions = decisions_from(resume, calls)
    assert [(d.approve, d.reason) for d in decisions] == expected
    assert [d.tool_call_id for d in decisions] == ["c1"]


@pytest.mark.parametrize(
    "resume",
    [
        "yes",
        {"decisions": []},
        {"decisions": [{"type": "edit"}]},
        [ApprovalDecision(tool_call_id="other", approve=True)],
    ],
)
def test_resume_values_of_another_shape_are_refused(resume: Any) -> None:
    with pytest.raises(ValueError, match=r"(?i)decision|resume a Letta approval"):
        decisions_from(resume, [{"id": "c1", "name": "memory_insert"}])


def listing() -> list[dict[str, Any]]:
    """A real 0.16.8 listing of an agent's messages: two approvals, both answered."""
    return json.loads((LAB / "10-messages-after-approvals.json").read_text())


def waiting_listing() -> tuple[list[dict[str, Any]], str]:
    """The listing as it was before the last answer, and the id of the request that waits."""
    answered = listing()
    last_ask = max(
        i for i, item in enumerate(answered) if item["message_type"] == "approval_request_message"
    )
    return answered[: last_ask + 1], answered[last_ask]["id"]


@pytest.mark.parametrize("mode", MODES)
def test_the_calls_a_thread_waits_for_are_asked_of_the_server(mode: Mode) -> None:
    waiting, request_id = waiting_listing()
    for history, expected in ((listing(), []), (waiting, ["call_fake000065"])):
        with FakeLettaServer([], history=history) as server:
            model = ChatLetta(agent_id=GATED_AGENT, base_url=server.base_url)
            calls = run(mode, model.pending_approvals, model.apending_approvals)
        assert [call["id"] for call in calls] == expected
        asked = [r.path for r in server.received if r.method == "GET"][1:]  # after the probe
        last = history[-1]["id"]
        assert asked == [f"/v1/agents/{GATED_AGENT}", f"/v1/messages/{last}"]
    assert last == request_id
    assert calls[0]["name"] == "memory_insert"
    assert calls[0]["args"]["label"] == "human"


@pytest.mark.parametrize("mode", MODES)
def test_a_request_that_never_reached_the_context_waits_for_nothing(mode: Mode) -> None:
    # An abandoned run stored the user's message and an approval request, but the
    # thread's context ends before them: the server would refuse an answer to it.
    waiting, request_id = waiting_listing()
    stored_before = [item["id"] for item in waiting[:-2]]
    with FakeLettaServer([], history=waiting, in_context=stored_before) as server:
        model = ChatLetta(agent_id=GATED_AGENT, base_url=server.base_url)
        assert run(mode, model.pending_approvals, model.apending_approvals) == []
    assert f"/v1/messages/{request_id}" not in [r.path for r in server.received]


def test_a_server_without_retrieval_by_id_is_asked_for_the_listing_after_the_one_before() -> None:
    waiting, _ = waiting_listing()
    with FakeLettaServer([], version="0.16.2", history=waiting) as server:
        model = ChatLetta(agent_id=GATED_AGENT, base_url=server.base_url)
        for conversation in (None, "conv-1"):
            calls = model.pending_approvals(conversation_id=conversation)
            assert [call["id"] for call in calls] == ["call_fake000065"]
    listed = [r for r in server.received if r.path.endswith("/messages")]
    assert [r.path for r in listed] == [
        f"/v1/agents/{GATED_AGENT}/messages",
        "/v1/conversations/conv-1/messages",
    ]
    for request in listed:
        assert request.query == {"after": waiting[-2]["id"], "order": "asc", "limit": "50"}


def test_the_calls_a_conversation_waits_for_are_asked_of_it() -> None:
    waiting, request_id = waiting_listing()
    with FakeLettaServer([], history=waiting) as server:
        model = ChatLetta(agent_id=GATED_AGENT, base_url=server.base_url)
        calls = model.pending_approvals(conversation_id="conv-1234")
    assert [call["id"] for call in calls] == ["call_fake000065"]
    asked = [r.path for r in server.received if r.method == "GET"][1:]
    assert asked == ["/v1/conversations/conv-1234", f"/v1/messages/{request_id}"]


def test_a_new_thread_waits_for_nothing() -> None:
    with FakeLettaServer([], history=[]) as server:
        assert ChatLetta(agent_id=GATED_AGENT, base_url=server.base_url).pending_approvals() == []


def test_a_server_without_approvals_is_not_asked() -> None:
    with FakeLettaServer([], version="0.11.7") as server:
        model = ChatLetta(agent_id=GATED_AGENT, base_url=server.base_url)
        with pytest.raises(LettaUnsupportedFeatureError, match="approvals"):
            model.pending_approvals()
    assert [r.path for r in server.received] == ["/v1/health/"]


@pytest.mark.parametrize(
    ("state", "message", "error"),
    [
        ({"detail": "nope"}, [], "lists no in-context message ids"),
        ({"id": "a", "message_ids": "m1"}, [], "lists no in-context message ids"),
        ({"id": "a", "message_ids": ["s", "m1"]}, {"id": "m1"}, "listed messages"),
        ("<html>", [], "not JSON"),
    ],
)
def test_an_answer_of_another_shape_is_a_typed_error(state: Any, message: Any, error: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/health/":
            return httpx.Response(200, json={"version": "0.16.8"})
        if request.url.path.startswith("/v1/agents/"):
            if isinstance(state, str):
                return httpx.Response(200, text=state)
            return httpx.Response(200, json=state)
        return httpx.Response(200, json=message)

    client = httpx.Client(transport=httpx.MockTransport(answer))
    model = ChatLetta(agent_id=GATED_AGENT, base_url="http://letta.test", http_client=client)
    with pytest.raises(LettaProtocolError, match=error):
        model.pending_approvals()


def test_create_agent_structured_output_with_a_lenient_tool_choice() -> None:
    tools = CAPTURES / "0.16.8/standard-tools"
    ask = Reply.from_capture(tools / "11-structured-output-joke-request.sse")
    answer = Reply.from_capture(tools / "12-structured-output-joke-return.sse")
    joke, _ = _get_joke_class("pydantic")
    with FakeLettaServer(
        lambda r: answer if r.json()["messages"][0].get("type") else ask
    ) as server:
        model = ChatLetta(agent_id=CLIENT_AGENT, base_url=server.base_url)
        with pytest.raises(ValueError, match="cannot honour tool_choice='any'"):
            create_agent(model, response_format=ToolStrategy(joke)).invoke(
                {"messages": [("user", "x")]}
            )
        assert server.stream_requests == []
        lenient = model.model_copy(update={"lenient_tool_choice": True})
        agent = create_agent(lenient, response_format=ToolStrategy(joke))
        state = agent.invoke({"messages": [HumanMessage("Tell me a joke about cats.")]})
        assert state["structured_response"].setup == "Tell me a joke about cats."
        # the next turn of the thread answers the waiting call first, then says what is new
        model_input = [*state["messages"], HumanMessage("another")]
        lenient.bind_tools([joke], tool_choice="any").invoke(model_input)
        sent = sent_messages(server)[-1]
    assert [item.get("type", item.get("role")) for item in sent] == ["approval", "user"]
    assert sent[0]["approvals"][0]["tool_return"].startswith("Returning structured response")
