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

import json
import re
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from langchain_letta.errors import LettaUnsupportedFeatureError

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
    source_id: str | None = Field(default=None, exclude=True)
    """The id of the LangChain message this one is (never sent): its ``otid`` is derived
    from it, so the same message sent again to the same thread is recognised
    (:func:`with_stable_otids`)."""


class ApprovalDecision(BaseModel):
    """Approve or deny one server tool call that waits for approval."""

    model_config = ConfigDict(frozen=True)

    tool_call_id: str
    approve: bool
    reason: str | None = None
    """Why, for a denial: the agent reads it in the tool's error."""

    def wire(self) -> dict[str, Any]:
        """The entry of Letta's ``approvals`` list."""
        return {"type": "approval", **self.model_dump(exclude_none=True)}


class ToolResult(BaseModel):
    """The result of one client tool call, run by the caller."""

    model_config = ConfigDict(frozen=True)

    tool_call_id: str
    tool_return: str
    status: Literal["success", "error"] = "success"

    def wire(self) -> dict[str, Any]:
        """The entry of Letta's ``approvals`` list."""
        return {"type": "tool", **self.model_dump()}


class OutgoingApproval(BaseModel):
    """The answer to every call a run stopped for (``requires_approval``), in one message.

    Letta refuses a partial answer and keeps the approval pending, so a run that
    asked for several calls gets all of them here (Letta 0.13+).
    """

    model_config = ConfigDict(frozen=True)

    approvals: list[ApprovalDecision | ToolResult] = Field(min_length=1)
    otid: str = Field(default_factory=lambda: str(uuid.uuid4()))

    def wire(self) -> dict[str, Any]:
        """The message as Letta reads it."""
        answers = [answer.wire() for answer in self.approvals]
        return {"type": "approval", "approvals": answers, "otid": self.otid}


class ClientTool(BaseModel):
    """A tool the caller runs (Letta 0.16.2+): a call of it stops the run for its result."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    """The JSON schema of the arguments."""


class StreamRequest(BaseModel):
    """What to send, independent of dialect; :func:`build_body` writes it for a server."""

    model_config = ConfigDict(frozen=True)

    messages: list[OutgoingMessage | OutgoingApproval]
    stream_tokens: bool = True
    use_assistant_message: bool = True
    assistant_message_tool_name: str = _SEND_MESSAGE
    assistant_message_tool_kwarg: str = _MESSAGE_KWARG
    include_pings: bool = True
    background: bool | None = None
    """Ask for a resumable background run; ``None`` lets the client decide."""
    max_steps: int | None = None
    include_return_message_types: list[str] | None = None
    """Only these ``message_type`` values come back (Letta 0.8.3+)."""
    override_model: str | None = None
    """A model handle for this request instead of the agent's (Letta 0.16.4+; older
    releases ignore it)."""
    enable_thinking: bool | None = None
    """Letta's deprecated reasoning switch (0.10.0+); sent as the string the server reads."""
    override_system: str | None = None
    """A system prompt for this request instead of the agent's compiled one (Letta 0.16.7+)."""
    include_compaction_messages: bool | None = None
    """Stream ``summary_message`` and ``event_message`` when the context is compacted (0.16.5+)."""
    client_tools: list[ClientTool] | None = None
    """Tools the caller runs, offered to the agent for this request (0.16.2+)."""


_OTID_NAMESPACE = uuid.UUID("5b0f6c1e-2a4d-4f7e-9c61-3d2b8e7a4c10")


def with_stable_otids(
    request: StreamRequest, agent_id: str, conversation_id: str | None
) -> StreamRequest:
    """``request`` with each message's ``otid`` derived from what it is and where it goes.

    Letta 0.16.7+ answers a background request whose otids it has seen (for three
    hours) with the stream of the run they started, instead of a new run: sending
    the same message again is safe. A message with a ``source_id`` (a LangChain
    message id) and an answer to tool calls (the same decisions or results for the
    same calls) get the same otid every
    time they go to the same thread, so a retried call, another process or a
    restarted graph sending them again is recognised too. The thread is part of the
    derivation: the same message sent to two agents is two messages.
    """
    thread = f"{agent_id}\n{conversation_id or ''}\n"

    def stable(message: OutgoingMessage | OutgoingApproval) -> OutgoingMessage | OutgoingApproval:
        if isinstance(message, OutgoingApproval):  # the same answers: the same message
            key = "approval\n" + json.dumps(message.wire()["approvals"], sort_keys=True)
        elif message.source_id:
            key = "message\n" + message.source_id
        else:
            return message
        return message.model_copy(update={"otid": str(uuid.uuid5(_OTID_NAMESPACE, thread + key))})

    return request.model_copy(update={"messages": [stable(m) for m in request.messages]})


def build_body(request: StreamRequest, dialect: Dialect) -> dict[str, Any]:
    """Write ``request`` as the JSON body a server of ``dialect`` reads.

    Raises:
        ValueError: A message has non-text parts (images) and the dialect has
            only plain ``text``.
    """
    if dialect == "current":
        return _current_body(request)
    if any(isinstance(message, OutgoingApproval) for message in request.messages):
        raise ValueError("Letta servers before 0.6.17 have no approvals to answer")
    config = {
        "use_assistant_message": request.use_assistant_message,
        "assistant_message_tool_name": request.assistant_message_tool_name,
        "assistant_message_tool_kwarg": request.assistant_message_tool_kwarg,
    }
    plain = [message for message in request.messages if isinstance(message, OutgoingMessage)]
    if dialect == "seed":
        messages = [_seed_message(message) for message in plain]
        config["stream_tokens"] = request.stream_tokens
    else:
        messages = [_without_otid(message) for message in plain]
    return {"messages": messages, "config": config, "stream_tokens": request.stream_tokens}


def _current_body(request: StreamRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": [_current_message(message) for message in request.messages],
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
    if request.override_model is not None:
        body["override_model"] = request.override_model
    if request.client_tools is not None:
        body["client_tools"] = [tool.model_dump(exclude_none=True) for tool in request.client_tools]
    for field in VERSIONED_FIELDS:
        value = getattr(request, field)
        if value is not None:
            # The server declares enable_thinking a string (and, up to 0.16.8, never reads it).
            body[field] = str(value).lower() if field == "enable_thinking" else value
    return body


def _current_message(message: OutgoingMessage | OutgoingApproval) -> dict[str, Any]:
    if isinstance(message, OutgoingApproval):
        return message.wire()
    return message.model_dump(exclude_none=True)


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


Release = tuple[int, int, int]

FEATURES_SINCE: dict[str, Release] = {
    "include_return_message_types": (0, 8, 3),
    "run_tracking": (0, 9, 0),
    "enable_thinking": (0, 10, 0),
    "background": (0, 11, 5),
    "run_filters": (0, 12, 0),
    "approvals": (0, 13, 0),
    "conversation_id": (0, 16, 2),
    "client_tools": (0, 16, 2),
    "override_model": (0, 16, 4),
    "message_by_id": (0, 16, 4),
    "summary_search": (0, 16, 4),
    "agent_direct": (0, 16, 6),
    "request_token": (0, 16, 7),
    "include_compaction_messages": (0, 16, 5),
    "override_system": (0, 16, 7),
}
"""The first Letta release with each feature: the first tag whose
``letta/schemas/letta_request.py`` has the field (``git log -S`` then ``git tag --contains``
in the Letta repository), or whose routes have ``/v1/conversations`` (``conversation_id``),
``GET /v1/messages/{id}`` (``message_by_id``), ``summary_search`` on the conversations
listing, ``POST /v1/conversations/default/messages`` with ``agent_id`` (``agent_direct``:
the agent's own thread under the server's lock), or ``derive_request_token``
(``request_token``: a background request is known again by its messages' otids);
``run_tracking`` is the first tag whose streaming route records every run (the setting
``track_agent_run``), listed by ``GET /v1/runs/active``, and ``run_filters`` the first
whose ``GET /v1/runs/`` takes ``agent_id`` and ``active``.
A server that lacks a field ignores it without a word, so the client refuses to send it
there (:func:`check_fields`)."""

VERSIONED_FIELDS = (
    "include_return_message_types",
    "enable_thinking",
    "include_compaction_messages",
    "override_system",
)
"""Request fields sent only where :data:`FEATURES_SINCE` says the server has them."""

_CHECKED_FIELDS = (*VERSIONED_FIELDS, "override_model", "client_tools")
_WHY = {
    "override_model": {
        "why": "an older server would ignore it and answer with the agent's own model "
        "(ChatLetta sends its model= as override_model)"
    },
    "approvals": {"why": "an older server reads no list of approvals"},
}
"""Every field checked against the server's release: ``override_model`` too, which
ChatLetta fills from its ``model`` (an older server would answer with the agent's
own model while the response named the one asked for)."""


def has_feature(version: str | None, feature: str) -> bool | None:
    """Whether a server of ``version`` has ``feature``; ``None`` when the version is unknown.

    Letta Cloud (and any server whose health check names no release) may say
    anything, so the caller decides what unknown means: request fields are sent,
    background mode is not asked for.
    """
    release = release_of(version)
    return None if release is None else release >= FEATURES_SINCE[feature]


def supports_background(version: str | None) -> bool:
    """Background runs (resumable streams) exist from Letta 0.11.5 on; unknown: no."""
    return has_feature(version, "background") is True


def features_used(request: StreamRequest) -> list[str]:
    """The features of :data:`FEATURES_SINCE` that ``request`` needs from the server."""
    used = [field for field in _CHECKED_FIELDS if getattr(request, field) is not None]
    if any(isinstance(message, OutgoingApproval) for message in request.messages):
        used.append("approvals")
    return used


def uses_versioned_fields(request: StreamRequest) -> bool:
    """Whether ``request`` needs something only some releases have (the version matters)."""
    return bool(features_used(request))


def check_fields(request: StreamRequest, version: str | None, dialect: Dialect) -> None:
    """Refuse, before anything is sent, a field the server would silently ignore.

    Raises:
        LettaUnsupportedFeatureError: ``request`` sets a field the server of
            ``version`` (or, version unknown, a server speaking an older ``dialect``
            than ``current``) does not have; it names the field, the server's
            version and the first release that has it.
    """
    for field in features_used(request):
        supported = has_feature(version, field)
        if supported is None:
            supported = dialect == "current"  # older dialects mean releases before 0.6.17
        if not supported:
            raise unsupported(field, version)


def unsupported(feature: str, version: str | None) -> LettaUnsupportedFeatureError:
    """The error for ``feature`` on a server of ``version``: what, where, and since when."""
    return LettaUnsupportedFeatureError(
        feature, version, FEATURES_SINCE[feature], **_WHY.get(feature, {})
    )


def supports_conversations(version: str | None) -> bool:
    """Conversations exist from Letta 0.16.2 on.

    A server that names no release (Letta Cloud, or a failed probe) is given the
    benefit of the doubt: it answers a route it lacks with a typed 404, and
    nothing was accepted.
    """
    return has_feature(version, "conversation_id") is not False


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
