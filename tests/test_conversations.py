"""Conversations (Letta 0.16.2+): routing, creation, the history rule, threads of a graph."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph

from langchain_letta import AsyncLettaClient, ChatLetta, LettaAgentRunnable, LettaClient, letta_node
from langchain_letta._wire import OutgoingMessage, StreamRequest
from langchain_letta.errors import (
    LettaNotFoundError,
    LettaPendingApprovalError,
    LettaUnsupportedFeatureError,
)
from langchain_letta.testing import FakeLettaServer, RecordedRequest, Reply
from tests.conftest import CAPTURES

AGENT = "agent-9d9e1f61-7d82-476c-9996-867db2b9c18f"
OTHER_AGENT = "agent-00000000-0000-4000-8000-000000000001"
TURN = CAPTURES / "0.16.8/letta_v1_agent/01-stream-steps.sse"
HELLO = "Hello from the fake model"
REQUEST = StreamRequest(messages=[OutgoingMessage(content="hi")])


def _server(version: str | None = "0.16.8") -> FakeLettaServer:
    reply = Reply.from_capture(TURN)
    return FakeLettaServer(lambda _request: reply, version=version)


def _conversation_of(request: RecordedRequest) -> str | None:
    """The conversation a message request went to; ``None`` for the agent's own route."""
    return request.thread[1]


def _sent(request: RecordedRequest) -> list[str]:
    return [m["content"] for m in request.json()["messages"]]


def _creations(server: FakeLettaServer) -> list[RecordedRequest]:
    return [
        r
        for r in server.received
        if r.method == "POST" and r.path.rstrip("/") == "/v1/conversations"
    ]


# ------------------------------------------------------------------ the clients


def test_client_creates_a_conversation_and_streams_into_it() -> None:
    with _server() as server, LettaClient(base_url=server.base_url) as client:
        conversation_id = client.create_conversation(AGENT)
        events = list(client.stream(AGENT, REQUEST, conversation_id=conversation_id))
    assert server.conversations == {conversation_id: AGENT}
    assert conversation_id.startswith("conv-")
    (request,) = server.stream_requests
    assert request.path == f"/v1/conversations/{conversation_id}/messages"
    assert request.json()["messages"][0]["content"] == "hi"
    assert request.json()["stream_tokens"] is True
    assert any(getattr(e, "text", "") == HELLO for e in events)


def test_async_client_creates_a_conversation_and_streams_into_it() -> None:
    async def main() -> tuple[str, list[Any]]:
        async with AsyncLettaClient(base_url=server.base_url) as client:
            conversation_id = await client.create_conversation(AGENT, summary="support")
            stream = client.stream(AGENT, REQUEST, conversation_id=conversation_id)
            return conversation_id, [event async for event in stream]

    with _server() as server:
        conversation_id, events = asyncio.run(main())
    (creation,) = _creations(server)
    assert creation.json() == {"summary": "support"}
    assert server.stream_requests[0].path == f"/v1/conversations/{conversation_id}/messages"
    assert any(getattr(e, "text", "") == HELLO for e in events)


@pytest.mark.parametrize("version", ["0.16.1", "0.11.7", "0.6.14"])
def test_servers_without_conversations_refuse_them_before_sending(version: str) -> None:
    with _server(version) as server, LettaClient(base_url=server.base_url) as client:
        with pytest.raises(LettaUnsupportedFeatureError) as caught:
            list(client.stream(AGENT, REQUEST, conversation_id="conv-1"))
        with pytest.raises(LettaUnsupportedFeatureError):
            client.create_conversation(AGENT)
    assert caught.value.feature == "conversation_id"
    assert caught.value.server_version == version
    assert "0.16.2" in str(caught.value)
    assert caught.value.request_accepted is False
    assert caught.value.is_retryable is False
    assert [r.path for r in server.received] == ["/v1/health/"]


def test_async_servers_without_conversations_refuse_them_before_sending() -> None:
    async def main() -> None:
        async with AsyncLettaClient(base_url=server.base_url) as client:
            with pytest.raises(LettaUnsupportedFeatureError):
                async for _ in client.stream(AGENT, REQUEST, conversation_id="conv-1"):
                    pass
            with pytest.raises(LettaUnsupportedFeatureError):
                await client.create_conversation(AGENT)

    with _server("0.11.7") as server:
        asyncio.run(main())
    assert [r.path for r in server.received] == ["/v1/health/"]


def test_a_forced_dialect_still_checks_the_server_before_a_conversation() -> None:
    with _server("0.11.7") as server:
        client = LettaClient(base_url=server.base_url, dialect="current", background=False)
        with pytest.raises(LettaUnsupportedFeatureError):
            list(client.stream(AGENT, REQUEST, conversation_id="conv-1"))
    assert server.stream_requests == []


def test_an_unknown_conversation_is_a_typed_not_found() -> None:
    with _server() as server, LettaClient(base_url=server.base_url) as client:
        with pytest.raises(LettaNotFoundError) as caught:
            list(client.stream(AGENT, REQUEST, conversation_id="conv-missing"))
    assert "conv-missing" in str(caught.value)
    assert caught.value.request_accepted is False


@pytest.mark.parametrize("bad", ["../agents/x", "conv 1", "", "conv/1"])
def test_conversation_ids_cannot_name_another_endpoint(bad: str) -> None:
    with _server() as server, LettaClient(base_url=server.base_url) as client:
        with pytest.raises(ValueError, match="conversation id"):
            client.stream(AGENT, REQUEST, conversation_id=bad)
        with pytest.raises(ValueError, match="conversation id"):
            ChatLetta(agent_id=AGENT, conversation_id=bad)
    assert server.received == []


# ------------------------------------------------------------------ ChatLetta


def test_the_conversation_is_chosen_like_the_agent() -> None:
    """A call keyword beats ``configurable``, which beats the model's field."""
    with _server() as server:
        first = LettaClient(base_url=server.base_url).create_conversation(AGENT)
        second = LettaClient(base_url=server.base_url).create_conversation(AGENT)
        third = LettaClient(base_url=server.base_url).create_conversation(AGENT)
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, conversation_id=first)
        by_field = model.invoke("a")
        config: Any = {"configurable": {"conversation_id": second}}
        by_config = model.invoke("b", config)
        by_keyword = model.invoke("c", config, conversation_id=third)
        agent_only = ChatLetta(agent_id=AGENT, base_url=server.base_url).invoke("d")
    routes = [_conversation_of(r) for r in server.stream_requests]
    assert routes == [first, second, third, None]
    assert [m.response_metadata.get("conversation_id") for m in (by_field, by_config)] == [
        first,
        second,
    ]
    assert by_keyword.response_metadata["conversation_id"] == third
    assert "conversation_id" not in agent_only.response_metadata
    assert by_field.text == HELLO


def test_the_history_rule_recognises_answers_by_agent_and_conversation() -> None:
    with _server() as server:
        client = LettaClient(base_url=server.base_url)
        one, two = client.create_conversation(AGENT), client.create_conversation(AGENT)
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        history: list[Any] = [HumanMessage("first")]
        history.append(model.invoke(history, conversation_id=one))
        history.append(HumanMessage("second"))
        model.invoke(history, conversation_id=one)  # only what conversation one has not seen
        # Another model's answer follows: sending it would fail, and only an answer of
        # this agent *in this conversation* would make it part of what is sent.
        history += [AIMessage("another model"), HumanMessage("third")]
        model.invoke(history, conversation_id=two)  # one's answer was never seen in two
        model.invoke(history)  # nor in the agent's own thread
    sent = [_sent(r) for r in server.stream_requests]
    assert sent == [["first"], ["second"], ["third"], ["third"]]


def test_each_graph_thread_gets_its_own_conversation_created_once() -> None:
    with _server() as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, conversation_per_thread=True)
        for thread in ("alice", "bob", "alice", "bob"):
            model.invoke("hi", {"configurable": {"thread_id": thread}})
        model.invoke("no thread")
    assert len(_creations(server)) == 2
    routes = [_conversation_of(r) for r in server.stream_requests]
    alice, bob = routes[0], routes[1]
    assert alice != bob
    assert alice is not None
    assert bob is not None
    assert routes == [alice, bob, alice, bob, None]
    assert set(server.conversations) == {alice, bob}


def test_a_thread_finds_its_conversation_again_from_its_history() -> None:
    """After a restart (a new model), the answers in the thread name its conversation."""
    config: Any = {"configurable": {"thread_id": "t1"}}
    with _server() as server:
        first = ChatLetta(agent_id=AGENT, base_url=server.base_url, conversation_per_thread=True)
        history: list[Any] = [HumanMessage("hi")]
        history.append(first.invoke(history, config))
        history.append(HumanMessage("again"))
        restarted = ChatLetta(
            agent_id=AGENT, base_url=server.base_url, conversation_per_thread=True
        )
        restarted.invoke(history, config)
    assert len(_creations(server)) == 1
    first_route, second_route = (_conversation_of(r) for r in server.stream_requests)
    assert first_route == second_route == history[1].response_metadata["conversation_id"]
    assert _sent(server.stream_requests[1]) == ["again"]


def test_threads_run_in_parallel_without_mixing_async() -> None:
    model_args: dict[str, Any] = {"agent_id": AGENT, "conversation_per_thread": True}

    async def main(base_url: str) -> list[AIMessage]:
        model = ChatLetta(base_url=base_url, **model_args)
        calls = [
            model.ainvoke(f"from {thread}", {"configurable": {"thread_id": thread}})
            for thread in ("a", "b", "c", "a", "b", "c")
        ]
        return list(await asyncio.gather(*calls))

    with _server() as server:
        answers = asyncio.run(main(server.base_url))
    by_conversation: dict[str | None, set[str]] = {}
    for request in server.stream_requests:
        by_conversation.setdefault(_conversation_of(request), set()).update(_sent(request))
    # each conversation received only its own thread's messages
    assert sorted(map(sorted, by_conversation.values())) == [
        ["from a"],
        ["from b"],
        ["from c"],
    ]
    assert len({a.response_metadata["conversation_id"] for a in answers}) == 3
    assert all(a.text == HELLO for a in answers)


def test_a_langgraph_thread_per_conversation_with_a_checkpointer() -> None:
    """The README's recipe: one Letta agent, a conversation per graph thread."""
    with _server() as server:

        def build() -> Any:
            node = letta_node(
                agent_id=AGENT, base_url=server.base_url, conversation_per_thread=True
            )
            graph = StateGraph(MessagesState)
            graph.add_node("letta", node)
            graph.add_edge(START, "letta")
            return graph.compile(checkpointer=saver)

        saver = InMemorySaver()
        app = build()
        for thread, text in (("alice", "hi"), ("bob", "hello"), ("alice", "more")):
            app.invoke({"messages": [("human", text)]}, {"configurable": {"thread_id": thread}})
        restarted = build()  # a new process: the checkpoint still names the conversation
        restarted.invoke({"messages": [("human", "back")]}, {"configurable": {"thread_id": "bob"}})
    routes = [_conversation_of(r) for r in server.stream_requests]
    assert len(_creations(server)) == 2
    assert routes[0] == routes[2] != routes[1] == routes[3]
    assert [_sent(r) for r in server.stream_requests] == [["hi"], ["hello"], ["more"], ["back"]]


def test_letta_node_and_runnable_follow_the_models_rule_for_the_agent() -> None:
    """``configurable.agent_id`` beats the model's own agent on every surface."""
    config: Any = {"configurable": {"agent_id": OTHER_AGENT}}
    with _server() as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        model.invoke("model", config)
        letta_node(model).invoke({"messages": [HumanMessage("node")]}, config)
        LettaAgentRunnable(model=model).invoke("runnable", config)
    agents = {r.thread[0] for r in server.stream_requests}
    assert agents == {OTHER_AGENT}
    assert model.target_for(config).agent_id == OTHER_AGENT


def test_runnable_takes_the_conversation_from_its_input() -> None:
    with _server() as server:
        conversation_id = LettaClient(base_url=server.base_url).create_conversation(AGENT)
        agent = LettaAgentRunnable(agent_id=AGENT, base_url=server.base_url)
        response = agent.invoke({"input": "hi", "conversation_id": conversation_id})
    assert _conversation_of(server.stream_requests[0]) == conversation_id
    assert response.response_metadata["conversation_id"] == conversation_id


def test_a_conversation_on_an_old_server_fails_typed_through_chatletta() -> None:
    with _server("0.11.7") as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, conversation_id="conv-1")
        with pytest.raises(LettaUnsupportedFeatureError):
            model.invoke("hi")
        per_thread = ChatLetta(
            agent_id=AGENT, base_url=server.base_url, conversation_per_thread=True
        )
        with pytest.raises(LettaUnsupportedFeatureError):
            per_thread.invoke("hi", {"configurable": {"thread_id": "t"}})
    assert server.stream_requests == []
    assert _creations(server) == []


def test_a_pending_approval_in_a_conversation_names_its_calls() -> None:
    """The refusal names the calls of the conversation's own last answer."""
    lab = CAPTURES / "0.16.8/lab-features"
    replies = [
        Reply.from_capture(lab / "12-conversation-approval-request.sse"),
        Reply.from_capture(lab / "13-conversation-message-while-pending.sse"),
    ]
    with FakeLettaServer(replies) as server:
        conversation_id = LettaClient(base_url=server.base_url).create_conversation(AGENT)
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, conversation_id=conversation_id)
        asked = HumanMessage("call:memory_insert in a conversation")
        answer = model.invoke([asked])
        with pytest.raises(LettaPendingApprovalError) as caught:
            model.invoke([asked, answer, HumanMessage("hi, anybody there?")])
    (pending,) = caught.value.pending_tool_calls
    (waiting,) = [b for b in answer.content if isinstance(b, dict) and b.get("extras")]
    assert pending["id"] == waiting["id"]
    assert pending["name"] == "memory_insert"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_conversation_per_call_unless_the_call_continues_one(mode: str) -> None:
    with _server() as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, conversation_per_call=True)

        def call(messages: list[BaseMessage]) -> BaseMessage:
            if mode == "sync":
                return model.invoke(messages)
            return asyncio.run(model.ainvoke(messages))

        first = call([HumanMessage("one")])
        second = call([HumanMessage("two")])
        call([HumanMessage("one"), first, HumanMessage("one again")])
    routes = [_conversation_of(r) for r in server.stream_requests]
    assert len(_creations(server)) == 2
    assert routes[0] != routes[1]
    assert routes[2] == routes[0] == first.response_metadata["conversation_id"]
    assert second.response_metadata["conversation_id"] == routes[1]
    assert _sent(server.stream_requests[2]) == ["one again"]


def test_a_conversation_per_call_is_refused_before_0_16_2() -> None:
    with _server(version="0.11.7") as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, conversation_per_call=True)
        with pytest.raises(LettaUnsupportedFeatureError, match="conversation"):
            model.invoke("hi")
    assert _creations(server) == []
    assert server.stream_requests == []


def test_a_graph_state_that_lost_the_agents_turns_is_said_not_hidden(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``rollback`` double-texting, a fork, a trimmed state: the agent still remembers."""
    config: Any = {"configurable": {"thread_id": "rolled-back"}}
    with _server() as server:
        node = letta_node(agent_id=AGENT, base_url=server.base_url, conversation_per_thread=True)
        first = node.invoke({"messages": [HumanMessage("one")]}, config)["messages"][0]
        with caplog.at_level("WARNING", logger="langchain_letta"):
            node.invoke({"messages": [HumanMessage("one"), first, HumanMessage("two")]}, config)
            assert not caplog.records  # the state shows the agent's turn: nothing to say
            node.invoke({"messages": [HumanMessage("two again")]}, config)  # rolled back
    (said,) = [r.getMessage() for r in caplog.records if r.name == "langchain_letta"]
    conversation = first.response_metadata["conversation_id"]
    assert f"conversation {conversation}" in said
    assert "cannot roll its memory back" in said


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_another_worker_finds_the_threads_conversation_before_any_answer_names_it(
    mode: str,
) -> None:
    """A worker died in a thread's first turn: the state holds only the question."""
    config: Any = {"configurable": {"thread_id": "first-turn"}}
    with _server() as server:
        workers = [
            ChatLetta(agent_id=AGENT, base_url=server.base_url, conversation_per_thread=True)
            for _ in range(2)
        ]  # two models share nothing: two processes
        for worker in workers:
            if mode == "sync":
                worker.invoke([HumanMessage("hi", id="lc-first")], config)
            else:
                asyncio.run(worker.ainvoke([HumanMessage("hi", id="lc-first")], config))
        older = ChatLetta(agent_id=AGENT, base_url=server.base_url, conversation_per_thread=True)
        server.version = "0.16.2"  # no summary_search: a new conversation, as before
        older.invoke("hi", {"configurable": {"thread_id": "elsewhere"}})
    first, second, third = (_conversation_of(r) for r in server.stream_requests)
    assert first == second != third
    assert len(_creations(server)) == 2
    assert server.summaries[str(first)] == "LangGraph thread first-turn"
