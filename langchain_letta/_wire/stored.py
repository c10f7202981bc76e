"""What a thread already holds of a request: its messages recognised by their otids.

A message with a LangChain id has an otid derived from it and from its thread
(:func:`~langchain_letta._wire.requests.with_stable_otids`), and Letta stores the otid
with the message. A call that would send such a message again (a graph whose run was
cancelled and double-texted, a node re-run by another worker) finds it in the thread's
recent messages and leaves it out: the agent never sees it twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from langchain_letta._wire.requests import OutgoingMessage, StreamRequest

STORED_LOOKBACK = 50
"""Recent messages of the thread read to recognise messages sent before: a message sent
again comes back within a turn or two (a retried or double-texted call)."""


def stored_otids(listing: list[Any]) -> dict[str, str | None]:
    """The otid of each user or system message in a Letta listing, with the run that took it.

    Items that are not such messages, or carry no otid, are skipped.
    """
    found: dict[str, str | None] = {}
    for item in listing:
        if not isinstance(item, dict):
            continue
        if item.get("message_type") not in ("user_message", "system_message"):
            continue
        otid, run_id = item.get("otid"), item.get("run_id")
        if isinstance(otid, str) and otid:
            found[otid] = run_id if isinstance(run_id, str) else None
    return found


class Unsent(NamedTuple):
    """A request without what the thread holds already.

    Attributes:
        request: What is left to send; ``None`` when the thread holds all of it.
        run_id: The run that took the last message left out (its answer is that run's).
    """

    request: StreamRequest | None
    run_id: str | None


def recognisable(request: StreamRequest) -> bool:
    """Whether ``request`` has a message the thread could hold already (one with an id)."""
    return any(
        isinstance(message, OutgoingMessage) and message.source_id for message in request.messages
    )


def unsent(request: StreamRequest, stored: Mapping[str, str | None]) -> Unsent:
    """``request`` without its messages whose otids the thread holds.

    Only messages with a LangChain id are recognised (the others have a new otid at every
    send); answers to tool calls always go (the server refuses an answer given twice).
    """
    kept = []
    taken_by = None
    for message in request.messages:
        if isinstance(message, OutgoingMessage) and message.source_id and message.otid in stored:
            taken_by = stored[message.otid] or taken_by
            continue
        kept.append(message)
    if len(kept) == len(request.messages):
        return Unsent(request, None)
    left = request.model_copy(update={"messages": kept}) if kept else None
    return Unsent(left, taken_by)
