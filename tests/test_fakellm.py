"""The fake LLM's decisions (``scripts/fakellm.py``), which the live lab and captures rely on."""

from __future__ import annotations

from typing import Any

from scripts.fakellm import FINAL_TEXT, decide, marker

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
MEMORY = {
    "type": "function",
    "function": {
        "name": "memory_insert",
        "parameters": {
            "type": "object",
            "properties": {"label": {"type": "string"}, "new_string": {"type": "string"}},
            "required": ["label", "new_string"],
        },
    },
}


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], "tools": [WEATHER, MEMORY], **extra}


def test_call_marker_with_json_arguments() -> None:
    assert decide(chat('call:get_weather{"city":"Paris"}')) == [("get_weather", {"city": "Paris"})]


def test_call_marker_without_arguments_fills_the_required_ones() -> None:
    assert decide(chat("call:memory_insert please")) == [
        ("memory_insert", {"label": "human", "new_string": "The user likes tea."})
    ]


def test_several_markers_are_parallel_calls_unless_the_request_forbids_them() -> None:
    text = 'call:get_weather{"city":"Paris"} call:get_weather{"city":"Rome"}'
    assert decide(chat(text)) == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Rome"}),
    ]
    assert decide(chat(text, parallel_tool_calls=False)) == [("get_weather", {"city": "Paris"})]


def test_markers_of_tools_not_offered_are_ignored() -> None:
    assert decide(chat("call:launch_rockets now")) == FINAL_TEXT


def test_after_a_tool_result_the_model_answers() -> None:
    request = chat("call:get_weather")
    request["messages"].append({"role": "tool", "content": "sunny"})
    assert decide(request) == FINAL_TEXT


def test_pacing_markers() -> None:
    assert marker("busy, delay:4", "delay", 30.0) == 4.0
    assert marker("delay:99", "delay", 30.0) == 30.0
    assert marker("slow:0.5 please", "slow", 5.0) == 0.5
    assert marker("no pacing", "slow", 5.0) == 0.0
