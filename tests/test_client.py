"""The streaming client against the fake server: dialects, auth, ids and odd streams."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import httpx
import pytest
import sniffio
from pydantic import SecretStr

import langchain_letta._wire.server as client_module
from langchain_letta import AsyncLettaClient, LettaClient, OutgoingMessage, StreamRequest
from langchain_letta.errors import (
    LettaAPIError,
    LettaAuthenticationError,
    LettaConflictError,
    LettaConnectionError,
    LettaInvalidRequestError,
    LettaNothingPendingError,
    LettaProtocolError,
    LettaRateLimitError,
    LettaStreamCancelledError,
    LettaUnsupportedFeatureError,
)
from langchain_letta.events import AssistantMessage, UnknownEvent
from langchain_letta.testing import FakeLettaServer, RecordedRequest, Reply
from tests.conftest import CAPTURES

AGENT = "agent-47c2ea9a-30ee-4910-923a-393bbc26a7d7"
REQUEST = StreamRequest(messages=[OutgoingMessage(content="hi", name="bob")])
HELLO = Reply.events({"message_type": "assistant_message", "content": "Hello"})
SEED_STREAM = Reply.from_capture(CAPTURES / "0.6.14/memgpt_agent/01-stream-steps.sse")
SEED_REJECTS_CONTENT = Reply.json(
    422,
    {
        "detail": [
            {
                "type": "missing",
                "loc": ["body", "messages", 0, "text"],
                "msg": "Field required",
                "input": {"role": "user", "content": "hi"},
            }
        ]
    },
)


def _run(server: FakeLettaServer, request: StreamRequest = REQUEST, **options: Any) -> list[object]:
    options.setdefault("max_retries", 0)  # these tests look at single answers; retries have theirs
    with LettaClient(base_url=server.base_url, **options) as client:
        return list(client.stream(AGENT, request))


@pytest.mark.parametrize(
    ("version", "message_keys", "has_config"),
    [
        ("0.6.14", {"role", "text", "name"}, True),
        ("0.6.15", {"role", "content", "name"}, True),
        ("0.11.7", {"role", "content", "name", "otid"}, False),
        (None, {"role", "content", "name", "otid"}, False),  # health probe fails: current
    ],
)
def test_auto_dialect_follows_the_servers_version(
    version: str | None, message_keys: set[str], has_config: bool
) -> None:
    with FakeLettaServer([HELLO], version=version) as server:
        _run(server)
    body = server.stream_requests[0].json()
    assert set(body["messages"][0]) == message_keys
    assert ("config" in body) is has_config
    assert body["stream_tokens"] is True


def test_health_is_probed_once_per_client() -> None:
    with FakeLettaServer([HELLO, HELLO], version="0.6.14") as server:
        with LettaClient(base_url=server.base_url) as client:
            list(client.stream(AGENT, REQUEST))
            list(client.stream(AGENT, REQUEST))
    probes = [r for r in server.received if r.method == "GET"]
    assert len(probes) == 1
    assert len(server.stream_requests) == 2


def test_a_422_naming_text_switches_to_the_seed_dialect_and_sends_again() -> None:
    # The health probe fails, so the client starts in the current dialect; the seed-era
    # server rejects `content` with a 422 (nothing accepted), and the client resends.
    with FakeLettaServer([SEED_REJECTS_CONTENT, SEED_STREAM], version=None) as server:
        events = _run(server)
    first, second = (request.json() for request in server.stream_requests)
    assert "content" in first["messages"][0]
    assert second["messages"][0] == {"role": "user", "text": "hi", "name": "bob"}
    assert [e.message_type for e in events] == [  # type: ignore[attr-defined]
        "reasoning_message",
        "assistant_message",
        "usage_statistics",
    ]


def test_a_fixed_dialect_never_switches() -> None:
    with FakeLettaServer([SEED_REJECTS_CONTENT, SEED_STREAM]) as server:
        with pytest.raises(LettaInvalidRequestError, match="422"):
            _run(server, dialect="current")
    assert len(server.stream_requests) == 1


def test_dialect_switches_at_most_once_per_stream() -> None:
    rejects_text = Reply.json(
        422, {"detail": "[{'type': 'missing', 'loc': ('body', 'messages', 0, 'content')}]"}
    )
    with FakeLettaServer([SEED_REJECTS_CONTENT, rejects_text, HELLO], version=None) as server:
        with pytest.raises(LettaInvalidRequestError, match="422"):
            _run(server)
    assert len(server.stream_requests) == 2


def test_credentials_go_in_headers_and_never_in_repr_or_errors() -> None:
    with FakeLettaServer([Reply.json(401, {"detail": "Unauthorized"})]) as server:
        client = LettaClient(
            base_url=server.base_url,
            api_key=SecretStr("sk-let-secret-key"),
            password="hunter2",
            user_id="user-00000000-0000-4000-8000-000000000000",
        )
        with pytest.raises(LettaAuthenticationError) as caught:
            list(client.stream(AGENT, REQUEST))
        client.close()
    headers = server.stream_requests[0].headers
    assert headers["authorization"] == "Bearer sk-let-secret-key"
    assert headers["x-bare-password"] == "password hunter2"
    assert headers["user_id"] == "user-00000000-0000-4000-8000-000000000000"
    for text in (repr(client), str(caught.value), repr(caught.value)):
        assert "sk-let-secret-key" not in text
        assert "hunter2" not in text


def test_api_key_and_base_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeLettaServer([HELLO]) as server:
        monkeypatch.setenv("LETTA_BASE_URL", server.base_url)
        monkeypatch.setenv("LETTA_API_KEY", "env-key")
        with LettaClient() as client:
            list(client.stream(AGENT, REQUEST))
    assert server.stream_requests[0].headers["authorization"] == "Bearer env-key"


def test_default_base_url_is_the_local_letta_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LETTA_BASE_URL", raising=False)
    assert LettaClient().base_url == "http://localhost:8283"


@pytest.mark.parametrize(
    "agent_id", ["../tools", "agent-1/../../v1/tools", "agent 1", "", "agent-%2e%2e", "a?b=c"]
)
def test_agent_ids_that_could_reach_another_endpoint_are_refused(agent_id: str) -> None:
    with FakeLettaServer([HELLO]) as server:
        with pytest.raises(ValueError, match="invalid Letta agent id"):
            _run_with_agent(server, agent_id)
    assert server.stream_requests == []


def _run_with_agent(server: FakeLettaServer, agent_id: str) -> None:
    with LettaClient(base_url=server.base_url) as client:
        list(client.stream(agent_id, REQUEST))


@pytest.mark.parametrize(
    ("version", "path", "agent_in_body"),
    [
        ("0.16.5", f"/v1/agents/{AGENT}/messages/stream", False),
        ("0.11.7", f"/v1/agents/{AGENT}/messages/stream", False),
        ("0.16.6", "/v1/conversations/default/messages", True),
        ("0.16.8", "/v1/conversations/default/messages", True),
    ],
)
def test_the_agents_own_thread_goes_agent_direct_where_the_server_locks_it(
    version: str, path: str, agent_in_body: bool
) -> None:
    with FakeLettaServer([HELLO], version=version) as server:
        _run(server)
    (sent,) = server.stream_requests
    assert sent.path == path
    assert ("agent_id" in sent.json()) is agent_in_body
    assert sent.thread == (AGENT, None)


def test_read_timeout_never_drops_below_the_ping_interval() -> None:
    client = LettaClient(timeout=5)
    assert client.timeout.read is not None
    assert client.timeout.read >= 35
    assert client.timeout.connect == 5.0


def test_refused_connection_is_a_retryable_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with LettaClient(
        base_url=f"http://127.0.0.1:{port}", dialect="current", max_retries=0
    ) as client:
        with pytest.raises(LettaConnectionError) as caught:
            list(client.stream(AGENT, REQUEST))
    assert caught.value.is_retryable
    assert not caught.value.request_accepted


def test_unknown_event_types_are_kept_whole() -> None:
    future = {"message_type": "hologram_message", "id": "m-1", "beam": {"x": 1}}
    reply = Reply.events(future, {"message_type": "assistant_message", "content": "ok"})
    with FakeLettaServer([reply]) as server:
        events = _run(server)
    assert isinstance(events[0], UnknownEvent)
    assert events[0].raw == future
    assert isinstance(events[1], AssistantMessage)


def test_unknown_named_sse_events_are_kept_with_their_name() -> None:
    body = b'event: progress\ndata: {"pct": 50}\n\ndata: [DONE]\n\n'
    with FakeLettaServer([Reply(body=body)]) as server:
        events = _run(server)
    assert len(events) == 1
    assert isinstance(events[0], UnknownEvent)
    assert events[0].message_type == "event:progress"


def test_malformed_frame_is_reported_with_context_after_the_good_events() -> None:
    body = (
        b'data: {"message_type":"assistant_message","content":"partial"}\n\n'
        b'data: {"message_type": "assistant_message", "content": \n\n'
        b"data: [DONE]\n\n"
    )
    delivered: list[object] = []
    with FakeLettaServer([Reply(body=body)]) as server:
        with LettaClient(base_url=server.base_url) as client:
            with pytest.raises(LettaProtocolError) as caught:
                delivered.extend(client.stream(AGENT, REQUEST))
    assert [e.text for e in delivered] == ["partial"]  # type: ignore[attr-defined]
    assert "malformed frame #2" in str(caught.value)
    assert '"content": ' in str(caught.value)


def test_a_known_type_with_wrong_field_types_is_a_protocol_error() -> None:
    reply = Reply.events({"message_type": "usage_statistics", "total_tokens": "many"})
    with FakeLettaServer([reply]) as server:
        with pytest.raises(LettaProtocolError, match="malformed frame #1"):
            _run(server)


def test_cancelled_event_raises_a_typed_cancellation() -> None:
    body = (
        b'data: {"message_type": "stop_reason", "stop_reason": "cancelled"}\n\n'
        b'event: cancelled\ndata: {"message": "Run was cancelled"}\n\n'
    )
    with FakeLettaServer([Reply(body=body)]) as server:
        with pytest.raises(LettaStreamCancelledError) as caught:
            _run(server)
    assert caught.value.progress is not None
    assert caught.value.progress.stop_reason == "cancelled"


def test_a_json_answer_where_a_stream_was_expected_is_a_protocol_error() -> None:
    with FakeLettaServer([Reply.json(200, {"messages": []})]) as server:
        with pytest.raises(LettaProtocolError, match="expected an event stream"):
            _run(server)


def test_an_html_error_page_becomes_a_readable_typed_error() -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    reply = Reply(status=502, body=page, content_type="text/html")
    with FakeLettaServer([reply]) as server, pytest.raises(LettaAPIError) as caught:
        _run(server)
    assert "502 Bad Gateway" in str(caught.value)
    assert caught.value.is_retryable


def test_rate_limit_carries_retry_after() -> None:
    reply = Reply.json(429, {"detail": "slow down"}, headers=(("retry-after", "7"),))
    with FakeLettaServer([reply]) as server, pytest.raises(LettaRateLimitError) as caught:
        _run(server)
    assert caught.value.retry_after == 7.0
    assert caught.value.is_retryable


def test_closing_the_stream_early_stops_reading() -> None:
    frames = [{"message_type": "assistant_message", "content": str(n)} for n in range(200)]
    with FakeLettaServer([Reply.events(*frames)]) as server:
        with LettaClient(base_url=server.base_url) as client:
            stream = client.stream(AGENT, REQUEST)
            first = next(iter(stream))
            stream.close()
            assert first.text == "0"  # type: ignore[attr-defined]
            assert list(stream) == []


def test_request_options_reach_the_server_in_the_current_dialect() -> None:
    request = StreamRequest(
        messages=[OutgoingMessage(content=[{"type": "text", "text": "hi"}])],
        stream_tokens=False,
        background=True,
        max_steps=3,
        include_return_message_types=["assistant_message"],
        override_model="openai/gpt-4o-mini",
    )
    with FakeLettaServer([HELLO]) as server:
        _run(server, request)
    body = server.stream_requests[0].json()
    assert body["messages"][0]["content"] == [{"type": "text", "text": "hi"}]
    assert body["background"] is True
    assert body["max_steps"] == 3
    assert body["include_return_message_types"] == ["assistant_message"]
    assert body["override_model"] == "openai/gpt-4o-mini"
    assert body["include_pings"] is True


def test_scripted_replies_can_depend_on_the_request() -> None:
    def answer(request: RecordedRequest) -> Reply:
        text = json.loads(request.body)["messages"][0]["content"]
        return Reply.events({"message_type": "assistant_message", "content": text.upper()})

    with FakeLettaServer(answer) as server:
        events = _run(server)
    assert events[0].text == "HI"  # type: ignore[attr-defined]


async def test_async_client_probes_the_dialect_too() -> None:
    with FakeLettaServer([SEED_STREAM], version="0.6.14") as server:
        async with AsyncLettaClient(base_url=server.base_url) as client:
            events = [event async for event in client.stream(AGENT, REQUEST)]
    assert "text" in server.stream_requests[0].json()["messages"][0]
    assert len(events) == 3


COMPACTING = StreamRequest(
    messages=[OutgoingMessage(content="hi")], include_compaction_messages=True
)


def test_a_field_the_servers_release_lacks_is_refused_before_anything_is_sent() -> None:
    with FakeLettaServer([HELLO], version="0.16.4") as server:
        with pytest.raises(LettaUnsupportedFeatureError) as caught:
            _run(server, COMPACTING)
    assert "include_compaction_messages" in str(caught.value)
    assert "0.16.4" in str(caught.value)
    assert "0.16.5" in str(caught.value)
    assert server.stream_requests == []


async def test_async_client_refuses_it_too() -> None:
    with FakeLettaServer([HELLO], version="0.16.4") as server:
        async with AsyncLettaClient(base_url=server.base_url, max_retries=0) as client:
            with pytest.raises(LettaUnsupportedFeatureError):
                async for _ in client.stream(AGENT, COMPACTING):
                    pass
    assert server.stream_requests == []


@pytest.mark.parametrize("version", ["0.16.5", "0.16.8", None])
def test_the_field_is_sent_where_the_release_has_it_or_is_unknown(version: str | None) -> None:
    with FakeLettaServer([HELLO], version=version) as server:
        _run(server, COMPACTING)
    assert server.stream_requests[0].json()["include_compaction_messages"] is True


def test_fixed_dialect_and_background_still_ask_the_version_for_such_a_field() -> None:
    with FakeLettaServer([HELLO], version="0.16.4") as server:
        with pytest.raises(LettaUnsupportedFeatureError):
            _run(server, COMPACTING, dialect="current", background=False)
    assert [r.path for r in server.received] == ["/v1/health/"]


async def test_calls_that_start_together_probe_the_server_once() -> None:
    with FakeLettaServer([HELLO] * 20, version="0.6.14") as server:
        async with AsyncLettaClient(base_url=server.base_url) as client:

            async def one() -> list[Any]:
                return [event async for event in client.stream(AGENT, REQUEST)]

            await asyncio.gather(*(one() for _ in range(20)))
    assert len([r for r in server.received if r.method == "GET"]) == 1
    assert len(server.stream_requests) == 20


def test_the_async_client_refuses_another_event_loop_before_sending() -> None:
    async def under_trio() -> None:
        token = sniffio.current_async_library_cvar.set("trio")
        try:
            async with AsyncLettaClient(base_url=server.base_url) as client:
                async for _ in client.stream(AGENT, REQUEST):
                    pass
        finally:
            sniffio.current_async_library_cvar.reset(token)

    with FakeLettaServer([HELLO]) as server:
        with pytest.raises(LettaInvalidRequestError, match=r"runs on asyncio .* not on trio"):
            asyncio.run(under_trio())
    assert server.received == []


def test_a_health_probe_without_an_answer_is_asked_again_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A probe that failed (503 here) leaves the call foreground, and a later call asks again."""
    health = [Reply.json(503, {"detail": "starting"}), Reply.json(200, {"version": "0.16.8"})]
    sent: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v1/health"):
            reply = health.pop(0)
            return httpx.Response(
                reply.status, content=reply.body, headers={"content-type": "application/json"}
            )
        sent.append(json.loads(request.content))
        return httpx.Response(
            200, content=HELLO.body, headers={"content-type": "text/event-stream"}
        )

    http = httpx.Client(transport=httpx.MockTransport(answer))
    with LettaClient(http_client=http, base_url="http://letta.test") as client:
        list(client.stream(AGENT, REQUEST))
        list(client.stream(AGENT, REQUEST))  # within PROBE_AGAIN_AFTER: not asked again
        assert health  # the second answer is still unused
        clock = time.monotonic() + client_module.PROBE_AGAIN_AFTER  # as if that much passed
        monkeypatch.setattr(client_module.time, "monotonic", lambda: clock)
        list(client.stream(AGENT, REQUEST))
    assert health == []
    assert [bool(body.get("background")) for body in sent] == [False, False, True]
    assert client.server_version == "0.16.8"


def test_answering_calls_nobody_waits_for_is_a_typed_error_that_says_so() -> None:
    """0.16.8's words when an approval answers a call its run no longer waits on."""
    stale = (
        b'event: error\ndata: {"message_type":"error_message","error_type":"internal_error",'
        b'"message":"An unknown error occurred with the LLM streaming request.",'
        b'"detail":"No tool call is currently awaiting approval."}\n\n'
    )
    with FakeLettaServer([Reply(body=stale)]) as server:
        with LettaClient(base_url=server.base_url) as client:
            with pytest.raises(LettaNothingPendingError) as caught:
                list(client.stream(AGENT, REQUEST))
    assert not caught.value.is_retryable
    assert "no longer waits for an answer" in str(caught.value)
    assert isinstance(caught.value, LettaConflictError)
