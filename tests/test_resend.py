"""A request whose fate is unknown is sent again where the server knows it again (0.16.7+).

Letta 0.16.7 keeps, per background request on a locked route (a conversation, or
the agent's own thread in agent-direct mode), which run its messages' otids
started: the same request again gets that run's stream instead of a new run. So a
cut after the request was written and before the run named itself loses nothing
and stores nothing twice; elsewhere the caller gets the typed error, as before.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage

from langchain_letta import AsyncLettaClient, ChatLetta, LettaClient
from langchain_letta._wire.requests import (
    ApprovalDecision,
    OutgoingApproval,
    OutgoingMessage,
    StreamRequest,
    build_body,
    with_stable_otids,
)
from langchain_letta.errors import (
    LettaConflictError,
    LettaInvalidRequestError,
    LettaStreamInterruptedError,
    LettaTimeoutError,
)
from langchain_letta.testing import FakeLettaServer, Reply
from tests.conftest import CAPTURES, MODES, Mode

AGENT = "agent-3f0c9a1e-5b7d-4c2a-9e8f-1a2b3c4d5e6f"
OTHER_AGENT = "agent-0e1d2c3b-4a59-4687-9a0b-1c2d3e4f5a6b"
TURN = Reply.from_capture(CAPTURES / "0.16.8/memgpt_v2_agent/03-tool-call-steps.sse")
CUT_BEFORE_THE_FIRST_FRAME = TURN.with_faults(drops=[0])
"""The head goes out, then the connection breaks: the client cannot know if the run began."""


def ask(model: ChatLetta, mode: Mode, message: Any) -> Any:
    if mode == "sync":
        return model.invoke(message)
    return asyncio.run(asyncio.wait_for(model.ainvoke(message), 30))


def otids(request: Any) -> list[str]:
    return [message["otid"] for message in request.json()["messages"]]


def expected_text() -> str:
    with FakeLettaServer([TURN]) as server:
        return str(ChatLetta(agent_id=AGENT, base_url=server.base_url).invoke("hi").text)


# ------------------------------------------------------------------ otids


def request_of(*messages: OutgoingMessage | OutgoingApproval) -> StreamRequest:
    return StreamRequest(messages=list(messages))


def test_a_message_with_an_id_has_the_same_otid_each_time_it_goes_to_the_same_thread() -> None:
    def otid(source: str | None, agent: str = AGENT, conversation: str | None = None) -> str:
        sent = with_stable_otids(
            request_of(OutgoingMessage(content="hi", source_id=source)), agent, conversation
        )
        return sent.messages[0].otid

    assert otid("m-1") == otid("m-1")
    assert otid("m-1") != otid("m-2")
    assert otid("m-1") != otid("m-1", agent="agent-other")  # two agents: two messages
    assert otid("m-1") != otid("m-1", conversation="conv-1")
    assert otid("m-1", conversation="conv-1") != otid("m-1", conversation="conv-2")
    assert otid(None) != otid(None)  # without an id, every send is a new message


def test_an_answer_to_tool_calls_has_the_otid_of_what_it_answers() -> None:
    def otid(*calls: str, approve: bool = True) -> str:
        answer = OutgoingApproval(
            approvals=[ApprovalDecision(tool_call_id=call, approve=approve) for call in calls]
        )
        return with_stable_otids(request_of(answer), AGENT, None).messages[0].otid

    assert otid("c1", "c2") == otid("c1", "c2")
    assert otid("c1") != otid("c2")
    assert otid("c1", "c2") != otid("c1")
    assert otid("c1", approve=False) != otid("c1")  # another answer is another message


def test_the_source_id_is_never_sent() -> None:
    body = build_body(request_of(OutgoingMessage(content="hi", source_id="m-1")), "current")
    assert body["messages"] == [
        {"role": "user", "content": "hi", "otid": body["messages"][0]["otid"]}
    ]


def test_chat_letta_derives_the_otid_from_the_langchain_message_id() -> None:
    with FakeLettaServer([TURN, TURN, TURN]) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, conversation_per_call=False)
        model.invoke([HumanMessage("hi", id="lc-1")])
        model.invoke([HumanMessage("hi")])
        model.invoke([HumanMessage("hi")])
    first, second, third = (otids(r) for r in server.stream_requests)
    derived = with_stable_otids(
        request_of(OutgoingMessage(content="hi", source_id="lc-1")), AGENT, None
    )
    assert first == [derived.messages[0].otid]
    assert second != third  # no id: a new otid each time


# ------------------------------------------------------------------ sending again


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("in_conversation", [False, True])
def test_a_cut_before_the_first_frame_is_sent_again_and_stored_once(
    mode: Mode, in_conversation: bool
) -> None:
    with FakeLettaServer([CUT_BEFORE_THE_FIRST_FRAME]) as server:
        conversation = None
        if in_conversation:
            with LettaClient(base_url=server.base_url) as client:
                conversation = client.create_conversation(AGENT)
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, conversation_id=conversation)
        answer = ask(model, mode, "hi")
    assert answer.text == expected_text()
    assert answer.response_metadata["stop_reason"] == "end_turn"
    first, again = server.stream_requests
    assert again.body == first.body  # the same request, the same otids
    assert len(server.accepted) == 1  # the server knew it: one run, one turn
    assert len(server.runs) == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("version", "redis"),
    [
        ("0.16.6", True),  # agent-direct mode, but no request token yet
        ("0.16.8", False),  # no Redis: a foreground stream, nothing kept
    ],
)
def test_where_the_server_would_not_know_it_again_nothing_is_sent_twice(
    mode: Mode, version: str, redis: bool
) -> None:
    with FakeLettaServer([CUT_BEFORE_THE_FIRST_FRAME], version=version, redis=redis) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        with pytest.raises(LettaStreamInterruptedError) as caught:
            ask(model, mode, "hi")
    assert caught.value.request_accepted
    (accepted,) = server.accepted
    assert server.stream_requests[-1] == accepted  # nothing sent after it


@pytest.mark.parametrize("mode", MODES)
def test_the_same_message_sent_again_gets_the_answer_it_got(mode: Mode) -> None:
    """A graph re-run after a crash sends the message again: the server answers with its run."""
    message = HumanMessage("hi", id="lc-graph-message-1")
    with FakeLettaServer([TURN, TURN]) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        first = ask(model, mode, [message])
        again = ask(model, mode, [message])
        other = ChatLetta(
            agent_id="agent-0e1d2c3b-4a59-4687-9a0b-1c2d3e4f5a6b", base_url=server.base_url
        )
        ask(other, mode, [message])  # the same message to another agent is another message
    assert again.text == first.text
    assert len(server.accepted) == 2
    first_sent, sent_again, to_other = (otids(r) for r in server.stream_requests)
    assert first_sent == sent_again != to_other


@pytest.mark.parametrize("mode", MODES)
def test_a_thread_busy_for_longer_than_the_call_may_take_ends_at_the_deadline(mode: Mode) -> None:
    busy = Reply.json(409, {"detail": "CONFLICT: Another request is being processed"})
    with FakeLettaServer(lambda request: busy) as server:
        model = ChatLetta(
            agent_id=AGENT, base_url=server.base_url, total_timeout=3.0, max_retries=0
        )
        started = time.monotonic()
        with pytest.raises(LettaTimeoutError) as caught:
            ask(model, mode, "hi")
        took = time.monotonic() - started
    assert 1.0 < took < 4.5
    assert not caught.value.request_accepted  # every refusal proved nothing was taken
    assert caught.value.is_retryable
    assert isinstance(caught.value.__cause__, LettaConflictError)
    assert len(server.stream_requests) > 1  # beyond max_retries: the thread was waited for


@pytest.mark.parametrize("mode", MODES)
def test_a_conversation_created_over_a_cut_connection_is_created_again(mode: Mode) -> None:
    """Creating one twice leaves at worst an empty conversation; giving up would lose the turn."""
    created: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/health/":
            return httpx.Response(200, json={"version": "0.16.8"})
        created.append(request.url.path)
        if len(created) == 1:  # written, then the connection broke: was it created?
            raise httpx.RemoteProtocolError("Server disconnected", request=request)
        return httpx.Response(200, json={"id": "conv-2", "agent_id": AGENT})

    transport = httpx.MockTransport(answer)
    if mode == "sync":
        with LettaClient(
            base_url="http://letta.test", http_client=httpx.Client(transport=transport)
        ) as client:
            conversation = client.create_conversation(AGENT)
    else:

        async def create() -> str:
            given_async = httpx.AsyncClient(transport=transport)
            url = "http://letta.test"
            async with AsyncLettaClient(base_url=url, http_client=given_async) as client:
                return await client.create_conversation(AGENT)

        conversation = asyncio.run(create())
    assert conversation == "conv-2"
    assert created == ["/v1/conversations/", "/v1/conversations/"]


# ------------------------------------------------------------------ what the thread holds


@pytest.mark.parametrize("mode", MODES)
def test_a_message_the_thread_holds_is_not_sent_again(mode: Mode) -> None:
    """A graph run cancelled mid-turn, then double-texted: its message is stored already."""
    first = HumanMessage("one", id="lc-1")
    with FakeLettaServer([TURN, TURN], stores=True) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        ask(model, mode, [first])
        answer = ask(model, mode, [first, HumanMessage("two", id="lc-2")])  # no answer between
    assert answer.text == expected_text()
    sent = [[m["content"] for m in r.json()["messages"]] for r in server.stream_requests]
    assert sent == [["one"], ["two"]]
    assert len(server.accepted) == 2


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("version", ["0.16.6", "0.16.8"])
def test_a_call_whose_messages_the_thread_holds_reads_the_run_that_took_them(
    mode: Mode, version: str
) -> None:
    """A node re-run (another worker, a restart) with nothing new: the answer, not a new turn."""
    message = HumanMessage("one", id="lc-1")
    with FakeLettaServer([TURN], stores=True, version=version) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        first = ask(model, mode, [message])
        again = ask(model, mode, [message])
    assert again.text == first.text == expected_text()
    assert again.response_metadata["run_id"] == first.response_metadata["run_id"]
    assert len(server.stream_requests) == 1
    assert [r.json()["starting_after"] for r in server.resume_requests] == [0]


def test_messages_without_ids_are_sent_without_asking_what_the_thread_holds() -> None:
    with FakeLettaServer([TURN], stores=True) as server:
        ChatLetta(agent_id=AGENT, base_url=server.base_url).invoke("hi")
    assert [r.path for r in server.received if r.method == "GET"] == ["/v1/health/"]


def test_a_held_request_whose_run_is_unknown_is_refused_not_sent_again() -> None:
    message = HumanMessage("one", id="lc-1")
    with FakeLettaServer([TURN], stores=True) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        model.invoke([message])
        for item in server.history:
            item["run_id"] = None  # a listing that names no run
        with pytest.raises(LettaInvalidRequestError, match="in the Letta thread already"):
            model.invoke([message])
    assert len(server.stream_requests) == 1
