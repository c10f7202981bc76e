"""Typed errors, each inheriting both ``LettaError`` and langchain-core's taxonomy.

Code that handles any LangChain model (``except ModelRateLimitError``) and code
written for Letta (``except LettaError``) both catch what this package raises.

``is_retryable`` is decided per error, not only per class, because the question
that matters for a Letta agent is whether the server may already have accepted
the user's message: re-sending it then would add the turn to the agent's memory
twice. An error raised after the stream started is therefore never retryable,
whatever its class; ``request_accepted`` says so explicitly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from langchain_core.exceptions import (
    ContextOverflowError,
    ModelAPIError,
    ModelAuthenticationError,
    ModelConnectionError,
    ModelError,
    ModelInvalidRequestError,
    ModelNotFoundError,
    ModelPermissionDeniedError,
    ModelRateLimitError,
    ModelTimeoutError,
)
from pydantic_core import from_json

__all__ = [
    "LettaAPIError",
    "LettaAuthenticationError",
    "LettaConflictError",
    "LettaConnectionError",
    "LettaContextOverflowError",
    "LettaError",
    "LettaInvalidRequestError",
    "LettaNotFoundError",
    "LettaNothingPendingError",
    "LettaPendingApprovalError",
    "LettaPermissionDeniedError",
    "LettaProtocolError",
    "LettaRateLimitError",
    "LettaStreamCancelledError",
    "LettaStreamInterruptedError",
    "LettaTimeoutError",
    "LettaUnsupportedFeatureError",
    "StreamProgress",
]

_BODY_EXCERPT = 500


class StreamProgress:
    """How far a stream got before it failed: enough to resume it or to report it.

    Only counters and cursors are kept (not the events themselves), so the
    memory of a long stream stays flat; the events were already delivered to
    the consumer as they came.
    """

    __slots__ = ("events_received", "last_seq_id", "run_id", "stop_reason")

    def __init__(
        self,
        *,
        run_id: str | None = None,
        last_seq_id: int | None = None,
        events_received: int = 0,
        stop_reason: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.last_seq_id = last_seq_id
        self.events_received = events_received
        self.stop_reason = stop_reason

    def __repr__(self) -> str:
        return (
            f"StreamProgress(run_id={self.run_id!r}, last_seq_id={self.last_seq_id!r}, "
            f"events_received={self.events_received!r}, stop_reason={self.stop_reason!r})"
        )


class LettaError(ModelError):
    """Base of every error this package raises.

    Attributes:
        status_code: HTTP status of the response, if there was one.
        body: The response body or in-stream error payload (parsed JSON where it
            was JSON, else an excerpt of the text).
        error_type: Letta's own error type (``llm_rate_limit``, ...), if sent.
        detail: Letta's ``detail`` text, normalised to a string.
        request_accepted: Whether the server may have accepted the message; when
            true, sending the request again would duplicate the turn.
        progress: How far the stream got, for errors raised mid-stream.
        partial_message: What the agent had said before the failure (set by
            ``ChatLetta``; an ``AIMessage``), so that nothing received is lost.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: Any = None,
        error_type: str | None = None,
        detail: str | None = None,
        request_accepted: bool = False,
        progress: StreamProgress | None = None,
        is_retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body
        self.error_type = error_type
        self.detail = detail
        self.request_accepted = request_accepted
        self.progress = progress
        self.partial_message: Any = None
        if request_accepted:
            self.is_retryable = False
        elif is_retryable is not None:
            self.is_retryable = is_retryable

    @property
    def run_id(self) -> str | None:
        """The Letta run the failed request belongs to, if the server told us."""
        return self.progress.run_id if self.progress else None


class LettaAuthenticationError(LettaError, ModelAuthenticationError):
    """The server (or the LLM provider behind it) rejected the credentials (401)."""


class LettaPermissionDeniedError(LettaError, ModelPermissionDeniedError):
    """The credentials lack permission for this agent or action (403)."""


class LettaNotFoundError(LettaError, ModelNotFoundError):
    """The agent (or run) does not exist: 404, or the 500 that 0.6 servers send instead."""


class LettaInvalidRequestError(LettaError, ModelInvalidRequestError):
    """The server rejected the request as invalid (400, 422); nothing was accepted."""


class LettaUnsupportedFeatureError(LettaInvalidRequestError):
    """The request sets a field this server's release does not have; the message was not sent.

    Letta ignores request fields it does not know, so sending one to an older
    server would quietly do nothing, and a route it lacks is a bare 404; the
    client refuses instead. Raised before the request is sent (after the health
    check that tells the version).

    Attributes:
        feature: The request field (``override_system``, ``conversation_id``, ...).
        server_version: The version the server reported (``None``: unknown, and
            its dialect older than the field).
        since: The first Letta release with the field, as ``(0, 16, 7)``.
    """

    def __init__(
        self,
        feature: str,
        server_version: str | None,
        since: tuple[int, int, int],
        *,
        why: str = "an older server would ignore it without a word",
    ) -> None:
        first = ".".join(str(part) for part in since)
        server = f"Letta {server_version}" if server_version else "this Letta server (too old)"
        super().__init__(
            f"{server} does not support {feature!r}: it exists from Letta {first} on, and "
            f"{why}. Nothing was sent; leave {feature!r} unset for this server, or upgrade "
            "the server.",
            is_retryable=False,
        )
        self.feature = feature
        self.server_version = server_version
        self.since = since


class LettaRateLimitError(LettaError, ModelRateLimitError):
    """Too many requests (429), or the LLM provider's rate limit reported in the stream.

    Attributes:
        retry_after: Seconds the server asked us to wait, if it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class LettaConflictError(LettaError, ModelAPIError):
    """The agent is busy with another run, or waits for a tool approval (409).

    A busy agent is worth retrying later; an agent waiting for an approval is not.
    """


class LettaPendingApprovalError(LettaConflictError):
    """A new message was refused: the agent waits for the client's decision on tool calls.

    Letta refuses any message but an approval while a run stopped with
    ``requires_approval``; sending it again changes nothing, so this is never
    retryable. Answer the pending calls instead, all in the next call (the message
    says how): a ``ToolMessage`` per client tool call (its ``tool_call_id``), and
    ``approvals=[ApprovalDecision(tool_call_id=..., approve=True or False)]`` per
    server tool call gated for approval; ``ToolResult`` answers a client tool call
    in ``approvals=`` too, and on the streaming client (``OutgoingApproval``).

    Letta 0.12 to 0.16.8 refuse with HTTP 409 before any stream
    (``request_accepted=False``), or, once the stream started, with an
    ``error_message`` ``"CONFLICT: … waiting for approval …"`` inside it
    (``request_accepted=True``, as for every in-stream error).

    Attributes:
        pending_request_id: The Letta message id of the approval request, where
            the server names it (the 409 whose ``detail`` is an object with
            ``code: "PENDING_APPROVAL"``).
        pending_tool_calls: The calls waiting for a decision or a result
            (``server_tool_call`` blocks and ``tool_calls``: ``id``, ``name``,
            ``args``). No Letta release names them in the refusal; ``ChatLetta``
            fills them from the agent's last answer in the history it was given,
            where that answer is there, and ``ChatLetta.pending_approvals()``
            reads them from the server in any case.
    """

    is_retryable = False

    def __init__(
        self,
        message: str,
        *,
        pending_request_id: str | None = None,
        pending_tool_calls: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        joint = " " if message.rstrip().endswith(".") else ". "
        super().__init__(message.rstrip() + joint + HOW_TO_ANSWER, **kwargs)
        self.pending_request_id = pending_request_id
        self.pending_tool_calls = list(pending_tool_calls or [])


HOW_TO_ANSWER = (
    "The agent waits for an answer to each pending tool call, all in the next call: a "
    "ToolMessage(content=result, tool_call_id=...) per client tool call (one you bound with "
    "bind_tools), and approvals=[ApprovalDecision(tool_call_id=..., approve=True)] (or "
    "approve=False, reason=...) per server tool call gated for approval (a server_tool_call "
    "block with extras requires_approval); ToolResult(tool_call_id=..., tool_return=...) "
    "answers a client tool call in approvals= too, and on the streaming client "
    "(StreamRequest(messages=[OutgoingApproval(approvals=[...])])). In a graph, letta_node "
    "resumes with Command(resume=True or False). model.pending_approvals() lists the "
    "pending calls when the history that asked is gone."
)
"""How to answer the pending calls: the end of every ``LettaPendingApprovalError`` message."""


class LettaNothingPendingError(LettaConflictError):
    """An answer to tool calls the agent no longer waits for (the run that asked is over).

    Letta 0.16.8 reports it inside the stream as an unknown LLM error whose text says
    ``No tool call is currently awaiting approval``. Sending the answer again changes
    nothing, so this is never retryable: send a new message instead, and read what the
    agent waits for now with ``ChatLetta.pending_approvals()``.
    """

    is_retryable = False


class LettaAPIError(LettaError, ModelAPIError):
    """The server failed (5xx), or reported an error inside the stream."""


class LettaContextOverflowError(LettaError, ContextOverflowError):
    """The agent's context window overflowed (reported by the server in the stream)."""


class LettaConnectionError(LettaError, ModelConnectionError):
    """The server could not be reached; nothing was sent, so a retry is safe."""


class LettaTimeoutError(LettaError, ModelTimeoutError):
    """Connecting (retryable) or reading (not: the run may be going on) timed out."""


class LettaProtocolError(LettaError, ModelAPIError):
    """The server sent something that is not a valid Letta stream (malformed frame, ...)."""

    is_retryable = False


class LettaStreamInterruptedError(LettaError, ModelConnectionError):
    """The stream stopped before ``[DONE]``: the connection dropped or the server hung up.

    The message was accepted, so the request is never re-sent; ``progress`` holds
    the run id and last ``seq_id`` from which a background run can be resumed.
    """


class LettaStreamCancelledError(LettaError):
    """The run was cancelled on the server (``event: cancelled``)."""


def error_from_response(
    status_code: int,
    body_text: str,
    *,
    headers: Mapping[str, str] | None = None,
    request_accepted: bool = False,
    url: str | None = None,
) -> LettaError:
    """Map an HTTP error response (before any stream event) to its typed error.

    Args:
        status_code: The HTTP status (400 or above).
        body_text: The response body; JSON where the server sent JSON.
        headers: Response headers, for ``Retry-After``.
        request_accepted: Whether the server may have accepted the message.
        url: The URL requested (without credentials), named in a 404: a bare
            "Not Found" does not tell a wrong ``base_url`` from an unknown agent.

    Returns:
        The error to raise; its message never contains request headers, so no
        credential can leak through it.
    """
    body = _parse_body(body_text)
    detail = _detail_text(body)
    error_type = _letta_error_type(body)
    message = f"Letta server answered HTTP {status_code}: {detail}"
    common: dict[str, Any] = {
        "status_code": status_code,
        "body": body,
        "detail": detail,
        "error_type": error_type,
        "request_accepted": request_accepted,
    }
    if status_code == 401:
        return LettaAuthenticationError(message, **common)
    if status_code == 403:
        return LettaPermissionDeniedError(message, **common)
    if status_code == 404 or (status_code == 500 and detail.startswith("Agent not found")):
        return LettaNotFoundError(message + _where(url), **common)
    if status_code in (400, 422):
        return LettaInvalidRequestError(message, **common)
    if status_code == 409:
        if error_type == _PENDING_APPROVAL or _waits_for_approval(detail):
            return LettaPendingApprovalError(
                message, pending_request_id=_pending_request_id(body), **common
            )
        # Busy (another run holds the agent or conversation): worth retrying later.
        return LettaConflictError(message, is_retryable=True, **common)
    if status_code == 429:
        return LettaRateLimitError(
            message, retry_after=_retry_after(headers), is_retryable=True, **common
        )
    if status_code >= 500:
        # A 500 may come after the server stored the message; only gateway errors are safe.
        gateway = status_code in (502, 503, 504)
        if not gateway:
            common["request_accepted"] = True
        return LettaAPIError(message, is_retryable=gateway, **common)
    return LettaAPIError(message, is_retryable=False, **common)


_IN_STREAM_ERRORS: dict[str, type[LettaError]] = {
    "llm_rate_limit": LettaRateLimitError,
    "rate_limit_exceeded": LettaRateLimitError,  # seed-era `code`
    "llm_authentication": LettaAuthenticationError,
    "llm_timeout": LettaTimeoutError,
    "context_window_overflow_in_system_prompt": LettaContextOverflowError,
    "context_window_exceeded": LettaContextOverflowError,
}


def error_from_stream(
    error_type: str | None,
    message: str,
    detail: str | None,
    *,
    body: Any,
    progress: StreamProgress,
    status_code: int | None = None,
) -> LettaError:
    """Map an error the server reported inside the stream to its typed error.

    The server had accepted the message by then, so the error is never retryable.
    """
    cls = _IN_STREAM_ERRORS.get((error_type or "").lower(), LettaAPIError)
    if cls is LettaAPIError and "contextwindowexceeded" in message.lower():
        cls = LettaContextOverflowError
    if cls is LettaAPIError and _waits_for_approval(message):
        cls = LettaPendingApprovalError  # 0.16.8 reports it as an ``internal_error``
    text = f"Letta reported an error in the stream: {message}"
    if cls is LettaAPIError and _nothing_pending(f"{message} {detail or ''}"):
        cls = LettaNothingPendingError
        text += (
            ": the agent no longer waits for an answer to these tool calls (the run that "
            "asked is over); send a new message instead, and read what it waits for now "
            "with pending_approvals()"
        )
    if detail and detail != message:
        text += f" ({detail})"
    return cls(
        text,
        status_code=status_code,
        body=body,
        error_type=error_type,
        detail=detail,
        request_accepted=True,
        progress=progress,
    )


_PENDING_APPROVAL = "PENDING_APPROVAL"


def _waits_for_approval(text: str) -> bool:
    """Whether Letta's message is its ``PendingApprovalError`` (same words from 0.12 to 0.16.8)."""
    return "waiting for approval" in text.lower()


def _nothing_pending(text: str) -> bool:
    """Whether Letta's message says no tool call waits for an answer (0.16.8's words)."""
    return "no tool call is currently awaiting approval" in text.lower()


def _pending_request_id(body: Any) -> str | None:
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict) and isinstance(detail.get("pending_request_id"), str):
        return str(detail["pending_request_id"])
    return None


def _where(url: str | None) -> str:
    """The URL a 404 came from, with the usual cause of a wrong one: ``base_url`` ending in /v1."""
    if url is None:
        return ""
    hint = ""
    if "/v1/v1/" in url:
        hint = "; the base_url ends in /v1, which the client adds itself: drop the /v1"
    return f" ({url}{hint})"


def _parse_body(text: str) -> Any:
    # pydantic-core refuses JSON nested deeper than 200 levels with a ValueError;
    # json.loads raised a bare RecursionError on a hostile body such as [[[[…]]]].
    try:
        return from_json(text)
    except ValueError:
        return _excerpt(text)


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _BODY_EXCERPT else text[:_BODY_EXCERPT] + "…"


def _detail_text(body: Any) -> str:
    """One readable line from any error body shape Letta has used."""
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, list):  # FastAPI validation errors up to 0.12
            return "; ".join(_validation_item(item) for item in detail)
        if isinstance(detail, dict) and detail.get("message") is not None:
            return _excerpt(str(detail["message"]))  # {"code": …, "message": …, …}
        if detail is not None:
            return _excerpt(str(detail))
        error = body.get("error")
        if isinstance(error, dict):
            return _excerpt(str(error.get("message") or error))
        if error is not None:
            return _excerpt(str(error))
        return _excerpt(json.dumps(body))
    return _excerpt(str(body)) if body else "(empty body)"


def _validation_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    location = ".".join(str(part) for part in item.get("loc", ()))
    return f"{location}: {item.get('msg', item)}"


def _letta_error_type(body: Any) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            return str(error["type"])
        detail = body.get("detail")
        if isinstance(detail, dict) and isinstance(detail.get("code"), str):
            return str(detail["code"])
        if isinstance(body.get("code"), str):
            return str(body["code"])
    return None


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date; treat as unknown rather than guess the clock
    # "nan" means nothing; "inf" and "1e400" (inf too) stay: no retry waits that long.
    return None if math.isnan(seconds) else max(0.0, seconds)
