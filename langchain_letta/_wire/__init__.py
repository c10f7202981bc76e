"""HTTP and SSE: the only part of the package that talks to a Letta server."""

from langchain_letta._wire.async_client import AsyncEventStream, AsyncLettaClient
from langchain_letta._wire.requests import (
    ApprovalDecision,
    ClientTool,
    Dialect,
    DialectSetting,
    OutgoingApproval,
    OutgoingMessage,
    StreamRequest,
    ToolResult,
)
from langchain_letta._wire.server import forget_server
from langchain_letta._wire.settings import (
    DEFAULT_TOTAL_TIMEOUT,
    check_credential,
    validate_agent_id,
    validate_base_url,
    validate_conversation_id,
)
from langchain_letta._wire.sync_client import EventStream, LettaClient

__all__ = [
    "DEFAULT_TOTAL_TIMEOUT",
    "ApprovalDecision",
    "AsyncEventStream",
    "AsyncLettaClient",
    "ClientTool",
    "Dialect",
    "DialectSetting",
    "EventStream",
    "LettaClient",
    "OutgoingApproval",
    "OutgoingMessage",
    "StreamRequest",
    "ToolResult",
    "check_credential",
    "forget_server",
    "validate_agent_id",
    "validate_base_url",
    "validate_conversation_id",
]
