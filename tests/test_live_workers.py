"""Another worker resumes (issue 20, item 4), live against Letta 0.16.8 (``make test-live``).

Skipped unless ``LETTA_LIVE=1``. Two processes share a LangGraph Postgres checkpointer
(``PostgresSaver``, in a database of its own on the lab's PostgreSQL, whose URI the lab
exports as ``LETTA_LIVE_PG_URI_0_16_8``; Letta's own tables are left alone), as the
workers of a deployment do. The graph is the README's: ``StateGraph(MessagesState)``
with one ``letta_node(agent_id=..., base_url=..., conversation_per_thread=True)``.

* A thread interrupted on an approval (a gated server tool) in process A is resumed
  by process B with ``Command(resume={"decisions": [{"type": "approve"}]})``: the same
  Letta conversation, the tool ran once, the user's message stored once.
* A stream cut in process A (SIGKILL once A printed its first token) is finished by
  process B from the Letta run: B runs the graph again from the checkpoint
  (``graph.invoke(None, config)``) and gets the whole answer, and Letta stored the
  user's message once (the node recognises it by its otid and reads the run that
  took it instead of sending it again).

Processes A and B are ``python -c WORKER ...``, so the kill is real.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.test_live import CURRENT, TEXT, WAIT, admin, fresh_agent, history, server, tag

pytestmark = pytest.mark.skipif(
    os.environ.get("LETTA_LIVE") != "1", reason="live servers: run with make test-live"
)

WORKER = """
import json, sys
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command
from langchain_letta import letta_node

mode, pg_uri, base_url, agent_id, thread, text = sys.argv[1:7]


def say(**line):
    print(json.dumps(line), flush=True)


def described(message):
    meta = message.response_metadata or {}
    return {
        "type": message.type,
        "id": message.id,
        "text": message.text,
        "conversation_id": meta.get("conversation_id"),
        "run_id": meta.get("run_id"),
        "stop_reason": meta.get("stop_reason"),
    }


with PostgresSaver.from_conn_string(pg_uri) as saver:
    graph = StateGraph(MessagesState)
    node = letta_node(
        agent_id=agent_id, base_url=base_url, conversation_per_thread=True, total_timeout=60
    )
    graph.add_node("letta", node)
    graph.add_edge(START, "letta")
    graph.add_edge("letta", END)
    app = graph.compile(checkpointer=saver)
    config = {"configurable": {"thread_id": thread}}
    before = app.get_state(config)
    say(event="before", messages=[described(m) for m in before.values.get("messages", [])],
        next=list(before.next))
    if mode == "ask":
        app.invoke({"messages": [HumanMessage(text)]}, config)
    elif mode == "approve":
        app.invoke(Command(resume={"decisions": [{"type": "approve"}]}), config)
    elif mode == "stream":
        question = {"messages": [HumanMessage(text)]}
        for chunk, _ in app.stream(question, config, stream_mode="messages"):
            say(event="token", text=chunk.text, run_id=chunk.response_metadata.get("run_id"))
    elif mode == "again":
        app.invoke(None, config)
    else:
        raise SystemExit(f"unknown mode {mode}")
    after = app.get_state(config)
    say(event="state", messages=[described(m) for m in after.values["messages"]],
        next=list(after.next), interrupts=[i.value for i in after.interrupts])
"""


# ---------------------------------------------------------------- the checkpointer


@pytest.fixture(scope="module")
def checkpoints() -> Iterator[str]:
    """A database of its own for LangGraph's checkpoints, on the lab's PostgreSQL.

    Made with ``CREATE DATABASE`` (autocommit), its tables by ``PostgresSaver.setup()``
    once here (not by the workers at once); dropped after the module.
    """
    import psycopg
    from langgraph.checkpoint.postgres import PostgresSaver

    key = CURRENT.replace(".", "_")
    letta_uri = os.environ.get(f"LETTA_LIVE_PG_URI_{key}")
    if not letta_uri:
        pytest.fail(f"LETTA_LIVE=1 but no PostgreSQL of Letta {CURRENT} given: run make test-live")
    name = f"langgraph_{tag()}"
    with psycopg.connect(letta_uri, autocommit=True, connect_timeout=10) as connection:
        connection.execute(f"CREATE DATABASE {name}")  # a fresh name: [a-z0-9_] only
    uri = urlunsplit(urlsplit(letta_uri)._replace(path=f"/{name}"))
    with PostgresSaver.from_conn_string(uri) as saver:
        saver.setup()
    try:
        yield uri
    finally:
        with psycopg.connect(letta_uri, autocommit=True, connect_timeout=10) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# ---------------------------------------------------------------- the workers


class Worker:
    """A worker process running the graph once (``WORKER``); its JSON lines read as they come."""

    def __init__(self, mode: str, pg_uri: str, agent_id: str, thread: str, text: str = "") -> None:
        base_url, _ = server(CURRENT)
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, mode, pg_uri, base_url, agent_id, thread, text],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._read_errors, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                self.lines.put(json.loads(line))
        self.lines.put(None)

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        self._stderr.extend(self.process.stderr)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr[-40:])

    def next_line(self, deadline: float) -> dict[str, Any]:
        """The next JSON line the worker printed, before ``deadline`` (``time.monotonic``)."""
        try:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"the worker printed nothing more within {WAIT:.0f} s:\n{self.stderr}")
        if line is None:
            self.process.wait(timeout=WAIT)
            pytest.fail(f"the worker ended ({self.process.returncode}) early:\n{self.stderr}")
        self.seen.append(line)
        return line

    def finish(self) -> dict[str, Any]:
        """Wait for the worker to end well; the graph state it printed last."""
        deadline = time.monotonic() + WAIT
        while True:
            line = self.next_line(deadline)
            if line["event"] == "state":
                break
        assert self.process.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, self.stderr
        return line

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye to the server, as a worker lost with its machine."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=WAIT)

    def close(self) -> None:
        self.kill()
        for reader in self._readers:
            reader.join(timeout=5)


@contextlib.contextmanager
def workers() -> Iterator[list[Worker]]:
    """Collects the workers a test starts; kills whatever is still running after it."""
    started: list[Worker] = []
    try:
        yield started
    finally:
        for worker in started:
            worker.close()


def run_worker(started: list[Worker], *args: str) -> dict[str, Any]:
    """Start a worker, wait for it, give the state it printed last."""
    worker = Worker(*args)
    started.append(worker)
    return worker.finish()


# ---------------------------------------------------------------- what Letta stored


def conversations(base_url: str, agent_id: str) -> list[str]:
    """The ids of the agent's conversations."""
    with admin(base_url) as client:
        response = client.get("/v1/conversations/", params={"agent_id": agent_id})
    assert response.status_code == 200, response.text
    return sorted(conversation["id"] for conversation in response.json())


def stored_everywhere(base_url: str, agent_id: str) -> list[dict[str, Any]]:
    """Every message the agent stored: its own thread's and each conversation's, once each.

    0.16.8 lists a conversation's messages under the agent too: those seen twice count once.
    """
    found: dict[tuple[str, str], dict[str, Any]] = {}
    paths = [f"/v1/agents/{agent_id}/messages"] + [
        f"/v1/conversations/{conversation}/messages"
        for conversation in conversations(base_url, agent_id)
    ]
    for path in paths:
        for message in history(base_url, path):
            found.setdefault((message["id"], message["message_type"]), message)
    return list(found.values())


def runs(base_url: str, agent_id: str) -> list[dict[str, Any]]:
    """The agent's runs, oldest first."""
    with admin(base_url) as client:
        response = client.get("/v1/runs/", params={"agent_id": agent_id, "order": "asc"})
    assert response.status_code == 200, response.text
    listed = response.json()
    assert isinstance(listed, list)
    return listed


def of_kind(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [message for message in messages if message.get("message_type") == kind]


def tool_returns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every tool result among ``messages`` (one ``tool_return_message`` may hold several)."""
    return [
        item
        for message in of_kind(messages, "tool_return_message")
        for item in (message.get("tool_returns") or [message])
    ]


# ---------------------------------------------------------------- the tests


def test_another_worker_resumes_an_approval_live(checkpoints: str) -> None:
    """A pauses on the gated call; B approves it: one conversation, the tool ran once."""
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url, gated="memory_insert")
    thread = f"approval-{tag()}"
    text = f"call:memory_insert please {tag()}"
    with workers() as started:
        paused = run_worker(started, "ask", checkpoints, agent_id, thread, text)
        assert paused["next"] == ["letta"]
        (request,) = paused["interrupts"]
        (action,) = request["action_requests"]
        assert action["name"] == "memory_insert"
        human, asked = paused["messages"]
        assert asked["stop_reason"] == "requires_approval"
        conversation = asked["conversation_id"]
        assert conversation
        # nothing ran yet: the call waits for approval
        waiting = history(base_url, f"/v1/conversations/{conversation}/messages")
        assert [
            m["tool_call"]["tool_call_id"] for m in of_kind(waiting, "approval_request_message")
        ] == [action["id"]]
        assert tool_returns(waiting) == []

        final = run_worker(started, "approve", checkpoints, agent_id, thread)
    # B saw A's checkpoint and went on from it
    assert [m["id"] for m in final["messages"][:2]] == [human["id"], asked["id"]]
    assert [m["type"] for m in final["messages"]] == ["human", "ai", "ai"]
    answer = final["messages"][-1]
    assert answer["text"] == TEXT
    assert answer["stop_reason"] == "end_turn"
    assert answer["conversation_id"] == conversation
    assert final["next"] == []
    assert final["interrupts"] == []
    assert conversations(base_url, agent_id) == [conversation]  # B made none of its own
    stored = history(base_url, f"/v1/conversations/{conversation}/messages")
    assert [m["content"] for m in of_kind(stored, "user_message")].count(text) == 1
    (ran,) = tool_returns(stored)
    assert ran["tool_call_id"] == action["id"]
    assert ran["status"] == "success"
    (response,) = of_kind(stored, "approval_response_message")
    assert response["approve"] is True
    assert len(of_kind(stored, "approval_request_message")) == 1
    # nor anywhere else: the agent holds the message once, in all its threads
    everywhere = stored_everywhere(base_url, agent_id)
    assert [m["content"] for m in of_kind(everywhere, "user_message")] == [text]
    assert len(tool_returns(everywhere)) == 1


@pytest.mark.parametrize("turn", ["first", "later"])
def test_another_worker_finishes_a_stream_cut_by_a_kill_live(checkpoints: str, turn: str) -> None:
    """A is killed mid-answer; B runs the thread again and reads the answer from A's run.

    ``first``: the kill comes in the thread's first turn (its conversation named nowhere
    in the checkpoint yet); ``later``: after a turn the thread finished.
    """
    base_url, _ = server(CURRENT)
    agent_id = fresh_agent(base_url)
    thread = f"cut-{tag()}"
    text = f"slow:0.5 a long answer please {tag()}"
    with workers() as started:
        earlier: list[dict[str, Any]] = []
        if turn == "later":
            done = run_worker(started, "ask", checkpoints, agent_id, thread, f"hello {tag()}")
            earlier = done["messages"]
            assert earlier[-1]["text"] == TEXT
        a = Worker("stream", checkpoints, agent_id, thread, text)
        started.append(a)
        deadline = time.monotonic() + WAIT
        while True:
            line = a.next_line(deadline)
            if line["event"] == "token" and line["text"]:
                break
        a.kill()
        killed_at = time.monotonic()
        said = "".join(line["text"] for line in a.seen if line["event"] == "token")
        assert said
        assert said != TEXT  # cut mid-answer
        *_, a_run = runs(base_url, agent_id)
        assert a_run["status"] == "running"  # the run goes on without A

        b = Worker("again", checkpoints, agent_id, thread)
        started.append(b)
        final = b.finish()
        took = time.monotonic() - killed_at
    (before,) = [line for line in b.seen if line["event"] == "before"]
    assert before["next"] == ["letta"]  # A's checkpoint: the question, not yet answered
    assert [m["type"] for m in before["messages"]] == (["human", "ai"] if earlier else []) + [
        "human"
    ]
    question = before["messages"][-1]
    assert question["text"] == text
    assert [m["id"] for m in final["messages"][:-1]] == [m["id"] for m in before["messages"]]
    answer = final["messages"][-1]
    assert answer["type"] == "ai"
    assert answer["text"] == TEXT  # the whole answer, not the rest of it
    assert answer["stop_reason"] == "end_turn"
    assert answer["run_id"] == a_run["id"]  # read from the run A started
    assert [run["id"] for run in runs(base_url, agent_id)][-1] == a_run["id"]  # B started none
    assert len(runs(base_url, agent_id)) == (2 if earlier else 1)
    assert final["next"] == []
    (conversation,) = conversations(base_url, agent_id)
    assert answer["conversation_id"] == conversation
    if earlier:
        assert earlier[-1]["conversation_id"] == conversation
    stored = stored_everywhere(base_url, agent_id)
    assert [m["content"] for m in of_kind(stored, "user_message")].count(text) == 1
    (asked,) = [m for m in of_kind(stored, "user_message") if m["content"] == text]
    assert asked["run_id"] == a_run["id"]
    answers = [m for m in of_kind(stored, "assistant_message") if m.get("run_id") == a_run["id"]]
    assert [m["content"] for m in answers] == [TEXT]
    assert took < WAIT
