"""Every Python snippet of the README runs as written, against the fake server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from langchain_letta.testing import FakeLettaServer, RecordedRequest, Reply
from tests.conftest import CAPTURES

ROOT = Path(__file__).parent.parent
AGENT = "agent-9d9e1f61-7d82-476c-9996-867db2b9c18f"
TURN = CAPTURES / "0.16.8/memgpt_v2_agent/03-tool-call-steps.sse"
LAB = CAPTURES / "0.16.8/lab-features"
REPLIES = {
    "turn": Reply.from_capture(TURN),
    "client tool call": Reply.from_capture(LAB / "20-client-tool-request.sse"),
    "tool result": Reply.from_capture(LAB / "21-client-tool-return.sse"),
    "approval request": Reply.from_capture(LAB / "17-approval-request-steps.sse"),
    "decision": Reply.from_capture(LAB / "18-deny-with-reason-steps.sse"),
}


def reply_to(request: RecordedRequest) -> Reply:
    """What a real 0.16.8 answered to such a request: the tool loops get their own captures."""
    body = request.json() if request.body.startswith(b"{") else {}
    first = (body.get("messages") or [{}])[0]
    if first.get("type") == "approval":
        return REPLIES["tool result" if first["approvals"][0]["type"] == "tool" else "decision"]
    if body.get("client_tools"):
        return REPLIES["client tool call"]
    if "Note in your memory" in str(first.get("content")):
        return REPLIES["approval request"]
    return REPLIES["turn"]


def _snippets() -> list[tuple[str, str]]:
    """(section title, code) of every ```python block of the README, in order."""
    readme = (ROOT / "README.md").read_text()
    found = []
    for section in re.split(r"\n## ", readme):
        title = section.split("\n", 1)[0]
        blocks = re.findall(r"```python\n(.*?)^\s*```", section, re.DOTALL | re.MULTILINE)
        found += [(title, textwrap.dedent(code)) for code in blocks]
    return found


SNIPPETS = _snippets()


def test_the_readme_starts_with_its_title_then_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.startswith("# langchain-letta\n")
    first_block = readme.split("```\n", 2)[1]
    assert first_block == "make demo\nmake test\n"


@pytest.mark.parametrize(
    "snippet", [code for _, code in SNIPPETS], ids=[f"{t}-{i}" for i, (t, _) in enumerate(SNIPPETS)]
)
def test_readme_snippet_runs(snippet: str) -> None:
    run_snippet(snippet)


def run_snippet(snippet: str) -> tuple[str, list[RecordedRequest]]:
    """Run one snippet against the fake server: what it printed, the requests it made."""
    with FakeLettaServer(reply_to) as server:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("LETTA_")}
        env = {**clean, "LETTA_BASE_URL": server.base_url, "LETTA_AGENT_ID": AGENT}
        done = subprocess.run(
            [sys.executable, "-c", snippet],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    if "FakeLettaServer(" not in snippet:  # else it brings its own server
        assert server.received  # it talked to the server
    return done.stdout, server.stream_requests


@pytest.mark.parametrize(
    ("position", "answer_type", "printed"),
    [
        (0, "tool", "Sunny, 21 degrees in Paris"),
        (1, "approval", "server_tool_result"),
        (2, "approval", "Not now"),
    ],
)
def test_the_tool_loop_snippets_answer_the_waiting_calls(
    position: int, answer_type: str, printed: str
) -> None:
    snippets = [code for title, code in SNIPPETS if title.startswith("Tool loops")]
    stdout, requests = run_snippet(snippets[position])
    assert len(requests) == 2  # the question once, then the answer to the waiting call
    (answer,) = requests[1].json()["messages"][0]["approvals"]
    assert answer["type"] == answer_type
    assert printed in stdout or printed in json.dumps(answer)


def test_make_demo_installs_only_the_package_and_its_fake_server() -> None:
    """``make demo`` stays small: the ``testing`` extra, not the test and dev tools."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [dep.split(">")[0] for dep in project["optional-dependencies"]["testing"]] == ["uvicorn"]
    makefile = (ROOT / "Makefile").read_text()
    demo_rule = makefile.split("$(DEMO_INSTALLED): ", 1)[1].split("\n\n", 1)[0]
    assert '-e ".[testing]"' in demo_rule
    assert "demo: $(DEMO_INSTALLED)" in makefile
