"""Capture, from a real Letta 0.16.8, the exchanges of langchain-tests' tool-calling tests.

Run beside the lab servers (``letta_lab.py`` exports their URLs)::

    OUT=tests/data/letta-streams/0.16.8/standard-tools
    python scripts/letta_lab.py run --versions 0.16.8 -- python -m scripts.capture_tools016 $OUT

Why: the standard integration suite's tool-calling and structured-output tests
will run through ChatLetta's client tools, and their replays must be what a real
server says to exactly the requests ChatLetta sends. So the requests here are
built as ChatLetta builds them: ``POST /v1/agents/{agent}/messages/stream`` with
``messages`` (the user's turn with an ``otid``), ``stream_tokens``,
``include_pings``, ``background`` and ``client_tools`` made from the suite's own
tools by ``convert_to_openai_tool`` (the tools are imported from langchain-tests,
or rebuilt exactly as its tests build them). The suite's prompts have no
``call:`` markers: ``fakellm.py``'s rule for callers' tools makes the calls.

A call of a client tool leaves the run waiting for its result, and a waiting run
blocks the agent's next user message, so every scenario answers its calls (one
approval message for all of a turn's calls) before the next starts; the answers
are captured too. One scenario sends its turn twice before answering, as the
suite's ``test_tool_calling`` does (``invoke`` then ``stream``), to record what
the second turn meets. One agent (the lab's configuration, parallel tool calls on)
serves every scenario. The files are written by ``capture016.Recorder``
(byte-exact), plus ``calls.tsv``: per approval request, each call as merged from
the stream (name, id, arguments) and whether it is the call expected.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_tests.integration_tests.chat_models import (
    _get_joke_class,
    magic_function,
    magic_function_no_args,
    unicode_customer,
)
from pydantic import BaseModel, Field

from scripts.capture016 import Recorder, approval_ids, frames
from scripts.letta_lab import create_agent

# The suite's prompts, word for word (langchain_tests/integration_tests/chat_models.py).
MAGIC_QUERY = "What is the value of magic_function(3)? Use the tool."
NO_ARGS_QUERY = "What is the value of magic_function_no_args()? Use the tool."
GREETING_QUERY = "Using the tool, generate a Pirate greeting."
WEATHER_QUERY = "What is the weather in San Francisco, CA?"
JOKE_QUERY = "Tell me a joke about cats."
CHINESE_QUERY = "Create a customer named '你好啊集团' (Hello Group) - a Chinese technology company"
JAPANESE_QUERY = (
    "Create a customer named 'こんにちは株式会社' (Hello Corporation) - a Japanese company"
)
ADDER_QUERY = "What is 1 + 2"  # the question of the suite's tool-history tests
SETUP_QUERY = "Give me the setup to a joke about cats, no punchline."
PUNCHLINE_QUERY = "Give me a joke about cats, include the punchline."
# Not the suite's: one turn naming both magic functions, for two calls at once.
BOTH_QUERY = "What is magic_function(3) plus magic_function_no_args()? Use the tools."


# The suite's fixtures and test-local tools, as its tests define them.
@tool
def get_weather(location: str) -> str:
    """Get the weather at a location."""
    return "It's sunny."


@tool
def my_adder_tool(a: int, b: int) -> int:
    """Tool that adds two integers.

    Takes two integers, a and b, and returns their sum.
    """
    return a + b


class Joke(BaseModel):
    """Joke to tell user."""

    setup: str = Field(description="question to set up a joke")
    punchline: str | None = Field(default=None, description="answer to resolve the joke")


def greeting_tool() -> BaseTool:
    """The runnable tool of ``test_bind_runnables_as_tools``, built as that test builds it."""
    prompt = ChatPromptTemplate.from_messages(
        [("human", "Hello. Please respond in the style of {answer_style}.")]
    )
    llm = GenericFakeChatModel(messages=iter(["hello matey"]))
    chain = prompt | llm | StrOutputParser()
    return chain.as_tool(
        name="greeting_generator",
        description="Generate a greeting in a particular style of speaking.",
    )


def client_tool(source: Any) -> dict[str, Any]:
    """A ``client_tools`` entry as ChatLetta sends it (no empty description)."""
    function = convert_to_openai_tool(source)["function"]
    entry: dict[str, Any] = {"name": function["name"]}
    if function.get("description"):
        entry["description"] = function["description"]
    entry["parameters"] = function.get("parameters") or {"type": "object", "properties": {}}
    return entry


def user_turn(query: str, tools: list[dict[str, Any]], *, tokens: bool) -> dict[str, Any]:
    """ChatLetta's request for one user message with client tools bound."""
    return {
        "messages": [{"role": "user", "content": query, "otid": str(uuid.uuid4())}],
        "stream_tokens": tokens,
        "include_pings": True,
        "background": True,
        "client_tools": tools,
    }


def tool_returns(
    ids: list[str], result: str, status: str, tools: list[dict[str, Any]], *, tokens: bool
) -> dict[str, Any]:
    """ChatLetta's request answering every pending call with ``result``."""
    answers = [
        {"type": "tool", "tool_call_id": i, "tool_return": result, "status": status} for i in ids
    ]
    return {
        "messages": [{"type": "approval", "approvals": answers, "otid": str(uuid.uuid4())}],
        "stream_tokens": tokens,
        "include_pings": True,
        "background": True,
        "client_tools": tools,
    }


def requested_calls(raw: bytes) -> list[dict[str, Any]]:
    """The calls an approval request asks for, merged by ``tool_call_id``.

    Steps mode sends each call whole (``tool_calls`` a list); token mode sends
    deltas (``tool_calls`` one object) whose ``arguments`` pieces are joined and
    whose first non-null ``name`` wins.
    """
    merged: dict[str, dict[str, Any]] = {}
    for frame in frames(raw):
        if frame.get("message_type") != "approval_request_message":
            continue
        calls = frame.get("tool_calls") or frame.get("tool_call") or []
        for call in calls if isinstance(calls, list) else [calls]:
            call_id = (call or {}).get("tool_call_id")
            if not call_id:
                continue
            entry = merged.setdefault(call_id, {"name": None, "arguments": "", "id": call_id})
            entry["name"] = entry["name"] or call.get("name")
            entry["arguments"] += call.get("arguments") or ""
    return list(merged.values())


@dataclass
class Scenario:
    """One prompt of the suite, the tools bound, the calls expected and the answer."""

    stem: str
    query: str
    tools: list[dict[str, Any]]
    expected: list[tuple[str, dict[str, Any]]]
    result: str
    status: str = "success"
    tokens: bool = True
    again: bool = False  # send the same turn again before answering


def scenarios() -> list[Scenario]:
    """Every exchange the suite's tool tests make, in the order captured."""
    magic, no_args = client_tool(magic_function), client_tool(magic_function_no_args)
    weather = client_tool(get_weather)
    joke, _ = _get_joke_class("pydantic")
    joke_dict, _ = _get_joke_class("typeddict")
    cases = [
        Scenario("magic-function", MAGIC_QUERY, [magic], [("magic_function", {"input": 3})], "5"),
        Scenario(
            "magic-function-no-args",
            NO_ARGS_QUERY,
            [no_args],
            [("magic_function_no_args", {})],
            "5",
        ),
        Scenario(
            "bind-runnables-greeting",
            GREETING_QUERY,
            [client_tool(greeting_tool())],
            [("greeting_generator", {"answer_style": "Pirate"})],
            "hello matey",
        ),
        Scenario(
            "agent-loop-weather",
            WEATHER_QUERY,
            [weather],
            [("get_weather", {"location": "CA"})],
            "It's sunny.",
        ),
        Scenario(
            "agent-loop-weather-error",
            WEATHER_QUERY,
            [weather],
            [("get_weather", {"location": "CA"})],
            "Error: the weather service is down.",
            status="error",
        ),
        Scenario(
            "structured-output-joke",
            JOKE_QUERY,
            [client_tool(joke)],
            [("Joke", {"setup": JOKE_QUERY, "punchline": JOKE_QUERY})],
            "Received.",
        ),
        Scenario(
            "two-calls-one-turn",
            BOTH_QUERY,
            [magic, no_args],
            [("magic_function", {"input": 3}), ("magic_function_no_args", {})],
            "5",
        ),
        Scenario(
            "magic-function-steps",
            MAGIC_QUERY,
            [magic],
            [("magic_function", {"input": 3})],
            "5",
            tokens=False,
        ),
        Scenario(
            "structured-output-jokedict",
            JOKE_QUERY,
            [client_tool(joke_dict)],
            [("JokeDict", {"setup": JOKE_QUERY, "punchline": JOKE_QUERY})],
            "Received.",
        ),
        Scenario(
            "unicode-customer-chinese",
            CHINESE_QUERY,
            [client_tool(unicode_customer)],
            [("unicode_customer", {"customer_name": "你好啊集团", "description": "你好啊集团"})],
            "Created.",
        ),
        Scenario(
            "unicode-customer-japanese",
            JAPANESE_QUERY,
            [client_tool(unicode_customer)],
            [
                (
                    "unicode_customer",
                    {"customer_name": "こんにちは株式会社", "description": "こんにちは株式会社"},
                )
            ],
            "Created.",
        ),
        Scenario(
            "structured-output-optional-setup",
            SETUP_QUERY,
            [client_tool(Joke)],
            [("Joke", {"setup": SETUP_QUERY, "punchline": SETUP_QUERY})],
            "Received.",
        ),
        Scenario(
            "structured-output-optional-punchline",
            PUNCHLINE_QUERY,
            [client_tool(Joke)],
            [("Joke", {"setup": PUNCHLINE_QUERY, "punchline": PUNCHLINE_QUERY})],
            "Received.",
        ),
        Scenario(
            "adder",
            ADDER_QUERY,
            [client_tool(my_adder_tool)],
            [("my_adder_tool", {"a": 1, "b": 1})],
            "2",
        ),
        # test_tool_calling invokes, then streams the same prompt, with no tool
        # result in between: the second turn meets the first's pending call
        Scenario(
            "magic-function-pending",
            MAGIC_QUERY,
            [magic],
            [("magic_function", {"input": 3})],
            "5",
            again=True,
        ),
    ]
    return cases


def capture(rec: Recorder, base_url: str) -> list[str]:
    """Run every scenario on one fresh agent; return the ``calls.tsv`` lines."""
    agent = create_agent(base_url, parallel_tool_calls=True)
    (rec.folder / "agent_id.txt").write_text(agent + "\n")
    stream = f"/v1/agents/{agent}/messages/stream"
    lines = ["exchange\ttool_call_id\tname\targuments\texpected\tas expected"]
    for n, case in enumerate(scenarios()):
        asked = f"{2 * n + 1:02d}-{case.stem}-request"
        _, raw = rec.exchange(
            asked, "POST", stream, user_turn(case.query, case.tools, tokens=case.tokens)
        )
        calls = requested_calls(raw)
        for call, (name, args) in zip(calls, case.expected, strict=False):
            try:
                seen = json.loads(call["arguments"] or "{}")
            except ValueError:
                seen = call["arguments"]
            ok = call["name"] == name and seen == args and len(calls) == len(case.expected)
            lines.append(
                f"{asked}\t{call['id']}\t{call['name']}\t{call['arguments']}"
                f"\t{name} {json.dumps(args)}\t{'yes' if ok else 'NO'}"
            )
        if len(calls) != len(case.expected):
            lines.append(f"{asked}\t-\t-\t-\t{len(case.expected)} calls\tNO ({len(calls)})")
        if case.again:
            rec.exchange(
                f"{asked}-again",
                "POST",
                stream,
                user_turn(case.query, case.tools, tokens=case.tokens),
                note="the same turn again while its call waits (the suite: invoke, then stream)",
            )
        ids = approval_ids(raw)
        rec.exchange(
            f"{2 * n + 2:02d}-{case.stem}-return",
            "POST",
            stream,
            tool_returns(ids, case.result, case.status, case.tools, tokens=case.tokens),
            note=f"answers {len(ids)} call(s): {case.result!r}, {case.status}",
        )
    return lines


def main() -> int:
    """Capture every scenario into the folder given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    base_url = os.environ.get("LETTA_LIVE_URL_0_16_8")
    if not base_url:
        sys.stderr.write("no LETTA_LIVE_URL_0_16_8: run under scripts/letta_lab.py run\n")
        return 2
    rec = Recorder(args.folder, base_url)
    lines = capture(rec, base_url)
    (args.folder / "calls.tsv").write_text("".join(line + "\n" for line in lines))
    (args.folder / "index.tsv").write_text(
        "".join(
            f"{name}\t{method} {path}\t{status}\t{note}\n"
            for name, method, path, status, note in sorted(rec.notes)
        )
    )
    failed = [line for line in lines[1:] if not line.endswith("\tyes")]
    for line in failed:
        sys.stderr.write(f"capture_tools016: unexpected call: {line}\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
