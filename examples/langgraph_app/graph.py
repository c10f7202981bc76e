"""A Letta agent served by LangGraph Server: ``langgraph dev --n-jobs-per-worker 4`` here.

The graph ``agent`` (``langgraph.json``) has one node, ``letta``: the Letta agent
``LETTA_AGENT_ID`` on ``LETTA_BASE_URL`` (with ``LETTA_API_KEY`` where the server
wants a token). Its state is ``MessagesState``; the node sends the agent what it has
not seen yet and appends the agent's answer, streaming tokens in ``messages`` mode.

* Each LangGraph thread talks in its own Letta conversation of the agent
  (``conversation_per_thread=True``): threads run at once without their turns
  mixing, while the agent's memory blocks stay shared.
* A server tool gated for approval pauses the run (an ``interrupt`` whose value
  lists the calls, shaped like ``HumanInTheLoopMiddleware``'s request); resume it
  with ``Command(resume={"decisions": [{"type": "approve"}]})``, or
  ``[{"type": "reject", "message": "why"}]``, one decision per call. The server's
  checkpointer keeps the waiting answer, so resuming never sends the message again.

No checkpointer is compiled in: LangGraph Server brings its own.
"""

from __future__ import annotations

import os
from typing import Any

from langchain_core.runnables import Runnable
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph

from langchain_letta import ChatLetta, letta_node


def setting(name: str) -> str:
    """A required environment variable, or an error that says which is missing."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise RuntimeError(f"set {name} (see examples/langgraph_app/README.md)")
    return value


def build_graph() -> CompiledStateGraph[MessagesState, None, MessagesState, MessagesState]:
    """The ``agent`` graph: START -> letta -> END, over ``MessagesState``."""
    model = ChatLetta(
        agent_id=setting("LETTA_AGENT_ID"),
        base_url=setting("LETTA_BASE_URL"),
        api_key=os.environ.get("LETTA_API_KEY") or None,
        conversation_per_thread=True,
    )
    # letta_node is typed as taking any dict; the graph's state is MessagesState.
    node: Runnable[Any, Any] = letta_node(model)
    builder = StateGraph(MessagesState)
    builder.add_node("letta", node)
    builder.add_edge(START, "letta")
    # A static edge out of letta_node must lead to END: while an approval waits, the
    # node sends itself back to pause (Command(goto="letta")), and a static edge fires too.
    builder.add_edge("letta", END)
    return builder.compile(name="agent")


graph = build_graph()
