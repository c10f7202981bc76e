"""Callbacks, custom events and event streams: what tracing and UIs see of a Letta run."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableLambda
from langchain_tests.utils.stream_lifecycle import assert_valid_event_stream

from langchain_letta import ChatLetta, LettaStepPrinter
from langchain_letta.events import ToolCallMessage
from langchain_letta.testing import FakeLettaServer, Reply
from tests.conftest import CAPTURES

AGENT = "agent-9d9e1f61-7d82-476c-9996-867db2b9c18f"
TOOL_TURN = CAPTURES / "0.16.8/memgpt_v2_agent/03-tool-call-steps.sse"
LETTA_EVENTS = [
    "letta.reasoning_message",
    "letta.tool_call_message",
    "letta.tool_return_message",
    "letta.reasoning_message",
    "letta.assistant_message",
    "letta.stop_reason",
    "letta.usage_statistics",
]


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.custom: list[tuple[str, Any, UUID]] = []
        self.tokens: list[Any] = []

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.custom.append((name, data, run_id))

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(kwargs["chunk"])


def _server(times: int = 1) -> FakeLettaServer:
    return FakeLettaServer([Reply.from_capture(TOOL_TURN) for _ in range(times)])


def test_every_letta_event_reaches_the_parent_runs_callbacks() -> None:
    recorder = Recorder()
    with _server() as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        chain = RunnableLambda(lambda text: model.invoke(text))
        chain.invoke("Please remember that I like tea.", config={"callbacks": [recorder]})
    assert [name for name, _, _ in recorder.custom] == LETTA_EVENTS
    call = recorder.custom[1][1]
    assert isinstance(call, ToolCallMessage)
    assert call.step_id is not None
    assert call.run_id is not None
    assert call.calls[0].name == "memory_insert"
    assert len({run_id for _, _, run_id in recorder.custom}) == 1


async def test_every_letta_event_reaches_the_parent_runs_callbacks_async() -> None:
    recorder = Recorder()
    with _server() as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)

        async def call(text: str) -> Any:
            return await model.ainvoke(text)

        await RunnableLambda(call).ainvoke("remember tea", config={"callbacks": [recorder]})
    assert [name for name, _, _ in recorder.custom] == LETTA_EVENTS


class RunIds(BaseCallbackHandler):
    """The id of each chat model run started."""

    def __init__(self) -> None:
        self.started: list[UUID] = []

    def on_chat_model_start(self, *args: Any, run_id: UUID, **kwargs: Any) -> None:
        self.started.append(run_id)


@pytest.mark.parametrize("how", ["config", "with_config", "constructor", "astream"])
def test_a_bare_model_dispatches_every_letta_event_on_its_own_run(how: str) -> None:
    recorder, runs = Recorder(), RunIds()
    with _server() as server:
        if how == "constructor":
            model: Any = ChatLetta(
                agent_id=AGENT, base_url=server.base_url, callbacks=[recorder, runs]
            )
            chunks = list(model.stream("hi"))
        elif how == "with_config":
            bound = ChatLetta(agent_id=AGENT, base_url=server.base_url)
            chunks = list(bound.with_config(callbacks=[recorder, runs]).stream("hi"))
        elif how == "astream":
            model = ChatLetta(agent_id=AGENT, base_url=server.base_url)

            async def read() -> list[Any]:
                config: Any = {"callbacks": [recorder, runs]}
                return [chunk async for chunk in model.astream("hi", config)]

            chunks = asyncio.run(read())
        else:
            model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
            chunks = list(model.stream("hi", config={"callbacks": [recorder, runs]}))
    assert [name for name, _, _ in recorder.custom] == LETTA_EVENTS
    assert {run_id for _, _, run_id in recorder.custom} == set(runs.started)  # the model's run
    assert len(recorder.tokens) == len(chunks)


def test_the_step_printer_shows_a_bare_models_steps() -> None:
    written: list[str] = []
    with _server(2) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        model.invoke("hi", config={"callbacks": [LettaStepPrinter(write=written.append)]})
        shown = "".join(written)
        written.clear()
        list(model.with_config(callbacks=[LettaStepPrinter(write=written.append)]).stream("hi"))
    assert "memory_insert" in shown
    assert "".join(written) == shown


def test_a_models_own_callbacks_see_the_events_inside_a_chain_too() -> None:
    outer, own = Recorder(), Recorder()
    with _server() as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, callbacks=[own])
        chain = RunnableLambda(lambda text: model.invoke(text))
        chain.invoke("hi", config={"callbacks": [outer]})
    assert [name for name, _, _ in outer.custom] == LETTA_EVENTS
    assert [name for name, _, _ in own.custom] == LETTA_EVENTS


async def test_astream_events_v2_shows_reasoning_server_tools_and_letta_events() -> None:
    with _server() as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)

        async def call(text: str) -> Any:
            return await model.ainvoke(text)

        events = [e async for e in RunnableLambda(call).astream_events("hi", version="v2")]
    streamed = [e["data"]["chunk"] for e in events if e["event"] == "on_chat_model_stream"]
    kinds = [b["type"] for chunk in streamed for b in chunk.content if isinstance(b, dict)]
    assert {"reasoning", "server_tool_call_chunk", "server_tool_result", "text"} <= set(kinds)
    custom = [e["name"] for e in events if e["event"] == "on_custom_event"]
    assert custom == LETTA_EVENTS
    (end,) = [e for e in events if e["event"] == "on_chat_model_end"]
    assert end["data"]["output"].usage_metadata["total_tokens"] > 0


def test_stream_events_v3_show_reasoning_and_server_tool_blocks() -> None:
    with _server() as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url)
        events = list(model.stream_events("hi", version="v3"))
    assert_valid_event_stream(events)
    finished = [e["content"] for e in events if e["event"] == "content-block-finish"]
    assert [block["type"] for block in finished] == [
        "reasoning",
        "server_tool_call",
        "server_tool_result",
        "reasoning",
        "text",
    ]
    assert finished[1]["args"] == {
        "label": "human",
        "new_string": "The user likes tea.",
        "request_heartbeat": True,
    }
    assert events[0]["metadata"]["provider"] == "letta"
    assert events[-1]["event"] == "message-finish"
    assert events[-1]["usage"]["input_tokens"] > 0
