"""Letta events to LangChain message chunks, and the answer they add up to."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from typing import Any, TypeVar

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.ai import InputTokenDetails, OutputTokenDetails, UsageMetadata
from langchain_core.messages.base import TextAccessor
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk
from pydantic import BaseModel
from pydantic_core import from_json

from langchain_letta._merge import TEXT_KEYS, MergedContent, continues
from langchain_letta.events import (
    ApprovalRequestMessage,
    AssistantMessage,
    ErrorMessage,
    HiddenReasoningMessage,
    LettaEvent,
    Ping,
    ReasoningMessage,
    StopReason,
    StreamErrorFrame,
    ToolCallMessage,
    ToolReturnMessage,
    UsageStatistics,
)

_M = TypeVar("_M", bound=BaseModel)

DEFAULT_MODEL_NAME = "letta-agent"
"""The ``model_name`` of an answer when the call names no model handle."""
PROVIDER = "letta"
"""The ``model_provider`` of every chunk; with the agent id, how an answer is recognised."""
REQUIRES_APPROVAL = "requires_approval"
"""The ``extras`` key (value ``True``) of a ``server_tool_call`` block that waits for the
client's approval, and the ``stop_reason`` of the run that waits for it."""

_LEAKED_PREFIX = re.compile(r'^\{\s*"message"\s*:\s*"')


def without_leaked_prefix(first_delta: str) -> str:
    """The first text delta of an answer without the JSON that Letta 0.6 can leak into it.

    Letta 0.6's token parser can pass the start of the ``send_message`` arguments,
    ``{"message":"``, on to the client; no answer starts with it on purpose.
    """
    return _LEAKED_PREFIX.sub("", first_delta, count=1)


class ChunkBuilder:
    """Turns the events of one stream into message chunks; keeps only per-message state.

    Content blocks carry an ``index`` so that LangChain merges the deltas of one
    Letta message into one block: all assistant text shares one index (the
    aggregate has exactly one text block), each reasoning message and each tool
    call gets its own. LangChain concatenates string values of merged blocks,
    ``extras`` included, so a string extra is sent once per block, with the
    first delta that has it.
    """

    def __init__(
        self,
        agent_id: str,
        model_name: str,
        conversation_id: str | None = None,
        client_tools: Collection[str] = (),
    ) -> None:
        self.agent_id = agent_id
        self.text_chunks = True
        """``False``: text and reasoning deltas only feed :meth:`message` and make no chunk
        (building one costs more than the rest of a delta's work), for a caller that
        shows no chunk to anyone: ``invoke`` with no callback handler."""
        self.model_name = model_name
        self.conversation_id = conversation_id
        self._client_tools = frozenset(client_tools)
        self._client_calls: set[str] = set()
        self._indexes: dict[tuple[str, str], int] = {}
        self._text_index: int | None = None
        self._text_group: str | None = None
        self._call_by_group: dict[str, str] = {}
        self._sent_extras: dict[tuple[str, str], set[str]] = {}
        self._message_ids: dict[str, None] = {}
        self.run_id: str | None = None
        self.stop_reason: str | None = None
        self.usage: UsageStatistics | None = None
        self._merged = MergedContent()
        self._merged_calls = MergedContent()

    def chunk(self, event: LettaEvent) -> AIMessageChunk | None:
        """The chunk for one event; ``None`` for events that only feed the last chunk."""
        return self.batch([event])[0][1]

    def batch(self, events: Sequence[LettaEvent]) -> list[tuple[LettaEvent, AIMessageChunk | None]]:
        """Each event of one network read with its chunk, a block's consecutive deltas merged.

        A run of deltas that only carry on one text or reasoning block (see
        :func:`continues`) becomes one chunk, given with the run's last event (the
        others get ``None``): LangChain's loop, callbacks and garbage collector, and
        the merge of the answer, then pay once per run, not once per delta. The
        chunks are those :meth:`chunk` makes event by event, merged as LangChain
        merges chunks (a test holds them to that on every capture). Only events
        that arrived together are merged: a delta that arrives alone is never held.
        """
        if len(events) == 1:  # a paced stream's every read: nothing to merge
            event = events[0]
            made = self._make(event)
            chunk = self._run_chunk([made]) if isinstance(made, dict) else self._kept(made)
            return [(event, chunk)]
        pairs: list[tuple[LettaEvent, AIMessageChunk | None]] = []
        run: list[dict[str, Any]] = []
        for event in events:
            made = self._make(event)
            if run and not (isinstance(made, dict) and continues(made, run[0])):
                pairs[-1] = (pairs[-1][0], self._run_chunk(run))
                run = []
            if isinstance(made, dict):
                run.append(made)
                pairs.append((event, None))
                continue
            pairs.append((event, self._kept(made)))
        if run:
            pairs[-1] = (pairs[-1][0], self._run_chunk(run))
        return pairs

    def _kept(self, made: AIMessageChunk | None) -> AIMessageChunk | None:
        """A chunk made whole (or none), added to what :meth:`merged` gives."""
        if made is not None:
            self._merged.add(made.content)
            if made.tool_call_chunks:
                self._merged_calls.add(made.tool_call_chunks)
        return made

    def _run_chunk(self, run: list[dict[str, Any]]) -> AIMessageChunk | None:
        """The chunk of a run of blocks that :func:`continues` the first: their texts joined."""
        block = run[0]
        if len(run) > 1:
            key = TEXT_KEYS[block["type"]]
            block = {**block, key: "".join([delta[key] for delta in run])}
        self._merged.add([block])
        return _chunk(block) if self.text_chunks else None

    def merged(self) -> AIMessageChunk | None:
        """Every chunk made so far (not the last one) merged into one, as LangChain's ``+`` would.

        Built in one pass over the pieces, where merging the chunks pair by pair
        copies the text over and over (quadratic in the deltas). ``None`` before
        the first chunk.
        """
        if not self._merged and not self._merged_calls:
            return None
        return AIMessageChunk(
            content=self._merged.content(),
            tool_call_chunks=self._merged_calls.content(),
            response_metadata=_metadata(),
        )

    def partial(self) -> AIMessage | None:
        """What the agent has said so far, as one message: ``partial_message`` of an error."""
        merged = self.merged()
        if merged is None:
            return None
        return _answer(merged, response_metadata={})

    def message(self) -> AIMessage:
        """The answer of a finished call: every chunk merged, the last one included.

        Exactly what LangChain's merge of every chunk gives (a test holds it to that
        on every capture), without merging chunk after chunk, which is quadratic.
        """
        last = self.last_chunk()
        merged = self.merged()
        message = last if merged is None else merged + last
        return _answer(message, message.response_metadata, message.usage_metadata, message.id)

    def _make(self, event: LettaEvent) -> dict[str, Any] | AIMessageChunk | None:
        """One event's content: a lone block (text, reasoning, ...), a chunk, or nothing."""
        message_id = getattr(event, "id", None)
        if message_id:
            self._message_ids[message_id] = None
        run_id = getattr(event, "run_id", None)
        if run_id:
            self.run_id = run_id
        if isinstance(event, AssistantMessage):
            return self._text(event)
        if isinstance(event, ReasoningMessage):
            key = ("reasoning", _group(event))
            extras: dict[str, Any] = {"source": event.source, "signature": event.signature}
            reasoning = {"type": "reasoning", "reasoning": event.text}
            return self._indexed(key, self._with_extras(key, reasoning, extras))
        if isinstance(event, HiddenReasoningMessage):
            key = ("reasoning", _group(event))
            hidden = {"type": "reasoning", "reasoning": event.text}
            extras = {"hidden": True, "state": event.state}
            return self._indexed(key, self._with_extras(key, hidden, extras))
        if isinstance(event, (ToolCallMessage, ApprovalRequestMessage)):
            return self._tool_calls(event)
        if isinstance(event, ToolReturnMessage):
            return self._tool_returns(event)
        if isinstance(event, StopReason):
            self.stop_reason = event.stop_reason
            return None
        if isinstance(event, UsageStatistics):
            self.usage = event
            return None
        if isinstance(event, (Ping, ErrorMessage, StreamErrorFrame)):
            return None  # the client consumes pings and raises errors; neither reaches here
        # Approval responses, compaction summaries and events, and anything newer: kept
        # whole, as the server sent it, since LangChain has no standard block for them.
        key = ("letta", str(len(self._indexes)))
        return self._indexed(key, {"type": "non_standard", "value": event.raw})

    def last_chunk(self) -> AIMessageChunk:
        """The closing chunk: usage, stop reason and the ids that let us recognise the answer."""
        metadata: dict[str, Any] = {
            "model_provider": PROVIDER,
            "model_name": self.model_name,
            "agent_id": self.agent_id,
            "run_id": self.run_id,
            "stop_reason": self.stop_reason or "end_turn",
            "letta_message_ids": list(self._message_ids),
        }
        if self.conversation_id is not None:
            metadata["conversation_id"] = self.conversation_id
        if self.usage is not None:
            metadata["step_count"] = self.usage.step_count
        return AIMessageChunk(
            content=[],
            usage_metadata=usage_metadata(self.usage) if self.usage else None,
            response_metadata=metadata,
            chunk_position="last",
        )

    def _text(self, event: AssistantMessage) -> dict[str, Any] | None:
        text = event.text
        group = _group(event)
        if group != self._text_group:
            text = without_leaked_prefix(text)
            if self._text_group is not None:
                text = "\n\n" + text  # a further assistant message of the same turn
            self._text_group = group
        if not text:
            return None
        if self._text_index is None:
            self._text_index = self._next_index()
        return {"type": "text", "text": text, "index": self._text_index}

    def _tool_calls(self, event: ToolCallMessage | ApprovalRequestMessage) -> AIMessageChunk:
        """Tool calls: the client's tools as ``tool_calls``, Letta's own as blocks.

        A call of a tool the caller bound (a client tool) waits for the caller to
        run it: it becomes a ``tool_call_chunk`` (id = Letta's ``tool_call_id``),
        which ToolNode and ``create_agent`` run. Any other call runs on the server
        and stays a ``server_tool_call`` (a ``tool_calls`` entry would make
        LangGraph's ToolNode run it); one that waits for the client's approval is
        marked ``extras={"requires_approval": True}``. Either way a waiting run
        stops with ``stop_reason="requires_approval"``.
        """
        blocks = []
        calls = []
        for call in event.calls:
            # Seed-era deltas name the call id only in their first fragment.
            call_id = call.tool_call_id or self._call_by_group.get(_group(event), "")
            self._call_by_group[_group(event)] = call_id
            key = ("call", call_id)
            waits = isinstance(event, ApprovalRequestMessage)
            if waits and (call_id in self._client_calls or call.name in self._client_tools):
                self._client_calls.add(call_id)  # token deltas name the tool only once
                args = call.arguments or ""
                index = self._index_of(key)
                calls.append(tool_call_chunk(name=call.name, args=args, id=call_id, index=index))
                continue
            block: dict[str, Any] = {"type": "server_tool_call_chunk", "args": call.arguments or ""}
            if call.name:
                block["name"] = call.name
            if call.tool_call_id:
                block["id"] = call.tool_call_id
            if waits:
                block = self._with_extras(key, block, {REQUIRES_APPROVAL: True})
            blocks.append(self._indexed(key, block))
        return AIMessageChunk(content=blocks, tool_call_chunks=calls, response_metadata=_metadata())

    def _tool_returns(self, event: ToolReturnMessage) -> AIMessageChunk:
        blocks = []
        for result in event.returns:
            block: dict[str, Any] = {
                "type": "server_tool_result",
                "tool_call_id": result.tool_call_id or "",
                "status": "error" if result.status == "error" else "success",
                "output": result.output,
            }
            extras = {
                name: value
                for name, value in (("stdout", result.stdout), ("stderr", result.stderr))
                if value
            }
            if extras:
                block["extras"] = extras
            blocks.append(self._indexed(("return", result.tool_call_id or _group(event)), block))
        return AIMessageChunk(content=blocks, response_metadata=_metadata())

    def _with_extras(
        self, key: tuple[str, str], block: dict[str, Any], extras: dict[str, Any]
    ) -> dict[str, Any]:
        """``block`` with the ``extras`` this block has not been given yet (``None``s left out).

        Each extra goes with the first delta that has it: merging deltas would
        concatenate a repeated string (``"reasoner_model"`` twice) and a signature
        is sent once anyway.
        """
        sent = self._sent_extras.setdefault(key, set())
        new = {name: value for name, value in extras.items() if value is not None}
        new = {name: value for name, value in new.items() if name not in sent}
        sent.update(new)
        if new:
            block["extras"] = new
        return block

    def _indexed(self, key: tuple[str, str], block: dict[str, Any]) -> dict[str, Any]:
        block["index"] = self._index_of(key)
        return block

    def _index_of(self, key: tuple[str, str]) -> int:
        index = self._indexes.get(key)
        if index is None:
            index = self._indexes[key] = self._next_index()
        return index

    def _next_index(self) -> int:
        return len(self._indexes) + (self._text_index is not None)


def _group(event: LettaEvent) -> str:
    """Which Letta message a delta belongs to: its otid, else its id and type."""
    otid = getattr(event, "otid", None)
    if otid:
        return str(otid)
    return f"{getattr(event, 'id', None)}/{event.message_type}"


def _metadata() -> dict[str, Any]:
    """The metadata of every chunk but the last: what :meth:`ChunkBuilder.merged` carries."""
    return {"model_provider": PROVIDER}


def _chunk(block: dict[str, Any]) -> AIMessageChunk:
    """``AIMessageChunk(content=[block], response_metadata=_metadata())`` for a lone block.

    Built as validation would build it (see :func:`_prevalidated`): a paced stream
    makes one such chunk per delta, and validating it cost more than the rest of
    this package's work on the delta.
    """
    values = {
        "content": [block],
        "additional_kwargs": {},
        "response_metadata": _metadata(),
        "tool_calls": [],
        "invalid_tool_calls": [],
        "tool_call_chunks": [],
    }
    return _prevalidated(_BLOCK_CHUNK, values)


def generation_chunk(message: AIMessageChunk) -> ChatGenerationChunk:
    """``ChatGenerationChunk(message=message)`` for a chunk of the builder's, see :func:`_chunk`.

    Its ``text`` is what LangChain's validator sets for content blocks that all
    have a type (the builder's do): the ``message.text`` of their text blocks,
    read here from the blocks, without the list and generator it makes.
    """
    blocks: list[dict[str, Any]] = message.content  # type: ignore[assignment]  # never a str
    text = ""
    for block in blocks:
        if block["type"] == "text":
            text += block["text"]
    return _prevalidated(_GENERATION_CHUNK, {"text": TextAccessor(text), "message": message})


_BLOCK_CHUNK = AIMessageChunk(content=[], response_metadata=_metadata())
_GENERATION_CHUNK = ChatGenerationChunk(message=_BLOCK_CHUNK)


def _prevalidated(prototype: _M, values: dict[str, Any]) -> _M:
    """``prototype`` with ``values``, made as pydantic's ``model_construct`` makes a model.

    For values that validation would keep as they are (those the builder makes:
    plain dicts, lists and strings of the declared types, which LangChain's
    validators leave unchanged), so the result is what the constructor gives;
    ``tests/test_aggregate.py`` holds the two equal, field for field, for every
    chunk the captures make. ``model_construct`` itself inspects every default
    factory on each call (in pydantic 2.14), which costs more than validating.
    ``values`` holds a fresh copy of every mutable value of ``prototype``: no two
    chunks share one. The fields set are the prototype's.
    """
    model = type(prototype).__new__(type(prototype))
    object.__setattr__(model, "__dict__", {**prototype.__dict__, **values})
    object.__setattr__(model, "__pydantic_fields_set__", set(prototype.__pydantic_fields_set__))
    extra = prototype.__pydantic_extra__
    object.__setattr__(model, "__pydantic_extra__", None if extra is None else {})
    object.__setattr__(model, "__pydantic_private__", None)
    return model


def usage_metadata(usage: UsageStatistics) -> UsageMetadata:
    """Letta's usage (summed over every step of the run) in LangChain's shape."""
    input_details: InputTokenDetails = {}
    if usage.cached_input_tokens is not None:
        input_details["cache_read"] = usage.cached_input_tokens
    if usage.cache_write_tokens is not None:
        input_details["cache_creation"] = usage.cache_write_tokens
    output_details: OutputTokenDetails = {}
    if usage.reasoning_tokens is not None:
        output_details["reasoning"] = usage.reasoning_tokens
    return UsageMetadata(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        input_token_details=input_details,
        output_token_details=output_details,
    )


def _answer(
    merged: AIMessageChunk,
    response_metadata: dict[str, Any],
    usage: UsageMetadata | None = None,
    message_id: str | None = None,
) -> AIMessage:
    """A merged chunk as the ``AIMessage`` a call returns, its tool calls parsed."""
    return finalize_content(
        AIMessage(
            content=merged.content,
            tool_calls=merged.tool_calls,
            invalid_tool_calls=merged.invalid_tool_calls,
            response_metadata=response_metadata,
            usage_metadata=usage,
            id=message_id,
        )
    )


def as_chunk(message: AIMessage) -> AIMessageChunk:
    """A whole answer as one closing chunk: what a stream of it would add up to.

    Tool calls become ``tool_call_chunks`` with their arguments as JSON, which
    LangChain's streaming tool parsers read.
    """
    calls = [
        tool_call_chunk(name=call["name"], args=json.dumps(call["args"]), id=call["id"], index=i)
        for i, call in enumerate(message.tool_calls)
    ]
    return AIMessageChunk(
        content=message.content,
        tool_call_chunks=calls,
        response_metadata=message.response_metadata,
        usage_metadata=message.usage_metadata,
        id=message.id,
        chunk_position="last",
    )


def finalize_content(message: AIMessage) -> AIMessage:
    """Turn streamed tool-call fragments into ``server_tool_call`` blocks with parsed args."""
    if not isinstance(message.content, list):
        return message
    content: list[str | dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, dict) and block.get("type") == "server_tool_call_chunk":
            block = dict(block)
            try:  # from_json: a hostile depth is a ValueError, not a RecursionError
                args = from_json(block.get("args") or "{}")
            except ValueError:
                args = None
            if isinstance(args, dict):
                block["type"] = "server_tool_call"
                block["args"] = args
        content.append(block)
    return message.model_copy(update={"content": content})
