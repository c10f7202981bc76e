"""Request bodies for ``/messages/stream`` in each dialect Letta servers have spoken.

* ``seed`` (0.6.10 to 0.6.14): messages carry ``text``; flags sit in a nested
  ``config``; ``stream_tokens`` is read at the top level (the seed API page shows
  it inside ``config`` too, where the server ignores it, so it goes in both).
* ``transitional`` (0.6.15, 0.6.16): ``content`` replaced ``text``; ``config`` is
  still nested.
* ``current`` (0.6.17 onward and Letta Cloud): ``content``, an ``otid`` per
  message, every flag at the top level.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Dialect = Literal["seed", "transitional", "current"]
DialectSetting = Literal["auto", "seed", "transitional", "current"]

_SEND_MESSAGE = "send_message"
_MESSAGE_KWARG = "message"


class OutgoingMessage(BaseModel):
    """One message for the agent; ``otid`` lets the server recognise a repeated send."""

    model_config = ConfigDict(frozen=True)

    role: Literal["user", "system"] = "user"
    content: str | list[dict[str, Any]]
    name: str | None = None
    otid: str = Field(default_factory=lambda: str(uuid.uuid4()))


class StreamRequest(BaseModel):
    """What to send, independent of dialect; :func:`build_body` writes it for a server."""

    model_config = ConfigDict(frozen=True)

    messages: list[OutgoingMessage]
    stream_tokens: bool = True
    use_assistant_message: bool = True
    assistant_message_tool_name: str = _SEND_MESSAGE
    assistant_message_tool_kwarg: str = _MESSAGE_KWARG
    include_pings: bool = True
    background: bool | None = None
    """Ask for a resumable background run; ``None`` lets the client decide."""
    max_steps: int | None = None
    include_return_message_types: list[str] | None = None
    override_model: str | None = None


def build_body(request: StreamRequest, dialect: Dialect) -> dict[str, Any]:
    """Write ``request`` as the JSON body a server of ``dialect`` reads.

    Raises:
        ValueError: A message has non-text parts (images) and the dialect has
            only plain ``text``.
    """
    if dialect == "current":
        return _current_body(request)
    config = {
        "use_assistant_message": request.use_assistant_message,
        "assistant_message_tool_name": request.assistant_message_tool_name,
        "assistant_message_tool_kwarg": request.assistant_message_tool_kwarg,
    }
    if dialect == "seed":
        messages = [_seed_message(message) for message in request.messages]
        config["stream_tokens"] = request.stream_tokens
    else:
        messages = [_without_otid(message) for message in request.messages]
    return {"messages": messages, "config": config, "stream_tokens": request.stream_tokens}


def _current_body(request: StreamRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": [message.model_dump(exclude_none=True) for message in request.messages],
        "stream_tokens": request.stream_tokens,
        "include_pings": request.include_pings,
    }
    if request.background:
        body["background"] = True
    if not request.use_assistant_message:
        body["use_assistant_message"] = False
    if request.assistant_message_tool_name != _SEND_MESSAGE:
        body["assistant_message_tool_name"] = request.assistant_message_tool_name
    if request.assistant_message_tool_kwarg != _MESSAGE_KWARG:
        body["assistant_message_tool_kwarg"] = request.assistant_message_tool_kwarg
    if request.max_steps is not None:
        body["max_steps"] = request.max_steps
    if request.include_return_message_types is not None:
        body["include_return_message_types"] = request.include_return_message_types
    if request.override_model is not None:
        body["override_model"] = request.override_model
    return body


def _seed_message(message: OutgoingMessage) -> dict[str, Any]:
    if isinstance(message.content, str):
        text = message.content
    else:
        kinds = {part.get("type") for part in message.content}
        if kinds - {"text"}:
            raise ValueError(
                "Letta servers before 0.6.15 accept only text messages; "
                f"this message has {sorted(str(kind) for kind in kinds - {'text'})} parts"
            )
        text = "".join(str(part.get("text", "")) for part in message.content)
    seed: dict[str, Any] = {"role": message.role, "text": text}
    if message.name is not None:
        seed["name"] = message.name
    return seed


def _without_otid(message: OutgoingMessage) -> dict[str, Any]:
    return message.model_dump(exclude_none=True, exclude={"otid"})


def release_of(version: str | None) -> tuple[int, int, int] | None:
    """``"0.16.8"`` as ``(0, 16, 8)``; ``None`` for anything else (Letta Cloud may say anything)."""
    numbers = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", version or "")
    if numbers is None:
        return None
    major, minor, patch = (int(part) for part in numbers.groups())
    return major, minor, patch


def supports_background(version: str | None) -> bool:
    """Background runs (resumable streams) exist from Letta 0.11.5 on."""
    release = release_of(version)
    return release is not None and release >= (0, 11, 5)


CONVERSATIONS_SINCE = (0, 16, 2)
"""The first release with conversations (``/v1/conversations``)."""


def supports_conversations(version: str | None) -> bool:
    """Conversations exist from Letta 0.16.2 on.

    A server that names no release (Letta Cloud, or a failed probe) is given the
    benefit of the doubt: it answers a route it lacks with a typed 404, and
    nothing was accepted.
    """
    release = release_of(version)
    return release is None or release >= CONVERSATIONS_SINCE


def dialect_for_version(version: str | None) -> Dialect:
    """The dialect a server of ``version`` reads; ``current`` for anything unrecognised."""
    release = release_of(version)
    if release is None:
        return "current"
    if release < (0, 6, 15):
        return "seed"
    if release < (0, 6, 17):
        return "transitional"
    return "current"


_MISSING_MESSAGE_FIELD = re.compile(
    r"""messages['"]?,\s*\d+,\s*(?:['"][\w-]+['"],\s*)?['"](text|content)['"]"""
)


def dialect_after_rejection(body_text: str, sent: Dialect) -> Dialect | None:
    """The dialect to try after a 422 that names a message field, or ``None``.

    A 422 means the server accepted nothing, so sending again in the other
    dialect is safe. Servers up to 0.12 send the validation errors as a list,
    0.13 onward as the ``repr`` of that list: the pattern reads both.
    """
    match = _MISSING_MESSAGE_FIELD.search(body_text)
    if match is None:
        return None
    wanted: Dialect = "seed" if match.group(1) == "text" else "current"
    return None if wanted == sent else wanted
