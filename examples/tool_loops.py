"""Tool loops with a Letta agent: a client tool in ``create_agent``, an approval in a graph.

python examples/tool_loops.py    # replays real 0.16.8 turns on a fake server
LETTA_BASE_URL=… LETTA_AGENT_ID=agent-… python examples/tool_loops.py   # Letta 0.16.2+

The first part offers ``get_weather`` as a client tool: the agent calls it, LangChain's
``create_agent`` runs it, and its result goes back to the agent. The second part needs
the agent's ``memory_insert`` gated for approval (``PATCH
/v1/agents/{agent}/tools/approval/memory_insert`` with ``{"requires_approval": true}``):
``letta_node`` pauses the graph on the call, and a person's decision resumes it.
"""

from __future__ import annotations

from _server import letta_server
from langchain.agents import create_agent
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command

from langchain_letta import ChatLetta, letta_node

LAB = "0.16.8/lab-features"


def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"Sunny, 21 degrees in {city}"


def client_tool() -> None:
    ask, answer = f"{LAB}/20-client-tool-request.sse", f"{LAB}/21-client-tool-return.sse"
    with letta_server(ask, answer) as (base_url, agent_id):
        agent = create_agent(ChatLetta(agent_id=agent_id, base_url=base_url), [get_weather])
        state = agent.invoke({"messages": [("user", "What is the weather in Paris?")]})
        for message in state["messages"][1:]:
            if message.type == "tool":
                print(f"we ran it │ {message.content}")
            elif message.tool_calls:
                for call in message.tool_calls:
                    print(f"tool call │ {call['name']} {call['args']} ({call['id']})")
            else:
                print(f"assistant │ {message.text}")


def approval() -> None:
    ask, answer = f"{LAB}/17-approval-request-steps.sse", f"{LAB}/18-deny-with-reason-steps.sse"
    with letta_server(ask, answer) as (base_url, agent_id):
        graph = StateGraph(MessagesState)
        graph.add_node("letta", letta_node(agent_id=agent_id, base_url=base_url))
        graph.add_edge(START, "letta")
        graph.add_edge("letta", END)
        app = graph.compile(checkpointer=InMemorySaver())
        config = {"configurable": {"thread_id": "tea"}}
        state = app.invoke({"messages": [("user", "call:memory_insert please")]}, config)
        for pause in state.get("__interrupt__", []):
            for action in pause.value["action_requests"]:
                print(f"waiting   │ {action['name']} {action['args']}")
            decision = {"type": "reject", "message": "Not now, thanks."}
            print(f"decision  │ {decision}")
            state = app.invoke(Command(resume={"decisions": [decision]}), config)
        for block in state["messages"][-1].content_blocks:
            if block["type"] == "server_tool_result":
                print(f"result    │ {block['status']}: {block['output']}")
            elif block["type"] == "text":
                print(f"assistant │ {block['text']}")


if __name__ == "__main__":
    client_tool()
    approval()
