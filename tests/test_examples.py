"""Every example runs against the embedded fake server and shows the recorded turn."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
HELLO = "Hello from the fake model"


def run(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LETTA_")}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=60,
        check=False,
    )


def test_every_example_is_tested() -> None:
    scripts = {path.name for path in EXAMPLES.glob("*.py") if not path.name.startswith("_")}
    assert scripts == set(EXPECTED)


EXPECTED = {
    "quickstart.py": [
        "thinking  │ thinking...",
        'tool call │ memory_insert {"label":"human"',
        "result    │ success:",
        f"assistant │ {HELLO}",
    ],
    "stream_events.py": [
        "thinking  │ thinking...",
        "tool call │ memory_insert {",
        f"assistant │ {HELLO}",
        "run       │ run-b167a27b-c3e2-4f67-96f3-cce4db11e1cf",
    ],
    "chain.py": [
        f"answer    │ {HELLO}",
        "(end_turn), tools used: ['memory_insert']",
    ],
    "langgraph_agents.py": [
        f"memory    │ {HELLO}",
        f"chat      │ {HELLO}",
        "state     │ 4 messages",
    ],
    "tracing.py": [
        "] reasoning: thinking...",
        '] tool_call: memory_insert {"label":"human"',
        "] tool_result: success:",
        f"] answer: {HELLO}",
        "5 steps in run run-b167a27b-c3e2-4f67-96f3-cce4db11e1cf",
    ],
    "conversations.py": [
        f"│ {HELLO}",
        "threads   │ 2 conversations; alice kept hers: True",
    ],
    "tool_loops.py": [
        "tool call │ get_weather {'city': 'Paris'} (call_fake000072)",
        "we ran it │ Sunny, 21 degrees in Paris",
        "waiting   │ memory_insert {'label': 'human', 'new_string': 'The user likes tea.'}",
        "result    │ error: Error: request to call tool denied. User reason: Not now, thanks.",
        f"assistant │ {HELLO}",
    ],
    "resume.py": [
        "after seq_id 4",
        "after seq_id 10",
        "tool call │ memory_insert {'label': 'human', 'new_string': 'The user likes tea.'}",
        f"assistant │ {HELLO}",
    ],
}


@pytest.mark.parametrize(("script", "expected"), EXPECTED.items(), ids=list(EXPECTED))
def test_example_replays_a_real_turn(script: str, expected: list[str]) -> None:
    done = run(script)
    assert done.returncode == 0, done.stderr
    for text in expected:
        assert text in done.stdout
    assert "LETTA_BASE_URL=" in done.stdout  # says how to point it at a real server


def test_examples_refuse_a_server_without_an_agent() -> None:
    done = run("quickstart.py", LETTA_BASE_URL="http://127.0.0.1:9")
    assert done.returncode != 0
    assert "LETTA_AGENT_ID" in done.stderr


@pytest.mark.parametrize("script", ["quickstart.py", "chain.py", "stream_events.py", "tracing.py"])
def test_examples_never_print_none_for_a_server_without_run_ids(script: str) -> None:
    """Letta 0.11.7 streams name no run in the foreground: say so, don't print ``None``."""
    from langchain_letta.testing import FakeLettaServer, Reply
    from tests.conftest import CAPTURES

    reply = Reply.from_capture(CAPTURES / "0.11.7/memgpt_v2_agent/03-tool-call-steps.sse")
    with FakeLettaServer(lambda _request: reply, version="0.11.7", redis=False) as server:
        done = run(script, LETTA_BASE_URL=server.base_url, LETTA_AGENT_ID="agent-1")
    assert done.returncode == 0, done.stderr
    assert "None" not in done.stdout
    assert "(none: this server's stream names no run)" in done.stdout


APP = EXAMPLES / "langgraph_app"
APP_AGENT = "agent-9d9e1f61-7d82-476c-9996-867db2b9c18f"


def load_app(monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    """Import ``examples/langgraph_app/graph.py`` as LangGraph Server does, with ``env`` only."""
    for name in ("LETTA_BASE_URL", "LETTA_AGENT_ID", "LETTA_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("langgraph_app_graph", APP / "graph.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_langgraph_app_gives_a_thread_its_conversation(monkeypatch: pytest.MonkeyPatch) -> None:
    """``langgraph.json``'s ``agent`` builds from the environment and runs offline."""
    from langchain_letta.testing import FakeLettaServer, Reply
    from tests.conftest import CAPTURES

    config = json.loads((APP / "langgraph.json").read_text())
    assert config["graphs"] == {"agent": "./graph.py:graph"}
    reply = Reply.from_capture(CAPTURES / "0.16.8/letta_v1_agent/01-stream-steps.sse")
    with FakeLettaServer(lambda _request: reply) as server:
        app = load_app(
            monkeypatch,
            LETTA_BASE_URL=server.base_url,
            LETTA_AGENT_ID=APP_AGENT,
            LETTA_API_KEY="sk-let-example",
        ).graph
        assert app.checkpointer is None  # LangGraph Server brings its own
        assert set(app.get_graph().nodes) == {"__start__", "letta", "__end__"}
        state = app.invoke(
            {"messages": [("human", "hi")]}, {"configurable": {"thread_id": "thread-1"}}
        )
    assert state["messages"][-1].text == HELLO
    (conversation,) = server.conversations  # the thread got a conversation of its own
    (sent,) = server.stream_requests
    assert sent.path == f"/v1/conversations/{conversation}/messages"
    assert sent.headers["authorization"] == "Bearer sk-let-example"


def test_the_langgraph_app_names_a_missing_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="LETTA_AGENT_ID"):
        load_app(monkeypatch, LETTA_BASE_URL="http://127.0.0.1:9")
