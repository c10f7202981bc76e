"""The wire layer alone: stream one message and print Letta's typed events as they arrive.

Without ``LETTA_BASE_URL`` this replays a turn captured from a real Letta 0.16.8 server
(a memory tool call, token by token); see ``_server.py``.
"""

from __future__ import annotations

import sys

from _server import letta_server, run_label

from langchain_letta import LettaClient, OutgoingMessage, StreamRequest
from langchain_letta.callbacks import step_piece
from langchain_letta.errors import LettaError
from langchain_letta.events import LettaEvent, StopReason, UsageStatistics

MESSAGE = "Please remember that I like tea, again."


LABELS = {
    "reasoning": "thinking  │ ",
    "tool_call": "tool call │ ",
    "tool_result": "result    │ ",
    "answer": "assistant │ ",
}


class Printer:
    """Prints the deltas of one step on one line, and starts a new line per step."""

    def __init__(self) -> None:
        self.step: str | None = None

    def show(self, event: LettaEvent) -> None:
        if isinstance(event, StopReason):
            print(f"\nstopped   │ {event.stop_reason}", end="")
        elif isinstance(event, UsageStatistics):
            print(
                f"\nusage     │ {event.prompt_tokens} in, {event.completion_tokens} out, "
                f"{event.step_count} step(s)",
                end="",
            )
        elif (piece := step_piece(event)) is not None:
            key, kind, text = piece
            if key != self.step:
                self.step = key
                print("\n" + LABELS[kind], end="")
            print(text.replace("\n", "\n          │ "), end="", flush=True)
        else:
            print(f"\n{event.message_type} │ {event.raw}", end="")


def main() -> None:
    printer = Printer()
    with (
        letta_server("0.16.8/memgpt_v2_agent/04-tool-call-tokens.sse") as (base_url, agent_id),
        LettaClient(base_url=base_url) as client,
    ):
        print(f"you       │ {MESSAGE}", end="")
        request = StreamRequest(messages=[OutgoingMessage(content=MESSAGE)], stream_tokens=True)
        stream = client.stream(agent_id, request)
        try:
            for event in stream:
                printer.show(event)
        except LettaError as error:
            print(f"\nerror     │ {type(error).__name__}: {error}")
            sys.exit(1)
        print(f"\nrun       │ {run_label(stream.progress.run_id)}")


if __name__ == "__main__":
    main()
