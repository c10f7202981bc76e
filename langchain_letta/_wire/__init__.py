"""HTTP and SSE: the only part of the package that talks to a Letta server."""

from langchain_letta._wire.client import (
    AsyncEventStream,
    AsyncLettaClient,
    EventStream,
    LettaClient,
    check_credential,
    forget_server,
    validate_agent_id,
    validate_base_url,
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
    "check_credential",
    "forget_server",
    "validate_agent_id",
    "validate_base_url",
    "validate_conversation_id",
]
