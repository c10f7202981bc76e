"""See every reasoning step, tool call and tool result as it streams, with run and step ids.

ChatLetta sends each Letta event to the callbacks of the run it runs inside;
LettaStepPrinter shows them. LangSmith (if configured) gets the same events and the
provider, model and agent on every model run.

    python examples/tracing.py      # replays a real recorded turn (see _server.py)
"""

from __future__ import annotations

import sys

from _server import letta_server, run_label

from langchain_letta import LettaAgentRunnable, LettaStepPrinter


def main() -> None:
    with letta_server("0.16.8/memgpt_v2_agent/04-tool-call-tokens.sse") as (base_url, agent_id):
        agent = LettaAgentRunnable(agent_id=agent_id, base_url=base_url)
        printer = LettaStepPrinter(write=sys.stdout.write)
        response = agent.invoke(
            "Please remember that I like tea, again.", config={"callbacks": [printer]}
        )
        print(f"\n\n{len(printer.steps)} steps in run {run_label(response.run_id)}")


if __name__ == "__main__":
    main()
