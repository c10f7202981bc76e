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
* the Letta API key given to the app never shows in the server's log.

The app is copied into a temporary folder first: ``langgraph dev`` keeps its threads
in ``.langgraph_api`` under its working directory, which must not be the checkout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

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
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
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
        datetime.fromisoformat(run[key].removesuffix("Z")).replace(tzinfo=timezone.utc)
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
