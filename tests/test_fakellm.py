"""The fake LLM's decisions (``scripts/fakellm.py``), which the live lab and captures rely on."""

from __future__ import annotations

from typing import Any

from scripts.fakellm import FINAL_TEXT, THOUGHTS, decide, marker

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


def function(name: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """A tool as a request to the LLM offers it (OpenAI's ``tools`` entry)."""
    parameters = {"type": "object", "properties": properties, "required": required}
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


# langchain-tests' tools, as convert_to_openai_tool gives their schemas
MAGIC = function(
    "magic_function",
    {"input": {"type": "integer", "exclusiveMinimum": -1000, "exclusiveMaximum": 1000}},
    ["input"],
)
MAGIC_NO_ARGS = function("magic_function_no_args", {}, [])
GREETING = function("greeting_generator", {"answer_style": {"type": "string"}}, ["answer_style"])
LOCATION = function("get_weather", {"location": {"type": "string"}}, ["location"])
JOKE = function(
    "Joke",
    {
        "setup": {"type": "string"},
        "punchline": {"type": "string"},
        "rating": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
    },
    ["setup", "punchline"],
)


def user_turn(text: str, *tools: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A request whose last message is the user's, offering ``tools`` and Letta's memory tool."""
    return {"messages": [{"role": "user", "content": text}], "tools": [MEMORY, *tools], **extra}


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
    # only Letta's own tools offered: no caller's tool to fall back on
    only_letta = {"messages": [{"role": "user", "content": "call:launch_rockets now"}]}
    assert decide({**only_letta, "tools": [MEMORY]}) == FINAL_TEXT


def test_after_a_tool_result_the_model_answers() -> None:
    request = chat("call:get_weather")
    request["messages"].append({"role": "tool", "content": "sunny"})
    assert decide(request) == FINAL_TEXT


def test_pacing_markers() -> None:
    assert marker("busy, delay:4", "delay", 30.0) == 4.0
    assert marker("delay:99", "delay", 30.0) == 30.0
    assert marker("slow:0.5 please", "slow", 5.0) == 0.5
    assert marker("no pacing", "slow", 5.0) == 0.0


def test_a_named_call_maps_its_values_to_the_properties_in_order() -> None:
    query = "What is the value of magic_function(3)? Use the tool."
    assert decide(user_turn(query, MAGIC)) == [("magic_function", {"input": 3})]
    query = "What is the value of magic_function_no_args()? Use the tool."
    assert decide(user_turn(query, MAGIC_NO_ARGS)) == [("magic_function_no_args", {})]
    several = function("f", {"a": {"type": "string"}, "b": {}, "c": {"type": "boolean"}}, [])
    assert decide(user_turn('f("x, y", [1, 2], true)', several)) == [
        ("f", {"a": "x, y", "b": [1, 2], "c": True})
    ]
    # not JSON as a whole: each value on its own, a JSON literal or else text
    assert decide(user_turn("try f(Paris, 2)", several)) == [("f", {"a": "Paris", "b": 2})]


def test_a_named_call_picks_its_tool_among_several_and_leaves_unnamed_tools_alone() -> None:
    query = "What is the value of magic_function(3)? Use the tool."
    assert decide(user_turn(query, LOCATION, MAGIC)) == [("magic_function", {"input": 3})]
    # names of tools not offered, and calls inside other words, are no calls
    assert decide(user_turn("print(3) or my_magic_function(3)?", LOCATION, MAGIC)) == FINAL_TEXT


def test_several_named_calls_are_parallel_calls_unless_the_request_forbids_them() -> None:
    query = "Add magic_function(3) to magic_function_no_args()."
    both = [("magic_function", {"input": 3}), ("magic_function_no_args", {})]
    assert decide(user_turn(query, MAGIC, MAGIC_NO_ARGS)) == both
    forbidden = user_turn(query, MAGIC, MAGIC_NO_ARGS, parallel_tool_calls=False)
    assert decide(forbidden) == both[:1]


def test_the_one_callers_tool_is_called_with_arguments_from_the_text() -> None:
    greeting = user_turn("Using the tool, generate a Pirate greeting.", GREETING)
    assert decide(greeting) == [("greeting_generator", {"answer_style": "Pirate"})]
    weather = user_turn("What is the weather in SF?", LOCATION)
    assert decide(weather) == [("get_weather", {"location": "SF"})]
    # no capitalised word but the first: the whole text; optional properties too
    text = "Tell me a joke about cats."
    assert decide(user_turn(text, JOKE)) == [
        ("Joke", {"setup": text, "punchline": text, "rating": 0})
    ]
    assert decide(user_turn("Rate a joke about Cats 7 of 10", JOKE)) == [
        ("Joke", {"setup": "Cats", "punchline": "Cats", "rating": 7})
    ]
    # a quoted phrase comes before any capitalised word, whatever its script
    named = "Create a customer named '你好啊集团' (Hello Group) - a Chinese company"
    assert decide(user_turn(named, LOCATION)) == [("get_weather", {"location": "你好啊集团"})]
    assert decide(user_turn('Weather in "New York", Please', LOCATION)) == [
        ("get_weather", {"location": "New York"})
    ]


def test_schema_kinds_made_from_the_text() -> None:
    kinds = function(
        "kinds",
        {
            "n": {"type": "number"},
            "flag": {"type": "boolean"},
            "mode": {"type": "string", "enum": ["fast", "slow"]},
            "items": {"type": "array", "items": {"type": "string"}},
            "extra": {"type": "object"},
            "maybe": {"type": ["null", "integer"]},
        },
        ["n"],
    )
    assert decide(user_turn("go with 2.5 and 4", kinds)) == [
        ("kinds", {"n": 2.5, "flag": True, "mode": "fast", "items": [], "extra": {}, "maybe": 4})
    ]
    assert decide(user_turn("no numbers", kinds))[0][1]["n"] == 0  # type: ignore[index]


def test_the_user_text_is_read_inside_lettas_packing() -> None:
    packed = (
        '{"type": "user_message", "message": "Using the tool, generate a Pirate greeting.", '
        '"time": "2026-11-28 07:15:32 PM UTC+0000"}'
    )
    assert decide(user_turn(packed, GREETING)) == [
        ("greeting_generator", {"answer_style": "Pirate"})
    ]


def test_lettas_own_tools_never_count_as_the_one_tool() -> None:
    search = function("conversation_search", {"query": {"type": "string"}}, [])
    assert decide(user_turn("What is the weather in SF?", search)) == FINAL_TEXT
    # two callers' tools and no name(args): no guess
    assert decide(user_turn("What is the weather in SF?", LOCATION, GREETING)) == FINAL_TEXT


def test_properties_letta_adds_are_not_positional_and_get_their_usual_values() -> None:
    wrapped = function(
        "magic_function",
        {
            "inner_thoughts": {"type": "string"},
            "input": {"type": "integer"},
            "request_heartbeat": {"type": "boolean"},
        },
        ["inner_thoughts", "input", "request_heartbeat"],
    )
    assert decide(user_turn("magic_function(3)", wrapped)) == [
        ("magic_function", {"inner_thoughts": THOUGHTS, "request_heartbeat": True, "input": 3})
    ]


def test_call_markers_and_a_forced_tool_keep_priority() -> None:
    marked = user_turn('call:get_weather{"location":"Oslo"} magic_function(3)', LOCATION, MAGIC)
    assert decide(marked) == [("get_weather", {"location": "Oslo"})]
    choice = {"type": "function", "function": {"name": "greeting_generator"}}
    forced = user_turn("magic_function(3), in Pirate", MAGIC, GREETING, tool_choice=choice)
    assert decide(forced) == [("greeting_generator", {"answer_style": "Pirate"})]


def answered(tool: dict[str, Any], result: str) -> dict[str, Any]:
    """A request after a call of ``tool`` and its ``result``."""
    name = tool["function"]["name"]
    call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": "{}"}}
    return {
        "messages": [
            {"role": "user", "content": "What is the weather in SF?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": result},
        ],
        "tools": [MEMORY, tool],
    }


def test_after_a_callers_tool_result_the_answer_quotes_it() -> None:
    assert decide(answered(LOCATION, "It's sunny.")) == f"{FINAL_TEXT} (tool said: It's sunny.)"
    packed = '{"status": "OK", "message": "' + "x" * 80 + '", "time": "now"}'
    assert decide(answered(LOCATION, packed)) == f"{FINAL_TEXT} (tool said: {'x' * 60})"
    # the result of one of Letta's own tools keeps the plain answer
    assert decide(answered(MEMORY, "ok")) == FINAL_TEXT
    send = function("send_message", {"message": {"type": "string"}}, ["message"])
    request = answered(LOCATION, "5")
    request["tools"].append(send)
    assert decide(request) == [("send_message", {"message": f"{FINAL_TEXT} (tool said: 5)"})]
