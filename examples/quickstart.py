"""A Letta agent as a LangChain chat model: stream one turn, its thinking and tool use apart.

python examples/quickstart.py          # replays a real recorded turn (see _server.py)
LETTA_BASE_URL=http://localhost:8283 LETTA_AGENT_ID=agent-… python examples/quickstart.py
"""

from __future__ import annotations

from typing import Any

from _server import letta_server, run_label

from langchain_letta import ChatLetta

MESSAGE = "Please remember that I like tea, again."
LABELS = {
    "reasoning": "thinking  │ ",
    "server_tool_call_chunk": "tool call │ ",
    "server_tool_result": "result    │ ",
    "text": "assistant │ ",
}


def show(block: dict[str, Any], new: bool) -> None:
    """Print one content block; ``new`` starts its own line."""
    kind = block["type"]
    if new:
        print("\n" + LABELS.get(kind, f"{kind} │ "), end="")
        if kind == "server_tool_call_chunk":
            print(f"{block.get('name', '?')} ", end="")
    if kind == "reasoning":
        print(block["reasoning"], end="", flush=True)
    elif kind == "server_tool_call_chunk":
        print(block.get("args", ""), end="", flush=True)
    elif kind == "server_tool_result":
        print(f"{block['status']}: " + block["output"].replace("\n", "\n          │ "), end="")
    elif kind == "text":
        print(block["text"], end="", flush=True)


def main() -> None:
    with letta_server("0.16.8/memgpt_v2_agent/04-tool-call-tokens.sse") as (base_url, agent_id):
        model = ChatLetta(agent_id=agent_id, base_url=base_url)
        print(f"you       │ {MESSAGE}", end="")
        seen: set[int] = set()
        for chunk in model.stream(MESSAGE):
            for block in chunk.content:
                if isinstance(block, dict):
                    show(block, new=block["index"] not in seen)
                    seen.add(block["index"])
            if chunk.chunk_position == "last":
                usage, meta = chunk.usage_metadata or {}, chunk.response_metadata
                run = run_label(meta["run_id"])
                print(f"\n\nstop: {meta['stop_reason']} · run: {run} · ", end="")
                print(f"{usage.get('input_tokens')} tokens in, {usage.get('output_tokens')} out")


if __name__ == "__main__":
    main()
