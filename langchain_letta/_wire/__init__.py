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

__all__ = [
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
