"""Where the examples find a Letta agent: the real one from the environment, else a replay."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CAPTURES = Path(__file__).resolve().parent.parent / "tests" / "data" / "letta-streams"
REPLAYED_AGENT = "agent-9d9e1f61-7d82-476c-9996-867db2b9c18f"
"""The agent of the 0.16.8 memgpt_v2_agent captures."""


def run_label(run_id: str | None) -> str:
    """A run id for printing: Letta 0.6 and 0.11 streams name no run (their ids are null)."""
    return run_id or "(none: this server's stream names no run)"


@contextlib.contextmanager
def letta_server(
    capture: str, answer: str | None = None, **faults: Any
) -> Iterator[tuple[str, str]]:
    """Yield ``(base_url, agent_id)``.

    With ``LETTA_BASE_URL`` and ``LETTA_AGENT_ID`` set, that server and agent (send
    ``LETTA_API_KEY`` too if the server wants one). Otherwise a local fake server on
    127.0.0.1 answers every message with ``capture``, a turn recorded from a real
    Letta server, broken as ``faults`` say (see ``Reply.with_faults``), and the
    answer to a call the run waited for (an approval message) with ``answer``.
    """
    base_url = os.environ.get("LETTA_BASE_URL")
    if base_url:
        agent_id = os.environ.get("LETTA_AGENT_ID")
        if not agent_id:
            sys.exit("LETTA_BASE_URL is set: set LETTA_AGENT_ID to the agent to talk to")
        yield base_url, agent_id
        return
    from langchain_letta.testing import FakeLettaServer, Reply

    reply = Reply.from_capture(CAPTURES / capture).with_faults(**faults)
    answered = Reply.from_capture(CAPTURES / answer) if answer else reply

    def reply_to(request: Any) -> Reply:
        first = request.json()["messages"][0]
        return answered if first.get("type") == "approval" else reply

    with FakeLettaServer(reply_to) as server:
        print(
            f"(replaying {capture}: a real Letta server's stream, its LLM a deterministic "
            f"fake, recorded byte for byte; served on {server.base_url})"
        )
        print(
            "(to talk to your own: LETTA_BASE_URL=http://localhost:8283 LETTA_AGENT_ID=agent-…)\n"
        )
        yield server.base_url, REPLAYED_AGENT
