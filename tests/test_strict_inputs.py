"""Strict inputs: every typo, empty input or stray tool result is a typed error, sent nowhere.

"A typo in a field or keyword is an error, never a silent default": an unknown
constructor argument or call keyword raises ``TypeError`` naming the closest valid
name; empty text and a ``ToolMessage`` that answers no call raise ``ValueError``;
each before anything reaches the server (``server.stream_requests == []``).
Connection errors name the URL tried, and the pending-approval error says how to
answer.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool

from langchain_letta import (
    ApprovalDecision,
    AsyncLettaClient,
    ChatLetta,
    LettaAgentRunnable,
    LettaClient,
    letta_node,
)
from langchain_letta._wire.failures import error_from_transport
from langchain_letta.errors import (
    LettaConnectionError,
    LettaPendingApprovalError,
    StreamProgress,
    error_from_response,
    error_from_stream,
)
from langchain_letta.testing import FakeLettaServer, Reply
from tests.conftest import waiting_answer as shared_waiting_answer

AGENT = "agent-5a1c7e2b-strict"
HELLO = {"message_type": "assistant_message", "id": "message-1", "content": "Hello"}
PENDING_WORDS = (
    "CONFLICT: Cannot send a new message: The agent is waiting for approval on a tool call. "
    "Please approve or deny the pending request before continuing."
)


def hello_server(times: int = 2) -> FakeLettaServer:
    return FakeLettaServer([Reply.events(HELLO) for _ in range(times)])


def model_of(server: FakeLettaServer, **fields: Any) -> ChatLetta:
    return ChatLetta(agent_id=AGENT, base_url=server.base_url, max_retries=0, **fields)


def invoked(model: ChatLetta, given: Any, asynchronous: bool) -> AIMessage:
    """``invoke``, or ``ainvoke`` on a loop of its own."""
    if asynchronous:
        return asyncio.run(model.ainvoke(given))
    return model.invoke(given)


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"Sunny in {city}"


def waiting_answer(client: Sequence[str] = (), gated: Sequence[str] = ()) -> AIMessage:
    """An answer that stopped for these client (``get_weather``) and server calls."""
    return shared_waiting_answer(
        AGENT, client=client, gated=gated, tool=("get_weather", {"city": "Paris"})
    )


# ------------------------------------------------------------------ constructor arguments


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (
            {"conversationid": "conv-1"},
            "unknown argument 'conversationid' for ChatLetta; did you mean 'conversation_id'?",
        ),
        ({"agentid": AGENT}, "unknown argument 'agentid' for ChatLetta; did you mean 'agent_id'?"),
        ({"model_name": "openai/gpt-4o"}, "did you mean 'model'?"),
        ({"baseurl": "http://x.test"}, "did you mean 'base_url'?"),
        ({"foo_bar": 1}, "unknown argument 'foo_bar' for ChatLetta; it takes agent_id, "),
    ],
)
def test_chatletta_refuses_an_unknown_argument_naming_the_closest(
    arguments: dict[str, Any], says: str
) -> None:
    with pytest.raises(TypeError, match=re.escape(says)):
        ChatLetta(agent_id=AGENT, **arguments)


def test_an_unknown_argument_never_shows_the_value_given() -> None:
    with pytest.raises(TypeError) as caught:
        ChatLetta(agent_id=AGENT, apikey="sk-very-secret")
    assert "did you mean 'api_key'?" in str(caught.value)
    assert "sk-very-secret" not in str(caught.value)


def test_every_field_of_chatletta_and_of_langchain_is_taken() -> None:
    from langchain_core.rate_limiters import InMemoryRateLimiter

    model = ChatLetta(
        agent_id=AGENT,
        # LangChain's own fields
        name="letta",
        cache=False,
        verbose=False,
        callbacks=None,
        tags=["t"],
        metadata={"m": 1},
        rate_limiter=InMemoryRateLimiter(),
        disable_streaming=False,
        output_version="v1",
        # the standard parameters langchain-tests passes
        temperature=0,
        max_tokens=100,
        timeout=60,
        stop=[],
        max_retries=2,
        streaming=True,
        api_key="test",
    )
    assert model.tags == ["t"]
    assert model.output_version == "v1"


@pytest.mark.filterwarnings("ignore:The function `load` is in beta")
def test_a_saved_model_still_loads() -> None:
    from langchain_core.load import dumpd, load

    model = ChatLetta(agent_id=AGENT, conversation_id="conv-1", history="last", max_steps=3)
    loaded = load(dumpd(model), valid_namespaces=["langchain_letta"], allowed_objects=[ChatLetta])
    assert isinstance(loaded, ChatLetta)
    assert (loaded.conversation_id, loaded.history, loaded.max_steps) == ("conv-1", "last", 3)


def test_the_agent_runnable_refuses_an_unknown_argument_naming_the_closest() -> None:
    with pytest.raises(TypeError, match=re.escape("'agentid' for LettaAgentRunnable; did you")):
        LettaAgentRunnable(agentid=AGENT)
    with pytest.raises(TypeError, match="did you mean 'conversation_id'"):
        LettaAgentRunnable(agent_id=AGENT, conversationid="conv-1")
    with pytest.raises(TypeError, match="did you mean 'model'"):
        LettaAgentRunnable(modle=ChatLetta(agent_id=AGENT))


def test_the_agent_runnable_takes_a_model_or_its_arguments_not_both() -> None:
    with pytest.raises(TypeError, match="not both: set agent_id on the model"):
        LettaAgentRunnable(model=ChatLetta(), agent_id=AGENT)
    # ChatLetta's model handle is not the runnable's model: it goes to the ChatLetta made
    agent = LettaAgentRunnable(agent_id=AGENT, model="openai/gpt-4o-mini")
    assert agent.model.agent_id == AGENT
    assert agent.model.model == "openai/gpt-4o-mini"


def test_letta_node_refuses_an_unknown_argument_and_arguments_beside_a_model() -> None:
    with pytest.raises(TypeError, match=re.escape("'agentid' for letta_node; did you mean")):
        letta_node(agentid=AGENT)
    with pytest.raises(TypeError, match="did you mean 'tools'"):
        letta_node(agent_id=AGENT, tool=[get_weather])
    with pytest.raises(TypeError, match="not both: set conversation_id on the model"):
        letta_node(ChatLetta(agent_id=AGENT), conversation_id="conv-1")


@pytest.mark.parametrize("client_class", [LettaClient, AsyncLettaClient])
def test_the_clients_refuse_an_unknown_setting_naming_the_closest(client_class: Any) -> None:
    name = client_class.__name__
    with pytest.raises(
        TypeError, match=re.escape(f"'baseurl' for {name}; did you mean 'base_url'")
    ):
        client_class(baseurl="http://x.test")
    with pytest.raises(TypeError, match="did you mean 'http_client'"):
        client_class(http_clinet=None)
    with pytest.raises(TypeError, match="did you mean 'max_retries'"):
        client_class(retries=3)


def test_the_clients_take_every_setting() -> None:
    settings: dict[str, Any] = {
        "base_url": "http://letta.test",
        "api_key": "k",
        "password": "p",
        "user_id": "u",
        "timeout": 40.0,
        "connect_timeout": 2.0,
        "total_timeout": 100.0,
        "dialect": "current",
        "headers": {"X-A": "b"},
        "max_retries": 1,
        "retry_timeout": 5.0,
        "background": False,
        "cancel_on_close": True,
    }
    with LettaClient(http_client=None, **settings) as client:
        assert client.base_url == "http://letta.test"


# ------------------------------------------------------------------ call keywords


def _calls(model: Any, **kwargs: Any) -> dict[str, Callable[[], Any]]:
    """Every way of calling ``model`` with ``kwargs``, each run to its end."""

    async def astream() -> list[Any]:
        return [chunk async for chunk in model.astream("hi", **kwargs)]

    return {
        "invoke": lambda: model.invoke("hi", **kwargs),
        "ainvoke": lambda: asyncio.run(model.ainvoke("hi", **kwargs)),
        "stream": lambda: list(model.stream("hi", **kwargs)),
        "astream": lambda: asyncio.run(astream()),
        "batch": lambda: model.batch(["hi"], **kwargs),
        "abatch": lambda: asyncio.run(model.abatch(["hi"], **kwargs)),
    }


SURFACES = ["invoke", "ainvoke", "stream", "astream", "batch", "abatch"]


@pytest.mark.parametrize("surface", SURFACES)
def test_an_unknown_call_keyword_is_refused_before_sending(surface: str) -> None:
    with hello_server() as server:
        model = model_of(server)
        with pytest.raises(TypeError, match="unknown call keyword 'foo_bar' for ChatLetta"):
            _calls(model, foo_bar=1)[surface]()
        with pytest.raises(TypeError, match="did you mean 'conversation_id'"):
            _calls(model, conversationid="conv-1")[surface]()
    assert server.stream_requests == []


def test_a_call_keyword_valid_elsewhere_says_what_to_do_instead() -> None:
    with hello_server() as server:
        model = model_of(server)
        with pytest.raises(TypeError, match=r"response_format.*with_structured_output\(schema\)"):
            model.invoke("hi", response_format={"type": "json_object"})
        with pytest.raises(
            TypeError, match=r"'temperature' for ChatLetta: .* agent's configuration"
        ):
            model.invoke("hi", temperature=0.1)
        with pytest.raises(TypeError, match="did you mean 'agent_id'"):
            model.bind(agentid=AGENT).invoke("hi")
    assert server.stream_requests == []


def test_bind_tools_refuses_an_unknown_keyword_at_once() -> None:
    model = ChatLetta(agent_id=AGENT)
    with pytest.raises(
        TypeError, match=re.escape("'parallel_tool_calls' for ChatLetta.bind_tools")
    ):
        model.bind_tools([get_weather], parallel_tool_calls=False)
    with pytest.raises(TypeError, match="did you mean 'total_timeout'"):
        model.bind_tools([get_weather], totaltimeout=5)


def test_the_known_call_keywords_still_go_through() -> None:
    with hello_server(3) as server:
        model = model_of(server)
        model.invoke("hi", total_timeout=30, max_steps=3, stream_tokens=False, stream=False)
        model.bind_tools([get_weather], tool_choice="auto").invoke("hi", agent_id=AGENT)
        list(model.stream("hi", include_return_message_types=["assistant_message"]))
    bodies = [request.json() for request in server.stream_requests]
    assert bodies[0]["max_steps"] == 3
    assert bodies[1]["client_tools"][0]["name"] == "get_weather"
    assert bodies[2]["include_return_message_types"] == ["assistant_message"]


@pytest.mark.parametrize("surface", ["invoke", "ainvoke", "stream", "astream"])
def test_the_agent_runnable_refuses_an_unknown_keyword_before_any_run(surface: str) -> None:
    with hello_server() as server:
        agent = LettaAgentRunnable(model=model_of(server))

        async def astream() -> list[Any]:
            return [event async for event in agent.astream("hi", foo_bar=1)]

        calls: dict[str, Callable[[], Any]] = {
            "invoke": lambda: agent.invoke("hi", foo_bar=1),
            "ainvoke": lambda: asyncio.run(agent.ainvoke("hi", foo_bar=1)),
            "stream": lambda: list(agent.stream("hi", foo_bar=1)),
            "astream": lambda: asyncio.run(astream()),
        }
        with pytest.raises(TypeError, match="unknown keyword 'foo_bar' for LettaAgentRunnable"):
            calls[surface]()
    assert server.stream_requests == []


def test_the_agent_runnable_passes_chatlettas_call_keywords_on() -> None:
    with hello_server() as server:
        agent = LettaAgentRunnable(model=model_of(server))
        response = agent.invoke("hi", include_return_message_types=["assistant_message"])
        events = list(agent.stream({"input": "hi"}, max_steps=2))
    assert response.text == "Hello"
    assert [event.message_type for event in events] == ["assistant_message"]
    bodies = [request.json() for request in server.stream_requests]
    assert bodies[0]["include_return_message_types"] == ["assistant_message"]
    assert bodies[1]["max_steps"] == 2


# ------------------------------------------------------------------ empty text


@pytest.mark.parametrize(
    "given",
    [
        "",
        "   \n\t",
        [HumanMessage("")],
        [HumanMessage([])],
        [HumanMessage([{"type": "text", "text": "  "}, " "])],
        [SystemMessage(" "), HumanMessage("hi")],
    ],
    ids=["empty", "blank", "empty-message", "no-parts", "blank-parts", "blank-system"],
)
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_empty_text_is_refused_before_sending(given: Any, asynchronous: bool) -> None:
    with hello_server() as server:
        model = model_of(server)
        with pytest.raises(ValueError, match=r"will not send an empty (Human|System)Message"):
            invoked(model, given, asynchronous)
    assert server.stream_requests == []


def test_an_image_without_text_is_not_empty() -> None:
    image = HumanMessage([{"type": "image", "url": "https://example.invalid/cat.png"}])
    with hello_server() as server:
        assert model_of(server).invoke([image]).text == "Hello"
    assert len(server.stream_requests) == 1


def test_blank_text_after_the_agents_answer_is_refused_too() -> None:
    answer = AIMessage(
        "Hi", response_metadata={"model_provider": "letta", "agent_id": AGENT, "stop_reason": "x"}
    )
    with hello_server() as server:
        with pytest.raises(ValueError, match="empty HumanMessage"):
            model_of(server).invoke([HumanMessage("hi"), answer, HumanMessage(" ")])
    assert server.stream_requests == []


# ------------------------------------------------------------------ tool results


def test_an_orphan_tool_message_is_refused_naming_its_id() -> None:
    with hello_server() as server:
        model = model_of(server)
        history = [HumanMessage("hi"), ToolMessage("Sunny", tool_call_id="call_nobody")]
        with pytest.raises(
            ValueError, match=r"tool_call_id='call_nobody' answers no tool call: no"
        ):
            model.invoke(history)
        with pytest.raises(ValueError, match="'call_nobody'"):
            model_of(server, history="last").invoke([ToolMessage("x", tool_call_id="call_nobody")])
    assert server.stream_requests == []


@pytest.mark.parametrize(
    "results",
    [
        [ToolMessage("Sunny", tool_call_id="call_l")],
        [ToolMessage("Sunny", tool_call_id="call_1"), ToolMessage("Rainy", tool_call_id="call_2")],
    ],
    ids=["typo", "one-too-many"],
)
def test_a_tool_message_for_no_waiting_call_is_refused_naming_its_id(
    results: list[BaseMessage],
) -> None:
    stray = results[-1]
    assert isinstance(stray, ToolMessage)
    history = [HumanMessage("weather?"), waiting_answer(client=["call_1"]), *results]
    with hello_server() as server:
        with pytest.raises(ValueError, match="answers no tool call") as caught:
            model_of(server).invoke(history)
    message = str(caught.value)
    assert f"tool_call_id={stray.tool_call_id!r} answers no tool call" in message
    assert "last answer waits for ['call_1']" in message
    assert server.stream_requests == []


def test_a_tool_message_for_a_gated_server_tool_says_to_use_approvals() -> None:
    history = [
        HumanMessage("note it"),
        waiting_answer(gated=["s1"]),
        ToolMessage("ok", tool_call_id="s1"),
    ]
    with hello_server() as server:
        with pytest.raises(
            ValueError, match=re.escape("approvals=[ApprovalDecision(tool_call_id='s1'")
        ):
            model_of(server).invoke(history)
    assert server.stream_requests == []


def test_another_models_tool_exchange_is_left_out_not_refused() -> None:
    theirs = AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1}, "id": "theirs"}])
    history = [HumanMessage("What is 1 + 2"), theirs, ToolMessage("3", tool_call_id="theirs")]
    with hello_server() as server:
        model_of(server).invoke(history)
    assert [m["content"] for m in server.stream_requests[0].json()["messages"]] == ["What is 1 + 2"]


def test_the_results_of_the_agents_own_calls_still_go() -> None:
    answer = waiting_answer(client=["call_1"], gated=["s1"])
    history = [HumanMessage("weather?"), answer, ToolMessage("Sunny", tool_call_id="call_1")]
    with hello_server() as server:
        model_of(server).invoke(
            history, approvals=[ApprovalDecision(tool_call_id="s1", approve=True)]
        )
    (approval,) = server.stream_requests[0].json()["messages"]
    assert [item["tool_call_id"] for item in approval["approvals"]] == ["s1", "call_1"]


def test_letta_node_refuses_an_orphan_tool_message_rather_than_drop_it() -> None:
    with hello_server() as server:
        node = letta_node(model_of(server))
        state = {"messages": [HumanMessage("hi"), ToolMessage("x", tool_call_id="call_nobody")]}
        with pytest.raises(ValueError, match="'call_nobody'"):
            node.invoke(state)
    assert server.stream_requests == []


# ------------------------------------------------------------------ connection errors


def _refusing_url() -> str:
    """The URL of a port nothing listens on: connecting is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_refused_connection_names_the_url_tried_and_no_secret(asynchronous: bool) -> None:
    url = _refusing_url()
    secrets = {"api_key": "sk-let-me-in", "password": "hunter2"}
    model = ChatLetta(agent_id=AGENT, base_url=url, max_retries=0, **secrets)
    with pytest.raises(LettaConnectionError) as caught:
        invoked(model, "hi", asynchronous)
    message = str(caught.value)
    assert f"tried POST {url}/v1/agents/{AGENT}/messages/stream" in message
    assert not any(secret in message for secret in secrets.values())


def test_a_refused_request_of_the_client_names_its_url_too() -> None:
    url = _refusing_url()
    with LettaClient(base_url=url, max_retries=0, api_key="sk-let-me-in") as client:
        with pytest.raises(LettaConnectionError) as caught:
            client.pending_approval(AGENT)
    message = str(caught.value)
    assert f"tried GET {url}/v1/agents/{AGENT}" in message
    assert "sk-let-me-in" not in message


def test_every_transport_error_names_the_request_when_told() -> None:
    import httpx

    for error in (
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("x"),
        httpx.LocalProtocolError("x"),
    ):
        assert str(error_from_transport(error, "POST http://letta.test/v1/x")).endswith(
            "; tried POST http://letta.test/v1/x"
        )


# ------------------------------------------------------------------ pending approvals


HOW = [
    "ToolMessage(content=result, tool_call_id=...) per client tool call",
    "approvals=[ApprovalDecision(tool_call_id=..., approve=True)]",
    "ToolResult(tool_call_id=..., tool_return=...)",
    "Command(resume=True or False)",
    "model.pending_approvals()",
]


def test_the_pending_approval_error_says_how_to_answer() -> None:
    before = error_from_response(409, f'{{"detail": "{PENDING_WORDS}"}}')
    inside = error_from_stream(
        "internal_error", PENDING_WORDS, PENDING_WORDS, body={}, progress=StreamProgress()
    )
    for error in (before, inside):
        assert isinstance(error, LettaPendingApprovalError)
        assert PENDING_WORDS in str(error)  # the server's words first
        assert all(step in str(error) for step in HOW)
        assert "continuing. The agent waits for an answer" in str(error)


def test_chatletta_raises_the_pending_approval_error_with_how_to_answer() -> None:
    with FakeLettaServer([Reply.json(409, {"detail": PENDING_WORDS})]) as server:
        with pytest.raises(LettaPendingApprovalError) as caught:
            model_of(server).invoke("and what about tea?")
    assert all(step in str(caught.value) for step in HOW)
