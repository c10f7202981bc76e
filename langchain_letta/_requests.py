"""What a call sends: which messages of the history, as Letta messages, refused early.

Nothing here touches the network, so every rule can be tested on its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import RunnableConfig, ensure_config

from langchain_letta._chunks import PROVIDER, REQUIRES_APPROVAL
from langchain_letta._strict import check_names
from langchain_letta._wire import validate_agent_id, validate_conversation_id
from langchain_letta._wire.requests import (
    VERSIONED_FIELDS,
    ApprovalDecision,
    OutgoingMessage,
    ToolResult,
)
from langchain_letta.errors import StreamProgress

HistoryPolicy = Literal["new", "last", "all"]

REQUEST_FIELDS = ("stream_tokens", "max_steps", *VERSIONED_FIELDS)
"""ChatLetta's fields that a call keyword of the same name sets for one call."""

CALL_KEYWORDS = frozenset(
    {
        # where the call goes (ChatLetta.target_for)
        "agent_id",
        "conversation_id",
        "thread_id",
        # what it sends and how
        "approvals",
        "resume_from",
        "tools",
        "tool_choice",
        "model",
        "total_timeout",
        *REQUEST_FIELDS,
        # LangChain's own: the streaming switch, with_structured_output's trace format
        "stream",
        "ls_structured_output_format",
        "structured_output_format",
    }
)
"""The keywords a call takes (``invoke``, ``stream``, ``bind``, ...); any other is refused."""


class LettaTarget(NamedTuple):
    """Where one call goes (see :meth:`ChatLetta.target_for`).

    Attributes:
        agent_id: The agent.
        conversation_id: The conversation of that agent, or ``None`` for the
            agent's own thread.
        thread_id: The LangGraph thread whose own conversation is to be used
            (``conversation_per_thread``), when no conversation is named.
    """

    agent_id: str | None
    conversation_id: str | None
    thread_id: str | None


class ChosenConversation(NamedTuple):
    """Where a call talks (see :func:`choose_conversation`).

    Attributes:
        agent_id: The agent, validated.
        conversation_id: Its conversation; ``None``: the agent's own thread, or
            one the call is to create.
        thread_key: ``(agent_id, thread_id)`` of a LangGraph thread that has no
            conversation yet: the call creates it.
    """

    agent_id: str
    conversation_id: str | None
    thread_key: tuple[str, str] | None


def choose_target(
    config: RunnableConfig | None,
    named: LettaTarget,
    fields: LettaTarget,
    *,
    per_thread: bool,
) -> LettaTarget:
    """Where a call goes: what it ``named``, else the config's ``configurable``, else ``fields``.

    With ``per_thread`` and no conversation, the LangGraph thread is kept, whose
    conversation the call will find or create.
    """
    configurable = ensure_config(config).get("configurable", {})
    agent = named.agent_id or configurable.get("agent_id") or fields.agent_id
    conversation = (
        named.conversation_id or configurable.get("conversation_id") or fields.conversation_id
    )
    thread = None
    if conversation is None and per_thread:
        thread = named.thread_id or configurable.get("thread_id")
    return LettaTarget(
        str(agent) if agent else None,
        str(conversation) if conversation else None,
        str(thread) if thread is not None else None,
    )


def choose_conversation(
    target: LettaTarget,
    messages: Sequence[BaseMessage],
    threads: dict[tuple[str, str], str],
    *,
    per_call: bool,
) -> ChosenConversation:
    """The conversation a call with ``messages`` talks in.

    The conversation named, else the LangGraph thread's (remembered in
    ``threads``, or found in its history), else, with ``per_call``, the one the
    history continues.

    Raises:
        ValueError: No agent, or an invalid id.
    """
    if not target.agent_id:
        raise ValueError(
            "ChatLetta needs an agent: ChatLetta(agent_id=...) or "
            'config={"configurable": {"agent_id": ...}}'
        )
    agent_id = validate_agent_id(target.agent_id)
    conversation_id = target.conversation_id
    thread_key = None
    if conversation_id is None and target.thread_id is not None:
        thread_key = (agent_id, target.thread_id)
        conversation_id = threads.get(thread_key) or conversation_in_history(messages, agent_id)
        if conversation_id is not None:
            threads.setdefault(thread_key, conversation_id)
            thread_key = None
    elif conversation_id is None and per_call:
        conversation_id = conversation_in_history(messages, agent_id)
    if conversation_id is not None:
        validate_conversation_id(conversation_id)
    return ChosenConversation(agent_id, conversation_id, thread_key)


@dataclass(frozen=True)
class CallOptions:
    """A call's keywords, checked and typed once (see ``CALL_KEYWORDS``).

    Attributes:
        agent_id: The agent the call names, if any.
        conversation_id: The conversation the call names, if any.
        thread_id: The LangGraph thread the call names, if any.
        approvals: Answers to the calls a waiting run stopped for.
        resume_from: Where to read a run further, instead of sending anything.
        tools: The client tools bound (LangChain tools, functions or dicts).
        tool_choice: Which of ``tools`` to offer (see ``offered_tools``).
        model: A model handle to use instead of the agent's.
        total_timeout: Seconds the call may take in all; ``None``: the client's.
        overrides: The ``REQUEST_FIELDS`` the call sets, by name.
    """

    agent_id: str | None = None
    conversation_id: str | None = None
    thread_id: str | None = None
    approvals: tuple[ApprovalDecision | ToolResult, ...] = ()
    resume_from: StreamProgress | None = None
    tools: Sequence[Any] | None = None
    tool_choice: Any = None
    model: str | None = None
    total_timeout: float | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, keywords: Mapping[str, Any], owner: str = "ChatLetta") -> CallOptions:
        """The options of a call's ``keywords``.

        Raises:
            TypeError: A keyword ``owner`` does not take (the closest one named), or
                ``approvals`` that are not ``ApprovalDecision`` and ``ToolResult`` objects.
        """
        check_names(keywords, CALL_KEYWORDS, owner, "call keyword")
        return cls(
            agent_id=keywords.get("agent_id"),
            conversation_id=keywords.get("conversation_id"),
            thread_id=keywords.get("thread_id"),
            approvals=_approvals(keywords.get("approvals")),
            resume_from=keywords.get("resume_from"),
            tools=keywords.get("tools"),
            tool_choice=keywords.get("tool_choice"),
            model=keywords.get("model"),
            total_timeout=keywords.get("total_timeout"),
            overrides={name: keywords[name] for name in REQUEST_FIELDS if name in keywords},
        )

    @classmethod
    def of(cls, given: CallOptions | Mapping[str, Any] | None) -> CallOptions:
        """``given`` as options: as they are, or parsed from a dict of call keywords."""
        return given if isinstance(given, CallOptions) else cls.parse(given or {})

    @property
    def named_target(self) -> LettaTarget:
        """The target as the call names it, before the config and the model fill it in."""
        return LettaTarget(self.agent_id, self.conversation_id, self.thread_id)


def _approvals(given: Any) -> tuple[ApprovalDecision | ToolResult, ...]:
    """The ``approvals=`` call keyword: answers to calls a run waits for.

    Raises:
        TypeError: Anything but a list of ``ApprovalDecision`` and ``ToolResult``.
    """
    answers = tuple(given or ())
    for item in answers:
        if not isinstance(item, (ApprovalDecision, ToolResult)):
            raise TypeError(
                "approvals= takes ApprovalDecision (a server tool) and ToolResult (a client "
                f"tool) objects, not {type(item).__name__}"
            )
    return answers


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
