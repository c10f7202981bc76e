"""LangSmith tracing of ChatLetta and ``letta_node``, through the real ``langsmith`` client.

A tiny LangSmith collector runs in this process on 127.0.0.1 (``/info``,
``/runs/multipart``, ``/runs/batch``, ``POST /runs`` and ``PATCH /runs/{id}``, bodies
decoded whatever their multipart or compression). The traced code runs in a child
process, as a user's program would, with nothing but the environment turning tracing on:
``LANGSMITH_TRACING=true``, ``LANGSMITH_ENDPOINT`` at the collector, a dummy
``LANGSMITH_API_KEY``; its Letta server is the fake one of ``langchain_letta.testing``
replaying a real 0.16.8 turn (reasoning, a ``memory_insert`` call and its result, the
answer, usage). A child keeps LangSmith's process-wide state (cached settings, the global
client, its background thread) out of the other tests.

The child runs a prompt | ChatLetta | parser chain, whose first request meets a 502 and
is retried, and a LangGraph graph with a ``letta_node``; then waits for the tracers. It
logs everything at DEBUG; neither its log nor anything sent to LangSmith may hold the
Letta API key.

What LangSmith shows of the Letta turn: the answer's content blocks (reasoning, the
server tool's call and result, the text), its response metadata (Letta run id, stop
reason, steps) and the retry as an event of the LLM run. LangChain's LangSmith tracer
records no custom events, so ChatLetta's ``letta.*`` events (``on_custom_event``, for
handlers such as ``LettaStepPrinter``) are not sent.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
AGENT = "agent-9d9e1f61-7d82-476c-9996-867db2b9c18f"
TOOL_TURN = "0.16.8/memgpt_v2_agent/03-tool-call-steps.sse"
LETTA_API_KEY = "sk-let-tracing-" + "7" * 32
LANGSMITH_API_KEY = "lsv2_pt_dummy-" + "5" * 32
CHILD_TIMEOUT = 120.0
"""Seconds the traced child may take (imports included)."""


# ---------------------------------------------------------------- the collector


class Collector:
    """What a LangSmith server would have received: every request body, every run."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, bytes]] = []
        """``(method, path, decoded body)`` of every request."""
        self.runs: dict[str, dict[str, Any]] = {}
        """Each run, its creation and every update merged, by id."""

    def merge(self, run_id: str, fields: dict[str, Any]) -> None:
        with self.lock:
            self.runs.setdefault(run_id, {"id": run_id}).update(fields)


def decoded(body: bytes, encoding: str | None) -> bytes:
    """A request body without its ``Content-Encoding`` (gzip or zstd)."""
    if not encoding or encoding == "identity":
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    raise AssertionError(f"unexpected Content-Encoding {encoding}")


def multipart_parts(content_type: str, body: bytes) -> Iterator[tuple[str, Any]]:
    """The named parts of a ``multipart/form-data`` body, each decoded from JSON."""
    message = message_from_bytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=HTTP
    )
    assert message.is_multipart(), content_type
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        assert isinstance(name, str), part
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        payload = decoded(payload, part.get("Content-Encoding"))
        yield name, json.loads(payload) if payload else None


def ingest_multipart(collector: Collector, content_type: str, body: bytes) -> None:
    """``post.<id>`` / ``patch.<id>`` parts carry a run; ``<op>.<id>.<field>`` one field."""
    for name, value in multipart_parts(content_type, body):
        _operation, run_id, *field = name.split(".", 2)
        collector.merge(run_id, {field[0]: value} if field else value)


def collector_handler(collector: Collector) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _body(self) -> bytes:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = decoded(raw, self.headers.get("Content-Encoding"))
            with collector.lock:
                collector.requests.append((self.command, self.path, body))
            return body

        def _answer(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._body()
            if self.path.rstrip("/") == "/info":
                # no instance flags: plain (uncompressed) multipart ingestion
                self._answer(200, {"version": "0.0.0-collector", "instance_flags": {}})
            else:
                self._answer(404, {"detail": "not found"})

        def do_POST(self) -> None:
            body = self._body()
            path = self.path.split("?")[0].rstrip("/")
            if path == "/runs/multipart":
                ingest_multipart(collector, self.headers["Content-Type"], body)
            elif path == "/runs/batch":
                batch = json.loads(body)
                for run in [*batch.get("post", []), *batch.get("patch", [])]:
                    collector.merge(run["id"], run)
            elif path == "/runs":
                run = json.loads(body)
                collector.merge(run["id"], run)
            else:
                self._answer(404, {"detail": "not found"})
                return
            self._answer(202, {})

        def do_PATCH(self) -> None:
            body = self._body()
            path = self.path.split("?")[0].rstrip("/")
            if path.startswith("/runs/"):
                collector.merge(path.removeprefix("/runs/"), json.loads(body))
                self._answer(202, {})
            else:
                self._answer(404, {"detail": "not found"})

    return Handler


@contextlib.contextmanager
def langsmith_collector() -> Iterator[tuple[str, Collector]]:
    """A collector listening on a free loopback port; yields its URL."""
    collector = Collector()
    server = ThreadingHTTPServer(("127.0.0.1", 0), collector_handler(collector))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", collector
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------- the traced child


def traced_child() -> None:
    """What the child process runs: a chain and a graph, traced by the environment alone."""
    import logging

    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.tracers.langchain import wait_for_all_tracers
    from langgraph.graph import END, START, MessagesState, StateGraph

    from langchain_letta import ChatLetta, letta_node
    from langchain_letta.testing import FakeLettaServer, RecordedRequest, Reply
    from tests.conftest import CAPTURES

    logging.basicConfig(
        level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s"
    )
    turn = Reply.from_capture(CAPTURES / TOOL_TURN)
    answered: list[RecordedRequest] = []

    def reply(request: RecordedRequest) -> Reply:
        answered.append(request)
        if len(answered) == 1:  # the chain's first try: a gateway error, retried
            return Reply.json(502, {"detail": "bad gateway"})
        return turn

    with FakeLettaServer(reply) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)  # key: LETTA_API_KEY
        prompt = ChatPromptTemplate.from_messages([("human", "{question}")])
        chain = (prompt | model | StrOutputParser()).with_config(run_name="letta_chain")
        print(chain.invoke({"question": "Please remember that I like tea."}))  # noqa: T201

        builder = StateGraph(MessagesState)
        builder.add_node("letta", letta_node(model))
        builder.add_edge(START, "letta")
        builder.add_edge("letta", END)
        graph = builder.compile(name="letta_graph")
        state = graph.invoke({"messages": [("human", "Hello, graph")]})
        print(state["messages"][-1].text)  # noqa: T201
    wait_for_all_tracers()
    sent = [request.headers.get("authorization") for request in answered]
    assert sent == [f"Bearer {LETTA_API_KEY}"] * 3, sent  # the key did reach Letta


@pytest.fixture(scope="module")
def traced() -> Iterator[tuple[Collector, subprocess.CompletedProcess[str]]]:
    """The collector after the child ran, and the child's output."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("LANGSMITH_", "LANGCHAIN_", "LETTA_"))
    }
    with langsmith_collector() as (url, collector):
        env.update(
            LANGSMITH_TRACING="true",
            LANGSMITH_ENDPOINT=url,
            LANGSMITH_API_KEY=LANGSMITH_API_KEY,
            LANGSMITH_PROJECT="langchain-letta-tests",
            LANGSMITH_DISABLE_RUN_COMPRESSION="true",
            LETTA_API_KEY=LETTA_API_KEY,
            NO_PROXY="127.0.0.1,localhost",
        )
        done = subprocess.run(
            [sys.executable, "-c", "from tests.test_langsmith import traced_child; traced_child()"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-6000:]
        yield collector, done


# ---------------------------------------------------------------- the tests


def runs_named(collector: Collector, name: str) -> list[dict[str, Any]]:
    return [run for run in collector.runs.values() if run.get("name") == name]


def children(collector: Collector, parent: dict[str, Any]) -> list[dict[str, Any]]:
    return [run for run in collector.runs.values() if run.get("parent_run_id") == parent["id"]]


def llm_runs(collector: Collector) -> list[dict[str, Any]]:
    return [run for run in collector.runs.values() if run.get("run_type") == "llm"]


def answer_of(run: dict[str, Any]) -> dict[str, Any]:
    """The AIMessage of an LLM run's outputs, as LangSmith stores it."""
    (generation,) = run["outputs"]["generations"][0]
    message: dict[str, Any] = generation["message"]
    assert message["id"] == ["langchain", "schema", "messages", "AIMessage"]
    kwargs: dict[str, Any] = message["kwargs"]
    return kwargs


def test_a_chain_with_chatletta_is_one_trace_with_an_llm_run(
    traced: tuple[Collector, subprocess.CompletedProcess[str]],
) -> None:
    collector, done = traced
    assert done.stdout.splitlines() == ["Hello from the fake model"] * 2
    (chain,) = runs_named(collector, "letta_chain")
    assert chain["run_type"] == "chain"
    assert chain.get("parent_run_id") is None
    assert chain["inputs"] == {"question": "Please remember that I like tea."}
    assert chain["outputs"] == {"output": "Hello from the fake model"}
    assert chain["end_time"] is not None
    steps = children(collector, chain)
    assert sorted(run["name"] for run in steps) == [
        "ChatLetta",
        "ChatPromptTemplate",
        "StrOutputParser",
    ]
    (llm,) = [run for run in steps if run["name"] == "ChatLetta"]
    assert llm["run_type"] == "llm"
    assert llm["trace_id"] == chain["trace_id"] == chain["id"]
    assert llm["dotted_order"].startswith(chain["dotted_order"] + ".")


def test_the_llm_run_shows_provider_model_usage_answer_and_letta_events(
    traced: tuple[Collector, subprocess.CompletedProcess[str]],
) -> None:
    collector, _ = traced
    (chain,) = runs_named(collector, "letta_chain")
    (llm,) = [run for run in children(collector, chain) if run["name"] == "ChatLetta"]
    metadata = llm["extra"]["metadata"]
    assert metadata["ls_provider"] == "letta"
    assert metadata["ls_model_name"] == "letta-agent"  # the agent's own LLM, unnamed
    assert metadata["ls_model_type"] == "chat"
    assert metadata["letta_agent_id"] == AGENT
    usage = metadata["usage_metadata"]  # the turn's usage_statistics
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (
        3456,
        20,
        3476,
    )
    assert llm["extra"]["invocation_params"]["agent_id"] == AGENT
    (messages,) = llm["inputs"]["messages"]
    assert messages[0]["kwargs"]["content"] == "Please remember that I like tea."
    assert llm["outputs"]["generations"][0][0]["text"] == "Hello from the fake model"
    answer = answer_of(llm)
    assert answer["usage_metadata"]["total_tokens"] == 3476
    # The Letta events of the turn, in the answer's content: the reasoning, the server
    # tool's call and result, the text; the run and its steps in the response metadata.
    blocks = [block["type"] for block in answer["content"] if isinstance(block, dict)]
    assert blocks == ["reasoning", "server_tool_call", "server_tool_result", "reasoning", "text"]
    (call,) = [block for block in answer["content"] if block["type"] == "server_tool_call"]
    assert call["name"] == "memory_insert"
    (result,) = [block for block in answer["content"] if block["type"] == "server_tool_result"]
    assert result["status"] == "success"
    response = answer["response_metadata"]
    assert response["model_provider"] == "letta"
    assert response["model_name"] == "letta-agent"
    assert response["run_id"] == "run-c6cc2388-fadf-47ab-bb5c-d156807d1701"
    assert (response["stop_reason"], response["step_count"]) == ("end_turn", 2)
    # The retried 502 is an event of the run, beside its start and end.
    names = [event["name"] for event in llm["events"]]
    assert names[0] == "start"
    assert names[-1] == "end"
    (retry,) = [event for event in llm["events"] if event["name"] == "retry"]
    assert retry["kwargs"]["attempt"] == 1


def test_a_letta_node_nests_under_the_graphs_run(
    traced: tuple[Collector, subprocess.CompletedProcess[str]],
) -> None:
    """graph -> node ``letta`` -> letta_node's own run -> ChatLetta, in one trace."""
    collector, _ = traced
    (graph,) = runs_named(collector, "letta_graph")
    assert graph.get("parent_run_id") is None
    answered = graph["outputs"]["messages"][-1]
    assert answered["type"] == "ai"
    assert answered["content"][-1]["text"] == "Hello from the fake model"
    (node,) = children(collector, graph)
    assert node["name"] == "letta"
    assert node["extra"]["metadata"]["langgraph_node"] == "letta"
    (inner,) = children(collector, node)
    assert inner["name"] == "letta_agent"  # letta_node's run name
    (llm,) = children(collector, inner)
    assert (llm["name"], llm["run_type"]) == ("ChatLetta", "llm")
    assert llm["extra"]["metadata"]["ls_provider"] == "letta"
    assert llm["extra"]["metadata"]["langgraph_node"] == "letta"
    assert answer_of(llm)["content"][-1]["text"] == "Hello from the fake model"
    for parent, child in ((graph, node), (node, inner), (inner, llm)):
        assert child["trace_id"] == graph["id"]
        assert child["dotted_order"].startswith(parent["dotted_order"] + ".")
    # two traces in all, the chain's and the graph's, each with one LLM run
    (chain,) = runs_named(collector, "letta_chain")
    assert {run["trace_id"] for run in collector.runs.values()} == {graph["id"], chain["id"]}
    assert sorted(run["trace_id"] for run in llm_runs(collector)) == sorted(
        [graph["id"], chain["id"]]
    )


def test_the_letta_api_key_is_neither_logged_nor_traced(
    traced: tuple[Collector, subprocess.CompletedProcess[str]],
) -> None:
    collector, done = traced
    ours = [line for line in done.stderr.splitlines() if line.startswith("langchain_letta ")]
    assert any("502" in line for line in ours), done.stderr[-3000:]  # the retry was logged
    assert LETTA_API_KEY not in done.stderr
    assert LETTA_API_KEY[-24:] not in done.stderr
    assert not [line for line in ours if LANGSMITH_API_KEY in line]
    assert collector.requests, "nothing reached the collector"
    for method, path, body in collector.requests:
        assert LETTA_API_KEY.encode() not in body, (method, path)
    # the model's serialisation names the key's variable, never its value
    (llm, _) = llm_runs(collector)
    assert "LETTA_API_KEY" in json.dumps(llm["serialized"])
