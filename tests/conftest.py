from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest
from langchain_core.messages import AIMessage

from langchain_letta import AsyncLettaClient, LettaClient
from langchain_letta.errors import LettaError
from langchain_letta.events import LettaEvent

CAPTURES = Path(__file__).parent / "data" / "letta-streams"


def approval_delta(**delta: Any) -> dict[str, Any]:
    """A token-mode approval request delta as 0.16.8 streams it: one message's id and otid."""
    return {
        "message_type": "approval_request_message",
        "id": "message-d3",
        "otid": "d3",
        "tool_call": delta,
        "tool_calls": delta,
    }


Mode = Literal["sync", "async", "uvloop"]
"""``LettaClient``; or ``AsyncLettaClient`` on asyncio's own event loop, or on uvloop's."""
MODES: list[Mode] = ["sync", "async"]
LOOP_MODES: list[Mode] = (
    ["sync", "async", "uvloop"] if importlib.util.find_spec("uvloop") else MODES
)
"""``MODES``, and the async client on uvloop too (not on Windows): the fault tests."""

T = TypeVar("T")


def run_async(mode: Mode, main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to its end on the event loop of ``mode`` ("async" or "uvloop")."""
    if mode == "uvloop":
        import uvloop

        return uvloop.run(main)
    assert mode == "async", f"{mode} has no event loop"
    return asyncio.run(main)


def read_through(
    mode: Mode, open_stream: Callable[[Any], Any], **options: Any
) -> tuple[list[LettaEvent], LettaError | None]:
    """Read one stream to its end with ``LettaClient`` or ``AsyncLettaClient``.

    ``open_stream`` gets the client (``client.stream(...)``, ``client.resume(...)``);
    the events delivered and the error that ended the stream, if any, come back.
    """
    events: list[LettaEvent] = []

    async def consume() -> None:
        async with AsyncLettaClient(**options) as client:
            async for event in open_stream(client):
                events.append(event)

    try:
        if mode == "sync":
            with LettaClient(**options) as client:
                events.extend(open_stream(client))
        else:
            run_async(mode, consume())
    except LettaError as error:
        return events, error
    return events, None


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Retry waits of this thread, recorded instead of slept, sync and async.

    The fake server's own thread keeps sleeping for real.
    """
    recorded: list[float] = []
    here = threading.get_ident()
    real_sleep, real_asleep = time.sleep, asyncio.sleep

    def sleep(seconds: float) -> None:
        if threading.get_ident() != here:
            return real_sleep(seconds)
        recorded.append(seconds)
        return None

    async def asleep(seconds: float, result: Any = None) -> Any:
        if threading.get_ident() != here or seconds <= 0:
            return await real_asleep(seconds, result)
        recorded.append(seconds)
        return await real_asleep(0, result)

    monkeypatch.setattr("time.sleep", sleep)
    monkeypatch.setattr("asyncio.sleep", asleep)
    return recorded


def capture_status(body: Path) -> int:
    """The HTTP status recorded beside a capture (0 where the server never answered)."""
    stem = body.name.rsplit(".", 1)[0]
    return int(body.with_name(f"{stem}.status.txt").read_text().strip())


def expected_payloads(body: Path) -> list[tuple[str, dict[str, object] | str]]:
    """Read a capture independently of the package: (event name, JSON payload) per frame.

    Frames after ``[DONE]`` and a frame cut off by the end of the file are left out.
    """
    frames: list[tuple[str, dict[str, object] | str]] = []
    for block in body.read_text().split("\n\n"):
        name, data = "message", None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
        if data is None:
            continue
        if data == "[DONE]":
            break
        try:
            frames.append((name, json.loads(data)))
        except ValueError:
            break  # the capture was cut in the middle of this frame
    return frames


@pytest.fixture
def captures() -> Path:
    return CAPTURES


# The live tests need real Letta servers, which `make test-live` starts; elsewhere they
# are not collected at all rather than reported as a wall of skips.
collect_ignore = [] if os.environ.get("LETTA_LIVE") == "1" else ["test_live.py"]


def waiting_answer(
    agent_id: str,
    *,
    client: Sequence[str] = (),
    gated: Sequence[str] = (),
    tool: tuple[str, dict[str, Any]] = ("add", {"a": 1}),
) -> AIMessage:
    """An answer of ``agent_id`` that stopped for client tool calls (of ``tool``) and gated
    server calls (``memory_insert``), as ChatLetta returns it."""
    blocks: list[str | dict[str, Any]] = [
        {
            "type": "server_tool_call",
            "id": call,
            "name": "memory_insert",
            "args": {},
            "extras": {"requires_approval": True},
        }
        for call in gated
    ]
    name, args = tool
    return AIMessage(
        content=blocks,
        tool_calls=[{"name": name, "args": args, "id": call} for call in client],
        response_metadata={
            "model_provider": "letta",
            "agent_id": agent_id,
            "stop_reason": "requires_approval",
        },
    )
