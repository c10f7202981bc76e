"""LettaAgentRunnable, the LangGraph node helper, and what tracing sees of them."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langgraph.graph import END, START, MessagesState, StateGraph

from langchain_letta import (
    ChatLetta,
    LettaAgentRunnable,
    LettaResponse,
    LettaStepPrinter,
    letta_node,
)
from langchain_letta.events import AssistantMessage, ToolCallMessage
from langchain_letta.testing import FakeLettaServer, RecordedRequest, Reply
from tests.conftest import CAPTURES

AGENT = "agent-9d9e1f61-7d82-476c-9996-867db2b9c18f"
TOOL_TURN = CAPTURES / "0.16.8/memgpt_v2_agent/03-tool-call-steps.sse"
TOKENS_TURN = CAPTURES / "0.16.8/memgpt_v2_agent/04-tool-call-tokens.sse"
HELLO = "Hello from the fake model"


def _always(path: Any) -> FakeLettaServer:
    reply = Reply.from_capture(path)
    return FakeLettaServer(lambda _request: reply)


def _sent(request: RecordedRequest) -> list[str]:
    return [m["content"] for m in request.json()["messages"]]


def test_runnable_answers_with_a_typed_response() -> None:
    with _always(TOOL_TURN) as server:
        response = LettaAgentRunnable(agent_id=AGENT, base_url=server.base_url).invoke("hi")
    assert isinstance(response, LettaResponse)
    assert isinstance(response, AIMessage)
    assert response.text == HELLO
    assert response.agent_id == AGENT
    assert response.run_id is not None
    assert response.run_id.startswith("run-")
    assert response.stop_reason == "end_turn"
    assert response.usage_metadata is not None
    assert response.usage_metadata["total_tokens"] > 0
    assert [e.message_type for e in response.events] == [
        "reasoning_message",
        "tool_call_message",
        "tool_return_message",
        "reasoning_message",
        "assistant_message",
        "stop_reason",
        "usage_statistics",
    ]
    assert response.tool_calls == []


def test_runnable_streams_the_typed_events() -> None:
    with _always(TOKENS_TURN) as server:
        agent = LettaAgentRunnable(model=ChatLetta(agent_id=AGENT, base_url=server.base_url))
        events = list(agent.stream("hi"))
    assert all(e.message_type != "ping" for e in events)
    calls = [e for e in events if isinstance(e, ToolCallMessage)]
    assert len(calls) > 5  # token deltas, as they came
    text = "".join(e.text for e in events if isinstance(e, AssistantMessage))
    assert text == HELLO


async def test_runnable_streams_and_answers_async() -> None:
    with _always(TOOL_TURN) as server:
        agent = LettaAgentRunnable(agent_id=AGENT, base_url=server.base_url)
        events = [event async for event in agent.astream("hi")]
        response = await agent.ainvoke("hi")
    assert [e.message_type for e in events] == [e.message_type for e in response.events]


async def test_astream_events_shows_the_letta_events() -> None:
    with _always(TOOL_TURN) as server:
        agent = LettaAgentRunnable(agent_id=AGENT, base_url=server.base_url)
        events = [event async for event in agent.astream_events("hi", version="v2")]
    streamed = [e["data"]["chunk"] for e in events if e["event"] == "on_chain_stream"]
    assert [e.message_type for e in streamed][:3] == [
        "reasoning_message",
        "tool_call_message",
        "tool_return_message",
    ]
    custom = [e["name"] for e in events if e["event"] == "on_custom_event"]
    assert "letta.tool_return_message" in custom


def test_runnable_composes_in_lcel() -> None:
    with _always(TOOL_TURN) as server:
        agent = LettaAgentRunnable(agent_id=AGENT, base_url=server.base_url)
        prompt = ChatPromptTemplate.from_messages([("human", "Please remember: {fact}")])
        answer = (prompt | agent | StrOutputParser()).invoke({"fact": "I like tea"})
    assert answer == HELLO
    assert _sent(server.stream_requests[0]) == ["Please remember: I like tea"]


def test_runnable_takes_its_agent_from_the_input_then_the_config() -> None:
    with _always(TOOL_TURN) as server:
        agent = LettaAgentRunnable(agent_id=AGENT, base_url=server.base_url)
        agent.invoke({"input": "a", "agent_id": "agent-from-input"})
        agent.invoke("b", config={"configurable": {"agent_id": "agent-from-config"}})
        agent.invoke([HumanMessage("c")])
    paths = [r.thread[0] for r in server.stream_requests]
    assert paths == ["agent-from-input", "agent-from-config", AGENT]


def _two_agent_graph(server: FakeLettaServer) -> Any:
    def route(state: MessagesState) -> str:
        question = state["messages"][-1].text.lower()
        return "memory" if "remember" in question else "chat"

    graph = StateGraph(MessagesState)
    graph.add_node("memory", letta_node(agent_id="agent-memory", base_url=server.base_url))
    graph.add_node("chat", letta_node(agent_id="agent-chat", base_url=server.base_url))
    graph.add_conditional_edges(START, route, ["memory", "chat"])
    graph.add_edge("memory", END)
    graph.add_edge("chat", END)
    return graph.compile()


def test_two_letta_agents_behind_a_router_stream_in_messages_mode() -> None:
    with _always(TOKENS_TURN) as server:
        graph = _two_agent_graph(server)
        first = graph.invoke({"messages": [HumanMessage("Please remember that I like tea.")]})
        parts = list(
            graph.stream(
                {"messages": [*first["messages"], HumanMessage("How are you?")]},
                stream_mode=["messages", "values"],
            )
        )
    chunks = [(data[0], data[1]) for mode, data in parts if mode == "messages"]
    assert all(isinstance(chunk, AIMessageChunk) for chunk, _ in chunks)
    assert {meta["langgraph_node"] for _, meta in chunks} == {"chat"}
    assert "".join(chunk.text for chunk, _ in chunks) == HELLO
    final = [data for mode, data in parts if mode == "values"][-1]["messages"]
    assert [type(m).__name__ for m in final] == [
        "HumanMessage",
        "AIMessage",
        "HumanMessage",
        "AIMessage",
    ]
    assert final[1].response_metadata["agent_id"] == "agent-memory"
    assert final[3].response_metadata["agent_id"] == "agent-chat"
    memory, chat = server.stream_requests
    assert memory.thread == ("agent-memory", None)
    assert _sent(memory) == ["Please remember that I like tea."]
    # The chat agent has not seen the conversation: it gets the people's messages,
    # never the memory agent's answer.
    assert chat.thread == ("agent-chat", None)
    assert _sent(chat) == ["Please remember that I like tea.", "How are you?"]


async def test_the_node_works_in_async_graphs() -> None:
    with _always(TOOL_TURN) as server:
        graph = _two_agent_graph(server)
        state = await graph.ainvoke({"messages": [HumanMessage("hello")]})
        again = await graph.ainvoke({"messages": [*state["messages"], HumanMessage("again")]})
    assert again["messages"][-1].text == HELLO
    assert _sent(server.stream_requests[1]) == ["again"]  # only what is new to the agent


def test_step_printer_shows_each_step_with_run_and_step_ids() -> None:
    written: list[str] = []
    printer = LettaStepPrinter(write=written.append)
    with _always(TOKENS_TURN) as server:
        agent = LettaAgentRunnable(agent_id=AGENT, base_url=server.base_url)
        agent.invoke("hi", config={"callbacks": [printer]})
    assert [step.kind for step in printer.steps] == [
        "reasoning",
        "tool_call",
        "tool_result",
        "reasoning",
        "answer",
    ]
    assert printer.steps[1].text.startswith('memory_insert {"label":"human"')
    assert printer.steps[-1].text == HELLO
    assert all(step.run_id and step.run_id.startswith("run-") for step in printer.steps)
    assert all(step.step_id and step.step_id.startswith("step-") for step in printer.steps)
    output = "".join(written)
    assert f"] answer: {HELLO}" in output


class Starts(BaseCallbackHandler):
    def __init__(self) -> None:
        self.metadata: list[dict[str, Any]] = []
        self.chains: list[dict[str, Any]] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.metadata.append(kwargs["metadata"])

    def on_chain_start(self, serialized: Any, inputs: Any, **kwargs: Any) -> None:
        self.chains.append(kwargs["metadata"])


def test_every_model_run_carries_provider_model_and_agent_metadata() -> None:
    starts = Starts()
    with _always(TOOL_TURN) as server:
        model = ChatLetta(base_url=server.base_url, model="openai/gpt-4o-mini")
        model.invoke("hi", config={"callbacks": [starts], "configurable": {"agent_id": AGENT}})
        list(model.stream("hi", config={"callbacks": [starts]}, agent_id="agent-two"))
    for metadata, agent in zip(starts.metadata, [AGENT, "agent-two"], strict=True):
        assert metadata["ls_provider"] == "letta"
        assert metadata["ls_model_name"] == "openai/gpt-4o-mini"
        assert metadata["letta_agent_id"] == agent


def test_step_printer_shows_the_answer_without_the_seed_era_json_leak() -> None:
    printer = LettaStepPrinter(write=lambda _text: None)
    with _always(CAPTURES / "0.6.14/memgpt_agent/02-stream-tokens.sse") as server:
        agent = LettaAgentRunnable(agent_id=AGENT, base_url=server.base_url)
        agent.invoke("hi", config={"callbacks": [printer]})
    assert [step.kind for step in printer.steps] == ["reasoning", "answer"]
    assert printer.steps[-1].text == HELLO


def test_step_printer_shows_each_call_waiting_for_approval() -> None:
    printer = LettaStepPrinter(write=lambda _text: None)
    capture = CAPTURES / "0.16.8/lab-features/22-client-tools-parallel-request.sse"
    with _always(capture) as server:
        agent = LettaAgentRunnable(agent_id=AGENT, base_url=server.base_url)
        response = agent.invoke("weather?", config={"callbacks": [printer]})
    assert response.stop_reason == "requires_approval"
    assert [(step.kind, step.text) for step in printer.steps] == [
        ("approval_request", 'get_weather {"city":"Paris"}'),
        ("approval_request", 'get_weather {"city":"Rome"}'),
    ]


def test_the_agent_runnables_runs_carry_provider_model_and_agent_metadata() -> None:
    starts = Starts()
    with _always(TOOL_TURN) as server:
        agent = LettaAgentRunnable(agent_id=AGENT, base_url=server.base_url)
        agent.invoke({"input": "hi", "agent_id": "agent-two"}, config={"callbacks": [starts]})
        list(agent.stream("hi", config={"callbacks": [starts]}))
    assert [m["letta_agent_id"] for m in starts.chains] == ["agent-two", AGENT]
    assert {m["ls_provider"] for m in starts.chains} == {"letta"}
    assert {m["ls_model_name"] for m in starts.chains} == {"letta-agent"}


async def test_async_runnable_takes_its_agent_from_the_config() -> None:
    with _always(TOOL_TURN) as server:
        agent = LettaAgentRunnable(agent_id=AGENT, base_url=server.base_url)
        config = {"configurable": {"agent_id": "agent-from-config"}}
        await agent.ainvoke("a", config=config)  # type: ignore[arg-type]
        [event async for event in agent.astream("b", config=config)]  # type: ignore[arg-type]
        list(agent.stream("c", config=config))  # type: ignore[arg-type]
    paths = {r.thread[0] for r in server.stream_requests}
    assert paths == {"agent-from-config"}
