"""The integration tests live, against real Letta servers on loopback (``make test-live``).

Skipped unless ``LETTA_LIVE=1``. ``make test-live`` sets it after
``scripts/letta_lab.py`` has installed (cached) and started Letta 0.16.8 (current
dialect, PostgreSQL and Redis), 0.11.7 (current dialect) and 0.6.14 (seed dialect)
against the deterministic fake LLM, with their URLs and agents in
``LETTA_LIVE_URL_<v>`` / ``LETTA_LIVE_AGENT_<v>`` (``<v>`` as ``0_16_8``,
``0_11_7``, ``0_6_14``). 0.11.7 and 0.6.14 run on SQLite without Redis, so
background runs are refused there (0.11.7 answers 503, the client falls back to a
foreground stream); 0.16.8 has Redis, so ChatLetta runs every turn there as a
background run, and resume is tested live against it.

langchain-tests' standard integration suite runs against each server, with
``dialect="auto"`` and ``background=None``: the client asks ``/v1/health/`` and
picks the dialect and background mode itself.

0.16.8 only, on fresh agents of the lab's configuration: conversations of one
agent in parallel (directly and one per LangGraph thread), the same conversation
twice at once (a busy 409, retried), an approval request in the message and the
pending-approval refusal (agent and conversation routes), and a stream cut by a
small TCP proxy in the test mid-run, resumed exactly with the turn stored once.

0.16.8 only, tool loops (issue 9): a client tool through ``create_agent``, two
client calls in one turn through a ``ToolNode`` graph, a gated server tool
approved or denied with ``approvals=``, ``letta_node`` paused and resumed after a
restart, ``HumanInTheLoopMiddleware`` rejecting a client call, structured output,
and a stream cut while a client call waits; each checks what the server stored
(the user message once, one answer to the calls, each tool result once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    HumanMessage,
    ToolMessage,
)
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.types import Command

import tests.test_standard_integration as standard
from langchain_letta import (
    ApprovalDecision,
    AsyncLettaClient,
    ChatLetta,
    LettaAgentRunnable,
    LettaClient,
    OutgoingMessage,
    StreamRequest,
    letta_node,
)
from langchain_letta.errors import (
    LettaAPIError,
    LettaConflictError,
    LettaNotFoundError,
    LettaNothingPendingError,
    LettaPendingApprovalError,
    LettaTimeoutError,
    StreamProgress,
)
from scripts import letta_lab
from tests.test_tool_loops import Joke, approval_graph, get_weather, toolnode_graph

pytestmark = pytest.mark.skipif(
    os.environ.get("LETTA_LIVE") != "1", reason="live servers: run with make test-live"
)

VERSIONS = ("0.16.8", "0.11.7", "0.6.14")
MEMORY_TOOL = {"0.16.8": "memory_insert", "0.11.7": "memory_insert", "0.6.14": "core_memory_append"}
UNKNOWN_AGENT = "agent-00000000-0000-4000-8000-000000000000"
TEXT = "Hello from the fake model"


def server(version: str) -> tuple[str, str]:
    """Base URL and agent id of the running server of ``version``."""
    key = version.replace(".", "_")
    base_url = os.environ.get(f"LETTA_LIVE_URL_{key}")
    agent_id = os.environ.get(f"LETTA_LIVE_AGENT_{key}")
    if not base_url or not agent_id:
        pytest.fail(f"LETTA_LIVE=1 but no Letta {version} server given: run make test-live")
    return base_url, agent_id


def live_model(version: str, **params: Any) -> ChatLetta:
    base_url, agent_id = server(version)
    return ChatLetta(agent_id=agent_id, base_url=base_url, **params)


class TestLiveCurrentDialect(standard.TestChatLettaIntegration):
    """The standard suite against a real Letta 0.11.7."""

    version = "0.11.7"

    @pytest.fixture(autouse=True)
    def _server(self) -> None:  # replaces the fake server of the parent class
        self._base_url, self._agent_id = server(self.version)

    @property
    def chat_model_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"agent_id": self._agent_id, "base_url": self._base_url}
        if self.version == "0.16.8":
            # The suite calls the model as a stateless one: test_tool_calling sends its
            # question twice without answering the first call, which a Letta thread
            # refuses while the call waits. A conversation per call keeps its calls apart;
            # a call continuing an answer (a tool result) stays in that conversation.
            params["conversation_per_call"] = True
            params["lenient_tool_choice"] = True
        return params

    @property
    def supports_model_override(self) -> bool:
        # override_model exists from Letta 0.16.4: ChatLetta refuses model= on older servers.
        return self.version == "0.16.8"

    @property
    def has_tool_calling(self) -> bool:
        # Client tools exist from Letta 0.16.2: ChatLetta refuses them on older servers.
        return self.version == "0.16.8"

    @property
    def has_structured_output(self) -> bool:
        # Structured output is a client tool: from Letta 0.16.2 as well.
        return self.version == "0.16.8"


class TestLiveBackgroundRuns(TestLiveCurrentDialect):
    """The standard suite against a real Letta 0.16.8 with Redis: every turn a background run."""

    version = "0.16.8"

    @property
    def model_override_value(self) -> str:
        # 0.16.8 names models by provider handle; an OpenAI provider whose base URL is
        # not api.openai.com (the fake LLM) is listed as "openai-proxy".
        return "openai-proxy/gpt-4o-mini"


class TestLiveSeedDialect(TestLiveCurrentDialect):
    """The standard suite against a real Letta 0.6.14 (seed dialect)."""

    version = "0.6.14"


@pytest.mark.parametrize("version", VERSIONS)
def test_memory_edit_live(version: str) -> None:
    message = live_model(version, stream_tokens=False).invoke("Please remember that I like tea.")
    assert message.text == TEXT
    (call,) = [b for b in message.content_blocks if b["type"] == "server_tool_call"]
    assert call["name"] == MEMORY_TOOL[version]
    (result,) = [b for b in message.content_blocks if b["type"] == "server_tool_result"]
    assert result["status"] == "success"
    assert message.response_metadata["step_count"] >= 2
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] >= 20


@pytest.mark.parametrize("version", VERSIONS)
async def test_token_stream_live(version: str) -> None:
    model = live_model(version)
    chunks = [chunk async for chunk in model.astream("hi, stream please")]
    assert "".join(chunk.text for chunk in chunks) == TEXT
    # the server streamed token deltas (how many chunks carry them depends on how they
    # arrived: deltas read together make one chunk)
    events = [event async for event in LettaAgentRunnable(model=model).astream("again")]
    assert sum(event.message_type == "assistant_message" for event in events) >= 5
    assert chunks[-1].chunk_position == "last"
    assert chunks[-1].usage_metadata is not None


@pytest.mark.parametrize("version", VERSIONS)
def test_unknown_agent_live(version: str) -> None:
    base_url, _ = server(version)
    model = ChatLetta(agent_id=UNKNOWN_AGENT, base_url=base_url)
    with pytest.raises(LettaNotFoundError) as caught:
        model.invoke("hi")
    assert not caught.value.is_retryable


@pytest.mark.parametrize("version", VERSIONS)
def test_upstream_llm_failure_live(version: str) -> None:
    with pytest.raises(LettaAPIError) as caught:
        live_model(version).invoke("please trigger-llm-error now")
    assert caught.value.request_accepted
    assert not caught.value.is_retryable


def test_background_run_is_resumable_live() -> None:
    """0.16.8 with Redis: the client asks for a background run; it can be read again."""
    base_url, agent_id = server("0.16.8")
    with LettaClient(base_url=base_url) as client:
        stream = client.stream(agent_id, StreamRequest(messages=[OutgoingMessage(content="hi")]))
        first = [event.raw for event in stream]  # type: ignore[attr-defined]
        progress = stream.progress
        assert progress.run_id
        assert progress.last_seq_id is not None  # seq_ids: a background run
        assert "".join(e.get("content") or "" for e in first) == TEXT
        again = client.resume(agent_id, StreamProgress(run_id=progress.run_id, last_seq_id=2))
        rest = [event.raw for event in again]  # type: ignore[attr-defined]
    # stop_reason and usage_statistics carry no seq_id: they come again at the end
    tail = [e for e in first if e.get("seq_id") is None]
    assert [e["message_type"] for e in tail] == ["stop_reason", "usage_statistics"]
    assert rest[-2:] == tail
    assert rest[:-2] == [e for e in first if (e.get("seq_id") or 0) > 2]
    assert rest[:-2]


def test_chat_model_resumes_a_run_live() -> None:
    """``resume_from`` reads a finished background run again, without a new turn."""
    model = live_model("0.16.8")
    chunks = list(model.stream("hi, resume me later"))
    run_id = chunks[-1].response_metadata["run_id"]
    again = list(model.stream([], resume_from=StreamProgress(run_id=run_id, last_seq_id=0)))
    assert "".join(chunk.text for chunk in again) == TEXT


# ---------------------------------------------------------------- 0.16.8: issue 8 live
#
# Each test below that needs isolation gets a fresh agent made as the lab makes its
# own (``letta_lab.create_agent``: the same llm_config at the fake LLM). Admin calls
# go through httpx with no User-Agent, as Letta's 1.0 SDKs send them: 0.16.8 answers
# some of them differently for other clients (pitfall 8 of the lab's recipe).

CURRENT = "0.16.8"
AGENT_DIRECT = "/v1/conversations/default/messages"
"""Where ChatLetta sends a message to an agent's own thread on 0.16.8 (agent-direct mode)."""
WAIT = 60.0
"""Seconds any live call or wait below may take before the test fails."""


@contextlib.contextmanager
def admin(base_url: str) -> Iterator[httpx.Client]:
    """An httpx client for the server's admin routes, with no User-Agent header."""
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        del client.headers["User-Agent"]
        yield client


def fresh_agent(base_url: str, *, gated: str | None = None) -> str:
    """A new agent of the lab's configuration; ``gated``: a tool that needs approval."""
    agent_id = letta_lab.create_agent(base_url, parallel_tool_calls=True)
    if gated:
        with admin(base_url) as client:
            response = client.patch(
                f"/v1/agents/{agent_id}/tools/approval/{gated}", json={"requires_approval": True}
            )
            assert response.status_code == 200, response.text
    return agent_id


def history(base_url: str, path: str) -> list[dict[str, Any]]:
    """The messages the server stored at ``path`` (an agent's or a conversation's)."""
    with admin(base_url) as client:
        response = client.get(path, params={"limit": 500})
    assert response.status_code == 200, response.text
    messages = response.json()
    assert isinstance(messages, list)
    return messages


def user_texts(messages: list[dict[str, Any]]) -> list[str]:
    """The texts of the user messages among ``messages``, sorted (order is not the point)."""
    texts = [m["content"] for m in messages if m.get("message_type") == "user_message"]
    return sorted(texts)


def current_model(agent_id: str, **params: Any) -> ChatLetta:
    """A model of ``agent_id`` on the 0.16.8 server (``base_url=``: through a proxy)."""
    params.setdefault("base_url", server(CURRENT)[0])
    return ChatLetta(agent_id=agent_id, total_timeout=WAIT, **params)


def tag() -> str:
    """A word no other test sends, to find this test's messages in the server's history."""
    return uuid.uuid4().hex[:12]


class Recorder(BaseCallbackHandler):
    """Remembers the retries of the LLM run and the ``letta.*`` custom events.

    Only the attempt number of a retry is kept: ChatLetta hands ``on_retry`` the
    tenacity state after the next attempt began, whose ``outcome`` is no longer the
    error retried after; the ``letta.retry`` custom event names that error.
    """

    def __init__(self) -> None:
        self.retries: list[int] = []
        self.custom: list[tuple[str, Any]] = []

    def on_retry(self, retry_state: Any, **kwargs: Any) -> None:
        self.retries.append(retry_state.attempt_number)

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        self.custom.append((name, data))


async def test_conversations_of_one_agent_run_in_parallel_live() -> None:
    """Two conversations of one agent answer at once; each stores only its own turn."""
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url)
    async with AsyncLettaClient(base_url=base_url) as client:
        first, second = [await client.create_conversation(agent_id) for _ in range(2)]
    assert first != second
    word = tag()
    texts = {first: f"first {word}, delay:3", second: f"second {word}, delay:3"}
    models = {conv: current_model(agent_id, conversation_id=conv) for conv in texts}
    started = time.monotonic()
    answers = await asyncio.wait_for(
        asyncio.gather(*(models[conv].ainvoke(text) for conv, text in texts.items())), WAIT
    )
    elapsed = time.monotonic() - started
    for conv, answer in zip(texts, answers, strict=True):
        assert answer.text == TEXT
        assert answer.response_metadata["conversation_id"] == conv
        assert answer.response_metadata["stop_reason"] == "end_turn"
    # Each waited 3 s in the fake LLM: one after the other would take 6 s at least.
    assert elapsed < 6.0, f"the two conversations did not run at once ({elapsed:.1f} s)"
    # (GET /v1/agents/{id}/messages lists every conversation's messages on 0.16.8;
    # the conversation's own route is the one that tells them apart.)
    for conv, text in texts.items():
        assert user_texts(history(base_url, f"/v1/conversations/{conv}/messages")) == [text]


def stored_turns(base_url: str, agent_id: str, word: str) -> list[str]:
    """The user texts with ``word`` in the agent's own thread, in stored order, checking
    that no turn began before the one before it was answered."""
    listed = history(base_url, f"/v1/agents/{agent_id}/messages")
    messages = sorted(listed, key=lambda m: m["date"])
    ours = [m for m in messages if m["message_type"] == "user_message" and word in m["content"]]
    kinds = [m["message_type"] for m in messages[messages.index(ours[0]) :]]
    starts = [i for i, kind in enumerate(kinds) if kind == "user_message"]
    for start, end in zip(starts, [*starts[1:], len(kinds)], strict=True):
        assert "assistant_message" in kinds[start:end], f"a turn overlapped the next: {kinds}"
    return [m["content"] for m in ours]


def test_a_batch_on_one_agent_thread_is_stored_in_order_one_turn_at_a_time_live() -> None:
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url)
    word = tag()
    texts = [f"{n} {word}, delay:1" for n in ("one", "two", "three")]
    started = time.monotonic()
    answers = current_model(agent_id).batch(texts)  # type: ignore[arg-type]
    assert time.monotonic() - started >= 3.0  # one after the other, 1 s each in the LLM
    assert [answer.text for answer in answers] == [TEXT] * 3
    assert stored_turns(base_url, agent_id, word) == texts


async def test_threads_and_tasks_on_one_agent_thread_never_overlap_live() -> None:
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url)
    word = tag()
    sync_texts = [f"thread {n} {word}, delay:1" for n in (1, 2)]
    async_texts = [f"task {n} {word}, delay:1" for n in (1, 2)]
    threads = [
        threading.Thread(target=current_model(agent_id).invoke, args=(text,)) for text in sync_texts
    ]
    for thread in threads:
        thread.start()
    await asyncio.gather(*(current_model(agent_id).ainvoke(text) for text in async_texts))
    for thread in threads:
        await asyncio.to_thread(thread.join, WAIT)
    assert sorted(stored_turns(base_url, agent_id, word)) == sorted(sync_texts + async_texts)


async def test_a_conversation_per_langgraph_thread_live() -> None:
    """``conversation_per_thread``: two graph threads at once, two conversations, no mixing."""
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url)
    node = letta_node(
        agent_id=agent_id, base_url=base_url, conversation_per_thread=True, total_timeout=WAIT
    )
    graph = StateGraph(MessagesState)
    graph.add_node("letta", node)
    graph.add_edge(START, "letta")
    app = graph.compile(checkpointer=InMemorySaver())
    word = tag()

    async def turn(thread: str, text: str) -> str:
        config: RunnableConfig = {"configurable": {"thread_id": thread}}
        state = await app.ainvoke({"messages": [("human", text)]}, config)
        answer = state["messages"][-1]
        assert answer.text == TEXT
        return str(answer.response_metadata["conversation_id"])

    said = {
        "alice": [f"alice {word}, delay:2", f"alice again {word}"],
        "bob": [f"bob {word}, delay:2"],
    }
    alice, bob = await asyncio.wait_for(
        asyncio.gather(turn("alice", said["alice"][0]), turn("bob", said["bob"][0])), WAIT
    )
    assert alice != bob
    assert await asyncio.wait_for(turn("alice", said["alice"][1]), WAIT) == alice
    with admin(base_url) as client:
        listed = client.get("/v1/conversations/", params={"agent_id": agent_id}).json()
    assert sorted(c["id"] for c in listed) == sorted([alice, bob])  # one per thread, no more
    for thread, conv in (("alice", alice), ("bob", bob)):
        stored = user_texts(history(base_url, f"/v1/conversations/{conv}/messages"))
        assert stored == sorted(said[thread])


async def test_the_same_conversation_twice_at_once_is_retried_live() -> None:
    """The second call meets a busy 409; ChatLetta retries it until the first is done.

    The 409 comes before any stream (nothing accepted), so retrying cannot store the
    turn twice: the server's history holds each message once.
    """
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url)
    async with AsyncLettaClient(base_url=base_url) as client:
        conv = await client.create_conversation(agent_id)
    model = current_model(agent_id, conversation_id=conv, max_retries=0)  # busy: waited for
    impatient = ChatLetta(
        agent_id=agent_id, base_url=base_url, conversation_id=conv, total_timeout=1.5
    )
    # The first turn as another process would send it: turns of one thread wait for each
    # other within a process (keyed by the server's URL), so another spelling of the URL
    # stands for another process, which only the server's 409 holds back.
    elsewhere = current_model(agent_id, conversation_id=conv, base_url=another_spelling(base_url))
    word = tag()
    busy, waiting = f"busy {word}, delay:3", f"me too {word}"
    recorder = Recorder()

    async def second(text: str) -> AIMessage:
        await asyncio.sleep(1.0)  # the first run holds the conversation by now
        # a busy thread is waited for until the deadline; past it, the refusal shows
        # itself as the cause: busy, retryable, nothing accepted
        with pytest.raises(LettaTimeoutError) as caught:
            await impatient.ainvoke(f"not now {word}")
        assert not caught.value.request_accepted
        refusal = caught.value.__cause__
        assert isinstance(refusal, LettaConflictError)
        assert not isinstance(refusal, LettaPendingApprovalError)
        assert (refusal.status_code, refusal.is_retryable, refusal.request_accepted) == (
            409,
            True,
            False,
        )
        return await model.ainvoke(text)

    # inside a parent run, so that each retry is also a letta.retry event naming its error
    parent = RunnableLambda(second)
    answers = await asyncio.wait_for(
        asyncio.gather(elsewhere.ainvoke(busy), parent.ainvoke(waiting, {"callbacks": [recorder]})),
        WAIT,
    )
    assert [answer.text for answer in answers] == [TEXT, TEXT]
    retries = [data for name, data in recorder.custom if name == "letta.retry"]
    assert retries, "the second call never met the busy conversation"
    assert len(recorder.retries) == len(retries)  # the model run's on_retry, once each
    for retry in retries:
        assert "HTTP 409" in retry["error"]
        assert "currently being processed for this conversation" in retry["error"]
    stored = user_texts(history(base_url, f"/v1/conversations/{conv}/messages"))
    assert stored == sorted([busy, waiting])


def another_spelling(base_url: str) -> str:
    """The same server's URL spelt another way (``localhost`` for ``127.0.0.1``, or back)."""
    if "127.0.0.1" in base_url:
        return base_url.replace("127.0.0.1", "localhost")
    return base_url.replace("localhost", "127.0.0.1")


def approval_blocks(message: AIMessage) -> list[dict[str, Any]]:
    return [
        block
        for block in message.content
        if isinstance(block, dict) and block["type"] == "server_tool_call"
    ]


def stored_approval_requests(base_url: str, path: str) -> list[dict[str, Any]]:
    """The tool calls of the approval requests the server stored, oldest first."""
    requests = [
        m for m in history(base_url, path) if m["message_type"] == "approval_request_message"
    ]
    requests.sort(key=lambda m: m["date"])
    calls = []
    for request in requests:
        call = request["tool_call"]
        calls.append({**call, "arguments": json.loads(call["arguments"])})
    return calls


@pytest.mark.parametrize("stream_tokens", [False, True])
def test_an_approval_request_surfaces_live(stream_tokens: bool) -> None:
    """A gated tool call stops the run; the call waiting for approval is in the message.

    Then the agent refuses a new message until the call is answered: inside a 200
    stream, so the refusal is typed, accepted and not retryable, and names the call
    where the history given to ChatLetta holds the earlier answer.
    """
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url, gated="memory_insert")
    model = current_model(agent_id, stream_tokens=stream_tokens)
    asked = HumanMessage("call:memory_insert please")
    answer = model.invoke([asked])
    assert answer.response_metadata["stop_reason"] == "requires_approval"
    assert answer.tool_calls == []
    assert answer.text == ""
    (block,) = approval_blocks(answer)
    (stored,) = stored_approval_requests(base_url, f"/v1/agents/{agent_id}/messages")
    assert block["extras"]["requires_approval"] is True
    assert block["name"] == stored["name"] == "memory_insert"
    assert block["id"] == stored["tool_call_id"]
    assert block["args"] == stored["arguments"]
    assert block["args"]["label"] == "human"

    with pytest.raises(LettaPendingApprovalError) as caught:
        model.invoke([asked, answer, HumanMessage("hi")])
    error = caught.value
    assert error.request_accepted
    assert not error.is_retryable
    assert error.status_code is None  # inside the stream: HTTP 200
    assert [call["id"] for call in error.pending_tool_calls] == [block["id"]]
    assert error.pending_tool_calls[0]["name"] == "memory_insert"
    # Without the earlier answer in the history, nothing can name the calls.
    with pytest.raises(LettaPendingApprovalError) as again:
        model.invoke("hi")
    assert again.value.pending_tool_calls == []


def test_pending_approval_on_the_conversation_route_live() -> None:
    """The same on a conversation: its approval blocks it, not the agent's own thread."""
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url, gated="memory_insert")
    with LettaClient(base_url=base_url) as client:
        conv = client.create_conversation(agent_id)
    model = current_model(agent_id, conversation_id=conv, stream_tokens=False)
    asked = HumanMessage("call:memory_insert in a conversation")
    answer = model.invoke([asked])
    assert answer.response_metadata["stop_reason"] == "requires_approval"
    assert answer.response_metadata["conversation_id"] == conv
    (block,) = approval_blocks(answer)
    (stored,) = stored_approval_requests(base_url, f"/v1/conversations/{conv}/messages")
    assert block["id"] == stored["tool_call_id"]
    assert block["extras"]["requires_approval"] is True

    with pytest.raises(LettaPendingApprovalError) as caught:
        model.invoke([asked, answer, HumanMessage("hi, anybody there?")])
    assert caught.value.request_accepted
    assert not caught.value.is_retryable
    assert caught.value.status_code is None  # inside the stream: HTTP 200
    # The refusal names the calls of the conversation's own earlier answer.
    assert [call["id"] for call in caught.value.pending_tool_calls] == [block["id"]]
    # The agent's own thread is not blocked by its conversation's approval.
    assert current_model(agent_id).invoke("hi on the agent route").text == TEXT


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_pending_approvals_are_asked_of_the_thread_live(mode: str) -> None:
    """``pending_approvals()`` names what each thread's server state waits for, nothing else.

    A conversation's waiting call is not the agent's own thread's (0.16.8 lists every
    conversation's messages on the agent's route: a guess from that listing named it
    there); once answered, nothing waits, and an answer to it again is refused as such.
    """
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url, gated="memory_insert")
    with LettaClient(base_url=base_url) as client:
        conv = client.create_conversation(agent_id)
    model = current_model(agent_id, conversation_id=conv)

    def pending(of: ChatLetta = model) -> list[str]:
        if mode == "sync":
            calls = of.pending_approvals()
        else:
            calls = asyncio.run(asyncio.wait_for(of.apending_approvals(), WAIT))
        return [call["id"] for call in calls]

    assert pending() == []
    asked = model.invoke(f"call:memory_insert please {tag()}")
    (block,) = approval_blocks(asked)
    assert pending() == [block["id"]]
    assert pending(current_model(agent_id)) == []  # the agent's own thread waits for nothing
    decision = ApprovalDecision(tool_call_id=block["id"], approve=True)
    answered = model.invoke([], approvals=[decision])
    assert answered.text == TEXT
    assert pending() == []
    # The same answer again is the same request: the server answers with its run.
    again = model.invoke([], approvals=[decision])
    assert again.response_metadata["run_id"] == answered.response_metadata["run_id"]
    # An answer to a call nobody waits for is refused as such. (0.16.8 takes a second
    # answer to a call it answered a moment ago as a retry, and runs a keep-alive turn.)
    with pytest.raises(LettaNothingPendingError):
        model.invoke([], approvals=[ApprovalDecision(tool_call_id="call_nobody", approve=True)])


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 to a lab server that cuts one message stream, once.

    A network drop the server does not see: after ``cut_after`` complete SSE frames
    (and a few bytes of the next, so that a frame is cut in half) of the response to
    the first message POST, the client's connection is closed; the server's run goes
    on. ``cut_after=0`` lets only the response's head through: the client cannot know
    whether the run began. Everything else passes through. ``requests`` lists every request line
    forwarded, so a test sees the resume (``POST /v1/runs/{id}/stream``).
    """

    _REQUEST_LINE = re.compile(rb"^([A-Z]+) (\S+) HTTP/1\.1\r$", re.MULTILINE)

    def __init__(self, base_url: str, cut_after: int | None) -> None:
        url = httpx.URL(base_url)
        self._upstream = (url.host, url.port or 80)
        self._cut_after = cut_after
        self.requests: list[str] = []
        self.sent_at: list[float] = []
        """When each request line was forwarded (``time.time()``)."""
        self.cuts = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []
        self.base_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> CuttingProxy:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(self._upstream, timeout=5)
            for end in (client, upstream):
                end.settimeout(0.2)
            armed = threading.Event()  # this connection carries the stream to cut
            self._spawn(self._requests, client, upstream, armed)
            self._spawn(self._responses, upstream, client, armed)

    def _recv(self, source: socket.socket) -> bytes | None:
        """Bytes from ``source``; ``None`` while nothing came, ``b""`` at its end."""
        try:
            return source.recv(65536)
        except TimeoutError:
            return None if not self._stopped.is_set() else b""
        except OSError:
            return b""

    def _requests(self, client: socket.socket, upstream: socket.socket, armed: Any) -> None:
        while (data := self._recv(client)) != b"":
            if data is None:
                continue
            for method, path in self._REQUEST_LINE.findall(data):
                line = f"{method.decode()} {path.decode()}"
                with self._lock:
                    self.requests.append(line)
                    self.sent_at.append(time.time())
                    first = self._cut_after is not None and self.cuts == 0
                if first and method == b"POST" and "/messages" in line:
                    armed.set()
            with contextlib.suppress(OSError):
                upstream.sendall(data)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def _responses(self, upstream: socket.socket, client: socket.socket, armed: Any) -> None:
        frames, tail = 0, b""
        try:
            while (data := self._recv(upstream)) != b"":
                if data is None:
                    continue
                if armed.is_set() and self._cut_after == 0:  # the head only, then the cut
                    head = data.find(b"\r\n\r\n")
                    client.sendall(data if head < 0 else data[: head + 4])
                    if head < 0:
                        continue
                    with self._lock:
                        self.cuts += 1
                    return
                if armed.is_set() and self._cut_after is not None:
                    seen = tail + data
                    for boundary in re.finditer(rb"\n\n", seen):
                        frames += 1
                        if frames == self._cut_after:
                            end = max(boundary.end() - len(tail), 0) + 10
                            client.sendall(data[:end])
                            with self._lock:
                                self.cuts += 1
                            return  # the finally below drops the connection
                    tail = data[-1:]
                client.sendall(data)
        except OSError:
            pass
        finally:
            for end in (client, upstream):
                with contextlib.suppress(OSError):
                    end.close()


def check_one_resume(
    base_url: str, sent_to: str, proxy: CuttingProxy, recorder: Recorder, run_id: str
) -> None:
    """The stream of run ``run_id`` was cut once and resumed once, while the run still went on.

    ``sent_to``: the route the message was posted to, once however the stream broke.
    """
    assert proxy.cuts == 1
    resumed_at = proxy.sent_at[proxy.requests.index(f"POST /v1/runs/{run_id}/stream")]
    with admin(base_url) as client:
        run = client.get(f"/v1/runs/{run_id}").json()
    assert run["background"] is True
    assert run["status"] == "completed"
    # the resume reached the server while the run was still going (0.16.8 writes
    # completed_at in UTC without an offset)
    completed = datetime.fromisoformat(run["completed_at"].removesuffix("Z"))
    assert resumed_at < completed.replace(tzinfo=UTC).timestamp()
    assert [line for line in proxy.requests if "/messages" in line and "POST" in line] == [
        f"POST {sent_to}"
    ]  # the message went out once, however the stream broke
    resumes = [data for name, data in recorder.custom if name == "letta.resume"]
    assert len(resumes) == 1
    assert resumes[0]["run_id"] == run_id
    assert resumes[0]["starting_after"] == 2  # the cut: after the ping and the first delta


def summed(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    """LangChain's merge of streamed chunks, as a caller adds them up."""
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


def check_resumed_once(
    base_url: str,
    route: tuple[str, str],
    text: str,
    proxy: CuttingProxy,
    recorder: Recorder,
    chunks: list[AIMessageChunk],
    uncut: list[AIMessageChunk],
) -> None:
    """The cut stream was resumed, delivered exactly the uncut answer, stored the turn once.

    ``route``: where the message was posted, and where the server lists the stored turns.
    """
    sent_to, stored_at = route
    run_id = chunks[-1].response_metadata["run_id"]
    check_one_resume(base_url, sent_to, proxy, recorder, run_id)
    # every delta once and in order: the same answer as a stream that was never cut (how
    # many chunks carry it depends on how the deltas arrived: those read together merge)
    assert summed(chunks).content == summed(uncut).content
    assert "".join(chunk.text for chunk in chunks) == TEXT
    assert chunks[-1].chunk_position == "last"
    assert chunks[-1].response_metadata["stop_reason"] == "end_turn"
    stored = history(base_url, stored_at)
    assert [m["content"] for m in stored if m["message_type"] == "user_message"].count(text) == 1
    answers = [m for m in stored if m["message_type"] == "assistant_message"]
    assert [m["content"] for m in answers if m.get("run_id") == run_id] == [TEXT]


@pytest.mark.parametrize("in_conversation", [False, True], ids=["agent", "conversation"])
def test_a_cut_stream_is_resumed_and_the_turn_stored_once_live(in_conversation: bool) -> None:
    """A real drop mid-run (0.16.8, Redis): ChatLetta resumes the background run.

    A conversation's run is resumed the same way, from ``/v1/runs/{id}/stream``.
    """
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url)
    route = (AGENT_DIRECT, f"/v1/agents/{agent_id}/messages")
    params: dict[str, Any] = {}
    if in_conversation:
        with LettaClient(base_url=base_url) as client:
            conv = client.create_conversation(agent_id)
        route = (f"/v1/conversations/{conv}/messages", f"/v1/conversations/{conv}/messages")
        params["conversation_id"] = conv
    text = f"slow:0.3 cut me {tag()}"
    with CuttingProxy(base_url, cut_after=None) as straight:
        model = current_model(agent_id, base_url=straight.base_url, **params)
        uncut = list(model.stream(f"{text} (uncut)"))
    assert "".join(chunk.text for chunk in uncut) == TEXT
    recorder = Recorder()
    with CuttingProxy(base_url, cut_after=2) as proxy:
        model = current_model(agent_id, base_url=proxy.base_url, **params)
        ask = RunnableLambda(lambda words: list(model.stream(words)))
        chunks = ask.invoke(text, {"callbacks": [recorder]})
    check_resumed_once(base_url, route, text, proxy, recorder, chunks, uncut)


async def test_a_cut_stream_is_resumed_and_the_turn_stored_once_async_live() -> None:
    """The same through the async client."""
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url)
    text = f"slow:0.3 cut me async {tag()}"
    with CuttingProxy(base_url, cut_after=None) as straight:
        model = current_model(agent_id, base_url=straight.base_url)
        uncut = await asyncio.wait_for(_collect(model, f"{text} (uncut)"), WAIT)
    recorder = Recorder()
    with CuttingProxy(base_url, cut_after=2) as proxy:
        model = current_model(agent_id, base_url=proxy.base_url)

        async def collect(words: str) -> list[AIMessageChunk]:
            return await _collect(model, words)

        ask = RunnableLambda(collect)
        chunks = await asyncio.wait_for(ask.ainvoke(text, {"callbacks": [recorder]}), WAIT)
    route = (AGENT_DIRECT, f"/v1/agents/{agent_id}/messages")
    check_resumed_once(base_url, route, text, proxy, recorder, chunks, uncut)


async def _collect(model: ChatLetta, text: str) -> list[AIMessageChunk]:
    return [chunk async for chunk in model.astream(text)]


# ---------------------------------------------------------------- 0.16.8: issue 9 live
#
# Tool loops against the real server: client tools (create_agent, a ToolNode graph,
# HumanInTheLoopMiddleware, structured output), approvals of a gated server tool
# (approvals=, letta_node) and a drop while a call waits. Each test checks what the
# server stored: the user message once, each tool result and decision once.


def stored(base_url: str, agent_id: str, kind: str) -> list[dict[str, Any]]:
    """The agent's stored messages of ``kind`` (``tool_return_message`` and the like)."""
    messages = history(base_url, f"/v1/agents/{agent_id}/messages")
    return [m for m in messages if m["message_type"] == kind]


def stored_tool_returns(base_url: str, agent_id: str) -> list[dict[str, Any]]:
    """Every tool result the agent stored (one ``tool_return_message`` may hold several)."""
    return [
        item
        for message in stored(base_url, agent_id, "tool_return_message")
        for item in (message.get("tool_returns") or [message])
    ]


def check_stored_once(
    base_url: str, agent_id: str, text: str, returns: dict[str, tuple[str, str]]
) -> list[dict[str, Any]]:
    """The server stored ``text`` once, one answer to the calls and each call's result once.

    ``returns``: ``(status, text of the result)`` by tool call id; the text is matched
    as a part of what was stored. Gives the stored approval responses.
    """
    users = [m["content"] for m in stored(base_url, agent_id, "user_message")]
    assert users.count(text) == 1
    results = stored_tool_returns(base_url, agent_id)
    assert sorted(item["tool_call_id"] for item in results) == sorted(returns)
    for item in results:
        status, said = returns[item["tool_call_id"]]
        assert item["status"] == status
        assert said in item["tool_return"]
    responses = stored(base_url, agent_id, "approval_response_message")
    assert len(responses) == 1  # all the calls answered in one message
    return responses


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_create_agent_runs_a_client_tool_live(mode: str) -> None:
    """``create_agent`` with a client tool: called, run here, its result read by the agent."""
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url)
    agent = create_agent(current_model(agent_id), tools=[get_weather])
    text = f'call:get_weather{{"city":"Paris"}} {tag()}'
    question = {"messages": [HumanMessage(text)]}
    if mode == "sync":
        state = agent.invoke(question)
    else:
        state = asyncio.run(asyncio.wait_for(agent.ainvoke(question), WAIT))
    asked, ran, final = state["messages"][1:]
    (call,) = asked.tool_calls
    assert (call["name"], call["args"]) == ("get_weather", {"city": "Paris"})
    assert asked.response_metadata["stop_reason"] == "requires_approval"
    assert isinstance(ran, ToolMessage)
    assert (ran.tool_call_id, ran.content) == (call["id"], "Sunny in Paris")
    assert final.text == f"{TEXT} (tool said: Sunny in Paris)"
    assert final.response_metadata["stop_reason"] == "end_turn"
    (response,) = check_stored_once(
        base_url, agent_id, text, {call["id"]: ("success", "Sunny in Paris")}
    )
    assert [item["tool_call_id"] for item in response["approvals"]] == [call["id"]]


def test_a_toolnode_graph_answers_two_calls_in_one_message_live() -> None:
    """Two client calls in one turn: ToolNode runs both, one approval message answers them."""
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url)
    graph = toolnode_graph(current_model(agent_id), [get_weather])
    text = f'call:get_weather{{"city":"Paris"}} call:get_weather{{"city":"Rome"}} {tag()}'
    state = graph.invoke({"messages": [HumanMessage(text)]})
    kinds = [type(message).__name__ for message in state["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "ToolMessage", "AIMessage"]
    calls = state["messages"][1].tool_calls
    assert [call["args"] for call in calls] == [{"city": "Paris"}, {"city": "Rome"}]
    assert len({call["id"] for call in calls}) == 2
    assert state["messages"][-1].text.startswith(f"{TEXT} (tool said: Sunny in ")
    (response,) = check_stored_once(
        base_url,
        agent_id,
        text,
        {
            calls[0]["id"]: ("success", "Sunny in Paris"),
            calls[1]["id"]: ("success", "Sunny in Rome"),
        },
    )
    assert sorted(item["tool_call_id"] for item in response["approvals"]) == sorted(
        call["id"] for call in calls
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("stream_tokens", [False, True], ids=["steps", "tokens"])
@pytest.mark.parametrize("approve", [True, False], ids=["approve", "deny"])
def test_a_gated_server_tool_is_approved_or_denied_live(
    mode: str, stream_tokens: bool, approve: bool
) -> None:
    """``approvals=``: the decision reaches the gated call; a denial's reason reaches the agent.

    A denial's tool return is in the stream in steps mode only (0.16.8 streams none in
    tokens mode after a denial, only after an approval); the server stores it either way.
    """
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url, gated="memory_insert")
    model = current_model(agent_id, stream_tokens=stream_tokens)
    text = f"call:memory_insert please {tag()}"
    asked = model.invoke([HumanMessage(text)])
    (pending,) = approval_blocks(asked)
    reason = None if approve else f"Not now {tag()}"
    decision = ApprovalDecision(tool_call_id=pending["id"], approve=approve, reason=reason)
    said_before = [HumanMessage(text), asked]
    if mode == "sync":
        reply = model.invoke(said_before, approvals=[decision])
    else:
        answer = model.ainvoke(said_before, approvals=[decision])
        reply = asyncio.run(asyncio.wait_for(answer, WAIT))
    assert reply.text == TEXT
    assert reply.response_metadata["stop_reason"] == "end_turn"
    status, said = ("success", "The user likes tea.") if approve else ("error", str(reason))
    blocks = [block for block in reply.content if isinstance(block, dict)]
    results = [block for block in blocks if block["type"] == "server_tool_result"]
    assert len(results) == (0 if stream_tokens and not approve else 1)
    for result in results:
        assert result["tool_call_id"] == pending["id"]
        assert result["status"] == status
        assert said in result["output"]
    (response,) = check_stored_once(base_url, agent_id, text, {pending["id"]: (status, said)})
    assert (response["approve"], response["reason"]) == (approve, reason)


def test_letta_node_resumes_an_approval_after_a_restart_live() -> None:
    """``letta_node`` pauses on the gated call; a new graph over the same saver approves it."""
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url, gated="memory_insert")
    saver = InMemorySaver()
    config: RunnableConfig = {"configurable": {"thread_id": tag()}}
    text = f"call:memory_insert please {tag()}"
    paused = approval_graph(current_model(agent_id), saver).invoke(
        {"messages": [HumanMessage(text)]}, config
    )
    (interrupted,) = paused["__interrupt__"]
    (action,) = interrupted.value["action_requests"]
    assert action["name"] == "memory_insert"
    (waiting,) = stored_approval_requests(base_url, f"/v1/agents/{agent_id}/messages")
    assert action["id"] == waiting["tool_call_id"]
    assert action["args"] == waiting["arguments"]
    # a restart: a new model and graph over the same checkpoints
    restarted = approval_graph(current_model(agent_id), saver)
    final = restarted.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config)
    kinds = [type(message).__name__ for message in final["messages"]]
    assert kinds == ["HumanMessage", "AIMessage", "AIMessage"]
    assert final["messages"][-1].text == TEXT
    assert final["messages"][-1].response_metadata["stop_reason"] == "end_turn"
    (response,) = check_stored_once(
        base_url, agent_id, text, {action["id"]: ("success", "The user likes tea.")}
    )
    assert response["approve"] is True


def test_human_in_the_loop_rejects_a_client_tool_live() -> None:
    """``HumanInTheLoopMiddleware`` rejects the call: the server stores an error with the why."""
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url)
    agent = create_agent(
        current_model(agent_id),
        [get_weather],
        middleware=[HumanInTheLoopMiddleware(interrupt_on={"get_weather": True})],
        checkpointer=InMemorySaver(),
    )
    config: RunnableConfig = {"configurable": {"thread_id": tag()}}
    text = f'call:get_weather{{"city":"Paris"}} {tag()}'
    paused = agent.invoke({"messages": [HumanMessage(text)]}, config)
    (request,) = paused["__interrupt__"][0].value["action_requests"]
    assert (request["name"], request["args"]) == ("get_weather", {"city": "Paris"})
    (waiting,) = stored_approval_requests(base_url, f"/v1/agents/{agent_id}/messages")
    why = f"not today {tag()}"
    final = agent.invoke(
        Command(resume={"decisions": [{"type": "reject", "message": why}]}), config
    )
    assert final["messages"][-1].text.startswith(f"{TEXT} (tool said: ")
    check_stored_once(base_url, agent_id, text, {waiting["tool_call_id"]: ("error", why)})


async def _structured(model: ChatLetta, text: str) -> list[Any]:
    return [out async for out in model.with_structured_output(Joke).astream(text)]


@pytest.mark.parametrize(
    "how",
    [
        "invoke",
        "ainvoke",
        "stream",
        "astream",
    ],
)
def test_structured_output_leaves_no_call_waiting_live(how: str) -> None:
    """``with_structured_output``: the parsed object, the agent answered, the next turn runs."""
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url)
    model = current_model(agent_id)
    structured = model.with_structured_output(Joke)
    text = f"Tell me a joke about Cats {tag()}"
    if how == "invoke":
        parsed = structured.invoke(text)
    elif how == "ainvoke":
        parsed = asyncio.run(asyncio.wait_for(structured.ainvoke(text), WAIT))
    else:
        outs = (
            list(structured.stream(text))
            if how == "stream"
            else asyncio.run(asyncio.wait_for(_structured(model, text), WAIT))
        )
        parsed = outs[-1] if outs else None
    (call,) = stored_approval_requests(base_url, f"/v1/agents/{agent_id}/messages")
    assert call["name"] == "Joke"
    assert call["arguments"] == {"setup": "Cats", "punchline": "Cats"}
    assert parsed == Joke(setup="Cats", punchline="Cats")
    after = f"and now something else {tag()}"
    assert model.invoke(after).text == TEXT  # no pending approval refused it
    check_stored_once(
        base_url, agent_id, text, {call["tool_call_id"]: ("success", "Structured output received.")}
    )
    users = [m["content"] for m in stored(base_url, agent_id, "user_message")]
    assert users.count(after) == 1


def test_a_drop_while_a_client_call_waits_is_resumed_live() -> None:
    """A cut stream of a turn ending in a client call: resumed, the call once, sent once."""
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url)
    text = f'slow:0.3 call:get_weather{{"city":"Paris"}} {tag()}'
    recorder = Recorder()
    with CuttingProxy(base_url, cut_after=2) as proxy:
        model = current_model(agent_id, base_url=proxy.base_url).bind_tools([get_weather])
        ask = RunnableLambda(lambda words: list(model.stream(words)))
        chunks = ask.invoke(text, {"callbacks": [recorder]})
    run_id = chunks[-1].response_metadata["run_id"]
    check_one_resume(base_url, AGENT_DIRECT, proxy, recorder, run_id)
    asked = summed(chunks)
    (call,) = asked.tool_calls
    assert (call["name"], call["args"]) == ("get_weather", {"city": "Paris"})
    assert asked.response_metadata["stop_reason"] == "requires_approval"
    (waiting,) = stored_approval_requests(base_url, f"/v1/agents/{agent_id}/messages")
    assert call["id"] == waiting["tool_call_id"]
    # the call, answered, closes the turn: once, as if the stream had never broken
    answered = [HumanMessage(text), asked, ToolMessage("Sunny in Paris", tool_call_id=call["id"])]
    final = current_model(agent_id).bind_tools([get_weather]).invoke(answered)
    assert final.text == f"{TEXT} (tool said: Sunny in Paris)"
    check_stored_once(base_url, agent_id, text, {call["id"]: ("success", "Sunny in Paris")})


# ------------------------------------------------------------------ issue 17: stops, processes


def run_statuses(base_url: str, agent_id: str) -> list[str]:
    """The statuses of the agent's runs, oldest first."""
    with admin(base_url) as client:
        response = client.get("/v1/runs/", params={"agent_id": agent_id, "order": "asc"})
    assert response.status_code == 200, response.text
    return [run["status"] for run in response.json()]


@pytest.mark.parametrize("cancel", [False, True], ids=["default", "cancel_on_close"])
def test_break_then_the_next_turn_keeps_the_order_live(cancel: bool) -> None:
    """``break`` mid-stream, then the next message on the same agent thread.

    Default: the abandoned run finishes and its turn is stored before the next one.
    ``cancel_on_close``: the run is cancelled, and the next turn starts once the
    cancel took effect (the run's status says so); what the cancelled turn kept is never
    stored after the next one.
    """
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url)
    word = tag()
    first, second = f"first {word}, slow:0.3", f"second {word}"
    model = current_model(agent_id, cancel_on_close=cancel)
    for chunk in model.stream(first):
        if chunk.text:
            break
    assert model.invoke(second).text == TEXT
    assert run_statuses(base_url, agent_id) == ["cancelled" if cancel else "completed", "completed"]
    # No turn overlapped the next; a one-step turn cancelled mid-answer leaves nothing.
    assert stored_turns(base_url, agent_id, word) == ([second] if cancel else [first, second])


async def test_a_task_cancelled_mid_stream_then_the_next_turn_live() -> None:
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url)
    word = tag()
    first, second = f"first {word}, slow:0.3", f"second {word}"
    model = current_model(agent_id)
    started = asyncio.Event()

    async def read() -> None:
        async for chunk in model.astream(first):
            if chunk.text:
                started.set()

    task = asyncio.create_task(read())
    await asyncio.wait_for(started.wait(), WAIT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await asyncio.wait_for(model.ainvoke(second), WAIT)).text == TEXT
    assert stored_turns(base_url, agent_id, word) == [first, second]


@pytest.mark.parametrize("version", ["0.16.8", "0.11.7"])
async def test_a_foreground_run_whose_read_a_cancellation_cut_ends_before_the_next_turn_live(
    version: str,
) -> None:
    """A foreground stream cannot be read again: the server's listing of runs tells when
    the run is over (0.11.7 has no lock of its own: that wait alone keeps the turns apart).
    """
    base_url, agent_id = server(version)
    if version == CURRENT:
        agent_id = fresh_agent(base_url)
    word = tag()
    first, second = f"first {word}, slow:0.3", f"second {word}"
    model = ChatLetta(agent_id=agent_id, base_url=base_url, background=False, total_timeout=WAIT)
    started = asyncio.Event()

    async def read() -> None:
        async for chunk in model.astream(first):
            if chunk.text:
                started.set()  # and the task waits on the next read

    task = asyncio.create_task(read())
    await asyncio.wait_for(started.wait(), WAIT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await asyncio.wait_for(model.ainvoke(second), WAIT)).text == TEXT
    assert stored_turns(base_url, agent_id, word) == [first, second]


_ONE_TURN = """
import sys
from langchain_letta import ChatLetta
model = ChatLetta(agent_id=sys.argv[2], base_url=sys.argv[1], total_timeout=60)
print(model.invoke(sys.argv[3]).text)
"""


def test_two_processes_on_one_agent_thread_never_overlap_live() -> None:
    """Agent-direct mode: the server keeps the turns of the agent's own thread apart.

    Two processes send at once; the second is refused as busy until the first is over,
    and waits (no in-process rule can see the other process).
    """
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url)
    word = tag()
    texts = [f"process {n} {word}, delay:2" for n in (1, 2)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _ONE_TURN, base_url, agent_id, text],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for text in texts
    ]
    outputs = [process.communicate(timeout=WAIT) for process in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()
        assert out.decode().strip() == TEXT
    assert sorted(stored_turns(base_url, agent_id, word)) == sorted(texts)


@pytest.mark.parametrize("in_conversation", [False, True], ids=["agent", "conversation"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_request_cut_before_its_first_frame_is_sent_again_and_stored_once_live(
    mode: str, in_conversation: bool
) -> None:
    """0.16.7+: the same otids again get the run they started, not a second run."""
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url)
    params: dict[str, Any] = {}
    stored_at = f"/v1/agents/{agent_id}/messages"
    if in_conversation:
        with LettaClient(base_url=base_url) as client:
            params["conversation_id"] = client.create_conversation(agent_id)
        stored_at = f"/v1/conversations/{params['conversation_id']}/messages"
    text = f"cut before the first frame {tag()}, slow:0.2"
    with CuttingProxy(base_url, cut_after=0) as proxy:
        model = current_model(agent_id, base_url=proxy.base_url, **params)
        if mode == "sync":
            answer = model.invoke(text)
        else:
            answer = asyncio.run(asyncio.wait_for(model.ainvoke(text), WAIT))
    assert proxy.cuts == 1
    posts = [line for line in proxy.requests if line.startswith("POST") and "/messages" in line]
    assert len(posts) == 2  # the same request, sent again
    assert answer.text == TEXT
    assert answer.response_metadata["stop_reason"] == "end_turn"
    stored = history(base_url, stored_at)
    assert [m["content"] for m in stored if m["message_type"] == "user_message"].count(text) == 1
    run_id = answer.response_metadata["run_id"]
    answers = [m for m in stored if m["message_type"] == "assistant_message"]
    assert [m["content"] for m in answers if m.get("run_id") == run_id] == [TEXT]
