"""A Letta agent in an LCEL chain: prompt | agent | parser.

python examples/chain.py        # replays a real recorded turn (see _server.py)
"""

from __future__ import annotations

from _server import letta_server, run_label
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from langchain_letta import LettaAgentRunnable


def main() -> None:
    with letta_server("0.16.8/memgpt_v2_agent/03-tool-call-steps.sse") as (base_url, agent_id):
        agent = LettaAgentRunnable(agent_id=agent_id, base_url=base_url)
        prompt = ChatPromptTemplate.from_messages(
            [("human", "Please remember that I like {drink}.")]
        )
        chain = prompt | agent | StrOutputParser()
        print("answer    │", chain.invoke({"drink": "tea"}))

        response = agent.invoke({"input": "Please remember that I like tea."})
        calls = [e.calls for e in response.events if e.message_type == "tool_call_message"]
        tools = sorted({call.name for batch in calls for call in batch if call.name})
        run = run_label(response.run_id)
        print(f"run       │ {run} ({response.stop_reason}), tools used: {tools}")


if __name__ == "__main__":
    main()
