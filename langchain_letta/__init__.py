"""A stateful Letta agent as a LangChain chat model."""

from importlib import metadata

from langchain_letta._wire import (
    ApprovalDecision,
    AsyncEventStream,
    AsyncLettaClient,
    ClientTool,
    EventStream,
    LettaClient,
    OutgoingApproval,
    OutgoingMessage,
    StreamRequest,
    ToolResult,
)
from langchain_letta.agents import LettaAgentRunnable, LettaResponse
from langchain_letta.callbacks import LettaStepPrinter
from langchain_letta.chat_models import ChatLetta
from langchain_letta.errors import LettaError
from langchain_letta.graph import letta_node

try:
    __version__ = metadata.version(__package__ or "langchain_letta")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "ApprovalDecision",
    "AsyncEventStream",
    "AsyncLettaClient",
    "ChatLetta",
    "ClientTool",
    "EventStream",
    "LettaAgentRunnable",
    "LettaClient",
    "LettaError",
    "LettaResponse",
    "LettaStepPrinter",
    "OutgoingApproval",
    "OutgoingMessage",
    "StreamRequest",
    "ToolResult",
    "__version__",
    "letta_node",
]
