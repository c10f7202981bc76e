"""Pure conversions for tool loops: tools to bind, and the answers to a run that waits.

A Letta run that calls a client tool, or a server tool gated for approval, stops
with ``requires_approval``. The caller answers every waiting call in one approval
message: the result of each client tool it ran (LangChain's ``ToolMessage``), and
approve or deny for each server tool (:class:`ApprovalDecision`). These functions
turn LangChain's side of that exchange into the wire models, without any I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic_core import from_json

from langchain_letta._requests import to_outgoing, waiting_calls
from langchain_letta._wire.requests import (
    ApprovalDecision,
    ClientTool,
    OutgoingApproval,
    OutgoingMessage,
    ToolResult,
)
from langchain_letta.events import ToolCall

Answer = ApprovalDecision | ToolResult
"""One answer to a call a run waits for."""

_OFFER = frozenset({"auto", "none"})
_UNFORCED = "Letta cannot force a tool call per request (tool rules are the agent's own)"


def client_tools(tools: Sequence[Any]) -> list[ClientTool]:
    """LangChain tools (``BaseTool``, pydantic models, functions, dicts) as client tools.

    Raises:
        ValueError: A tool that LangChain cannot describe as a function, or two
            tools with one name (Letta could not tell their calls apart).
    """
    converted = []
    for tool in tools:
        function = convert_to_openai_tool(tool)["function"]
        converted.append(
            ClientTool(
                name=function["name"],
                description=function.get("description") or None,
                parameters=function.get("parameters"),
            )
        )
    names = [tool.name for tool in converted]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"client tools need distinct names; given more than once: {twice}")
    return converted


def offered_tools(
    tools: Sequence[Any] | None, tool_choice: Any, *, lenient: bool = False
) -> list[ClientTool] | None:
    """The client tools to offer the agent for ``tool_choice``; ``None``: none at all.

    ``None`` and ``"auto"`` offer every tool and ``"none"`` (or ``False``) none,
    which is all Letta allows per request. A choice that forces a call
    (``"any"``, ``"required"``, ``True``, a tool's name or an OpenAI-style dict)
    is refused, unless ``lenient``: then the tools are offered (only the named
    one, for a name) and the agent's LLM decides, as with ``"auto"``.

    Raises:
        ValueError: A forcing ``tool_choice`` without ``lenient``, a name that is
            not one of ``tools``, or a tool that cannot be converted.
    """
    if not tools or tool_choice is False or tool_choice == "none":
        return None
    converted = client_tools(tools)
    if tool_choice is None or (isinstance(tool_choice, str) and tool_choice in _OFFER):
        return converted
    named = _named_choice(tool_choice)
    if named is not None and named not in {tool.name for tool in converted}:
        raise ValueError(f"tool_choice names {named!r}, which is not one of the bound tools")
    if not lenient:
        raise ValueError(
            f"ChatLetta cannot honour tool_choice={tool_choice!r}: {_UNFORCED}. Bind with "
            "tool_choice='auto' (the default), or ChatLetta(lenient_tool_choice=True) to offer "
            "the tools and let the agent decide."
        )
    return [tool for tool in converted if named in (None, tool.name)]


def _named_choice(tool_choice: Any) -> str | None:
    """The tool a ``tool_choice`` names (a name or an OpenAI-style dict), else ``None``."""
    if isinstance(tool_choice, dict):
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, dict) else tool_choice.get("name")
        return str(name) if name else None
    if isinstance(tool_choice, str) and tool_choice not in {"any", "required"}:
        return tool_choice
    return None


def outgoing(
    selected: Sequence[BaseMessage],
    answer: BaseMessage | None,
    approvals: Sequence[Answer] = (),
) -> list[OutgoingMessage | OutgoingApproval]:
    """The messages of one request: the answers to the waiting calls first, then the rest.

    ``selected`` are the messages after the agent's last ``answer``; its
    ``ToolMessage``s are the results of the client tools the caller ran, and
    ``approvals`` the caller's other answers (decisions on server tools). Letta
    reads an approval message only as the first of a request, and refuses a
    partial one, so every call ``answer`` left waiting must be answered here.

    Raises:
        ValueError: A ``ToolMessage`` or decision for a call nobody waits for, a
            call answered twice, a waiting call left unanswered, or a message
            Letta cannot take (see :func:`to_outgoing`).
    """
    results = [_result(message) for message in selected if isinstance(message, ToolMessage)]
    given: list[Answer] = [*results, *approvals]
    rest = [to_outgoing(message) for message in selected if not isinstance(message, ToolMessage)]
    if not given:
        return list(rest)
    ids = [item.tool_call_id for item in given]
    twice = sorted({call for call in ids if ids.count(call) > 1})
    if twice:
        raise ValueError(f"more than one answer for the tool calls {twice}")
    if answer is not None:
        waiting = [str(call.get("id")) for call in waiting_calls(answer)]
        unknown = [call for call in ids if call not in waiting]
        if unknown:
            raise ValueError(
                f"nothing waits for the tool calls {unknown}: the agent's last answer in the "
                f"history waits for {waiting or 'nothing'}"
            )
        missing = [call for call in waiting if call not in ids]
        if missing:
            raise ValueError(
                "Letta needs the answer to every waiting call at once; none given for "
                f"{missing} (a ToolMessage for a client tool, an ApprovalDecision for a "
                "server tool: approvals=[...])"
            )
        given.sort(key=lambda item: waiting.index(item.tool_call_id))
    return [OutgoingApproval(approvals=given), *rest]


def _result(message: ToolMessage) -> ToolResult:
    content = message.content
    text = content if isinstance(content, str) else message.text
    status = "error" if message.status == "error" else "success"
    return ToolResult(tool_call_id=message.tool_call_id, tool_return=text, status=status)


def approval_request(calls: Sequence[dict[str, Any]], agent_id: str) -> dict[str, Any]:
    """What ``letta_node`` interrupts with for server tool calls that wait for approval.

    The shape of LangChain's ``HumanInTheLoopMiddleware`` requests (``action_requests``
    and ``review_configs``), so that an interface that reviews one reviews the other;
    each action also carries the call's ``id``.
    """
    return {
        "action_requests": [
            {
                "id": call.get("id"),
                "name": call.get("name"),
                "args": call.get("args"),
                "description": f"The Letta agent {agent_id} asks to run its tool "
                f"{call.get('name')!r}: approve or reject (with a reason).",
            }
            for call in calls
        ],
        "review_configs": [
            {"action_name": call.get("name"), "allowed_decisions": ["approve", "reject"]}
            for call in calls
        ],
    }


def decisions_from(resume: Any, calls: Sequence[dict[str, Any]]) -> list[ApprovalDecision]:
    """The decisions a graph was resumed with (``Command(resume=...)``), one per call.

    Accepted: ``True`` / ``False`` for every call; ``{"decisions": [...]}`` as
    ``HumanInTheLoopMiddleware`` takes them, one ``{"type": "approve"}`` or
    ``{"type": "reject", "message": reason}`` per call in order; or
    ``ApprovalDecision`` objects (one, or a list) naming the calls.

    Raises:
        ValueError: A resume value of another shape, a decision type other than
            approve and reject, or not one decision per call.
    """
    ids = [str(call.get("id")) for call in calls]
    if isinstance(resume, bool):
        return [ApprovalDecision(tool_call_id=call, approve=resume) for call in ids]
    if isinstance(resume, ApprovalDecision):
        resume = [resume]
    if isinstance(resume, list) and all(isinstance(item, ApprovalDecision) for item in resume):
        if sorted(item.tool_call_id for item in resume) != sorted(ids):
            raise ValueError(f"one ApprovalDecision per waiting call is needed: {ids}")
        return list(resume)
    if isinstance(resume, dict) and isinstance(resume.get("decisions"), list):
        decisions = resume["decisions"]
        if len(decisions) != len(ids):
            raise ValueError(
                f"{len(ids)} decisions needed (one per call, in order), got {len(decisions)}"
            )
        return [_decision(call, decision) for call, decision in zip(ids, decisions, strict=True)]
    raise ValueError(
        "resume a Letta approval with True/False, {'decisions': [{'type': 'approve'} or "
        "{'type': 'reject', 'message': reason}, ...]} or ApprovalDecision objects; got "
        f"{type(resume).__name__}"
    )


def _decision(tool_call_id: str, decision: Any) -> ApprovalDecision:
    kind = decision.get("type") if isinstance(decision, dict) else None
    if kind == "approve":
        return ApprovalDecision(tool_call_id=tool_call_id, approve=True)
    if kind == "reject":
        reason = decision.get("message")
        return ApprovalDecision(tool_call_id=tool_call_id, approve=False, reason=reason)
    raise ValueError(f"a Letta approval decision is 'approve' or 'reject', not {decision!r}")


def waiting_call(call: ToolCall) -> dict[str, Any]:
    """A call a run waits for, as the caller answers it: its id, the tool's name, the arguments."""
    try:  # from_json: a hostile depth is a ValueError, not a RecursionError
        args = from_json(call.arguments or "{}")
    except ValueError:
        args = call.arguments
    return {"id": call.tool_call_id, "name": call.name, "args": args}
