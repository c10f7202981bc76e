"""The wire layer alone: stream one message and print Letta's typed events as they arrive.

Without ``LETTA_BASE_URL`` this replays a turn captured from a real Letta 0.16.8 server
(a memory tool call, token by token); see ``_server.py``.
"""

from __future__ import annotations

import sys

from _server import letta_server

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

MESSAGE = "Please remember that I like tea, again."


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
    with (
        letta_server("0.16.8/memgpt_v2_agent/04-tool-call-tokens.sse") as (base_url, agent_id),
        LettaClient(base_url=base_url) as client,
    ):
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
