"""One Letta agent serving many users' LangGraph threads at once, a conversation each.

python examples/conversations.py    # replays a real recorded turn on a fake 0.16.8 server
LETTA_BASE_URL=… LETTA_AGENT_ID=agent-… python examples/conversations.py   # Letta 0.16.2+

Each graph thread (``configurable.thread_id``) gets its own Letta conversation of the
agent, created on its first turn and found again from the thread's checkpoint, so the
threads run in parallel and their turns never mix; the agent's memory is shared.
"""

from __future__ import annotations

import asyncio

from _server import letta_server
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph

from langchain_letta import letta_node


async def main() -> None:
    with letta_server("0.16.8/letta_v1_agent/01-stream-steps.sse") as (base_url, agent_id):
        graph = StateGraph(MessagesState)
        graph.add_node(
            "letta", letta_node(agent_id=agent_id, base_url=base_url, conversation_per_thread=True)
        )
        graph.add_edge(START, "letta")
        app = graph.compile(checkpointer=InMemorySaver())

        async def turn(thread: str, text: str) -> str:
            config = {"configurable": {"thread_id": thread}}
            state = await app.ainvoke({"messages": [("human", text)]}, config)
            answer = state["messages"][-1]
            conversation = answer.response_metadata["conversation_id"]
            print(f"{thread:<9} │ {conversation} │ {answer.text}")
            return conversation

        # Two users at once: two threads, two conversations of one agent.
        alice, bob = await asyncio.gather(turn("alice", "Hi, I'm Alice."), turn("bob", "Hi!"))
        again = await turn("alice", "Do you remember me?")
        print(f"threads   │ {len({alice, bob})} conversations; alice kept hers: {again == alice}")


if __name__ == "__main__":
    asyncio.run(main())
