"""LangGraph helpers: a Letta agent as a node of a ``MessagesState`` graph."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda, ensure_config

from langchain_letta._requests import answered_by, last_answer, waiting_calls
from langchain_letta._strict import check_names, field_names
from langchain_letta._tools import approval_request, decisions_from
from langchain_letta._wire.requests import ApprovalDecision
from langchain_letta._wire.retry import logger
from langchain_letta.chat_models import ChatLetta


def letta_node(
    model: ChatLetta | None = None,
    *,
    name: str | None = None,
    tools: Sequence[Any] = (),
    **model_args: Any,
) -> RunnableLambda[dict[str, Any], Any]:
    """A graph node that lets a Letta agent answer the conversation in ``state["messages"]``.

    The agent keeps its own memory, so the node sends only what it has not seen:
    the human and system messages after its own last answer. Answers of other
    agents in the same graph are not forwarded (each Letta agent has its own
    memory); the node appends this agent's answer to the state. Token chunks
    stream in LangGraph's ``messages`` mode.

    Args:
        model: The agent as a chat model; else one is built from ``model_args``
            (``agent_id=...``, ``base_url=...``, ...).
        name: The node's run name (default ``"letta_agent"``).
        tools: Client tools to offer the agent (as :meth:`ChatLetta.bind_tools`
            takes them); their calls come back as ``tool_calls`` for a ToolNode,
            whose ``ToolMessage`` s the node sends on its next turn.
        model_args: ChatLetta's arguments, when ``model`` is not given.

    Raises:
        TypeError: An argument neither this function nor ChatLetta takes (the
            closest valid one named), or ChatLetta's arguments beside ``model``.

    A server tool gated for approval pauses the graph (LangGraph's ``interrupt``,
    which needs a checkpointer) with a request shaped like
    ``HumanInTheLoopMiddleware``'s: ``{"action_requests": [{"id", "name", "args",
    "description"}, ...], "review_configs": [...]}``. Resume with
    ``Command(resume={"decisions": [{"type": "approve"} or {"type": "reject",
    "message": reason}, ...]})`` (one per call, in order), ``True`` / ``False``, or
    ``ApprovalDecision`` objects. The waiting answer is put in the state first and
    the node runs again to pause (``Command(goto=<this node>)``), so a resumed or
    restarted graph never sends the user's message twice; a static edge out of this
    node also fires at that step, so lead it to ``END`` or use conditional edges.

    The agent and the conversation follow :meth:`ChatLetta.target_for`, as for the
    model itself: ``configurable.agent_id`` before the model's ``agent_id``. With
    ``conversation_per_thread=True`` each LangGraph thread talks in its own Letta
    conversation of the agent, so one agent serves many threads at once.
    """
    check_names(model_args, {"model", "name", "tools", *field_names(ChatLetta)}, "letta_node")
    if model is not None and model_args:
        raise TypeError(
            "letta_node takes ChatLetta's arguments or model=ChatLetta(...), not both: set "
            f"{', '.join(sorted(model_args))} on the model"
        )
    letta = model or ChatLetta(**model_args)
    binding: Any = letta.bind_tools(tools) if tools else None
    offered: dict[str, Any] = binding.kwargs if binding is not None else {}

    def prepare(
        state: dict[str, Any], config: RunnableConfig
    ) -> tuple[list[BaseMessage], dict[str, Any], str | None]:
        """What the node sends, and the call's keywords (decisions once the person made them)."""
        agent_id = _agent(letta, config)
        visible = _visible(state["messages"], agent_id)
        _say_if_the_agent_remembers_more(letta, config, visible, agent_id)
        keywords: dict[str, Any] = {"agent_id": agent_id, **offered}
        gated = _gated_calls(visible, agent_id)
        if gated:
            keywords["approvals"] = _decide(gated, agent_id)
        return visible, keywords, agent_id

    def answer(state: dict[str, Any], config: RunnableConfig) -> Any:
        visible, keywords, agent_id = prepare(state, config)
        return _update(letta.invoke(visible, config, **keywords), agent_id, config)

    async def aanswer(state: dict[str, Any], config: RunnableConfig) -> Any:
        visible, keywords, agent_id = prepare(state, config)
        return _update(await letta.ainvoke(visible, config, **keywords), agent_id, config)

    return RunnableLambda(answer, afunc=aanswer, name=name or "letta_agent")


def _say_if_the_agent_remembers_more(
    model: ChatLetta, config: RunnableConfig, visible: Sequence[BaseMessage], agent_id: str | None
) -> None:
    """Warn when the thread's conversation has turns that the graph's state does not show.

    A graph's state can go back (``rollback`` double-texting, time travel, a fork, a
    trimmed history, a run cancelled mid-turn); the agent's memory cannot: it still
    holds those turns. Said, not hidden: the graph's state is not the agent's.
    """
    remembered = model.thread_conversation(config)
    if remembered is None or agent_id is None:
        return
    if last_answer(visible, agent_id, any_conversation=True) is None:
        logger.warning(
            "letta_node: the Letta conversation %s of this LangGraph thread holds turns that "
            "the thread's state does not show (rolled back, forked, trimmed or cancelled "
            "mid-turn): the agent remembers them, and a graph cannot roll its memory back",
            remembered,
        )


def _agent(model: ChatLetta, config: RunnableConfig) -> str | None:
    return model.target_for(config).agent_id


def _visible(messages: Sequence[BaseMessage], agent_id: str | None) -> list[BaseMessage]:
    """What the agent may be sent: people's messages, its own answers and their tool results.

    Answers of other agents, and tool results for their calls, are left out: each
    Letta agent has its own memory. A tool result for a call nobody made stays, so
    that ChatLetta refuses it (naming its id) rather than it vanish.
    """
    own = [
        message
        for message in messages
        if isinstance(message, AIMessage)
        and agent_id is not None
        and answered_by(message, agent_id)
    ]
    calls = {call["id"] for message in own for call in message.tool_calls}
    made = {
        call["id"]
        for message in messages
        if isinstance(message, AIMessage)
        for call in message.tool_calls
    }
    return [
        message
        for message in messages
        if isinstance(message, (HumanMessage, SystemMessage))
        or any(message is answer for answer in own)
        or (
            isinstance(message, ToolMessage)
            and (message.tool_call_id in calls or message.tool_call_id not in made)
        )
    ]


def _gated_calls(visible: Sequence[BaseMessage], agent_id: str | None) -> list[dict[str, Any]]:
    """The server tool calls the agent's last answer waits to have approved, if it is their turn.

    Their turn comes once the client tool calls of that answer, if any, have their
    ``ToolMessage`` s (ToolNode ran them), and before anything else is said.
    """
    position = None if agent_id is None else last_answer(visible, agent_id, any_conversation=True)
    if position is None:
        return []
    after = visible[position + 1 :]
    if any(not isinstance(message, ToolMessage) for message in after):
        return []
    answered = {message.tool_call_id for message in after if isinstance(message, ToolMessage)}
    waiting = waiting_calls(visible[position])
    gated = [call for call in waiting if call.get("type") == "server_tool_call"]
    client = [call for call in waiting if call.get("type") == "tool_call"]
    if not gated or any(call["id"] not in answered for call in client):
        return []
    return gated


def _decide(gated: list[dict[str, Any]], agent_id: str | None) -> list[ApprovalDecision]:
    """Pause the graph for a person's decisions on ``gated`` calls (LangGraph's ``interrupt``)."""
    from langgraph.types import interrupt  # LangGraph is needed only by graphs

    return decisions_from(interrupt(approval_request(gated, agent_id or "")), gated)


def _update(reply: BaseMessage, agent_id: str | None, config: RunnableConfig) -> Any:
    """The node's update: the reply, and back to this node while it waits for an approval.

    A reply that waits for approval of server tools goes into the state first, then
    the node runs again (``Command(goto=...)``) and pauses there: the pause comes
    after the reply is checkpointed, so resuming never sends the message again.
    """
    node = ensure_config(config).get("metadata", {}).get("langgraph_node")
    if node and agent_id and _gated_calls([reply], agent_id):
        from langgraph.types import Command

        return Command(update={"messages": [reply]}, goto=node)
    return {"messages": [reply]}
