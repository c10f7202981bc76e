"""Stream one message to a Letta agent and print its typed events as they arrive.

Without ``LETTA_BASE_URL`` this replays a conversation captured from a real Letta
0.16.8 server (a memory tool call, token by token) through a local fake server on
127.0.0.1. With ``LETTA_BASE_URL`` and ``LETTA_AGENT_ID`` set it talks to that
server instead (``LETTA_API_KEY`` is sent if set):

    LETTA_BASE_URL=http://localhost:8283 LETTA_AGENT_ID=agent-... make demo
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from langchain_letta import LettaClient, OutgoingMessage, StreamRequest
from langchain_letta.errors import LettaError
from langchain_letta.events import (
    AssistantMessage,
    HiddenReasoningMessage,
    LettaEvent,
    ReasoningMessage,
    StopReason,
    ToolCallMessage,
    ToolReturnMessage,
    UsageStatistics,
)

CAPTURE = (
    Path(__file__).resolve().parent.parent
    / "tests/data/letta-streams/0.16.8/memgpt_v2_agent/04-tool-call-tokens.sse"
)
MESSAGE = "Please remember that I like tea, again."


@contextlib.contextmanager
def letta_server() -> Iterator[tuple[str, str]]:
    """The server and agent to talk to: the real one from the environment, else a replay."""
    base_url = os.environ.get("LETTA_BASE_URL")
    if base_url:
        agent_id = os.environ.get("LETTA_AGENT_ID")
        if not agent_id:
            sys.exit("LETTA_BASE_URL is set: set LETTA_AGENT_ID to the agent to talk to")
        yield base_url, agent_id
        return
    from langchain_letta.testing import FakeLettaServer, Reply

    with FakeLettaServer([Reply.from_capture(CAPTURE)]) as server:
        print(f"(replaying {CAPTURE.name}, captured from Letta 0.16.8, on {server.base_url})\n")
        yield server.base_url, "agent-9d9e1f61-7d82-476c-9996-867db2b9c18f"


class Printer:
    """Prints deltas of one message on one line, and starts a new line per message."""

    def __init__(self) -> None:
        self.current: tuple[str, str | None] | None = None

    def start(self, kind: str, key: str | None, label: str) -> None:
        if self.current != (kind, key):
            if self.current is not None:
                print()
            print(label, end="", flush=True)
            self.current = (kind, key)

    def show(self, event: LettaEvent) -> None:
        key = getattr(event, "otid", None) or getattr(event, "id", None)
        if isinstance(event, ReasoningMessage):
            self.start("reasoning", key, "thinking  │ ")
            print(event.text, end="", flush=True)
        elif isinstance(event, HiddenReasoningMessage):
            self.start("hidden", key, f"thinking  │ (hidden by the provider: {event.state})")
        elif isinstance(event, ToolCallMessage):
            for call in event.calls:
                label = f"tool call │ {call.name} "
                self.start("call", call.tool_call_id or key, label)
                print(call.arguments or "", end="", flush=True)
        elif isinstance(event, ToolReturnMessage):
            for result in event.returns:
                output = result.output.replace("\n", "\n          │ ")
                self.start("return", result.tool_call_id, f"result    │ {result.status}: {output}")
        elif isinstance(event, AssistantMessage):
            self.start("assistant", key, "assistant │ ")
            print(event.text, end="", flush=True)
        elif isinstance(event, StopReason):
            self.start("stop", None, f"stopped   │ {event.stop_reason}")
        elif isinstance(event, UsageStatistics):
            self.start(
                "usage",
                None,
                f"usage     │ {event.prompt_tokens} in, {event.completion_tokens} out, "
                f"{event.step_count} step(s)",
            )
        else:
            self.start(event.message_type, key, f"{event.message_type} │ {event.raw}")


def main() -> None:
    printer = Printer()
    with letta_server() as (base_url, agent_id), LettaClient(base_url=base_url) as client:
        print(f"you       │ {MESSAGE}")
        request = StreamRequest(messages=[OutgoingMessage(content=MESSAGE)], stream_tokens=True)
        stream = client.stream(agent_id, request)
        try:
            for event in stream:
                printer.show(event)
        except LettaError as error:
            print(f"\nerror     │ {type(error).__name__}: {error}")
            sys.exit(1)
        print(f"\nrun       │ {stream.progress.run_id}")


if __name__ == "__main__":
    main()
