"""Turns recorded from real Letta servers (0.16.8, 0.11.7 and 0.6.14), replayed with vcrpy.

``make record`` made the cassettes in ``cassettes/<release>/`` (see
``cassettes/README.md``); here they replay with ``record_mode="none"``, so a
request that is not in its cassette fails instead of reaching any network. Each
test checks what a user gets from ``ChatLetta``: the text, the reasoning and
server tool blocks, usage and metadata, or the typed error. The replayed body
arrives as one chunk, through the same ``httpx`` streaming path (``stream=True``)
and SSE parser as a live stream. 0.16.8's agent is of its default type,
``letta_v1_agent``: no reasoning from a non-reasoning model, no ``send_message`` and
no heartbeats, where 0.11.7 and 0.6.14 think aloud in each step.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.runnables import RunnableLambda
from vcr.errors import CannotOverwriteExistingCassetteException

from langchain_letta import ChatLetta, LettaClient, OutgoingMessage, StreamRequest
from langchain_letta.errors import (
    LettaAPIError,
    LettaError,
    LettaInvalidRequestError,
    LettaNotFoundError,
)
from scripts.cassettes import (
    AGENT,
    CASSETTES,
    CONVERSATION,
    DIALECTS,
    RECORD_SECRETS,
    SCENARIOS,
    UNKNOWN_AGENT,
    cassette_path,
    model_params,
    scenarios_of,
    use_cassette,
)

VERSIONS = list(DIALECTS)
TEXT = "Hello from the fake model"
# What each release's agent answered, as recorded (the fake LLM's counts are
# deterministic: a function of the prompt Letta built).
PLAIN_USAGE = {"0.11.7": (1843, 10), "0.6.14": (1549, 10), "0.16.8": (677, 10)}
MEMORY_TOOL = {"0.11.7": "memory_insert", "0.6.14": "core_memory_append", "0.16.8": "memory_insert"}
REASONS = {"0.11.7": True, "0.6.14": True, "0.16.8": False}
"""Whether the release's agent sends a reasoning message before each answer or call."""

versions = pytest.mark.parametrize("version", VERSIONS)


def model(version: str, scenario: str) -> ChatLetta:
    return ChatLetta(**model_params(version, SCENARIOS[scenario]))


def invoke(version: str, scenario: str) -> AIMessage:
    with use_cassette(version, scenario, "none"):
        return model(version, scenario).invoke(SCENARIOS[scenario].prompt)


def stream(version: str, scenario: str) -> list[AIMessageChunk]:
    with use_cassette(version, scenario, "none"):
        return list(model(version, scenario).stream(SCENARIOS[scenario].prompt))


def letta_events(version: str, scenario: str) -> list[str]:
    """The ``letta.*`` custom events of a streamed turn, one per Letta event."""
    names: list[str] = []

    class Names(BaseCallbackHandler):
        def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
            names.append(name)

    chat = model(version, scenario)
    with use_cassette(version, scenario, "none"):
        RunnableLambda(lambda text: list(chat.stream(text))).invoke(
            SCENARIOS[scenario].prompt, config={"callbacks": [Names()]}
        )
    return names


def failure(version: str, scenario: str) -> LettaError:
    with use_cassette(version, scenario, "none"), pytest.raises(LettaError) as caught:
        model(version, scenario).invoke(SCENARIOS[scenario].prompt)
    return caught.value


def thinking(version: str, kinds: list[str]) -> list[str]:
    """``kinds`` with a reasoning block before each step where the agent reasons."""
    if not REASONS[version]:
        return [kind for kind in kinds if kind != "reasoning"]
    return kinds


def block_types(message: AIMessage) -> list[str]:
    return [block["type"] for block in message.content_blocks]


def blocks(message: AIMessage, kind: str) -> list[Any]:
    return [block for block in message.content_blocks if block["type"] == kind]


def check_metadata(message: AIMessage, steps: int) -> None:
    metadata = message.response_metadata
    assert metadata["model_provider"] == "letta"
    assert metadata["agent_id"] == AGENT
    assert metadata["stop_reason"] == "end_turn"
    assert metadata["step_count"] == steps
    assert len(metadata["letta_message_ids"]) >= 1
    assert all(mid.startswith("message-") for mid in metadata["letta_message_ids"])


def test_every_scenario_was_recorded_for_every_release() -> None:
    for version in VERSIONS:
        for name in scenarios_of(version):
            assert cassette_path(version, name).is_file(), (version, name)


def test_no_secret_reaches_a_cassette() -> None:
    files = sorted(CASSETTES.rglob("*.yaml"))
    assert len(files) == sum(len(scenarios_of(version)) for version in VERSIONS)
    for path in files:
        text = path.read_text()
        for secret in RECORD_SECRETS.values():
            assert secret not in text, path
        assert "Bearer" not in text, path
        assert "authorization:\n      - <filtered>" in text, path
        assert "otid" not in text.split("response:")[0], path  # matching ignores random otids


@versions
def test_plain_message(version: str) -> None:
    message = invoke(version, "plain")
    assert message.text == TEXT
    assert block_types(message) == thinking(version, ["reasoning", "text"])
    if REASONS[version]:
        assert blocks(message, "reasoning")[0]["reasoning"] == "thinking..."
    check_metadata(message, steps=1)
    prompt_tokens, completion_tokens = PLAIN_USAGE[version]
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] == prompt_tokens
    assert message.usage_metadata["output_tokens"] == completion_tokens
    assert message.usage_metadata["total_tokens"] == prompt_tokens + completion_tokens


@versions
async def test_plain_message_async(version: str) -> None:
    with use_cassette(version, "plain", "none"):
        message = await model(version, "plain").ainvoke(SCENARIOS["plain"].prompt)
    assert message.text == TEXT
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] == PLAIN_USAGE[version][0]


@versions
def test_plain_message_through_the_streaming_client(version: str) -> None:
    request = StreamRequest(messages=[OutgoingMessage(content="hi")], stream_tokens=False)
    base_url = model_params(version, SCENARIOS["plain"])["base_url"]
    with (
        use_cassette(version, "plain", "none"),
        LettaClient(base_url=base_url, dialect=DIALECTS[version], background=False) as client,
    ):
        events = client.stream(AGENT, request)
        kinds = [event.message_type for event in events]
    if version == "0.16.8":  # the ping that opens the stream is consumed
        assert kinds == ["assistant_message", "stop_reason", "usage_statistics"]
        assert events.progress.stop_reason == "end_turn"
    elif version == "0.11.7":
        assert kinds == [
            "reasoning_message",
            "assistant_message",
            "stop_reason",
            "usage_statistics",
        ]
        assert events.progress.stop_reason == "end_turn"
    else:  # 0.6.14 sends no stop_reason
        assert kinds == ["reasoning_message", "assistant_message", "usage_statistics"]
    assert events.progress.events_received == len(kinds)


@versions
def test_a_request_missing_from_the_cassette_fails_instead_of_going_out(version: str) -> None:
    with (
        use_cassette(version, "plain", "none"),
        pytest.raises(CannotOverwriteExistingCassetteException),
    ):
        model(version, "plain").invoke("a message nobody recorded")


@versions
def test_token_streaming(version: str) -> None:
    chunks = stream(version, "tokens")
    # The body is read at once, so its deltas come merged into one chunk: the deltas
    # themselves are the Letta events.
    deltas = [name for name in letta_events(version, "tokens") if name == "letta.assistant_message"]
    assert len(deltas) >= 5  # "Hello", " from", " the", " fake", " model"
    text_blocks = [block for chunk in chunks for block in chunk.content if block["type"] == "text"]
    assert len({block["index"] for block in text_blocks}) == 1
    assert "".join(chunk.text for chunk in chunks) == TEXT
    assert chunks[-1].chunk_position == "last"
    assert [chunk for chunk in chunks if chunk.usage_metadata] == [chunks[-1]]
    aggregate = chunks[0]
    for chunk in chunks[1:]:
        aggregate += chunk
    assert aggregate.text == TEXT
    assert aggregate.response_metadata["stop_reason"] == "end_turn"
    assert aggregate.response_metadata["step_count"] == 1
    # The same cassette through invoke: one text block, as from the stream.
    message = invoke(version, "tokens")
    assert message.text == TEXT
    assert block_types(message) == thinking(version, ["reasoning", "text"])


@versions
def test_server_tool_call(version: str) -> None:
    message = invoke(version, "server_tool")
    assert message.text == TEXT
    assert block_types(message) == thinking(
        version, ["reasoning", "server_tool_call", "server_tool_result", "reasoning", "text"]
    )
    (call,) = blocks(message, "server_tool_call")
    assert call["name"] == "conversation_search"
    assert call["args"]["query"] == "hello"
    (result,) = blocks(message, "server_tool_result")
    assert result["status"] == "success"
    assert result["tool_call_id"] == call["id"]
    assert not message.tool_calls  # Letta ran the tool: nothing for LangGraph to run
    check_metadata(message, steps=2)
    assert len(message.response_metadata["letta_message_ids"]) == 3


@versions
def test_memory_edit(version: str) -> None:
    message = invoke(version, "memory_edit")
    assert message.text == TEXT
    (call,) = blocks(message, "server_tool_call")
    assert call["name"] == MEMORY_TOOL[version]
    assert call["args"]["label"] == "human"
    assert "The user likes tea." in call["args"].values()
    # letta_v1_agent (0.16.8) continues after a tool without being asked to
    assert call["args"].get("request_heartbeat") is (None if version == "0.16.8" else True)
    (result,) = blocks(message, "server_tool_result")
    assert result["status"] == "success"
    check_metadata(message, steps=2)
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] == 20  # 10 per step, summed


@versions
def test_several_steps_token_streamed(version: str) -> None:
    chunks = stream(version, "several_steps")
    aggregate = chunks[0]
    for chunk in chunks[1:]:
        aggregate += chunk
    assert aggregate.text == TEXT
    assert aggregate.response_metadata["step_count"] >= 2
    assert chunks[-1].chunk_position == "last"
    assert aggregate.usage_metadata is not None
    assert aggregate.usage_metadata["output_tokens"] >= 20
    message = invoke(version, "several_steps")
    assert message.response_metadata["step_count"] >= 2
    kinds = block_types(message)
    assert kinds[-1] == "text"
    assert kinds.count("reasoning") == (2 if REASONS[version] else 0)
    assert "server_tool_result" in kinds
    # Both servers' own token parsers mangle the streamed tool arguments (a number or a
    # boolean loses its JSON shape: see cassettes/README.md). The user gets them as the
    # server sent them: parsed where they still parse, as a raw chunk where not.
    (call,) = [b for b in message.content_blocks if b["type"].startswith("server_tool_call")]
    assert call["name"] == MEMORY_TOOL[version]
    assert "The user likes tea." in str(call["args"])


@versions
def test_unknown_agent(version: str) -> None:
    error = failure(version, "unknown_agent")
    assert isinstance(error, LettaNotFoundError)
    # 0.11.7 answers 404; 0.6.14 answers 500 "Agent not found…", recognised as not-found.
    assert error.status_code == {"0.11.7": 404, "0.6.14": 500, "0.16.8": 404}[version]
    assert UNKNOWN_AGENT in str(error.detail)
    assert not error.is_retryable
    assert not error.request_accepted


@versions
def test_validation_error(version: str) -> None:
    # The other release's dialect, forced (no auto switch): the server's own 422.
    error = failure(version, "validation_error")
    assert isinstance(error, LettaInvalidRequestError)
    assert error.status_code == 422
    missing = {"0.11.7": "content", "0.6.14": "text", "0.16.8": "content"}[version]
    if version == "0.16.8":  # detail is the Python repr of pydantic's error list
        assert f"'{missing}'), 'msg': 'Field required'" in str(error.detail)
    else:
        assert f"{missing}: Field required" in str(error.detail)
    assert not error.is_retryable
    assert not error.request_accepted


@versions
def test_upstream_llm_failure(version: str) -> None:
    error = failure(version, "llm_error")
    assert type(error) is LettaAPIError
    assert error.request_accepted  # the user's message is in the agent's memory
    assert not error.is_retryable
    if version == "0.11.7":
        # HTTP 500 whose body is an event stream: stop_reason "error", then event: error
        assert error.status_code == 500
        assert error.error_type == "INTERNAL_SERVER_ERROR"
        assert "fake upstream failure" in str(error)
    elif version == "0.16.8":
        # HTTP 200, stop_reason llm_api_error, event: error + error_message, [DONE]
        assert error.status_code is None
        assert error.error_type == "llm_error"
        assert "fake upstream failure" in str(error)
    else:
        # HTTP 200, then data: {"error": ...} and [DONE]
        assert error.status_code is None
        assert "Stream failed" in str(error)


def test_approval_request() -> None:
    # 0.16.8, memory_insert gated for approval: the run stops before the tool runs, and
    # the call waiting for approval is in the message (never in tool_calls).
    message = invoke("0.16.8", "approval_request")
    assert message.text == ""
    assert message.response_metadata["stop_reason"] == "requires_approval"
    assert message.response_metadata["step_count"] == 1
    assert not message.tool_calls
    (call,) = [
        b for b in message.content if isinstance(b, dict) and b["type"] == "server_tool_call"
    ]
    assert call["name"] == "memory_insert"
    assert call["id"].startswith("call_")
    assert isinstance(call["args"], dict)
    assert call["extras"]["requires_approval"] is True


def test_conversation() -> None:
    # 0.16.8, a conversation of the agent: the client asks /v1/health/ first (only
    # 0.16.2+ have conversations, and an older server would ignore the route), then
    # posts to the conversation's own route; the answer names the conversation.
    prompt = SCENARIOS["conversation"].prompt
    with use_cassette("0.16.8", "conversation", "none") as cassette:
        message = model("0.16.8", "conversation").invoke(prompt)
    assert [(request.method, request.path) for request in cassette.requests] == [
        ("GET", "/v1/health/"),
        ("POST", f"/v1/conversations/{CONVERSATION}/messages"),
    ]
    assert cassette.all_played
    assert message.text == TEXT
    assert block_types(message) == ["text"]
    check_metadata(message, steps=1)
    assert message.response_metadata["conversation_id"] == CONVERSATION
    # as make record makes it: after the other scenarios, whose memory edits the
    # conversation's context shares
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] == 701


def test_a_conversation_id_is_part_of_the_recorded_request() -> None:
    # Replay matches the path: another conversation's message is not this cassette's.
    with (
        use_cassette("0.16.8", "conversation", "none"),
        pytest.raises(CannotOverwriteExistingCassetteException),
    ):
        model("0.16.8", "conversation").invoke(
            SCENARIOS["conversation"].prompt, conversation_id="conv-another"
        )
