"""Pure conversions: LangChain messages to Letta requests, Letta events to message chunks.

Nothing here touches the network, so every rule can be tested on its own.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Collection, Iterable, Sequence
from typing import Any, Literal, TypeGuard

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)
from langchain_core.messages.ai import InputTokenDetails, OutputTokenDetails, UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.prompt_values import PromptValue
from langchain_core.utils._merge import merge_dicts, merge_lists
from pydantic_core import from_json

from langchain_letta._wire.requests import OutgoingMessage
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

HistoryPolicy = Literal["new", "last", "all"]
PROVIDER = "letta"
REQUIRES_APPROVAL = "requires_approval"
"""The ``extras`` key (value ``True``) of a ``server_tool_call`` block that waits for the
client's approval, and the ``stop_reason`` of the run that waits for it."""

# ---------------------------------------------------------------- messages -> request


def answered_by(message: BaseMessage, agent_id: str) -> bool:
    """Whether ``message`` is an answer ChatLetta received from ``agent_id``, in any thread."""
    metadata = message.response_metadata
    return (
        isinstance(message, AIMessage)
        and metadata.get("model_provider") == PROVIDER
        and metadata.get("agent_id") == agent_id
    )


def is_from_agent(message: BaseMessage, agent_id: str, conversation_id: str | None = None) -> bool:
    """Whether ``message`` is an answer of ``agent_id`` in ``conversation_id``.

    ``None`` is the agent's own thread; an answer from another conversation of the
    same agent was never seen in this one, so it does not count.
    """
    return (
        answered_by(message, agent_id)
        and message.response_metadata.get("conversation_id") == conversation_id
    )


def conversation_in_history(messages: Sequence[BaseMessage], agent_id: str) -> str | None:
    """The conversation of ``agent_id``'s last answer in ``messages`` that names one.

    A LangGraph thread keeps its messages in its checkpoint, so its conversation
    is found again after a restart, from the answers it already holds.
    """
    for message in reversed(messages):
        if answered_by(message, agent_id):
            conversation_id = message.response_metadata.get("conversation_id")
            if isinstance(conversation_id, str):
                return conversation_id
    return None


def input_messages(input: str | Sequence[Any] | PromptValue) -> list[BaseMessage]:
    """A chat model's input (a string, a prompt value, messages or their tuples) as messages."""
    if isinstance(input, PromptValue):
        return input.to_messages()
    if isinstance(input, str):
        return [HumanMessage(input)]
    return convert_to_messages(input)


def last_answer(
    messages: Sequence[BaseMessage],
    agent_id: str,
    conversation_id: str | None = None,
    *,
    fresh: bool = False,
    any_conversation: bool = False,
) -> int | None:
    """Where ``agent_id``'s last answer in ``conversation_id`` is in ``messages``, if anywhere.

    In a ``fresh`` conversation (just created) no earlier answer counts; with
    ``any_conversation``, an answer in any of the agent's conversations does.
    """
    if fresh:
        return None
    for position in range(len(messages) - 1, -1, -1):
        message = messages[position]
        if (
            answered_by(message, agent_id)
            if any_conversation
            else is_from_agent(message, agent_id, conversation_id)
        ):
            return position
    return None


def select_new_messages(
    messages: Sequence[BaseMessage],
    agent_id: str,
    policy: HistoryPolicy,
    conversation_id: str | None = None,
    *,
    fresh: bool = False,
) -> list[BaseMessage]:
    """The messages to send to a stateful agent that already remembers the conversation.

    ``"new"``: the human and system messages after this agent's last answer in this
    conversation (its own thread when ``conversation_id`` is ``None``), with the
    ``ToolMessage`` s answering that answer's tool calls; with no such answer, or in
    a ``fresh`` conversation, the trailing run of human and system messages. What
    other models said, and their tool calls and results, is not forwarded: each
    Letta agent has its own memory, and a tool call it never made is not its to
    answer (a history ending in such an exchange sends the question before it).
    ``"last"``: the last message only. ``"all"``: every message (to seed a fresh
    agent).

    Raises:
        ValueError: A ``ToolMessage`` among the messages looked at that answers no
            call: neither one of the agent's answer nor any AI message before it
            made a call with its ``tool_call_id`` (a typo'd id, an orphan). The
            message names the id; it is never dropped in silence.
    """
    if policy in ("all", "last"):
        chosen = list(messages) if policy == "all" else list(messages[-1:])
        _refuse_orphans(messages, len(messages) - len(chosen), None, agent_id)
        return chosen
    position = last_answer(messages, agent_id, conversation_id, fresh=fresh)
    answer: BaseMessage | None = None
    if position is None:
        start = len(messages)
        while start > 0 and _before_the_agent(messages[start - 1]):
            start -= 1
        calls: set[str | None] = set()
    else:
        start = position + 1
        answer = messages[position]
        calls = (
            {call["id"] for call in answer.tool_calls} if isinstance(answer, AIMessage) else set()
        )
    _refuse_orphans(messages, start, answer, agent_id)
    return [
        message
        for message in messages[start:]
        if isinstance(message, (HumanMessage, SystemMessage))
        or (isinstance(message, ToolMessage) and message.tool_call_id in calls)
    ]


def _refuse_orphans(
    messages: Sequence[BaseMessage], start: int, answer: BaseMessage | None, agent_id: str
) -> None:
    """Refuse a ``ToolMessage`` from ``start`` on whose call no AI message before it made.

    A result for another model's call is not an orphan (it is left out); one for a
    call nobody made is a mistake, whose id the error names.

    Raises:
        ValueError: Such a ``ToolMessage``.
    """
    made: set[str | None] = set()
    for position, message in enumerate(messages):
        if isinstance(message, AIMessage):
            made.update(call["id"] for call in message.tool_calls)
        elif (
            position >= start
            and isinstance(message, ToolMessage)
            and message.tool_call_id not in made
        ):
            raise ValueError(unanswered_tool_message(message.tool_call_id, answer, agent_id))


def unanswered_tool_message(tool_call_id: str, answer: BaseMessage | None, agent_id: str) -> str:
    """The error's text for a ``ToolMessage`` that answers no call: its id, what waits."""
    text = f"the ToolMessage with tool_call_id={tool_call_id!r} answers no tool call"
    if answer is None:
        return (
            f"{text}: no AI message before it made a call with that id (ChatLetta sends a "
            f"ToolMessage only as the result of a client tool call of the Letta agent "
            f"{agent_id}, by its id); check the id, or leave the message out"
        )
    waiting = waiting_calls(answer)
    gated = [call.get("id") for call in waiting if call.get("type") == "server_tool_call"]
    if tool_call_id in gated:
        return (
            f"{text}: {tool_call_id!r} is a server tool call of the Letta agent {agent_id} "
            f"waiting for approval, which is answered with approvals=[ApprovalDecision("
            f"tool_call_id={tool_call_id!r}, approve=True)] (or approve=False, reason=...) on "
            "the next call, not with a ToolMessage"
        )
    ids = [call.get("id") for call in waiting]
    return (
        f"{text}: the Letta agent {agent_id}'s last answer waits for {ids or 'nothing'}, and "
        "no AI message before it made a call with that id; check the id"
    )


def _before_the_agent(message: BaseMessage) -> bool:
    """Whether ``message`` belongs to the input of an agent that has not answered yet.

    People's messages do, and so does a tool exchange of another model (its calls
    and their results), which is skipped; another model's plain answer ends the run.
    """
    return isinstance(message, (HumanMessage, SystemMessage, ToolMessage)) or (
        isinstance(message, AIMessage) and bool(message.tool_calls)
    )


def pending_approval_calls(
    messages: Sequence[BaseMessage], agent_id: str, conversation_id: str | None = None
) -> list[dict[str, Any]]:
    """The calls that ``agent_id``'s last answer in ``messages`` left waiting for approval.

    The answer is looked for in the conversation that refused (``None``: the agent's
    own thread): a pending approval belongs to its conversation.

    Letta's refusal of a message while calls wait names none of them; the answer
    that stopped with ``requires_approval`` does: server tools as marked
    ``server_tool_call`` blocks, client tools as its ``tool_calls``.
    """
    position = last_answer(messages, agent_id, conversation_id)
    return [] if position is None else waiting_calls(messages[position])


def waiting_calls(answer: BaseMessage) -> list[dict[str, Any]]:
    """The calls an agent's ``answer`` left waiting, in order: gated server tools, client tools.

    Only an answer that stopped with ``requires_approval`` waits for anything.
    """
    if not isinstance(answer, AIMessage) or (
        answer.response_metadata.get("stop_reason") != REQUIRES_APPROVAL
    ):
        return []
    gated = [
        dict(block)
        for block in answer.content
        if isinstance(block, dict) and block.get("extras", {}).get(REQUIRES_APPROVAL)
    ]
    return [*gated, *(dict(call) for call in answer.tool_calls)]


def nothing_to_send(messages: Sequence[BaseMessage], agent_id: str) -> str:
    """Why :func:`select_new_messages` chose nothing, and what to do: the error's text.

    Three different mistakes end there (no input at all, a history that ends with
    the agent's answer, an input that ends with an AI or tool message); one
    message for all of them sent users looking for the wrong one.
    """
    if not messages:
        return (
            "ChatLetta got no messages to send: pass the user's message (a string or a "
            "HumanMessage); to read a run further without sending anything, pass "
            "resume_from=error.progress"
        )
    last = messages[-1]
    if is_from_agent(last, agent_id):
        return (
            f"nothing new to send to the Letta agent {agent_id}: the history ends with its own "
            "answer; append the user's next message"
        )
    return (
        f"nothing to send to the Letta agent {agent_id}: the input ends with a "
        f"{type(last).__name__}, and ChatLetta sends human and system messages, and the "
        "ToolMessages answering this agent's own tool calls (it keeps its own answers, and "
        "another model's tool calls are not its to answer); end the input with the user's "
        "message"
    )


def blank_message(selected: Sequence[BaseMessage], agent_id: str) -> str | None:
    """Why :func:`select_new_messages`' choice cannot be sent, if a message in it says nothing.

    An empty or whitespace-only human or system message (``model.invoke("")``)
    would start a run on the server that fails, so it is refused, as for
    :func:`nothing_to_send`: the error's text, else ``None``.
    """
    for message in selected:
        if isinstance(message, (HumanMessage, SystemMessage)) and _blank(message.content):
            return (
                f"ChatLetta will not send an empty {type(message).__name__} to the Letta agent "
                f"{agent_id}: its text is {_shown(message.content)}, and the agent would start "
                "a run on nothing; pass the user's text, or leave the message out"
            )
    return None


def _blank(content: str | list[str | dict[str, Any]]) -> bool:
    """Whether ``content`` holds no text but whitespace, and no other part (an image)."""
    if isinstance(content, str):
        return not content.strip()
    return all(_blank_part(part) for part in content)


def _blank_part(part: str | dict[str, Any]) -> bool:
    if isinstance(part, str):
        return not part.strip()
    text = part.get("text")
    return part.get("type") == "text" and isinstance(text, str) and not text.strip()


def to_outgoing(message: BaseMessage) -> OutgoingMessage:
    """One LangChain message as a Letta message.

    Raises:
        ValueError: The message is an AI or tool message, which a Letta agent
            cannot take as input (its own answers live in its memory already).
    """
    if isinstance(message, HumanMessage):
        role: Literal["user", "system"] = "user"
    elif isinstance(message, SystemMessage):
        role = "system"
    else:
        raise ValueError(
            f"ChatLetta cannot send a {type(message).__name__} to a Letta agent: the agent keeps "
            "its own answers and runs its own tools. Send only human and system messages, or "
            "keep the agent's earlier answers (ChatLetta recognises them) in the history."
        )
    return OutgoingMessage(
        role=role,
        content=_letta_content(message.content),
        name=message.name,
        source_id=message.id,
    )


def _letta_content(content: str | list[str | dict[str, Any]]) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts = [_letta_part(part) for part in content]
    if all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)
    return parts


def _letta_part(part: str | dict[str, Any]) -> dict[str, Any]:
    """One LangChain content part as a Letta part.

    Raises:
        ValueError: The part lacks what its type needs (``text`` as a string, an
            image URL or base64 data); it is refused before anything is sent,
            rather than sent as ``"None"`` or failing deep inside with a
            ``KeyError`` or ``TypeError``.
    """
    if isinstance(part, str):
        return {"type": "text", "text": part}
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise ValueError(
                f"ChatLetta cannot send the text part {_shown(part)}: its 'text' must be a string"
            )
        return {"type": "text", "text": text}
    if kind == "image_url":  # OpenAI-style part
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str) or not url:
            raise ValueError(
                f"ChatLetta cannot send the image part {_shown(part)}: it needs "
                "'image_url': {'url': '<http(s) or data: URL>'}"
            )
        return _image_from_url(url)
    if kind == "image":
        url = part.get("url")
        data = part.get("base64") or part.get("data")
        if isinstance(url, str) and url:
            return _image_from_url(url)
        if not url and isinstance(data, str) and data:
            media_type = part.get("mime_type") or part.get("media_type") or "image/png"
            return {
                "type": "image",
                "source": {"type": "base64", "media_type": media_type, "data": data},
            }
        raise ValueError(
            f"ChatLetta cannot send the image part {_shown(part)}: it needs a 'url' or "
            "'base64' data as a non-empty string"
        )
    raise ValueError(
        f"ChatLetta cannot send a content part of type {kind!r} to a Letta agent: it sends "
        "'text', 'image_url' and 'image' parts"
    )


def _shown(part: object) -> str:
    """A part as shown in an error: its repr, cut short (base64 data can be megabytes)."""
    text = repr(part)
    return text if len(text) <= 120 else text[:120] + "…"


def _image_from_url(url: str) -> dict[str, Any]:
    inline = re.match(r"^data:(?P<media>[\w/+.-]+);base64,(?P<data>.*)$", url, re.DOTALL)
    if inline:
        source = {"type": "base64", "media_type": inline["media"], "data": inline["data"]}
        return {"type": "image", "source": source}
    return {"type": "image", "source": {"type": "url", "url": url}}


# ---------------------------------------------------------------- events -> chunks

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
            key = _CONTINUED[block["type"]]
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
    return AIMessageChunk(content=[block], response_metadata=_metadata())


_CONTINUED = {"text": "text", "reasoning": "reasoning"}
"""Block types whose deltas may be merged, with the key of their text."""


def continues(block: dict[str, Any], first: dict[str, Any]) -> bool:
    """Whether LangChain's merge of ``block`` into ``first`` would only append its text.

    So it is for a text or reasoning delta holding nothing but its type, its text
    and the index of ``first`` (a block of the same type): no ``extras``, no
    ``id``, nothing that ``merge_dicts`` would treat otherwise. Tool calls, their
    results and anything else never merge.
    """
    key = _CONTINUED.get(block.get("type", ""))
    index = block.get("index")
    return (
        key is not None
        and len(block) == 3
        and type(block.get(key)) is str
        and type(index) is int
        and first.get("index") == index
        and first.get("type") == block["type"]
        and type(first.get(key)) is str
    )


class MergedContent:
    """The content of many chunks merged as LangChain's ``merge_lists`` does, in linear time.

    LangChain merges a block into the first earlier block of the same ``index``
    whose ``id`` does not differ, through ``merge_dicts``: strings are
    concatenated (except ``type``, and ``id``-like keys when equal), dicts merged
    key by key. Merging chunk after chunk copies every growing string again at
    each delta; here the blocks are found through their index and a
    concatenated string is written to a buffer (:class:`_Text`), read once. Any
    other pair of values goes through ``merge_dicts`` itself, so rules and
    errors stay LangChain's. The blocks of the chunks are never modified.
    """

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._by_index: dict[int | str, list[int]] = {}

    def __bool__(self) -> bool:
        return bool(self._items)

    def add(self, content: Iterable[Any]) -> None:
        """Merge one chunk's content (a list of blocks, as the builder makes)."""
        for item in content:
            index = item.get("index") if isinstance(item, dict) else None
            if not isinstance(item, dict) or not _merges_by_index(index):
                self._append(item)
                continue
            position = self._first_match(item, index)
            if position is None:
                self._append(item)
            elif item.get("type") == "non_standard" and "value" in item:
                # LangChain's special case, rare enough to be left to it whole
                merged = merge_lists([_plain(self._items[position])], [item])
                self._items[position] = merged[0] if merged else item
            else:
                target = self._items[position]
                if type(target) is not _Merging:
                    target = self._items[position] = _Merging(target)
                _merge_into(target, item, skip="type")

    def content(self) -> list[Any]:
        """The merged blocks, every string joined."""
        return [_plain(item) for item in self._items]

    def _append(self, item: Any) -> None:
        if isinstance(item, dict) and isinstance(item.get("index"), (int, str)):
            self._by_index.setdefault(item["index"], []).append(len(self._items))
        self._items.append(item)

    def _first_match(self, item: dict[str, Any], index: int | str) -> int | None:
        """Where LangChain merges ``item``: the first block of its index with no other id."""
        right = item.get("id")
        for position in self._by_index.get(index, ()):
            left = self._items[position].get("id")
            if left in (None, "") or right in (None, "") or left == right:
                return position
        return None


def _merges_by_index(index: object) -> TypeGuard[int | str]:
    """Whether LangChain merges a block with this ``index`` into an earlier one."""
    return isinstance(index, int) or (isinstance(index, str) and index.startswith("lc_"))


_SPECIAL_STRINGS = frozenset({"index", "id", "output_version", "model_provider"})
"""Keys whose strings ``merge_dicts`` may keep rather than concatenate: left to it."""


class _Merging(dict[str, Any]):
    """A copy of a block (or of a dict inside one) that later deltas are merged into."""


class _Text:
    """A string being concatenated: its pieces written to a buffer, read once at the end."""

    __slots__ = ("_buffer",)

    def __init__(self, first: str) -> None:
        self._buffer = io.StringIO(newline="")  # no newline translation: the text as sent
        self._buffer.write(first)

    def add(self, piece: str) -> None:
        self._buffer.write(piece)

    def value(self) -> str:
        return self._buffer.getvalue()


def _merge_into(target: _Merging, right: dict[str, Any], skip: str | None = None) -> None:
    """``merge_dicts(target, right)`` in place, strings concatenated through :class:`_Text`."""
    for key, value in right.items():
        if key == skip:
            continue
        current = target.get(key, _ABSENT)
        if current is _ABSENT or (value is not None and current is None):
            target[key] = value
        elif value is None:
            continue
        elif type(value) is str and key not in _SPECIAL_STRINGS and type(current) in _STRINGS:
            if type(current) is str:
                current = target[key] = _Text(current)
            current.add(value)
        elif type(value) is type(current) and type(value) in _SCALARS and value == current:
            continue  # an index again, a flag again: kept as is
        elif type(value) is dict and type(current) in _DICTS:
            if type(current) is dict:
                current = target[key] = _Merging(current)
            _merge_into(current, value)
        else:  # every other case, errors included, exactly as LangChain merges it
            target[key] = merge_dicts({key: _plain(current)}, {key: value})[key]


_ABSENT = object()
_STRINGS = (str, _Text)
_DICTS = (dict, _Merging)
_SCALARS = (int, bool, float)


def _plain(value: Any) -> Any:
    """A merged value as LangChain's merge would give it: strings joined, dicts plain."""
    if type(value) is _Text:
        return value.value()
    if type(value) is _Merging:
        return {key: _plain(item) for key, item in value.items()}
    return value


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
