"""Typed models of every event a Letta message stream can carry.

Letta renamed fields between releases (``assistant_message`` became ``content``,
``tool_call`` grew into ``tool_calls``, tool returns moved into ``tool_returns``,
``usage_statistics`` once had no ``message_type``). This module absorbs all of
that: each model keeps the raw fields it was sent (``extra="allow"``, so nothing a
newer server adds is lost) and offers one normalised view (``.text``, ``.calls``,
``.returns``, ``.error_type``) so that no other module branches on the server's
version.

Use :func:`parse_event` to turn the JSON of one SSE ``data:`` line into a model.
An unknown ``message_type`` becomes an :class:`UnknownEvent` that keeps its raw
JSON instead of being dropped.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
)

__all__ = [
    "KNOWN_STOP_REASONS",
    "ApprovalRequestMessage",
    "ApprovalResponseMessage",
    "ApprovalReturn",
    "AssistantMessage",
    "CompactionStats",
    "ContentPart",
    "ErrorMessage",
    "EventMessage",
    "HiddenReasoningMessage",
    "KnownStopReason",
    "LettaEvent",
    "LettaMessage",
    "Ping",
    "ReasoningMessage",
    "StopReason",
    "StreamErrorFrame",
    "SummaryMessage",
    "SystemMessage",
    "ToolCall",
    "ToolCallMessage",
    "ToolReturn",
    "ToolReturnMessage",
    "UnknownEvent",
    "UsageStatistics",
    "UserMessage",
    "parse_event",
]


class _WireModel(BaseModel):
    """Base of every wire model: keeps unknown fields, so newer servers lose nothing."""

    model_config = ConfigDict(extra="allow")

    @property
    def raw(self) -> dict[str, Any]:
        """The event as the server sent it (known and unknown fields alike)."""
        return self.model_dump(mode="json", exclude_unset=True)


class ContentPart(_WireModel):
    """One part of a multi-part content field (text, image, ...)."""

    type: str = "text"
    text: str | None = None


Content = str | list[ContentPart] | None


def _content_text(content: Content) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content if part.text is not None)


class LettaMessage(_WireModel):
    """Fields shared by every Letta message; all optional because old servers send only some."""

    message_type: str
    id: str | None = None
    date: str | None = None
    name: str | None = None
    otid: str | None = None
    sender_id: str | None = None
    step_id: str | None = None
    run_id: str | None = None
    seq_id: int | None = None
    is_err: bool | None = None


class ReasoningMessage(LettaMessage):
    """The agent's inner thoughts; during token streaming, one fragment of them.

    Attributes:
        source: ``"reasoner_model"`` for the model's native thinking,
            ``"non_reasoner_model"`` for inner thoughts the agent was prompted to
            write; ``None`` on servers before it existed.
        signature: The provider's signature of the thinking (Anthropic), which the
            provider needs back to verify it; sent once, in its own fragment.
    """

    message_type: Literal["reasoning_message"] = "reasoning_message"
    reasoning: str = ""
    source: Literal["reasoner_model", "non_reasoner_model"] | str | None = None
    signature: str | None = None

    @property
    def text(self) -> str:
        """The reasoning text (a delta when tokens are streamed)."""
        return self.reasoning


class HiddenReasoningMessage(LettaMessage):
    """Reasoning the provider redacted or omitted; only its state is visible."""

    message_type: Literal["hidden_reasoning_message"] = "hidden_reasoning_message"
    state: str | None = None
    hidden_reasoning: str | None = None

    @property
    def text(self) -> str:
        """The opaque hidden reasoning, or an empty string."""
        return self.hidden_reasoning or ""


class AssistantMessage(LettaMessage):
    """What the agent says to the user; ``assistant_message`` up to 0.6.14, ``content`` after."""

    message_type: Literal["assistant_message"] = "assistant_message"
    content: Content = None
    assistant_message: str | None = None

    @property
    def text(self) -> str:
        """The assistant text (a delta when tokens are streamed), whichever field held it."""
        if self.assistant_message is not None:
            return self.assistant_message
        return _content_text(self.content)


class ToolCall(_WireModel):
    """A tool call, or while tokens stream a fragment of one (any field may be missing)."""

    name: str | None = None
    arguments: str | None = None
    tool_call_id: str | None = None


class _CallsMessage(LettaMessage):
    tool_call: ToolCall | None = None
    tool_calls: list[ToolCall] | ToolCall | None = None

    @property
    def calls(self) -> list[ToolCall]:
        """Every call in this event: ``tool_calls`` (list or single delta), else ``tool_call``."""
        if isinstance(self.tool_calls, list):
            return self.tool_calls
        if self.tool_calls is not None:
            return [self.tool_calls]
        return [] if self.tool_call is None else [self.tool_call]


class ToolCallMessage(_CallsMessage):
    """A call the agent makes to one of its own (server-run) tools."""

    message_type: Literal["tool_call_message"] = "tool_call_message"


class ApprovalRequestMessage(_CallsMessage):
    """A tool call waiting for the client's approval; the run stops with ``requires_approval``."""

    message_type: Literal["approval_request_message"] = "approval_request_message"


class ToolReturn(_WireModel):
    """The result of one server-run tool call."""

    tool_call_id: str | None = None
    status: str | None = None
    tool_return: Content = None
    stdout: list[str] | None = None
    stderr: list[str] | None = None

    @property
    def output(self) -> str:
        """The tool's output as text, whether sent as a string or as parts."""
        return _content_text(self.tool_return)


class ToolReturnMessage(LettaMessage):
    """Results of server-run tools: top-level fields before 0.12, ``tool_returns`` after."""

    message_type: Literal["tool_return_message"] = "tool_return_message"
    tool_call_id: str | None = None
    status: str | None = None
    tool_return: Content = None
    stdout: list[str] | None = None
    stderr: list[str] | None = None
    tool_returns: list[ToolReturn] | None = None

    @property
    def returns(self) -> list[ToolReturn]:
        """Every return in this event, from ``tool_returns`` or else from the top-level fields."""
        if self.tool_returns:
            return self.tool_returns
        if self.tool_call_id is None and self.tool_return is None:
            return []
        return [
            ToolReturn(
                tool_call_id=self.tool_call_id,
                status=self.status,
                tool_return=self.tool_return,
                stdout=self.stdout,
                stderr=self.stderr,
            )
        ]


class UserMessage(LettaMessage):
    """A user message (``message`` up to 0.6.14, ``content`` after); not streamed back normally."""

    message_type: Literal["user_message"] = "user_message"
    content: Content = None
    message: str | None = None

    @property
    def text(self) -> str:
        """The message text, whichever field held it."""
        return self.message if self.message is not None else _content_text(self.content)


class SystemMessage(LettaMessage):
    """A system message (``message`` up to 0.6.14, ``content`` after)."""

    message_type: Literal["system_message"] = "system_message"
    content: Content = None
    message: str | None = None

    @property
    def text(self) -> str:
        """The message text, whichever field held it."""
        return self.message if self.message is not None else _content_text(self.content)


class ApprovalReturn(_WireModel):
    """The client's decision on one call that waited for approval (``type: "approval"``)."""

    type: str = "approval"
    tool_call_id: str | None = None
    approve: bool | None = None
    reason: str | None = None


def _approval_item_tag(value: Any) -> str:
    """``tool`` for a tool return the client ran itself, else ``approval``."""
    if isinstance(value, dict):
        kind = value.get("type")
        if kind is None:
            return "tool" if "tool_return" in value else "approval"
        return "tool" if kind == "tool" else "approval"
    return "tool" if isinstance(value, ToolReturn) else "approval"


ApprovalItem = Annotated[
    Annotated[ApprovalReturn, Tag("approval")] | Annotated[ToolReturn, Tag("tool")],
    Discriminator(_approval_item_tag),
]


class ApprovalResponseMessage(LettaMessage):
    """The client's answer to an approval request, echoed in the stream (0.12+).

    ``approvals`` holds one decision (or client-run tool return) per call; the
    single ``approve`` / ``approval_request_id`` / ``reason`` fields are the older,
    deprecated form of one decision.
    """

    message_type: Literal["approval_response_message"] = "approval_response_message"
    approvals: list[ApprovalItem] | None = None
    approve: bool | None = None
    approval_request_id: str | None = None
    reason: str | None = None


class CompactionStats(_WireModel):
    """What a compaction did to the agent's context (sizes before and after)."""

    trigger: str | None = None
    context_tokens_before: int | None = None
    context_tokens_after: int | None = None
    context_window: int | None = None
    messages_count_before: int | None = None
    messages_count_after: int | None = None


class SummaryMessage(LettaMessage):
    """A summary written when Letta compacts the context (``include_compaction_messages``)."""

    message_type: Literal["summary_message"] = "summary_message"
    summary: str | None = None
    compaction_stats: CompactionStats | None = None


class EventMessage(LettaMessage):
    """A server event, not part of the agent's context (0.16.5+: ``event_type="compaction"``)."""

    message_type: Literal["event_message"] = "event_message"
    event_type: Literal["compaction"] | str | None = None
    event_data: dict[str, Any] | None = None


class Ping(LettaMessage):
    """Keep-alive; the first one of a stream carries the run id, later ones the last seq_id."""

    message_type: Literal["ping"] = "ping"


class UsageStatistics(_WireModel):
    """Token usage summed over every step of the request (sent once, near the end)."""

    message_type: Literal["usage_statistics"] = "usage_statistics"
    completion_tokens: int = 0
    prompt_tokens: int = 0
    total_tokens: int = 0
    step_count: int = 0
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    reasoning_tokens: int | None = None
    context_tokens: int | None = None
    run_ids: list[str] | None = None


KnownStopReason = Literal[
    "end_turn",
    "error",
    "llm_api_error",
    "invalid_llm_response",
    "invalid_tool_call",
    "max_steps",
    "max_tokens_exceeded",
    "no_tool_call",
    "tool_rule",
    "cancelled",
    "insufficient_credits",
    "requires_approval",
    "context_window_overflow_in_system_prompt",
]
"""Every stop reason Letta 0.16.8 sends. ``end_turn``, ``max_steps``, ``tool_rule`` and
``requires_approval`` end a completed run; ``cancelled`` a cancelled one; the others a
failed one. ``requires_approval`` means the run waits for the client's decision on the
calls of its ``approval_request_message``."""

KNOWN_STOP_REASONS: frozenset[str] = frozenset(get_args(KnownStopReason))


class StopReason(_WireModel):
    """Why the run ended (one of :data:`KnownStopReason`); from 0.8.4.

    A value a newer server adds is kept as the string it sent, never refused:
    compare with :data:`KNOWN_STOP_REASONS` to tell them apart.
    """

    message_type: Literal["stop_reason"] = "stop_reason"
    stop_reason: KnownStopReason | str


class ErrorMessage(LettaMessage):
    """An error reported inside the stream (0.15+), sent after an ``event: error`` line."""

    message_type: Literal["error_message"] = "error_message"
    error_type: str | None = None
    message: str | None = None
    detail: str | None = None


class StreamErrorFrame(_WireModel):
    """An error payload without ``message_type``: ``{"error": "..."}`` or ``{"error": {...}}``.

    Seed-era servers send it as a plain ``data:`` frame; 0.8 to 0.14 and the 0.16
    catch-all send it after ``event: error``.
    """

    message_type: Literal["stream_error"] = "stream_error"
    error: str | dict[str, Any]
    code: str | None = None

    @property
    def error_type(self) -> str | None:
        """Letta's error type, where the payload names one."""
        if isinstance(self.error, dict):
            kind = self.error.get("type")
            return kind if isinstance(kind, str) else self.code
        return self.code

    @property
    def message(self) -> str:
        """The human-readable error message."""
        if isinstance(self.error, dict):
            return str(self.error.get("message") or self.error)
        return self.error

    @property
    def detail(self) -> str | None:
        """Extra detail, where the payload has it."""
        if isinstance(self.error, dict) and self.error.get("detail") is not None:
            return str(self.error["detail"])
        return None


class UnknownEvent(_WireModel):
    """An event whose ``message_type`` this package does not know; kept whole, never dropped."""

    message_type: str = "unknown"


_KNOWN_TYPES = frozenset(
    {
        "reasoning_message",
        "hidden_reasoning_message",
        "assistant_message",
        "tool_call_message",
        "approval_request_message",
        "tool_return_message",
        "user_message",
        "system_message",
        "approval_response_message",
        "summary_message",
        "event_message",
        "ping",
        "usage_statistics",
        "stop_reason",
        "error_message",
    }
)


def _event_tag(value: Any) -> str:
    """Choose the model for one payload, including the shapes that lack ``message_type``."""
    if not isinstance(value, dict):
        return str(getattr(value, "message_type", "unknown"))
    message_type = value.get("message_type")
    if message_type is None:
        if "error" in value:
            return "stream_error"
        if "total_tokens" in value and "step_count" in value:
            return "usage_statistics"  # servers before 0.6.7 sent usage without message_type
        return "unknown"
    return message_type if message_type in _KNOWN_TYPES else "unknown"


LettaEvent = Annotated[
    Annotated[ReasoningMessage, Tag("reasoning_message")]
    | Annotated[HiddenReasoningMessage, Tag("hidden_reasoning_message")]
    | Annotated[AssistantMessage, Tag("assistant_message")]
    | Annotated[ToolCallMessage, Tag("tool_call_message")]
    | Annotated[ApprovalRequestMessage, Tag("approval_request_message")]
    | Annotated[ToolReturnMessage, Tag("tool_return_message")]
    | Annotated[UserMessage, Tag("user_message")]
    | Annotated[SystemMessage, Tag("system_message")]
    | Annotated[ApprovalResponseMessage, Tag("approval_response_message")]
    | Annotated[SummaryMessage, Tag("summary_message")]
    | Annotated[EventMessage, Tag("event_message")]
    | Annotated[Ping, Tag("ping")]
    | Annotated[UsageStatistics, Tag("usage_statistics")]
    | Annotated[StopReason, Tag("stop_reason")]
    | Annotated[ErrorMessage, Tag("error_message")]
    | Annotated[StreamErrorFrame, Tag("stream_error")]
    | Annotated[UnknownEvent, Tag("unknown")],
    Discriminator(_event_tag),
]
"""Any event of a Letta stream, chosen by ``message_type`` (or by shape where it is missing)."""

_EVENT_ADAPTER: TypeAdapter[LettaEvent] = TypeAdapter(LettaEvent)

_TAGGED_EVENTS = (
    ReasoningMessage
    | HiddenReasoningMessage
    | AssistantMessage
    | ToolCallMessage
    | ApprovalRequestMessage
    | ToolReturnMessage
    | UserMessage
    | SystemMessage
    | ApprovalResponseMessage
    | SummaryMessage
    | EventMessage
    | Ping
    | UsageStatistics
    | StopReason
    | ErrorMessage
)
_FAST_ADAPTER: TypeAdapter[LettaEvent] = TypeAdapter(
    Annotated[_TAGGED_EVENTS, Field(discriminator="message_type")]
)
"""The hot path: a payload that names a known ``message_type`` is validated straight from
JSON by the tag. Anything else (no tag, unknown tag, bad fields) takes the full adapter,
which also gives the precise error."""


def parse_event(data: str | bytes) -> LettaEvent:
    """Parse the JSON of one SSE ``data:`` payload into its typed event.

    Args:
        data: The payload, exactly as it followed ``data:``.

    Returns:
        The typed event; an :class:`UnknownEvent` for a ``message_type`` this
        package does not know.

    Raises:
        ValueError: The payload is not JSON, not an object, or a known event type
            with fields of the wrong type. The message names the cause;
            :class:`pydantic.ValidationError` is a ``ValueError`` too.
    """
    try:
        return _FAST_ADAPTER.validate_json(data)
    except ValidationError:
        pass
    try:
        return _EVENT_ADAPTER.validate_json(data)
    except ValidationError as error:
        if error.error_count() == 1 and error.errors()[0]["type"] == "json_invalid":
            raise ValueError(f"not valid JSON: {error.errors()[0]['msg']}") from None
        try:
            payload = json.loads(data)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise ValueError("an SSE data payload must be a JSON object") from None
        raise


def waiting_in(messages: list[Any], message_id: str) -> list[ToolCall]:
    """The calls that the approval request ``message_id`` among ``messages`` asks for.

    ``messages`` is Letta's JSON listing (one stored message may list as several:
    its reasoning, then its request); a message that is not an approval request
    asks for nothing, and items that are not known Letta messages are skipped.
    """
    calls: list[ToolCall] = []
    for item in messages:
        if not isinstance(item, dict) or item.get("id") != message_id:
            continue
        try:
            message = _EVENT_ADAPTER.validate_python(item)
        except ValidationError:
            continue
        if isinstance(message, ApprovalRequestMessage):
            calls += message.calls
    return calls
