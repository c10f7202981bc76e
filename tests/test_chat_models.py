"""ChatLetta over real captures: what a LangChain user gets from each Letta release."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate
from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from langchain_letta import ChatLetta
from langchain_letta.errors import (
    LettaConflictError,
    LettaPendingApprovalError,
    LettaRateLimitError,
    LettaUnsupportedFeatureError,
)
from langchain_letta.testing import FakeLettaServer, Reply
from tests.conftest import CAPTURES, approval_delta

AGENT = "agent-9d9e1f61-7d82-476c-9996-867db2b9c18f"
HELLO = "Hello from the fake model"

# capture, reasoning blocks, (tool name, a word of its args, result status) or None
CONVERSATIONS = [
    ("0.6.14/memgpt_agent/03-tool-call-steps.sse", 2, ("core_memory_append", "tea", "success")),
    ("0.6.14/memgpt_agent/01-stream-steps.sse", 1, None),
    ("0.6.14/memgpt_agent/02-stream-tokens.sse", 1, None),
    ("0.11.7/memgpt_v2_agent/03-tool-call-steps.sse", 2, ("memory_insert", "tea", "success")),
    ("0.11.7/memgpt_v2_agent/04-tool-call-tokens.sse", 2, ("memory_insert", "tea", "success")),
    ("0.11.7/memgpt_agent/02-stream-tokens.sse", 1, None),
    ("0.16.8/letta_v1_agent/04-tool-call-tokens.sse", 0, ("memory_insert", "tea", "success")),
    ("0.16.8/letta_v1_agent/01-stream-steps.sse", 0, None),
    ("0.16.8/memgpt_v2_agent/04-tool-call-tokens.sse", 2, ("memory_insert", "tea", "success")),
    ("0.16.8/memgpt_v2_agent/05-search-tool-steps.sse", 2, ("conversation_search", "hello", None)),
]


def _server(capture: str, times: int = 1) -> FakeLettaServer:
    return FakeLettaServer([Reply.from_capture(CAPTURES / capture) for _ in range(times)])


def _invoked_and_streamed(path: Any) -> tuple[AIMessage, AIMessageChunk]:
    """One capture's turn through ``invoke``, and through ``stream`` with its chunks summed."""
    with FakeLettaServer([Reply.from_capture(path), Reply.from_capture(path)]) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        invoked = model.invoke("hi")
        chunks = list(model.stream("hi"))
    streamed = chunks[0]
    for chunk in chunks[1:]:
        streamed = streamed + chunk
    return invoked, streamed


def _blocks(message: AIMessage, kind: str) -> list[dict[str, Any]]:
    return [b for b in message.content if isinstance(b, dict) and b.get("type") == kind]


def _check_answer(
    message: AIMessage, reasoning: int, tool: tuple[str, str, str | None] | None
) -> None:
    assert message.text == HELLO
    assert len(_blocks(message, "text")) == 1
    assert len(_blocks(message, "reasoning")) == reasoning
    assert all(b["reasoning"] for b in _blocks(message, "reasoning"))
    assert message.tool_calls == []  # Letta's own tools are never handed to LangGraph
    if tool is None:
        assert not _blocks(message, "server_tool_call")
    else:
        name, word, status = tool
        (call,) = _blocks(message, "server_tool_call") or _blocks(message, "server_tool_call_chunk")
        assert call["name"] == name
        assert word in str(call["args"])
        (result,) = _blocks(message, "server_tool_result")
        assert result["tool_call_id"] == call["id"]
        assert result["status"] == (status or "success")
    usage = message.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] > 0
    assert usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    metadata = message.response_metadata
    assert metadata["model_provider"] == "letta"
    assert metadata["agent_id"] == AGENT
    assert metadata["stop_reason"] == "end_turn"
    assert metadata["step_count"] >= 1
    assert metadata["letta_message_ids"]


@pytest.mark.parametrize(("capture", "reasoning", "tool"), CONVERSATIONS)
def test_invoke_gives_the_expected_message(capture: str, reasoning: int, tool: Any) -> None:
    with _server(capture) as server:
        message = ChatLetta(agent_id=AGENT, base_url=server.base_url).invoke("hi")
    _check_answer(message, reasoning, tool)
    if tool is not None and tool[0] != "core_memory_append":
        # invoke parses the streamed arguments (0.6.14 mangles its own JSON: kept as text)
        assert isinstance(_blocks(message, "server_tool_call")[0]["args"], dict)


@pytest.mark.parametrize(("capture", "reasoning", "tool"), CONVERSATIONS)
def test_stream_aggregates_to_the_expected_message(capture: str, reasoning: int, tool: Any) -> None:
    with _server(capture) as server:
        chunks = list(ChatLetta(agent_id=AGENT, base_url=server.base_url).stream("hi"))
    assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    assert chunks[-1].chunk_position == "last"
    assert sum(1 for chunk in chunks if chunk.usage_metadata) == 1
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    _check_answer(full, reasoning, tool)


@pytest.mark.parametrize(("capture", "reasoning", "tool"), CONVERSATIONS[::3])
async def test_async_invoke_and_stream_match_sync(capture: str, reasoning: int, tool: Any) -> None:
    with _server(capture, times=2) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        message = await model.ainvoke("hi")
        chunks = [chunk async for chunk in model.astream("hi")]
    _check_answer(message, reasoning, tool)
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    _check_answer(full, reasoning, tool)


def test_token_streaming_yields_the_deltas_and_step_streaming_one_chunk() -> None:
    with _server("0.16.8/memgpt_v2_agent/02-stream-tokens.sse") as server:
        tokens = list(ChatLetta(agent_id=AGENT, base_url=server.base_url).stream("hi"))
    with _server("0.16.8/memgpt_v2_agent/01-stream-steps.sse") as server:
        steps = list(
            ChatLetta(agent_id=AGENT, base_url=server.base_url, stream_tokens=False).stream("hi")
        )
    deltas = ["Hello", " from", " the", " fake", " model"]
    pieces = [c.text for c in tokens if c.text]
    # Deltas read together come as one chunk: each piece is a run of whole deltas.
    assert "".join(pieces) == "".join(deltas)
    assert set(accumulate(map(len, pieces))) <= set(accumulate(map(len, deltas)))
    assert [c.text for c in steps if c.text] == [HELLO]
    assert server.stream_requests[0].json()["stream_tokens"] is False


def test_v1_output_gives_server_tool_call_with_parsed_args_in_the_stream_aggregate() -> None:
    with _server("0.16.8/letta_v1_agent/04-tool-call-tokens.sse") as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, output_version="v1")
        chunks = list(model.stream("hi"))
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    (call,) = [b for b in full.content_blocks if b["type"] == "server_tool_call"]
    assert call["args"]["new_string"] == "The user likes tea."
    assert full.response_metadata["output_version"] == "v1"


APPROVAL_TURN = Reply.events(
    {"message_type": "reasoning_message", "otid": "r", "reasoning": "Needs a yes."},
    approval_delta(name="delete_file", tool_call_id="call_1"),
    approval_delta(name="send_email", tool_call_id="call_2"),
    approval_delta(arguments='{"path": "notes.txt"}', tool_call_id="call_1"),
    approval_delta(arguments='{"to": "bob"}', tool_call_id="call_2"),
    {"message_type": "stop_reason", "stop_reason": "requires_approval"},
    {"message_type": "usage_statistics", "total_tokens": 3, "step_count": 1},
)


def _check_waiting_for_approval(message: AIMessage) -> None:
    calls = _blocks(message, "server_tool_call")
    assert [(c["id"], c["name"], c["args"]) for c in calls] == [
        ("call_1", "delete_file", {"path": "notes.txt"}),
        ("call_2", "send_email", {"to": "bob"}),
    ]
    assert all(c["extras"] == {"requires_approval": True} for c in calls)
    assert message.tool_calls == []
    assert message.response_metadata["stop_reason"] == "requires_approval"


def test_a_run_waiting_for_approval_names_its_calls_in_invoke_and_stream() -> None:
    with FakeLettaServer([APPROVAL_TURN, APPROVAL_TURN]) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, output_version="v1")
        invoked = model.invoke("delete it and tell bob")
        chunks = list(model.stream("delete it and tell bob"))
    _check_waiting_for_approval(invoked)
    streamed = chunks[0]
    for chunk in chunks[1:]:
        streamed = streamed + chunk
    _check_waiting_for_approval(streamed)


async def test_a_run_waiting_for_approval_async() -> None:
    with FakeLettaServer([APPROVAL_TURN]) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        _check_waiting_for_approval(await model.ainvoke("delete it and tell bob"))


PENDING_WORDS = (
    "CONFLICT: Cannot send a new message: The agent is waiting for approval on a tool call. "
    "Please approve or deny the pending request before continuing."
)
REFUSED_BEFORE_THE_STREAM = Reply.json(409, {"detail": PENDING_WORDS})
REFUSED_IN_THE_STREAM = Reply(
    body=(
        b'data: {"message_type":"stop_reason","stop_reason":"error"}\n\n'
        b'event: error\ndata: {"message_type":"error_message","run_id":"run-2",'
        b'"error_type":"internal_error","message":"' + PENDING_WORDS.encode() + b'",'
        b'"detail":"' + PENDING_WORDS.encode() + b'"}\n\n'
        b"data: [DONE]\n\n"
    )
)


@pytest.mark.parametrize(
    ("refusal", "accepted"), [(REFUSED_BEFORE_THE_STREAM, False), (REFUSED_IN_THE_STREAM, True)]
)
def test_a_message_while_calls_wait_for_approval_fails_typed_naming_them(
    refusal: Reply, accepted: bool
) -> None:
    with FakeLettaServer([APPROVAL_TURN, refusal]) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)  # max_retries=2
        history: list[Any] = [HumanMessage("delete it and tell bob")]
        history.append(model.invoke(history))
        history.append(HumanMessage("and what about tea?"))
        with pytest.raises(LettaPendingApprovalError) as caught:
            model.invoke(history)
    error = caught.value
    assert isinstance(error, LettaConflictError)
    assert error.is_retryable is False
    assert error.request_accepted is accepted
    assert [(c["id"], c["name"]) for c in error.pending_tool_calls] == [
        ("call_1", "delete_file"),
        ("call_2", "send_email"),
    ]
    assert len(server.stream_requests) == 2  # refused once, never sent again


async def test_a_pending_approval_refusal_async_without_the_answer_in_the_history() -> None:
    with FakeLettaServer([REFUSED_BEFORE_THE_STREAM]) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        with pytest.raises(LettaPendingApprovalError) as caught:
            await model.ainvoke("and what about tea?")
    assert caught.value.pending_tool_calls == []  # neither the server nor the history names them
    assert len(server.stream_requests) == 1


def test_a_busy_agent_is_retried_not_mistaken_for_a_pending_approval() -> None:
    busy = Reply.json(
        409,
        {
            "detail": "CONFLICT: Cannot send a new message: Another request "
            "is currently being processed for this conversation."
        },
    )
    hello = Reply.events({"message_type": "assistant_message", "content": HELLO})
    with FakeLettaServer([busy, hello]) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, retry_timeout=5)
        assert model.invoke("hi").text == HELLO
    assert len(server.stream_requests) == 2


@pytest.mark.parametrize(
    ("capture", "calls"),
    [
        (
            "04-approval-request-steps.sse",
            [("call_fake000062", "memory_insert", "The user likes tea.")],
        ),
        (
            "08-approval-request-tokens.sse",
            [("call_fake000065", "memory_insert", "The user likes tea.")],
        ),
        (
            "22-client-tools-parallel-request.sse",
            [
                ("call_fake000075", "get_weather", "Paris"),
                ("call_fake000076", "get_weather", "Rome"),
            ],
        ),
    ],
)
def test_real_approval_requests_of_0_16_8_become_marked_server_tool_calls(
    capture: str, calls: list[tuple[str, str, str]]
) -> None:
    invoked, streamed = _invoked_and_streamed(CAPTURES / f"0.16.8/lab-features/{capture}")
    for message in (invoked, streamed):
        blocks = _blocks(message, "server_tool_call") or _blocks(message, "server_tool_call_chunk")
        assert [(b["id"], b["name"]) for b in blocks] == [(i, n) for i, n, _ in calls]
        assert all(word in str(b["args"]) for b, (_, _, word) in zip(blocks, calls, strict=True))
        assert all(b["extras"] == {"requires_approval": True} for b in blocks)
        assert message.tool_calls == []
        assert message.response_metadata["stop_reason"] == "requires_approval"
    assert all(isinstance(b["args"], dict) for b in _blocks(invoked, "server_tool_call"))


def test_real_refusal_while_an_approval_waits_names_the_calls_of_the_answer() -> None:
    replies = [
        Reply.from_capture(CAPTURES / "0.16.8/lab-features/04-approval-request-steps.sse"),
        Reply.from_capture(CAPTURES / "0.16.8/lab-features/05-message-while-pending.sse"),
    ]
    with FakeLettaServer(replies) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        history: list[Any] = [HumanMessage("call:memory_insert please")]
        history += [model.invoke(history), HumanMessage("hi, anybody there?")]
        with pytest.raises(LettaPendingApprovalError) as caught:
            model.invoke(history)
    assert caught.value.request_accepted is True  # refused inside a 200 stream
    assert caught.value.run_id == "run-e3f65ffe-1df0-4e93-9e48-537e25ca8820"
    (call,) = caught.value.pending_tool_calls
    assert (call["id"], call["name"]) == ("call_fake000062", "memory_insert")
    assert call["args"] == {"label": "human", "new_string": "The user likes tea."}
    assert len(server.stream_requests) == 2


def test_seed_era_json_prefix_leak_is_removed_from_the_answer() -> None:
    with _server("0.6.14/memgpt_agent/02-stream-tokens.sse") as server:
        message = ChatLetta(agent_id=AGENT, base_url=server.base_url).invoke("hi")
    assert message.text == HELLO


def test_in_stream_error_surfaces_typed_and_callbacks_get_the_partial_output() -> None:
    from langchain_core.callbacks import BaseCallbackHandler

    class Recorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.errors: list[tuple[BaseException, Any]] = []

        def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
            self.errors.append((error, kwargs.get("response")))

    recorder = Recorder()
    body = (
        b'data: {"message_type":"assistant_message","otid":"o-1","content":"Half an"}\n\n'
        b'data: {"message_type":"stop_reason","stop_reason":"llm_api_error"}\n\n'
        b'event: error\ndata: {"message_type":"error_message","error_type":"llm_rate_limit",'
        b'"message":"slow down","detail":"429 upstream"}\n\n'
        b"data: [DONE]\n\n"
    )
    with FakeLettaServer([Reply(body=body)]) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        with pytest.raises(LettaRateLimitError) as caught:
            list(model.stream("hi", config={"callbacks": [recorder]}))
    assert not caught.value.is_retryable  # the turn is in the agent's memory already
    error, response = recorder.errors[0]
    assert error is caught.value
    assert response.generations[0][0].message.text == "Half an"


def _history() -> list[Any]:
    earlier = AIMessage(
        content="Hi Bob",
        response_metadata={"model_provider": "letta", "agent_id": AGENT},
    )
    foreign = AIMessage(content="from another model")
    return [
        SystemMessage("be nice"),
        HumanMessage("hi"),
        earlier,
        HumanMessage("one", name="bob"),
        foreign,
        SystemMessage("note"),
        HumanMessage("two"),
    ]


@pytest.mark.parametrize(
    ("policy", "messages", "sent"),
    [
        ("new", [SystemMessage("s"), HumanMessage("a"), HumanMessage("b")], ["s", "a", "b"]),
        ("last", [HumanMessage("a"), HumanMessage("b")], ["b"]),
        ("all", [SystemMessage("s"), HumanMessage("a")], ["s", "a"]),
    ],
)
def test_history_policy_decides_what_is_sent(policy: str, messages: Any, sent: list[str]) -> None:
    with _server("0.16.8/letta_v1_agent/01-stream-steps.sse") as server:
        ChatLetta(agent_id=AGENT, base_url=server.base_url, history=policy).invoke(messages)
    body = server.stream_requests[0].json()
    assert [m["content"] for m in body["messages"]] == sent


def test_new_policy_never_forwards_what_another_model_said_or_ran() -> None:
    exchange = [
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 1}, "id": "theirs"}]),
        ToolMessage("3", tool_call_id="theirs"),
    ]
    sent = []
    for history in (
        [*_history(), *exchange, HumanMessage("three")],
        [HumanMessage("What is 1 + 2"), *exchange],  # no answer of ours at all
    ):
        with _server("0.16.8/letta_v1_agent/01-stream-steps.sse") as server:
            ChatLetta(agent_id=AGENT, base_url=server.base_url).invoke(history)
        sent.append(server.stream_requests[0].json()["messages"])
    first, second = sent
    assert [m["content"] for m in first] == ["one", "note", "two", "three"]
    assert [m["content"] for m in second] == ["What is 1 + 2"]


def test_only_messages_after_this_agents_answer_are_sent() -> None:
    history = [*_history()[:4], HumanMessage("two")]
    with _server("0.16.8/letta_v1_agent/01-stream-steps.sse") as server:
        ChatLetta(agent_id=AGENT, base_url=server.base_url).invoke(history)
    messages = server.stream_requests[0].json()["messages"]
    assert [(m["role"], m["content"], m.get("name")) for m in messages] == [
        ("user", "one", "bob"),
        ("user", "two", None),
    ]


def test_an_answer_of_another_agent_does_not_count_as_ours() -> None:
    other = AIMessage("x", response_metadata={"model_provider": "letta", "agent_id": "agent-2"})
    history = [HumanMessage("a"), other, HumanMessage("b")]
    with _server("0.16.8/letta_v1_agent/01-stream-steps.sse") as server:
        ChatLetta(agent_id=AGENT, base_url=server.base_url).invoke(history)
    assert [m["content"] for m in server.stream_requests[0].json()["messages"]] == ["b"]


def test_the_answer_is_recognised_on_the_next_turn() -> None:
    with _server("0.16.8/letta_v1_agent/01-stream-steps.sse", times=2) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        first = model.invoke([HumanMessage("hi")])
        model.invoke([HumanMessage("hi"), first, HumanMessage("and now?")])
    second = server.stream_requests[1].json()["messages"]
    assert [m["content"] for m in second] == ["and now?"]


def test_agent_can_be_chosen_per_call_from_the_config() -> None:
    with _server("0.16.8/letta_v1_agent/01-stream-steps.sse", times=2) as server:
        model = ChatLetta(base_url=server.base_url)
        model.invoke("hi", config={"configurable": {"agent_id": "agent-a"}})
        list(model.stream("hi", config={"configurable": {"agent_id": "agent-b"}}))
    assert [request.thread for request in server.stream_requests] == [
        ("agent-a", None),
        ("agent-b", None),
    ]


def test_a_missing_agent_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs an agent"):
        ChatLetta(base_url="http://127.0.0.1:9").invoke("hi")


def test_agent_id_is_validated_at_construction() -> None:
    with pytest.raises(ValueError, match="invalid Letta agent id"):
        ChatLetta(agent_id="../tools")


def test_model_maps_to_override_model_and_names_the_response() -> None:
    with _server("0.16.8/letta_v1_agent/01-stream-steps.sse") as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, model="openai/gpt-4o-mini")
        message = model.invoke("hi")
    assert server.stream_requests[0].json()["override_model"] == "openai/gpt-4o-mini"
    assert message.response_metadata["model_name"] == "openai/gpt-4o-mini"


def test_request_options_are_sent_from_the_model_and_per_call() -> None:
    with _server("0.16.8/letta_v1_agent/01-stream-steps.sse", times=2) as server:
        model = ChatLetta(
            agent_id=AGENT,
            base_url=server.base_url,
            include_return_message_types=["assistant_message"],
            enable_thinking=False,
            include_compaction_messages=True,
        )
        model.invoke("hi")
        model.invoke("hi", override_system="You are terse.", enable_thinking=True)
    first, second = (request.json() for request in server.stream_requests)
    assert first["include_return_message_types"] == ["assistant_message"]
    assert first["enable_thinking"] == "false"
    assert first["include_compaction_messages"] is True
    assert "override_system" not in first
    assert second["override_system"] == "You are terse."
    assert second["enable_thinking"] == "true"


@pytest.mark.parametrize(("version", "since"), [("0.16.6", "0.16.7"), ("0.11.7", "0.16.7")])
def test_an_option_the_server_lacks_is_refused_with_nothing_sent(version: str, since: str) -> None:
    with FakeLettaServer([], version=version) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        with pytest.raises(LettaUnsupportedFeatureError) as caught:
            model.invoke("hi", override_system="You are terse.")
    assert f"Letta {version} does not support 'override_system'" in str(caught.value)
    assert f"from Letta {since} on" in str(caught.value)
    assert server.stream_requests == []


async def test_an_option_the_server_lacks_is_refused_async() -> None:
    with FakeLettaServer([], version="0.9.1") as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, enable_thinking=False)
        with pytest.raises(LettaUnsupportedFeatureError, match="enable_thinking"):
            await model.ainvoke("hi")
    assert server.stream_requests == []


def test_images_are_sent_as_letta_image_parts() -> None:
    image = HumanMessage(
        content=[
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "image", "url": "https://example.invalid/cat.png"},
        ]
    )
    with _server("0.16.8/letta_v1_agent/01-stream-steps.sse") as server:
        ChatLetta(agent_id=AGENT, base_url=server.base_url).invoke([image])
    content = server.stream_requests[0].json()["messages"][0]["content"]
    assert content == [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.invalid/cat.png"}},
    ]


def test_ls_params_name_letta_and_honour_a_per_call_model() -> None:
    model = ChatLetta(agent_id=AGENT, temperature=0.2)
    params = model._get_ls_params()
    assert params["ls_provider"] == "letta"
    assert params["ls_model_type"] == "chat"
    assert params["ls_temperature"] == 0.2
    assert model._get_ls_params(model="m-override")["ls_model_name"] == "m-override"


def test_secrets_stay_out_of_the_models_repr() -> None:
    model = ChatLetta(agent_id=AGENT, api_key="sk-very-secret", password="pw-secret")
    assert "sk-very-secret" not in repr(model)
    assert "pw-secret" not in repr(model)


@pytest.mark.filterwarnings("ignore:The function `load` is in beta")
def test_dumpd_and_load_round_trip_keeps_secrets_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_core.load import dumpd, load

    model = ChatLetta(agent_id=AGENT, api_key="sk-very-secret", history="last")
    saved = dumpd(model)
    assert "sk-very-secret" not in str(saved)
    monkeypatch.setenv("LETTA_API_KEY", "sk-from-env")
    loaded = load(
        saved,
        valid_namespaces=["langchain_letta"],
        allowed_objects=[ChatLetta],
        secrets_from_env=True,
    )
    assert isinstance(loaded, ChatLetta)
    assert loaded.history == "last"
    assert loaded.api_key is not None
    assert loaded.api_key.get_secret_value() == "sk-from-env"


def _graph_chunks(server: FakeLettaServer) -> Iterator[tuple[Any, Any]]:
    from langgraph.graph import START, MessagesState, StateGraph

    model = ChatLetta(agent_id=AGENT, base_url=server.base_url)

    def agent(state: MessagesState) -> dict[str, list[Any]]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState).add_node("agent", agent).add_edge(START, "agent").compile()
    yield from graph.stream(
        {"messages": [HumanMessage("Please remember that I like tea.")]},
        stream_mode=["messages", "values"],
    )


def test_chatletta_streams_as_a_langgraph_node() -> None:
    with _server("0.16.8/memgpt_v2_agent/04-tool-call-tokens.sse") as server:
        parts = list(_graph_chunks(server))
    chunks = [data[0] for mode, data in parts if mode == "messages"]
    assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    assert "".join(chunk.text for chunk in chunks) == HELLO
    assert any(
        b.get("type") == "server_tool_call_chunk"
        for c in chunks
        for b in c.content
        if isinstance(b, dict)
    )
    final = [data for mode, data in parts if mode == "values"][-1]["messages"]
    assert [type(m).__name__ for m in final] == ["HumanMessage", "AIMessage"]
    assert final[-1].text == HELLO
    assert final[-1].tool_calls == []
    assert server.stream_requests[0].json()["messages"][0]["content"] == (
        "Please remember that I like tea."
    )


def _expected_from_capture(path: Any) -> dict[str, Any]:
    """What a user should get, read from the capture without the package."""
    from tests.conftest import expected_payloads

    payloads = [p for _, p in expected_payloads(path) if isinstance(p, dict)]
    texts: dict[str, str] = {}
    for p in payloads:
        if p.get("message_type") == "assistant_message":
            key = p.get("otid") or p.get("id")
            texts[key] = texts.get(key, "") + (p.get("content") or p.get("assistant_message") or "")
    leak = '{"message":"'
    answer = "\n\n".join(t[len(leak) :] if t.startswith(leak) else t for t in texts.values())
    usage = next(p for p in payloads if p.get("message_type") == "usage_statistics")
    returns = [p for p in payloads if p.get("message_type") == "tool_return_message"]
    approvals = {
        call["tool_call_id"]
        for p in payloads
        if p.get("message_type") == "approval_request_message"
        for call in (p["tool_calls"] if isinstance(p["tool_calls"], list) else [p["tool_calls"]])
    }
    kept_whole = [p for p in payloads if p.get("message_type") not in _STANDARD_BLOCK_TYPES]
    return {
        "text": answer,
        "usage": usage,
        "returns": len(returns),
        "approvals": approvals,
        "kept_whole": kept_whole,
    }


_STANDARD_BLOCK_TYPES = {
    "assistant_message",
    "reasoning_message",
    "hidden_reasoning_message",
    "tool_call_message",
    "approval_request_message",
    "tool_return_message",
    "stop_reason",
    "usage_statistics",
    "ping",
}
"""Letta messages with a standard LangChain block (or metadata); every other one is kept
whole in a ``non_standard`` block."""


def _clean_captures() -> list[Any]:
    from tests.test_replay_captures import CLEAN

    return [p for p in CLEAN if "usage_statistics" in p.read_text()]


@pytest.mark.parametrize("path", _clean_captures(), ids=lambda p: str(p.relative_to(CAPTURES)))
def test_every_clean_capture_gives_the_message_its_frames_describe(path: Any) -> None:
    expected = _expected_from_capture(path)
    invoked, streamed = _invoked_and_streamed(path)
    for message in (invoked, streamed):
        assert message.text == expected["text"]
        assert len(_blocks(message, "text")) == (1 if expected["text"] else 0)
        assert len(_blocks(message, "server_tool_result")) == expected["returns"]
        assert message.tool_calls == []
        waiting = [
            b
            for b in _blocks(message, "server_tool_call")
            + _blocks(message, "server_tool_call_chunk")
            if b.get("extras", {}).get("requires_approval")
        ]
        assert {b["id"] for b in waiting} == expected["approvals"]
        assert [b["value"] for b in _blocks(message, "non_standard")] == expected["kept_whole"]
        usage = message.usage_metadata
        assert usage is not None
        assert usage["input_tokens"] == expected["usage"]["prompt_tokens"]
        assert usage["output_tokens"] == expected["usage"]["completion_tokens"]
        assert message.response_metadata["step_count"] == expected["usage"]["step_count"]


def test_a_global_llm_cache_never_answers_for_the_agent() -> None:
    """A stateful agent must hear every turn: the global cache is ignored unless asked."""
    from langchain_core.caches import InMemoryCache
    from langchain_core.globals import set_llm_cache

    set_llm_cache(InMemoryCache())
    try:
        with _server("0.16.8/letta_v1_agent/01-stream-steps.sse", times=3) as server:
            model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
            first, second = model.invoke("same question"), model.invoke("same question")
            assert len(server.stream_requests) == 2
            opted_in = ChatLetta(agent_id=AGENT, base_url=server.base_url, cache=True)
            opted_in.invoke("cached question")
            opted_in.invoke("cached question")
            assert len(server.stream_requests) == 3  # only when asked for explicitly
    finally:
        set_llm_cache(None)
    assert first.text == second.text == HELLO


def test_a_used_model_can_be_copied_pickled_and_closed() -> None:
    import asyncio
    import copy
    import pickle

    with _server("0.16.8/letta_v1_agent/01-stream-steps.sse", times=8) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        model.invoke("sync")
        asyncio.run(model.ainvoke("async"))
        asyncio.run(model.ainvoke("another event loop"))  # a new loop gets its own client
        clone = copy.deepcopy(model)
        thawed = pickle.loads(pickle.dumps(model))  # noqa: S301 - our own object
        assert clone.invoke("from the copy").text == HELLO
        assert thawed.invoke("from the pickle").text == HELLO
        with model:
            assert model.invoke("inside with").text == HELLO
        assert model.invoke("after close: reconnects").text == HELLO

        async def async_with() -> str:
            async with ChatLetta(agent_id=AGENT, base_url=server.base_url) as scoped:
                return (await scoped.ainvoke("async with")).text

        assert asyncio.run(async_with()) == HELLO
    assert len(server.stream_requests) == 8


@pytest.mark.parametrize(("version", "applied"), [("0.16.8", True), ("0.16.3", False)])
def test_a_model_override_is_sent_only_where_the_server_applies_it(
    version: str, applied: bool
) -> None:
    """Letta applies override_model from 0.16.4; before, the answer would name the wrong model."""
    from langchain_letta.errors import LettaUnsupportedFeatureError

    turn = Reply.from_capture(CAPTURES / "0.16.8/letta_v1_agent/01-stream-steps.sse")
    with FakeLettaServer([turn], version=version) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, model="openai/gpt-4o-mini")
        if applied:
            answer = model.invoke("hi")
            assert answer.response_metadata["model_name"] == "openai/gpt-4o-mini"
            assert server.stream_requests[0].json()["override_model"] == "openai/gpt-4o-mini"
        else:
            with pytest.raises(LettaUnsupportedFeatureError, match="model="):
                model.invoke("hi")
            assert server.stream_requests == []
