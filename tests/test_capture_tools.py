"""The standard-tools captures (``scripts/capture_tools016.py``) against the fake LLM's rule.

The captures are only worth replaying while they are what the suite and ChatLetta
would send today and what the fake would answer: these tests fail when a new
langchain-tests changes a tool's schema or a prompt, or when ``fakellm.py``'s rule
for callers' tools changes, so that the folder is re-recorded rather than trusted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scripts.capture016 import approval_ids
from scripts.capture_tools016 import client_tool, requested_calls, scenarios
from scripts.fakellm import decide

FOLDER = Path(__file__).parent / "data" / "letta-streams" / "0.16.8" / "standard-tools"
ASKED = sorted(FOLDER.glob("*-request.sse"))


def body_of(capture: Path) -> dict[str, Any]:
    """The exact request body sent for ``capture``."""
    data: dict[str, Any] = json.loads(capture.with_suffix(".request.json").read_bytes())
    return data


def test_every_scenario_was_captured_as_the_script_sends_it() -> None:
    cases = scenarios()
    assert len(ASKED) == len(cases)
    for capture, case in zip(ASKED, cases, strict=True):
        body = body_of(capture)
        assert list(body) == [
            "messages",
            "stream_tokens",
            "include_pings",
            "background",
            "client_tools",
        ]
        (message,) = body["messages"]
        assert (message["role"], message["content"]) == ("user", case.query)
        assert body["stream_tokens"] is case.tokens
        assert body["client_tools"] == case.tools  # the suite's schemas have not moved


@pytest.mark.parametrize("capture", ASKED, ids=lambda path: path.stem)
def test_each_approval_request_is_the_fakes_call_for_its_request(capture: Path) -> None:
    body = body_of(capture)
    request = {
        "messages": [{"role": "user", "content": body["messages"][0]["content"]}],
        "tools": [{"type": "function", "function": tool} for tool in body["client_tools"]],
    }
    streamed = [
        (call["name"], json.loads(call["arguments"]))
        for call in requested_calls(capture.read_bytes())
    ]
    assert streamed == decide(request)


@pytest.mark.parametrize("capture", ASKED, ids=lambda path: path.stem)
def test_each_answer_returns_every_call_of_its_request_once(capture: Path) -> None:
    number = int(capture.name[:2])
    (answer,) = FOLDER.glob(f"{number + 1:02d}-*-return.request.json")
    body = json.loads(answer.read_bytes())
    (message,) = body["messages"]
    assert message["type"] == "approval"
    answered = [each["tool_call_id"] for each in message["approvals"]]
    assert answered == approval_ids(capture.read_bytes())
    assert body["client_tools"] == body_of(capture)["client_tools"]


def test_calls_merge_from_token_deltas_and_from_a_steps_list() -> None:
    tokens = requested_calls((FOLDER / "13-two-calls-one-turn-request.sse").read_bytes())
    assert [(c["name"], c["arguments"]) for c in tokens] == [
        ("magic_function", '{"input":3}'),
        ("magic_function_no_args", "{}"),
    ]
    steps = requested_calls((FOLDER / "15-magic-function-steps-request.sse").read_bytes())
    assert [(c["name"], c["arguments"]) for c in steps] == [("magic_function", '{"input":3}')]


def test_a_client_tool_has_no_empty_description() -> None:
    schema = {"title": "nameless", "type": "object", "properties": {"x": {"type": "integer"}}}
    assert "description" not in client_tool(schema)
    described = client_tool({**schema, "description": "Does x."})
    assert list(described) == ["name", "description", "parameters"]
