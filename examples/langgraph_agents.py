"""Two Letta agents behind a router in a LangGraph graph, streaming in messages mode.

python examples/langgraph_agents.py    # replays a real recorded turn for both agents
LETTA_BASE_URL=… LETTA_AGENT_ID=agent-… LETTA_AGENT_ID_2=agent-… python examples/langgraph_agents.py
"""

from __future__ import annotations

import os

from _server import letta_server
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph

from langchain_letta import letta_node


def route(state: MessagesState) -> str:
    """Questions about remembering go to the memory agent, the rest to the chat agent."""
    return "memory" if "remember" in state["messages"][-1].text.lower() else "chat"


def main() -> None:
    with letta_server("0.16.8/memgpt_v2_agent/04-tool-call-tokens.sse") as (base_url, agent_id):
        second = os.environ.get("LETTA_AGENT_ID_2", agent_id)
        graph = StateGraph(MessagesState)
        graph.add_node("memory", letta_node(agent_id=agent_id, base_url=base_url))
        graph.add_node("chat", letta_node(agent_id=second, base_url=base_url))
        graph.add_conditional_edges(START, route, ["memory", "chat"])
        graph.add_edge("memory", END)
        graph.add_edge("chat", END)
        app = graph.compile()

        messages: list = []
        for question in ["Please remember that I like tea.", "How are you today?"]:
            messages.append(HumanMessage(question))
            print(f"you       │ {question}")
            speaking = None
            modes = ["messages", "values"]
            for mode, data in app.stream({"messages": messages}, stream_mode=modes):
                if mode == "values":
                    messages = data["messages"]
                    continue
                chunk, meta = data
                if chunk.text:
                    if meta["langgraph_node"] != speaking:
                        speaking = meta["langgraph_node"]
                        print(f"{speaking:<9} │ ", end="")
                    print(chunk.text, end="", flush=True)
            print()
        print(f"state     │ {len(messages)} messages")


if __name__ == "__main__":
    main()
