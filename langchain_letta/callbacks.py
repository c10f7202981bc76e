"""A callback handler that shows what a Letta agent does while it streams.

ChatLetta dispatches every Letta event as a custom event (``letta.<message_type>``)
of the run it runs inside. :class:`LettaStepPrinter` turns them into readable lines,
one per reasoning step, tool call, call waiting for approval, tool result and answer,
each with its run and step ids, growing as the deltas arrive.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from langchain_letta._chunks import without_leaked_prefix
from langchain_letta.events import (
    ApprovalRequestMessage,
    AssistantMessage,
    HiddenReasoningMessage,
    LettaEvent,
    ReasoningMessage,
    ToolCallMessage,
    ToolReturnMessage,
)


@dataclass
class Step:
    """One thing the agent did.

    ``kind`` is reasoning, tool_call, approval_request, tool_result or answer.
    """

    kind: str
    run_id: str | None
    step_id: str | None
    text: str


def step_piece(event: LettaEvent) -> tuple[str, str, str] | None:
    """``(key, kind, text)`` for an event that shows a step: deltas of one step share a key."""
    group = getattr(event, "otid", None) or f"{getattr(event, 'id', None)}/{event.message_type}"
    if isinstance(event, ReasoningMessage):
        return group, "reasoning", event.text
    if isinstance(event, HiddenReasoningMessage):
        return group, "reasoning", f"(hidden: {event.state})"
    if isinstance(event, ToolCallMessage):
        call = event.calls[0] if event.calls else None
        if call is None:
            return None
        prefix = f"{call.name} " if call.name else ""
        return group, "tool_call", prefix + (call.arguments or "")
    if isinstance(event, ApprovalRequestMessage) and event.calls:
        # Approval requests (0.12+) name their call in every delta; parallel calls share
        # one message, so each call is its own step.
        call = event.calls[0]
        prefix = f"{call.name} " if call.name else ""
        return f"{group}/{call.tool_call_id}", "approval_request", prefix + (call.arguments or "")
    if isinstance(event, ToolReturnMessage):
        text = "; ".join(f"{r.status}: {r.output}" for r in event.returns)
        return group, "tool_result", text
    if isinstance(event, AssistantMessage):
        return group, "answer", event.text
    return None


class LettaStepPrinter(BaseCallbackHandler):
    """Writes each step as it streams and keeps them in ``steps``.

    Args:
        write: Where the text goes (standard error by default).
    """

    def __init__(self, write: Callable[[str], object] | None = None) -> None:
        self.write = write or sys.stderr.write
        self.steps: list[Step] = []
        self._key: str | None = None

    def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Show one Letta event (other custom events are left alone)."""
        if not name.startswith("letta."):
            return
        piece = step_piece(data)
        if piece is None:
            return
        key, kind, text = piece
        if key != self._key:
            self._key = key
            if kind == "answer":
                text = without_leaked_prefix(text)
            step = Step(kind, getattr(data, "run_id", None), getattr(data, "step_id", None), "")
            self.steps.append(step)
            self.write(f"\n[{step.run_id or '-'} {step.step_id or '-'}] {kind}: ")
        self.steps[-1].text += text
        self.write(text)
