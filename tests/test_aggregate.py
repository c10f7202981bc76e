"""invoke, ainvoke and partial_message give exactly what LangChain's merge of the stream gives.

ChatLetta builds its answer in one pass instead of merging chunk after chunk
(pairwise merging is quadratic in the number of deltas). The answer must stay
byte-identical to LangChain's own merge of the chunks ``stream`` yields, on every
real capture, finished or cut: same blocks, same keys in the same order, same text.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import gc
import json
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import RunnableLambda
from langchain_core.utils._merge import merge_lists

from langchain_letta import ChatLetta
from langchain_letta import _chunks as convert
from langchain_letta._chunks import ChunkBuilder, finalize_content
from langchain_letta._merge import MergedContent
from langchain_letta._wire.state import StreamState
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


def _captured_events(path: Path) -> list[LettaEvent]:
    """The events of a capture as the client delivers them (up to an error frame, if any)."""
    return StreamState().feed(path.read_bytes() + b"\n\n")


def _in_batches(events: list[LettaEvent], size: int) -> list[list[LettaEvent]]:
    """The events cut into batches of ``size`` (0: one batch), as reads of that many frames."""
    size = size or len(events) or 1
    return [events[start : start + size] for start in range(0, len(events), size)]


def _token_text(chunks: Sequence[AIMessageChunk]) -> str:
    """What ``on_llm_new_token`` is shown of these chunks, in order."""
    return "".join(ChatGenerationChunk(message=chunk).text for chunk in chunks)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 0])
@pytest.mark.parametrize("path", STREAMS, ids=lambda path: str(path.relative_to(CAPTURES)))
def test_merging_a_batch_changes_no_answer_and_no_text(path: Path, size: int) -> None:
    events = _captured_events(path)
    one_by_one = ChunkBuilder(AGENT, "letta-agent")
    single = [one_by_one.chunk(event) for event in events]
    batched = ChunkBuilder(AGENT, "letta-agent")
    pairs = [pair for batch in _in_batches(events, size) for pair in batched.batch(batch)]
    assert [event for event, _chunk in pairs] == events  # every event, once, in order
    merged = [chunk for _event, chunk in pairs if chunk is not None]
    unmerged = [chunk for chunk in single if chunk is not None]
    # Each merged chunk is LangChain's sum of the chunks its events make one by one.
    start = 0
    for position, (_event, chunk) in enumerate(pairs):
        if chunk is not None:
            run = [made for made in single[start : position + 1] if made is not None]
            assert repr(chunk.content) == repr(_reference(run).content)
            start = position + 1
    assert all(made is None for made in single[start:])
    assert _token_text(merged) == _token_text(unmerged)
    closing = [batched.last_chunk()]
    assert repr(_reference(merged + closing)) == repr(_reference(unmerged + closing))
    assert repr(batched.merged()) == repr(one_by_one.merged())
    if size == 0 and len(unmerged) > 1:
        assert len(merged) <= len(unmerged)


def _validated(model: Any) -> Any:
    """``model`` made again by its constructor, from copies of the fields it has set."""
    fields = {name: copy.deepcopy(getattr(model, name)) for name in model.model_fields_set}
    return type(model)(**fields)


def _state(model: Any) -> tuple[Any, ...]:
    """All a pydantic model holds: its fields (in order), fields set, extra and private."""
    values = [(name, type(value), value) for name, value in model.__dict__.items()]
    extra, private = model.__pydantic_extra__, model.__pydantic_private__
    return repr(values), sorted(model.model_fields_set), extra, private, type(model)


@pytest.mark.parametrize("size", [1, 0])
@pytest.mark.parametrize("path", STREAMS, ids=lambda path: str(path.relative_to(CAPTURES)))
def test_every_chunk_is_what_langchains_constructors_make(path: Path, size: int) -> None:
    builder = ChunkBuilder(AGENT, "letta-agent")
    events = _captured_events(path)
    made = [chunk for batch in _in_batches(events, size) for _, chunk in builder.batch(batch)]
    chunks = [chunk for chunk in made if chunk is not None] + [builder.last_chunk()]
    generations = [convert.generation_chunk(chunk) for chunk in chunks]
    for model in [*chunks, *generations]:
        assert _state(model) == _state(_validated(model))
    for generation in generations:
        assert type(generation.text) is type(ChatGenerationChunk(message=chunks[0]).text)
    # no two chunks share a mutable value (one changed in place would change the other)
    shared = [
        id(value)
        for chunk in chunks
        for value in chunk.__dict__.values()
        if isinstance(value, (list, dict))
    ]
    assert len(shared) == len(set(shared))


def test_every_delta_of_a_block_read_at_once_is_one_chunk() -> None:
    builder = ChunkBuilder(AGENT, "letta-agent")
    event = _event(message_type="assistant_message", otid="o", content="ab")
    pairs = builder.batch([event] * 1000)
    assert [chunk for _event, chunk in pairs[:-1]] == [None] * 999
    last = pairs[-1][1]
    assert last is not None
    assert last.content == [{"type": "text", "text": "ab" * 1000, "index": 0}]


@pytest.mark.parametrize(
    "path",
    [path for path in STREAMS if capture_status(path) == 200],  # others are refused whole
    ids=lambda path: str(path.relative_to(CAPTURES)),
)
def test_a_stream_read_at_once_streams_and_traces_what_it_did_delta_by_delta(path: Path) -> None:
    """One HTTP chunk holding the whole capture: one batch, merged as far as it goes.

    The answer, the text ``on_llm_new_token`` sees and the ``letta.*`` custom
    events (one per Letta event, in order) are those of the capture read delta by
    delta, as :meth:`ChunkBuilder.chunk` makes them.
    """
    reply = dataclasses.replace(Reply.from_capture(path), split_frames=False)
    events = _captured_events(path)
    builder = ChunkBuilder(AGENT, "letta-agent")
    unmerged = [chunk for chunk in map(builder.chunk, events) if chunk is not None]
    with FakeLettaServer(lambda _request: reply) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, max_retries=0, background=False)
        for surface in (lambda text: list(model.stream(text)), model.invoke):
            recorder = _Recorder()
            try:
                outcome = RunnableLambda(surface).invoke("hi", config={"callbacks": [recorder]})
            except LettaError:
                outcome = None  # an error frame: what came before it is compared
            assert recorder.custom == [f"letta.{event.message_type}" for event in events]
            assert "".join(recorder.tokens) == _token_text(unmerged)
            if isinstance(outcome, list) and unmerged:  # the stream's chunks sum up as before
                summed = _reference(outcome[:-1])
                assert summed is not None
                assert repr(summed.content) == repr(_reference(unmerged).content)


class _Recorder(BaseCallbackHandler):
    """The text of each new token and the custom events a run shows its callbacks."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.custom: list[str] = []

    def on_llm_new_token(self, token: Any, *, chunk: Any = None, **kwargs: Any) -> None:
        self.tokens.append(chunk.text)

    def on_custom_event(self, name: str, data: Any, **kwargs: Any) -> None:
        if not isinstance(data, dict):  # a Letta event, not a retry or a resume
            self.custom.append(name)


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
    [  # plain deltas, then deltas of another type with the same index
        *[[{"type": "text", "text": letter, "index": 0}] for letter in "abcd"],
        *[[{"type": "reasoning", "reasoning": letter, "index": 0}] for letter in "efg"],
        [{"type": "text", "text": "h", "index": 0}],
    ],
    [  # an index that is a bool equal to a later int
        [{"type": "text", "text": "a", "index": True}],
        *[[{"type": "text", "text": letter, "index": 1}] for letter in "bcd"],
    ],
    [  # indexes that LangChain never merges by
        *[[{"type": "text", "text": letter, "index": "i"}] for letter in "abc"],
        *[[{"type": "text", "text": letter, "index": [0]}] for letter in "abc"],
    ],
    [*[[{"type": ["text"], "text": letter, "index": 0}] for letter in "abc"]],  # a type unhashable
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
            seen = 0
            for chunk in model._stream([HumanMessage("hi")]):
                seen += len(chunk.text)
                if seen == len(" word") * deltas:  # the chunk with the last delta, still held
                    gc.collect()  # what is alive, not garbage the collector has yet to see
                    snapshot = tracemalloc.take_snapshot()
                    seen += 1
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


def test_invoke_makes_text_chunks_only_for_a_callback_that_sees_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nobody sees the chunks of a bare ``invoke``: its text deltas only feed the answer."""
    made: list[Any] = []
    real = convert._chunk
    monkeypatch.setattr(convert, "_chunk", lambda block: made.append(block) or real(block))
    path = CAPTURES / "0.16.8" / "letta_v1_agent" / "02-stream-tokens.sse"  # text deltas
    with FakeLettaServer(lambda _request: Reply.from_capture(path)) as server:
        model = ChatLetta(agent_id=AGENT, base_url=server.base_url, max_retries=0, background=False)
        bare = model.invoke("hi")
        assert bare.text
        assert made == []
        recorder = _Recorder()
        watched = model.invoke("hi", config={"callbacks": [recorder]})
        assert "".join(block["text"] for block in made if block["type"] == "text") == bare.text
        assert "".join(recorder.tokens) == bare.text == watched.text
