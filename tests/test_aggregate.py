"""invoke, ainvoke and partial_message give exactly what LangChain's merge of the stream gives.

ChatLetta builds its answer in one pass instead of merging chunk after chunk
(pairwise merging is quadratic in the number of deltas). The answer must stay
byte-identical to LangChain's own merge of the chunks ``stream`` yields, on every
real capture, finished or cut: same blocks, same keys in the same order, same text.
"""

from __future__ import annotations

import asyncio
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.utils._merge import merge_lists

from langchain_letta import ChatLetta
from langchain_letta._convert import ChunkBuilder, MergedContent, finalize_content
from langchain_letta.errors import LettaError
from langchain_letta.events import LettaEvent, parse_event
from langchain_letta.testing import FakeLettaServer, Reply
from tests.conftest import CAPTURES, capture_status

AGENT = "agent-9d9e1f61-7d82-476c-9996-867db2b9c18f"
STREAMS = [path for path in sorted(CAPTURES.rglob("*.sse")) if capture_status(path) != 0]
"""Every captured stream (a capture of a server that never answered has none)."""


def _reference(chunks: list[AIMessageChunk]) -> AIMessageChunk | None:
    """LangChain's own merge, chunk after chunk, as ``_generate`` did before."""
    merged: AIMessageChunk | None = None
    for chunk in chunks:
        merged = chunk if merged is None else merged + chunk
    return merged


def _shown(message: AIMessage | None) -> str:
    """Everything an answer carries, in order (``repr`` shows key order); not its run id."""
    if message is None:
        return "None"
    return repr((message.content, message.response_metadata, message.usage_metadata))


def _expected(chunks: list[AIMessageChunk], error: LettaError | None) -> str:
    merged = _reference(chunks)
    if error is not None:  # partial_message: the text of what had arrived, no metadata
        if merged is None:
            return "None"
        return _shown(finalize_content(AIMessage(content=merged.content, response_metadata={})))
    assert merged is not None
    message = AIMessage(
        content=merged.content,
        response_metadata=merged.response_metadata,
        usage_metadata=merged.usage_metadata,
    )
    return _shown(finalize_content(message))


def _outcome(call: Any) -> str:
    """What an invoke gave: its answer, or the partial message of its error."""
    try:
        return _shown(call())
    except LettaError as error:
        return _shown(error.partial_message)


async def _aoutcome(model: ChatLetta) -> str:
    try:
        return _shown(await model.ainvoke("hi"))
    except LettaError as error:
        return _shown(error.partial_message)


@pytest.mark.parametrize("path", STREAMS, ids=lambda path: str(path.relative_to(CAPTURES)))
def test_answer_is_langchains_merge_of_the_stream(path: Path) -> None:
    with FakeLettaServer(lambda _request: Reply.from_capture(path)) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, max_retries=0, background=False)
        chunks: list[AIMessageChunk] = []
        error: LettaError | None = None
        try:
            chunks.extend(model.stream("hi"))
        except LettaError as caught:
            error = caught
        expected = _expected(chunks, error)
        if error is not None:
            assert _shown(error.partial_message) == expected
        assert _outcome(lambda: model.invoke("hi")) == expected
        assert asyncio.run(_aoutcome(model)) == expected


def _event(**payload: Any) -> LettaEvent:
    return parse_event(json.dumps(payload))


def test_merged_text_of_many_deltas_is_one_block() -> None:
    builder = ChunkBuilder(AGENT, "letta-agent")
    event = _event(message_type="assistant_message", otid="o", content="ab")
    chunks = [builder.chunk(event) for _ in range(1000)]
    merged = _reference([chunk for chunk in chunks if chunk is not None])
    assert merged is not None
    partial = builder.partial()
    assert partial is not None
    assert partial.content == merged.content == [{"type": "text", "text": "ab" * 1000, "index": 0}]


# Blocks as any provider may stream them: the merge must follow LangChain's rules
# beyond what the builder makes (ids that differ at one index, nested extras, values
# that were None, flags, non-standard blocks), errors included.
BLOCK_STREAMS: list[list[list[Any]]] = [
    [
        [{"type": "text", "text": "a", "index": 0}],
        [{"type": "reasoning", "reasoning": "r", "index": 1, "extras": {"source": "x"}}],
        [{"type": "text", "text": "b", "index": 0}],
        [{"type": "reasoning", "reasoning": "s", "index": 1, "extras": {"signature": "sig"}}],
        [{"type": "reasoning", "reasoning": "", "index": 1, "extras": {"source": "y"}}],
    ],
    [
        [{"type": "server_tool_call_chunk", "args": "{", "index": 2, "id": "c1", "name": "f"}],
        [{"type": "server_tool_call_chunk", "args": '"a"', "index": 2}],
        [{"type": "server_tool_call_chunk", "args": "[", "index": 2, "id": "c2"}],
        [{"type": "server_tool_call_chunk", "args": ":1}", "index": 2, "id": "c1"}],
        [{"type": "server_tool_call_chunk", "args": "]", "index": 2, "id": "c2"}],
    ],
    [
        [{"type": "server_tool_result", "output": None, "index": 0, "status": "success"}],
        [{"type": "server_tool_result", "output": "out", "index": 0, "extras": {"hidden": True}}],
        [{"type": "server_tool_result", "output": None, "index": 0, "extras": {"hidden": True}}],
        [{"type": "server_tool_result", "output": "put", "index": 0, "status": "success"}],
    ],
    [
        [{"type": "text", "text": "x", "index": "lc_1"}, "plain", {"type": "text", "text": "y"}],
        [{"type": "text", "text": "z", "index": "lc_1"}, {"type": "text", "text": "w"}],
        [{"type": "non_standard", "value": {"type": "t", "a": 1}, "index": "lc_1"}],
        [{"type": "non_standard", "value": {"a": 1}, "index": 5}],
        [{"type": "non_standard", "value": {"b": 2}, "index": 5}],
    ],
    [
        [{"type": "text", "text": "a", "index": 0, "extras": {"n": 1}}],
        [{"type": "text", "text": "b", "index": 0, "extras": {"n": 2, "tags": ["t"]}}],
        [{"type": "text", "text": "c", "index": 0, "extras": {"tags": ["u"]}}],
    ],
    [
        [{"type": "text", "text": "a", "index": 0, "extras": {"flag": True}}],
        [{"type": "text", "text": "b", "index": 0, "extras": {"flag": False}}],
    ],
    [
        [{"type": "text", "text": "a", "index": 0}],
        [{"type": "text", "text": 7, "index": 0}],
    ],
]


def _langchain(stream: list[list[Any]]) -> list[Any] | str:
    merged: list[Any] | None = []
    try:
        for content in stream:
            merged = merge_lists(merged, content)
    except TypeError as error:
        return f"TypeError: {error}"
    assert merged is not None
    return merged


def _ours(stream: list[list[Any]]) -> list[Any] | str:
    merged = MergedContent()
    try:
        for content in stream:
            merged.add(content)
    except TypeError as error:
        return f"TypeError: {error}"
    return merged.content()


@pytest.mark.parametrize("stream", BLOCK_STREAMS)
def test_merged_content_follows_langchains_rules(stream: list[list[Any]]) -> None:
    copies = repr(stream)
    assert repr(_ours(stream)) == repr(_langchain(stream))
    assert repr(stream) == copies  # the chunks' blocks are never modified


def _our_growth(deltas: int) -> int:
    """Bytes allocated in this package's files and alive at the last of ``deltas`` text deltas.

    The model's own generator is read and each chunk dropped (a consumer that
    discards them; LangChain's ``stream`` keeps its own list, not ours), so what
    is alive then is what the model keeps for the final and the partial message.
    The fake server's allocations are left out.
    """
    text = {"message_type": "assistant_message", "otid": "o", "content": " word"}
    end = {"message_type": "stop_reason", "stop_reason": "end_turn"}
    with FakeLettaServer([Reply.events(*[text] * deltas, end)]) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, background=False)
        tracemalloc.start()
        try:
            for count, _chunk in enumerate(model._stream([HumanMessage("hi")]), 1):
                if count == deltas:
                    snapshot = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
    ours = snapshot.filter_traces(
        [
            tracemalloc.Filter(True, "*langchain_letta*"),
            tracemalloc.Filter(False, "*langchain_letta*testing*"),
        ]
    )
    return sum(stat.size for stat in ours.statistics("filename"))


def test_what_the_model_keeps_grows_with_the_text_not_the_chunks() -> None:
    # 5 characters of text per delta; keeping a chunk per delta costs hundreds of bytes
    small, large = _our_growth(1_000), _our_growth(10_000)
    assert large - small < 9_000 * 40


CUT = CAPTURES / "0.16.8/memgpt_v2_agent/04-tool-call-tokens.sse"
"""Reasoning, a streamed tool call, its result and text: every kind of block to cut into."""


@pytest.mark.parametrize("after", range(1, len(Reply.from_capture(CUT).frames()), 2))
def test_partial_message_after_a_cut_anywhere_is_langchains_merge(after: int) -> None:
    reply = Reply.from_capture(CUT).with_faults(drops=[after])
    with FakeLettaServer(lambda _request: reply) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, max_retries=0, background=False)
        chunks: list[AIMessageChunk] = []
        with pytest.raises(LettaError) as caught:
            chunks.extend(model.stream("hi"))
        assert _shown(caught.value.partial_message) == _expected(chunks, caught.value)
        assert _outcome(lambda: model.invoke("hi")) == _expected(chunks, caught.value)
