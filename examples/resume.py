"""A dropped stream, resumed: every event once, the message sent once.

Without LETTA_BASE_URL, the embedded fake server replays a real background run
recorded from Letta 0.16.8 and breaks the connection twice (after 4 frames, then
after 6 more). The client reads the run again from the last seq_id each time; the
answer is whole and the agent got the message once. Against a real server (0.11.5+
with Redis) the same code asks for a background run; drops then happen for real.

    python examples/resume.py
"""

from __future__ import annotations

from typing import Any

from _server import letta_server, run_label
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableLambda

from langchain_letta import ChatLetta


class ShowResumes(BaseCallbackHandler):
    """Print each resume the client makes (a ``letta.resume`` custom event)."""

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        if name == "letta.resume":
            print(f"resumed   │ run {data['run_id']} after seq_id {data['starting_after']}")


def main() -> None:
    capture = "0.16.8/background-redis/32-bg-disconnect-full-reread.sse"
    with letta_server(capture, drops=[4, 6]) as (base_url, agent_id):
        model = ChatLetta(agent_id=agent_id, base_url=base_url)
        ask = RunnableLambda(lambda text: model.invoke(text))
        answer = ask.invoke(
            "Please remember that I like green tea.", {"callbacks": [ShowResumes()]}
        )
        for block in answer.content:
            # args arrive parsed where the server streamed valid JSON (0.6.14 may mangle it)
            if isinstance(block, dict) and block["type"].startswith("server_tool_call"):
                print(f"tool call │ {block['name']} {block['args']}")
        print(f"assistant │ {answer.text}")
        print(f"run       │ {run_label(answer.response_metadata['run_id'])}")


if __name__ == "__main__":
    main()
