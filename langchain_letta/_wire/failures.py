"""HTTP and transport failures as the package's typed errors; no I/O."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from langchain_letta._wire.state import StreamState
from langchain_letta.errors import (
    LettaConnectionError,
    LettaError,
    LettaInvalidRequestError,
    LettaProtocolError,
    LettaStreamInterruptedError,
    LettaTimeoutError,
    error_from_response,
)

UNKNOWN_FATE = (LettaConnectionError, LettaTimeoutError, LettaStreamInterruptedError)
"""Failures after which a sent request may or may not have reached the server."""


def is_event_stream(headers: Mapping[str, str]) -> bool:
    """Whether a body is SSE; media types are case-insensitive (``Text/Event-Stream``)."""
    content_type = headers.get("content-type", "")
    return content_type.partition(";")[0].strip().lower() == "text/event-stream"


def error_from_http(
    status_code: int, headers: Mapping[str, str], body: bytes, url: str | None = None
) -> LettaError:
    """The error for a response with status >= 400, reading an SSE body where there is one.

    Args:
        status_code: The status.
        headers: The response headers.
        body: The start of the body.
        url: ``METHOD URL`` of the request, for the message (never with credentials:
            ``base_url`` cannot carry them).
    """
    if is_event_stream(headers):
        # 0.11.x answers an upstream LLM failure with HTTP 500 and the error in SSE frames.
        state = StreamState(status_code=status_code)
        state.feed(body + b"\n\n")
        # A body that is no valid stream proves nothing: its status decides (a 503 stays a
        # retryable refusal, where a protocol error would say the message was accepted).
        if state.failure is not None and not isinstance(state.failure, LettaProtocolError):
            return state.failure
    text = body.decode("utf-8", errors="replace")
    return error_from_response(status_code, text, headers=headers, url=url)


def error_from_transport(error: httpx.TransportError, tried: str | None = None) -> LettaError:
    """The error for a transport failure before any response arrived.

    The message names the failure's class, not its text: httpx and h11 quote
    header values in theirs, and a header may carry a credential. ``tried`` is
    the request's ``METHOD URL`` (no userinfo, no query: never a credential),
    named in the message so that a wrong ``base_url`` shows.
    """
    kind = type(error).__name__
    at = f"; tried {tried}" if tried else ""
    if isinstance(error, httpx.LocalProtocolError):
        return LettaInvalidRequestError(
            f"the request could not be sent: httpx refused it ({kind}); nothing was sent{at}",
            is_retryable=False,
        )
    if isinstance(error, (httpx.ConnectTimeout, httpx.PoolTimeout)):
        return LettaTimeoutError(
            f"timed out connecting to the Letta server ({kind}){at}", is_retryable=True
        )
    if isinstance(error, httpx.ConnectError):
        return LettaConnectionError(f"cannot reach the Letta server ({kind}: {error}){at}")
    if isinstance(error, httpx.TimeoutException):
        return LettaTimeoutError(
            f"the Letta server did not answer within the read timeout ({kind}){at}",
            request_accepted=True,
        )
    # The request may have reached the server: the message may be stored already.
    return LettaConnectionError(
        f"the Letta server did not answer the request ({kind}){at}", request_accepted=True
    )
