"""Every example runs, against the embedded fake server, and shows the recorded turn."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("script", ["quickstart.py", "stream_events.py"])
def test_example_replays_a_real_turn(script: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETTA_")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "thinking  │ thinking..." in lines
    assert any(line.startswith("tool call │ memory_insert {") for line in lines)
    assert any(line.startswith("result    │ success:") for line in lines)
    assert "assistant │ Hello from the fake model" in lines
    assert "run-b167a27b-c3e2-4f67-96f3-cce4db11e1cf" in done.stdout


def test_example_refuses_a_server_without_an_agent() -> None:
    env = {**os.environ, "LETTA_BASE_URL": "http://127.0.0.1:9"}
    env.pop("LETTA_AGENT_ID", None)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "LETTA_AGENT_ID" in done.stderr
