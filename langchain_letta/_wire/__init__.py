"""HTTP and SSE: the only part of the package that talks to a Letta server."""

from langchain_letta._wire.client import (
    AsyncEventStream,
    AsyncLettaClient,
    EventStream,
    LettaClient,
    validate_agent_id,
    validate_conversation_id,
)
from langchain_letta._wire.requests import Dialect, DialectSetting, OutgoingMessage, StreamRequest

__all__ = [
    "AsyncEventStream",
    "AsyncLettaClient",
    "Dialect",
    "DialectSetting",
    "EventStream",
    "LettaClient",
    "OutgoingMessage",
    "StreamRequest",
    "validate_agent_id",
    "validate_conversation_id",
]
