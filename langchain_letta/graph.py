"""LangGraph helpers: a Letta agent as a node of a ``MessagesState`` graph."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda

from langchain_letta._convert import answered_by
from langchain_letta.chat_models import ChatLetta


def letta_node(
    model: ChatLetta | None = None, *, name: str | None = None, **model_args: Any
) -> RunnableLambda[dict[str, Any], dict[str, list[BaseMessage]]]:
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
        model_args: ChatLetta's arguments, when ``model`` is not given.

    The agent and the conversation follow :meth:`ChatLetta.target_for`, as for the
    model itself: ``configurable.agent_id`` before the model's ``agent_id``. With
    ``conversation_per_thread=True`` each LangGraph thread talks in its own Letta
    conversation of the agent, so one agent serves many threads at once.
    """
    letta = model or ChatLetta(**model_args)

    def answer(state: dict[str, Any], config: RunnableConfig) -> dict[str, list[BaseMessage]]:
        agent_id = _agent(letta, config)
        reply = letta.invoke(_visible(state["messages"], agent_id), config, agent_id=agent_id)
        return {"messages": [reply]}

    async def aanswer(
        state: dict[str, Any], config: RunnableConfig
    ) -> dict[str, list[BaseMessage]]:
        agent_id = _agent(letta, config)
        visible = _visible(state["messages"], agent_id)
        reply = await letta.ainvoke(visible, config, agent_id=agent_id)
        return {"messages": [reply]}

    return RunnableLambda(answer, afunc=aanswer, name=name or "letta_agent")


def _agent(model: ChatLetta, config: RunnableConfig) -> str | None:
    return model.target_for(config).agent_id


def _visible(messages: Sequence[BaseMessage], agent_id: str | None) -> list[BaseMessage]:
    """What the agent may be sent: people's messages and its own earlier answers."""
    return [
        message
        for message in messages
        if isinstance(message, (HumanMessage, SystemMessage))
        or (agent_id is not None and answered_by(message, agent_id))
    ]
