"""``examples/langgraph_app`` served by ``langgraph dev``, against the lab's real Letta 0.16.8.

Skipped unless ``LETTA_LIVE=1`` (``make test-live``, which starts the lab: see
``tests/test_live.py`` and ``scripts/letta_lab.py``). One ``langgraph dev`` (the
in-memory LangGraph Server of ``langgraph-cli[inmem]``) serves the app for the whole
module, offline (no analytics, no version check, no tracing, no browser), on a free
loopback port, with ``--n-jobs-per-worker 4`` so that two threads' runs really go at
once. Its agent is a fresh one of the lab's configuration whose ``memory_insert``
needs approval. The tests drive it with LangGraph's own client (``langgraph_sdk``)
and check what the Letta server stored:

* ``runs.stream(..., stream_mode="messages-tuple")`` delivers the answer in several
  token chunks, and the thread's state holds the whole answer;
* two threads at once talk in two Letta conversations, each holding only its own
  messages;
* a gated call interrupts the run; resuming with ``approve`` runs the tool,
  ``reject`` does not (the tool's return in the conversation says which);
* the Letta API key given to the app never shows in the server's log;
* double-texting, one test per ``multitask_strategy`` (run 2 on a thread while
  Letta answers run 1): ``reject`` refuses run 2 and Letta holds message 1 once;
  ``enqueue`` stores 1 then 2, once each, not overlapping; ``interrupt`` keeps run 1's
  Letta turn and stores message 2 after it, message 1 never sent again (its otid is
  in the thread already); ``rollback`` stores both turns while the graph forgets
  message 1, and the node says so in the server's log.

The app is copied into a temporary folder first: ``langgraph dev`` keeps its threads
in ``.langgraph_api`` under its working directory, which must not be the checkout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError, NotFoundError

from scripts import letta_lab
from tests.test_live import (
    CURRENT,
    TEXT,
    WAIT,
    admin,
    fresh_agent,
    history,
    server,
    tag,
    user_texts,
)

pytestmark = pytest.mark.skipif(
    os.environ.get("LETTA_LIVE") != "1", reason="live servers: run with make test-live"
)

APP = Path(__file__).resolve().parent.parent / "examples" / "langgraph_app"
LANGGRAPH = Path(sys.executable).with_name("langgraph")
API_KEY = "sk-let-live-langgraph-" + "0" * 24
"""A dummy Letta API key for the app (the lab's server does not check it): the tests
look for it where it must never be, in the server's log."""
STARTUP = 90.0
"""Seconds ``langgraph dev`` may take to answer ``/ok``."""


def free_port() -> int:
    """A loopback port nothing listens on now (the kernel's choice)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_env(base_url: str, agent_id: str) -> dict[str, str]:
    """The app's environment: its agent, offline, untraced."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LANGSMITH_", "LANGCHAIN_", "LETTA_"))
    }
    env.update(
        LETTA_BASE_URL=base_url,
        LETTA_AGENT_ID=agent_id,
        LETTA_API_KEY=API_KEY,
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGGRAPH_NO_VERSION_CHECK="true",
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
    )
    return env


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` and everything it started (its process group): TERM, then KILL."""
    letta_lab.stop(process, "langgraph dev")
    # the uvicorn workers are in the group too, and may outlive their parent
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class LangGraphDev:
    """A running ``langgraph dev`` serving a copy of the app."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log

    def output(self) -> str:
        """What the server wrote so far."""
        return self.log.read_text(errors="replace")


def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``/ok`` until it answers; fail at once if the server exited, or after STARTUP."""
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:]
            pytest.fail(f"langgraph dev exited with {process.returncode}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/ok", timeout=2.0, trust_env=False).status_code == 200:
                return
        time.sleep(0.25)
    pytest.fail(f"langgraph dev was not up after {STARTUP:.0f} s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def gated_agent() -> str:
    """The app's agent: fresh, of the lab's configuration, ``memory_insert`` gated."""
    base_url, _ = server(CURRENT)
    return fresh_agent(base_url, gated="memory_insert")


@pytest.fixture(scope="module")
def langgraph_dev(
    gated_agent: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LangGraphDev]:
    """``langgraph dev`` on the app against the lab's 0.16.8; stopped whatever happens."""
    base_url, _ = server(CURRENT)
    folder = tmp_path_factory.mktemp("langgraph_app")
    for name in ("langgraph.json", "graph.py"):
        shutil.copy(APP / name, folder / name)
    port = free_port()
    log = folder / "langgraph-dev.log"
    command = [
        str(LANGGRAPH),
        "dev",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-browser",
        "--no-reload",
        "--n-jobs-per-worker",
        "4",
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=server_env(base_url, gated_agent),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        wait_until_up(url, process, log)
        sys.stderr.write(f"langgraph dev up in {time.monotonic() - started:.1f} s\n")
        yield LangGraphDev(url, log)
    finally:
        stop(process)
        # kept beside the lab's own logs, for a failure's post-mortem
        logs = letta_lab.CACHE / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, logs / "langgraph-dev.log")


@pytest.fixture
async def client(langgraph_dev: LangGraphDev) -> AsyncIterator[LangGraphClient]:
    """LangGraph's own async client of the running server."""
    client = get_client(url=langgraph_dev.url, timeout=WAIT)
    try:
        yield client
    finally:
        await client.aclose()


def text_of(content: Any) -> str:
    """The text of a message's content as the server sends it (a string or blocks)."""
    if isinstance(content, str):
        return content
    return "".join(
        block.get("text", "")
        for block in content
        if isinstance(block, dict) and block.get("type") == "text"
    )


def human(text: str) -> dict[str, Any]:
    """A run's input: one human message."""
    return {"messages": [{"type": "human", "content": text}]}


async def final_messages(client: LangGraphClient, thread_id: str) -> list[dict[str, Any]]:
    """The messages of the thread's current state."""
    state = await client.threads.get_state(thread_id)
    values = state["values"]
    assert isinstance(values, dict)
    messages: list[dict[str, Any]] = values["messages"]
    return messages


def conversation_of(message: dict[str, Any]) -> str:
    """The Letta conversation an answer of the agent was given in."""
    conversation = message["response_metadata"]["conversation_id"]
    assert isinstance(conversation, str)
    assert conversation.startswith("conv-")
    return conversation


async def test_tokens_stream_through_langgraph_server(
    client: LangGraphClient, gated_agent: str
) -> None:
    """``messages-tuple``: the answer comes in token chunks; the state holds all of it."""
    base_url, _ = server(CURRENT)
    thread = await client.threads.create()
    # slow: the fake LLM waits between its streamed chunks, so the deltas arrive apart
    text = f"slow:0.5 stream please {tag()}"

    async def read() -> list[Any]:
        return [
            part
            async for part in client.runs.stream(
                thread["thread_id"], "agent", input=human(text), stream_mode="messages-tuple"
            )
        ]

    parts = await asyncio.wait_for(read(), WAIT)
    assert [part.data for part in parts if part.event == "error"] == []
    chunks = [part.data for part in parts if part.event == "messages"]
    said = [
        text_of(chunk["content"])
        for chunk, meta in chunks
        if chunk["type"] in ("AIMessageChunk", "ai") and meta["langgraph_node"] == "letta"
    ]
    pieces = [piece for piece in said if piece]
    assert len(pieces) >= 3, f"the answer came in {len(pieces)} chunk(s): {pieces}"
    assert "".join(pieces) == TEXT

    messages = await final_messages(client, thread["thread_id"])
    assert [m["type"] for m in messages] == ["human", "ai"]
    answer = messages[-1]
    assert text_of(answer["content"]) == TEXT
    assert answer["response_metadata"]["stop_reason"] == "end_turn"
    assert answer["response_metadata"]["agent_id"] == gated_agent
    stored = history(base_url, f"/v1/conversations/{conversation_of(answer)}/messages")
    assert user_texts(stored) == [text]  # sent once


def run_span(base_url: str, run_id: str) -> tuple[datetime, datetime]:
    """When the Letta run ``run_id`` was created and completed (UTC)."""
    with admin(base_url) as letta:
        response = letta.get(f"/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "completed"
    # 0.16.8 writes these in UTC, without an offset
    began, ended = (
        datetime.fromisoformat(run[key].removesuffix("Z")).replace(tzinfo=UTC)
        for key in ("created_at", "completed_at")
    )
    return began, ended


async def test_two_threads_at_once_talk_in_two_conversations(client: LangGraphClient) -> None:
    """Two threads' runs go at once, each in its own Letta conversation, nothing mixed."""
    base_url, _ = server(CURRENT)
    word = tag()
    alice, bob = [(await client.threads.create())["thread_id"] for _ in range(2)]
    said = {
        alice: [f"alice {word}, delay:3", f"alice again {word}"],
        bob: [f"bob {word}, delay:3"],
    }

    async def turn(thread_id: str, text: str) -> dict[str, Any]:
        await client.runs.wait(thread_id, "agent", input=human(text))
        answer = (await final_messages(client, thread_id))[-1]
        assert text_of(answer["content"]) == TEXT
        return answer

    first, second = await asyncio.wait_for(
        asyncio.gather(turn(alice, said[alice][0]), turn(bob, said[bob][0])), WAIT
    )
    # The two Letta runs overlapped (each took 3 s at least in the fake LLM): the server
    # ran both threads at once, not one after the other.
    (alice_began, alice_ended), (bob_began, bob_ended) = (
        run_span(base_url, answer["response_metadata"]["run_id"]) for answer in (first, second)
    )
    assert (alice_ended - alice_began).total_seconds() >= 3.0
    assert (bob_ended - bob_began).total_seconds() >= 3.0
    assert alice_began < bob_ended
    assert bob_began < alice_ended
    conversations = {alice: conversation_of(first), bob: conversation_of(second)}
    assert conversations[alice] != conversations[bob]
    again = await asyncio.wait_for(turn(alice, said[alice][1]), WAIT)
    assert conversation_of(again) == conversations[alice]  # the thread keeps its conversation
    for thread_id, conversation in conversations.items():
        stored = history(base_url, f"/v1/conversations/{conversation}/messages")
        assert user_texts(stored) == sorted(said[thread_id])
        answers = [m for m in stored if m["message_type"] == "assistant_message"]
        assert [m["content"] for m in answers] == [TEXT] * len(said[thread_id])


def interrupts_of(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The interrupts a thread's state waits on (every task's)."""
    return [interrupt for task in state["tasks"] for interrupt in task.get("interrupts", [])]


@pytest.mark.parametrize("approve", [True, False], ids=["approve", "reject"])
async def test_an_approval_interrupts_and_the_decision_resumes(
    client: LangGraphClient, approve: bool
) -> None:
    """The gated call pauses the run; ``approve`` runs the tool, ``reject`` does not."""
    base_url, _ = server(CURRENT)
    thread = await client.threads.create()
    thread_id = thread["thread_id"]
    text = f"call:memory_insert please {tag()}"
    await asyncio.wait_for(client.runs.wait(thread_id, "agent", input=human(text)), WAIT)

    state = await client.threads.get_state(thread_id)
    assert state["next"] == ["letta"]
    (interrupt,) = interrupts_of(dict(state))
    (action,) = interrupt["value"]["action_requests"]
    assert action["name"] == "memory_insert"
    assert interrupt["value"]["review_configs"][0]["allowed_decisions"] == ["approve", "reject"]
    values = state["values"]
    assert isinstance(values, dict)
    waiting = values["messages"][-1]
    conversation = conversation_of(waiting)
    assert waiting["response_metadata"]["stop_reason"] == "requires_approval"
    path = f"/v1/conversations/{conversation}/messages"
    stored = history(base_url, path)
    (request,) = [m for m in stored if m["message_type"] == "approval_request_message"]
    assert request["tool_call"]["tool_call_id"] == action["id"]
    assert not [m for m in stored if m["message_type"] == "tool_return_message"]  # not yet run

    reason = f"not now {tag()}"
    decision = {"type": "approve"} if approve else {"type": "reject", "message": reason}
    await asyncio.wait_for(
        client.runs.wait(thread_id, "agent", command={"resume": {"decisions": [decision]}}), WAIT
    )
    state = await client.threads.get_state(thread_id)
    assert state["next"] == []
    assert interrupts_of(dict(state)) == []
    messages = await final_messages(client, thread_id)
    assert [m["type"] for m in messages] == ["human", "ai", "ai"]
    assert text_of(messages[-1]["content"]) == TEXT
    assert messages[-1]["response_metadata"]["stop_reason"] == "end_turn"
    assert conversation_of(messages[-1]) == conversation

    stored = history(base_url, path)
    assert user_texts(stored) == [text]  # the message was sent once, resume or not
    (response,) = [m for m in stored if m["message_type"] == "approval_response_message"]
    assert response["approve"] is approve
    returns = [
        item
        for message in stored
        if message["message_type"] == "tool_return_message"
        for item in (message.get("tool_returns") or [message])
    ]
    (result,) = returns
    assert result["tool_call_id"] == action["id"]
    if approve:  # the tool ran: memory_insert's own result
        assert (result["status"], response["reason"]) == ("success", None)
        assert "The user likes tea." in result["tool_return"]
    else:  # the tool did not run: the denial, with its reason, is the result
        assert (result["status"], response["reason"]) == ("error", reason)
        assert reason in result["tool_return"]
        assert "The user likes tea." not in result["tool_return"]


async def test_the_api_key_never_shows_in_the_servers_log(
    client: LangGraphClient, langgraph_dev: LangGraphDev
) -> None:
    """ChatLetta sends the key to Letta; nothing it logs (nor the server's log) shows it."""
    thread = await client.threads.create()
    await asyncio.wait_for(
        client.runs.wait(thread["thread_id"], "agent", input=human(f"hi {tag()}")), WAIT
    )
    assert text_of((await final_messages(client, thread["thread_id"]))[-1]["content"]) == TEXT
    output = langgraph_dev.output()
    assert "/v1/conversations/" in output  # the log does show ChatLetta's requests
    assert API_KEY not in output
    assert API_KEY[-20:] not in output


# --------------------------------------------------------------------------- double-texting
#
# A second message on a thread whose run is still going ("double-texting"). LangGraph
# Server offers four answers (``multitask_strategy``); for a stateful agent each must
# keep the agent's history whole: nothing lost (every message the server accepted is
# stored), nothing duplicated (each stored once), nothing interleaved (a user message
# is stored only once the turn before it was answered). Each test starts run 1 with a
# slow message (the fake LLM waits), starts run 2 once Letta runs run 1's turn, waits
# (bounded) for both to end and for the agent to be idle, then reads what Letta stored
# in the thread's conversation, message by message with the Letta run each came from.

GRAPH_ACTIVE = ("pending", "running")
LETTA_ACTIVE = ["created", "running"]
POLL = 0.25


def letta_runs(base_url: str, **params: str) -> list[dict[str, Any]]:
    """Letta's runs matching ``params`` (``agent_id``, ``conversation_id``), oldest first."""
    with admin(base_url) as letta:
        response = letta.get("/v1/runs/", params={"order": "asc", "limit": 100, **params})
    assert response.status_code == 200, response.text
    runs: list[dict[str, Any]] = response.json()
    return runs


def active_letta_runs(base_url: str, agent_id: str) -> list[dict[str, Any]]:
    with admin(base_url) as letta:
        response = letta.get(
            "/v1/runs/", params={"agent_id": agent_id, "statuses": LETTA_ACTIVE, "limit": 100}
        )
    assert response.status_code == 200, response.text
    runs: list[dict[str, Any]] = response.json()
    return runs


async def letta_idle(base_url: str, agent_id: str) -> None:
    """Wait (at most WAIT s) until none of the agent's Letta runs is going."""
    deadline = time.monotonic() + WAIT
    while active := active_letta_runs(base_url, agent_id):
        if time.monotonic() > deadline:
            pytest.fail(f"Letta runs still going after {WAIT:.0f} s: {active}")
        await asyncio.sleep(POLL)


async def new_letta_run(base_url: str, agent_id: str, known: set[str]) -> dict[str, Any]:
    """The first Letta run of the agent not in ``known``, once it is going (at most WAIT s)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        fresh = [run for run in active_letta_runs(base_url, agent_id) if run["id"] not in known]
        if fresh:
            return fresh[0]
        await asyncio.sleep(POLL)
    pytest.fail(f"no new Letta run began within {WAIT:.0f} s")


async def graph_run_end(client: LangGraphClient, thread_id: str, run_id: str) -> str:
    """The status a LangGraph run ended with (``deleted`` if it is gone); at most WAIT s."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            run = await client.runs.get(thread_id, run_id)
        except NotFoundError:
            return "deleted"
        if run["status"] not in GRAPH_ACTIVE:
            return str(run["status"])
        if time.monotonic() > deadline:
            pytest.fail(f"LangGraph run {run_id} still {run['status']} after {WAIT:.0f} s")
        await asyncio.sleep(POLL)


async def first_token(client: LangGraphClient, thread_id: str, run_id: str) -> None:
    """Wait (at most WAIT s) until run ``run_id`` streamed a piece of the agent's answer."""

    async def read() -> None:
        async for part in client.runs.join_stream(thread_id, run_id):
            if part.event == "messages" and text_of(part.data[0].get("content", "")):
                return
        pytest.fail(f"run {run_id} ended before it streamed any token")

    await asyncio.wait_for(read(), WAIT)


def stored_log(base_url: str, conversation: str) -> list[dict[str, Any]]:
    """Every message Letta stored in ``conversation``, oldest first."""
    with admin(base_url) as letta:
        response = letta.get(
            f"/v1/conversations/{conversation}/messages", params={"limit": 500, "order": "asc"}
        )
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()
    return messages


def interleaved(stored: list[dict[str, Any]]) -> bool:
    """Whether a turn's user message was stored while another turn had no answer yet.

    A turn is one Letta run; its user messages (one request may carry several) wait
    for its ``assistant_message``. A user message of another run before that answer
    means the two turns ran into each other.
    """
    waiting: str | None = None  # the Letta run whose user message has no answer yet
    for message in stored:
        run = message.get("run_id")
        if message["message_type"] == "user_message":
            if waiting is not None and run != waiting:
                return True
            waiting = run
        elif message["message_type"] == "assistant_message" and run == waiting:
            waiting = None
    return False


def utc(stamp: str) -> datetime:
    """A timestamp of Letta 0.16.8 (UTC, with or without an offset) as an aware datetime."""
    moment = datetime.fromisoformat(stamp.removesuffix("Z"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_gaps(runs: list[dict[str, Any]], stored: list[dict[str, Any]]) -> list[float]:
    """Per Letta run after the first: seconds from the answer of the run before to its start.

    Negative: the run began before the one before it had answered (turns overlapped).
    The run's own ``completed_at`` is not used: 0.16.8 writes it a little after it
    lets the conversation go, so the next run may begin before it.
    """
    answered = {
        m["run_id"]: utc(m["date"]) for m in stored if m["message_type"] == "assistant_message"
    }
    return [
        round((utc(later["created_at"]) - answered[earlier["id"]]).total_seconds(), 3)
        if earlier["id"] in answered
        else float("-inf")  # never answered: whatever came next overlapped it
        for earlier, later in pairwise(runs)
    ]


class DoubleText:
    """What one double-text did: LangGraph's side and what the Letta server stored.

    Attributes:
        first, second: The two messages (run 1's, run 2's).
        statuses: How LangGraph runs 1 and 2 ended (``deleted``: gone, as after a
            rollback; run 2 ``refused``: never created).
        refusal: LangGraph's error refusing run 2, if it did.
        letta_runs: The Letta runs of the thread's conversation, oldest first, as
            ``(label, status)``: ``L1`` is run 1's (the one going when run 2 was
            made); the others can only be run 2's node.
        turns: The user messages stored, in order, as ``(text, Letta run label)``.
        otids: Their ``otid`` s, in the same order (ChatLetta derives a message's
            otid from its LangChain id and the thread: the same message, the same otid).
        interleaved: A user message was stored while the turn before had no answer.
        gaps: Per Letta run after the first, seconds from the previous run's answer
            to its start (:func:`run_gaps`).
        overlapped: A Letta run of the conversation began before the one before it
            had answered (a negative gap).
        state: The thread's final state, as ``(type, text)`` per message.
        log: What ``langgraph dev`` logged from the moment run 2 was asked for.
    """

    def __init__(self, **fields: Any) -> None:
        self.first: str = fields["first"]
        self.second: str = fields["second"]
        self.statuses: tuple[str, str] = fields["statuses"]
        self.refusal: Exception | None = fields["refusal"]
        self.letta_runs: list[tuple[str, str]] = fields["letta_runs"]
        self.turns: list[tuple[str, str]] = fields["turns"]
        self.otids: list[str | None] = fields["otids"]
        self.interleaved: bool = fields["interleaved"]
        self.gaps: list[float] = fields["gaps"]
        self.overlapped = any(gap < 0 for gap in self.gaps)
        self.state: list[tuple[str, str]] = fields["state"]
        self.log: str = fields["log"]

    def summary(self) -> str:
        """One line for the test's output: what happened, by label."""
        names = {self.first: "msg1", self.second: "msg2"}
        return (
            f"graph runs {self.statuses}; letta runs {self.letta_runs}; stored "
            f"{[(names.get(text, text), run) for text, run in self.turns]}; otids {self.otids}; "
            f"interleaved "
            f"{self.interleaved}; gaps {self.gaps} s; state "
            f"{[(kind, names.get(text, text)) for kind, text in self.state]}"
        )


async def double_text(
    client: LangGraphClient,
    langgraph_dev: LangGraphDev,
    agent_id: str,
    strategy: str,
    *,
    mid_stream: bool = False,
) -> DoubleText:
    """Run 1 with a slow message, run 2 on the same thread while Letta answers run 1.

    Run 2 is asked for once Letta runs run 1's turn: before its first token (the fake
    LLM waits 5 s before answering), or ``mid_stream`` (1 s between the answer's
    chunks; run 2 once run 1 streamed a token). Every wait is bounded.
    """
    base_url, _ = server(CURRENT)
    await letta_idle(base_url, agent_id)  # nothing of an earlier test still going
    known = {run["id"] for run in letta_runs(base_url, agent_id=agent_id)}
    word = tag()
    pace = "slow:1" if mid_stream else "delay:5"
    first, second = f"first {word}, {pace}", f"second {word}"
    thread_id = (await client.threads.create())["thread_id"]
    run1 = await client.runs.create(
        thread_id, "agent", input=human(first), stream_mode=["values", "messages-tuple"]
    )
    letta_first = await new_letta_run(base_url, agent_id, known)
    conversation = letta_first["conversation_id"]
    assert isinstance(conversation, str)
    assert conversation.startswith("conv-")
    if mid_stream:
        await first_token(client, thread_id, run1["run_id"])
    else:
        assert (await client.runs.get(thread_id, run1["run_id"]))["status"] == "running"
    offset = len(langgraph_dev.output())
    refusal: Exception | None = None
    try:
        run2 = await client.runs.create(
            thread_id, "agent", input=human(second), multitask_strategy=strategy
        )
    except ConflictError as refused:
        refusal, run2 = refused, None
    if run2 is not None:
        second_status = await graph_run_end(client, thread_id, run2["run_id"])
    else:
        second_status = "refused"
    first_status = await graph_run_end(client, thread_id, run1["run_id"])
    await letta_idle(base_url, agent_id)

    runs = letta_runs(base_url, conversation_id=conversation)
    labels = {letta_first["id"]: "L1"}
    for run in runs:
        labels.setdefault(run["id"], f"L{len(labels) + 1}")
    stored = stored_log(base_url, conversation)
    values = (await client.threads.get_state(thread_id))["values"]
    assert isinstance(values, dict)
    result = DoubleText(
        first=first,
        second=second,
        statuses=(first_status, second_status),
        refusal=refusal,
        letta_runs=[(labels[run["id"]], run["status"]) for run in runs],
        turns=[
            (m["content"], labels.get(m.get("run_id") or "", str(m.get("run_id"))))
            for m in stored
            if m["message_type"] == "user_message"
        ],
        otids=[m.get("otid") for m in stored if m["message_type"] == "user_message"],
        interleaved=interleaved(stored),
        gaps=run_gaps(runs, stored),
        state=[(m["type"], text_of(m["content"])) for m in values.get("messages", [])],
        log=langgraph_dev.output()[offset:],
    )
    after_completed = [
        round((utc(later["created_at"]) - utc(earlier["completed_at"])).total_seconds(), 3)
        for earlier, later in pairwise(runs)
        if earlier["completed_at"]
    ]
    sys.stderr.write(
        f"double-texting {strategy}: {result.summary()}; from completed_at {after_completed} s\n"
    )
    return result


async def test_double_texting_reject(
    client: LangGraphClient, langgraph_dev: LangGraphDev, gated_agent: str
) -> None:
    """``reject``: while run 1 runs, LangGraph refuses run 2 (409); it never reaches the agent.

    For a stateful agent: message 1 is stored once, answered, and nothing else is sent
    (the caller was told, so nothing is lost silently); the state holds the one turn.
    """
    done = await double_text(client, langgraph_dev, gated_agent, "reject")
    assert done.refusal is not None
    assert isinstance(done.refusal, ConflictError)
    assert done.refusal.status_code == 409
    assert "already running a task" in str(done.refusal)
    assert done.statuses == ("success", "refused")
    assert done.letta_runs == [("L1", "completed")]
    assert done.turns == [(done.first, "L1")]
    assert not done.interleaved
    assert done.state == [("human", done.first), ("ai", TEXT)]


async def test_double_texting_enqueue(
    client: LangGraphClient, langgraph_dev: LangGraphDev, gated_agent: str
) -> None:
    """``enqueue``: run 2 starts once run 1 is over.

    For a stateful agent: message 1 then message 2, each stored once, each answered
    before the next began (the Letta runs do not overlap); the state holds both turns.
    """
    done = await double_text(client, langgraph_dev, gated_agent, "enqueue")
    assert done.statuses == ("success", "success")
    assert done.letta_runs == [("L1", "completed"), ("L2", "completed")]
    assert done.turns == [(done.first, "L1"), (done.second, "L2")]
    assert not done.interleaved
    assert not done.overlapped
    assert done.state == [("human", done.first), ("ai", TEXT), ("human", done.second), ("ai", TEXT)]


@pytest.mark.parametrize("mid_stream", [False, True], ids=["before-first-token", "mid-stream"])
async def test_double_texting_interrupt(
    client: LangGraphClient, langgraph_dev: LangGraphDev, gated_agent: str, mid_stream: bool
) -> None:
    """``interrupt``: LangGraph cancels run 1 (a task cancellation) and starts run 2.

    For a stateful agent the turn already sent cannot be taken back: Letta's run of
    message 1 goes on and is kept (stored once, answered), and message 2 is sent once
    that turn is over, once, after it: never interleaved, never sent twice. The graph's
    state lost run 1's answer (LangGraph dropped the cancelled run's writes), so it
    holds message 1 unanswered, then message 2 and the answer.
    """
    done = await double_text(client, langgraph_dev, gated_agent, "interrupt", mid_stream=mid_stream)
    assert done.statuses == ("interrupted", "success")
    # nothing lost, nothing interleaved: run 1's Letta run went on and was waited for
    assert [label for label, _ in done.letta_runs] == ["L1", "L2"]
    assert all(status == "completed" for _, status in done.letta_runs)
    assert not done.interleaved
    assert not done.overlapped
    assert done.state == [("human", done.first), ("human", done.second), ("ai", TEXT)]
    # Run 2's node selects every human message after the agent's last answer in the
    # state, message 1 among them (run 1's answer never reached the state); the thread
    # already holds message 1's otid (derived from its LangChain id), so ChatLetta
    # leaves it out: the agent sees it once.
    assert done.turns == [(done.first, "L1"), (done.second, "L2")]
    assert len(set(done.otids)) == 2


async def test_double_texting_rollback(
    client: LangGraphClient, langgraph_dev: LangGraphDev, gated_agent: str
) -> None:
    """``rollback``: LangGraph cancels run 1, deletes it, and runs 2 from before it.

    A stateful agent's memory cannot be rolled back: message 1 was sent and its turn
    goes on, and the agent remembers it while the graph's state forgets it. What holds:
    message 1 is stored once (its turn kept), message 2 once after it, never
    interleaved. And the node says so (a warning in the server's log) instead of
    answering as if the graph's state were the agent's.
    """
    done = await double_text(client, langgraph_dev, gated_agent, "rollback")
    assert done.statuses == ("deleted", "success")
    assert [label for label, _ in done.letta_runs] == ["L1", "L2"]
    assert all(status == "completed" for _, status in done.letta_runs)
    assert done.turns == [(done.first, "L1"), (done.second, "L2")]
    assert not done.interleaved
    assert not done.overlapped
    # the graph forgot message 1; the agent did not
    assert done.state == [("human", done.second), ("ai", TEXT)]
    said = [
        line
        for line in done.log.splitlines()
        if "langchain_letta" in line and re.search(r"roll(ed)?.?back|diverg", line, re.I)
    ]
    assert said, "the node must say that the agent remembers what the graph rolled back"
