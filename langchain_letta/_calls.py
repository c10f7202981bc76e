"""The plumbing of one ChatLetta call: its clients, its events, its callbacks.

``ChatLetta`` decides what a call sends and where; this module carries it out
on a sync or async client and reports what happens to LangChain's callbacks.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import threading
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar, overload
from uuid import UUID

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    CallbackManager,
    CallbackManagerForLLMRun,
    Callbacks,
)
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableConfig, ensure_config
from langchain_core.runnables.config import (
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
)
from tenacity import RetryCallState

from langchain_letta._chunks import DEFAULT_MODEL_NAME, ChunkBuilder, generation_chunk
from langchain_letta._requests import (
    CallOptions,
    ChosenConversation,
    HistoryPolicy,
    LettaTarget,
    blank_message,
    last_answer,
    nothing_to_send,
    pending_approval_calls,
    select_new_messages,
)
from langchain_letta._tools import offered_tools, outgoing
from langchain_letta._wire import (
    AsyncEventStream,
    AsyncLettaClient,
    EventStream,
    LettaClient,
    StreamRequest,
)
from langchain_letta.errors import LettaError, LettaPendingApprovalError, StreamProgress
from langchain_letta.events import LettaEvent

Pair = tuple[LettaEvent, AIMessageChunk | None]
"""A Letta event with the chunk it makes (``None``: none, or carried by a later one)."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class CallDefaults:
    """What a call takes from its model where its keywords say nothing.

    Attributes:
        history: Which messages to send (``ChatLetta.history``).
        conversation_per_call: Start a conversation for a call that continues none.
        lenient_tool_choice: Offer tools for a ``tool_choice`` that would force a call.
        model: The model handle to use instead of the agent's, if any.
        request_fields: The model's values of ``REQUEST_FIELDS``.
    """

    history: HistoryPolicy
    conversation_per_call: bool
    lenient_tool_choice: bool
    model: str | None
    request_fields: Mapping[str, Any]


def plan_call(
    messages: Sequence[BaseMessage],
    options: CallOptions,
    chosen: ChosenConversation,
    defaults: CallDefaults,
    thread_conversations: dict[tuple[str, str], str],
) -> Call:
    """Plan one call to ``chosen``: what it sends, and the builder of its chunks.

    Raises:
        ValueError: Nothing new to send, blank text, a ``ToolMessage`` that answers
            no call, or answers that do not match the calls waiting.
    """
    agent_id, conversation_id, thread_key = chosen
    resume_from = options.resume_from
    fresh = thread_key is not None or (
        conversation_id is None and defaults.conversation_per_call and resume_from is None
    )
    selected = select_new_messages(
        messages, agent_id, defaults.history, conversation_id, fresh=fresh
    )
    if not selected and not options.approvals and resume_from is None:
        raise ValueError(nothing_to_send(messages, agent_id))
    blank = None if resume_from is not None else blank_message(selected, agent_id)
    if blank is not None:
        raise ValueError(blank)
    position = last_answer(messages, agent_id, conversation_id, fresh=fresh)
    answer = None if position is None else messages[position]
    lenient = defaults.lenient_tool_choice
    tools = offered_tools(options.tools, options.tool_choice, lenient=lenient)
    model = options.model or defaults.model
    request = StreamRequest(
        messages=outgoing(selected, answer, options.approvals),
        client_tools=tools,
        override_model=model,
        # fields and call keywords; the client refuses each where the release lacks it
        **{**defaults.request_fields, **options.overrides},
    )
    builder = ChunkBuilder(
        agent_id,
        model or DEFAULT_MODEL_NAME,
        conversation_id,
        client_tools=[tool.name for tool in tools or ()],
    )
    return Call(
        messages,
        agent_id,
        request,
        builder,
        thread_conversations=thread_conversations,
        thread_key=thread_key,
        fresh=fresh,
        resume_from=resume_from,
        total_timeout=options.total_timeout,
    )


class Clients:
    """A model's HTTP clients, made on first use and reused, so calls share connections.

    A copy of the model (``deepcopy``, ``pickle``, ``model_copy(deep=True)``) starts
    without clients: connections and locks cannot be copied. The async client
    belongs to the event loop that made it, since pooled connections cannot move
    between loops: ``asyncio.run`` twice gets a new one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sync: LettaClient | None = None
        self._async: tuple[asyncio.AbstractEventLoop, AsyncLettaClient] | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> Clients:
        return Clients()

    def __reduce__(self) -> tuple[type[Clients], tuple[()]]:
        return (Clients, ())

    def sync(self, make: Callable[[], LettaClient]) -> LettaClient:
        """The sync client, made with ``make`` on first use."""
        with self._lock:
            if self._sync is None:
                self._sync = make()
            return self._sync

    def async_(self, make: Callable[[], AsyncLettaClient]) -> AsyncLettaClient:
        """The async client of the running event loop, made with ``make`` on first use."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._async is None or self._async[0] is not loop:
                self._async = (loop, make())
            return self._async[1]

    def close(self) -> None:
        """Close the sync client (a later call makes a new one)."""
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close both clients; the async one only from the loop that made it."""
        self.close()
        with self._lock:
            made, self._async = self._async, None
        if made is not None and made[0] is asyncio.get_running_loop():
            await made[1].aclose()


class RetryReporter:
    """Passes the client's retries and resumes on to callbacks, between network reads.

    The client calls its hooks from inside its I/O; they are recorded here and
    forwarded from the model's own loop, where sync and async callbacks can both
    be called.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[str, dict[str, Any], RetryCallState | None]] = []

    @property
    def pending(self) -> bool:
        """Whether a retry or resume waits to be reported."""
        return bool(self._pending)

    def hooks(self) -> dict[str, Any]:
        """The client's ``on_retry`` and ``on_resume`` hooks."""
        return {"on_retry": self._retry, "on_resume": self._resume}

    def _retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        data = {"attempt": state.attempt_number, "error": str(error), "wait": state.upcoming_sleep}
        # tenacity reuses its state for the next attempt before the callbacks run: keep
        # this retry's attempt and outcome as they are now.
        self._pending.append(("letta.retry", data, copy.copy(state)))

    def _resume(self, progress: StreamProgress, error: LettaError) -> None:
        data = {"run_id": progress.run_id, "starting_after": progress.last_seq_id}
        self._pending.append(("letta.resume", {**data, "error": str(error)}, None))

    def flush(
        self, run_manager: CallbackManagerForLLMRun | None, observers: CallbackManager | None
    ) -> None:
        """Report what was recorded: ``on_retry`` to the run, custom events to observers."""
        pending, self._pending = self._pending, []
        for name, data, state in pending:
            if run_manager and state is not None:
                run_manager.on_retry(state)
            if observers:
                observers.on_custom_event(name, data, run_id=observers.parent_run_id)

    async def aflush(
        self,
        run_manager: AsyncCallbackManagerForLLMRun | None,
        observers: AsyncCallbackManager | None,
    ) -> None:
        """Async :meth:`flush`."""
        pending, self._pending = self._pending, []
        for name, data, state in pending:
            if run_manager and state is not None:
                await run_manager.on_retry(state)
            if observers:
                await observers.on_custom_event(name, data, run_id=observers.parent_run_id)


class Call:
    """One planned call; the sync and async paths differ only in how they do its I/O.

    Attributes:
        agent_id: The agent.
        request: What is sent.
        builder: Turns the call's events into chunks; knows the conversation.
    """

    def __init__(
        self,
        messages: Sequence[BaseMessage],
        agent_id: str,
        request: StreamRequest,
        builder: ChunkBuilder,
        *,
        thread_conversations: dict[tuple[str, str], str],
        thread_key: tuple[str, str] | None,
        fresh: bool,
        resume_from: StreamProgress | None,
        total_timeout: float | None,
    ) -> None:
        self._messages = messages
        self.agent_id = agent_id
        self.request = request
        self.builder = builder
        self._thread_conversations = thread_conversations
        self._thread_key = thread_key
        self._fresh = fresh
        self._resume_from = resume_from
        self._total_timeout = total_timeout
        self._reporter = RetryReporter()

    def events(
        self, client: LettaClient, run_manager: CallbackManagerForLLMRun | None
    ) -> Iterator[Pair]:
        """Each event of the call with its chunk; each also dispatched as a custom event.

        Raises:
            LettaError: The call failed; it carries the partial answer (see :meth:`fill_in`).
        """
        if self._fresh:
            self._use_conversation(self._conversation_from(client)())
        stream = self._open(client)
        observers = parent_run_callbacks(run_manager)
        reporter = self._reporter
        try:
            with stream:
                for batch in stream.batches():
                    if reporter.pending:
                        reporter.flush(run_manager, observers)
                    for event, chunk in self.builder.batch(batch):
                        if observers:
                            observers.on_custom_event(
                                _event_name(event), event, run_id=observers.parent_run_id
                            )
                        yield event, chunk
        except LettaError as error:
            reporter.flush(run_manager, observers)
            self.fill_in(error)
            raise
        reporter.flush(run_manager, observers)

    async def aevents(
        self, client: AsyncLettaClient, run_manager: AsyncCallbackManagerForLLMRun | None
    ) -> AsyncIterator[Pair]:
        """Async :meth:`events`."""
        if self._fresh:
            self._use_conversation(await self._conversation_from(client)())
        stream = self._open(client)
        observers = async_parent_run_callbacks(run_manager)
        reporter = self._reporter
        try:
            async with stream:
                async for batch in stream.batches():
                    if reporter.pending:
                        await reporter.aflush(run_manager, observers)
                    for event, chunk in self.builder.batch(batch):
                        if observers:
                            await observers.on_custom_event(
                                _event_name(event), event, run_id=observers.parent_run_id
                            )
                        yield event, chunk
        except LettaError as error:
            await reporter.aflush(run_manager, observers)
            self.fill_in(error)
            raise
        await reporter.aflush(run_manager, observers)

    def fill_in(self, error: LettaError) -> None:
        """Add what the call knows to ``error``: the partial answer, the calls still waiting."""
        error.partial_message = self.builder.partial()
        if isinstance(error, LettaPendingApprovalError) and not error.pending_tool_calls:
            conversation_id = self.builder.conversation_id
            error.pending_tool_calls = pending_approval_calls(
                self._messages, self.agent_id, conversation_id
            )

    @overload
    def _conversation_from(self, client: LettaClient) -> Callable[[], str]: ...

    @overload
    def _conversation_from(
        self, client: AsyncLettaClient
    ) -> Callable[[], Coroutine[Any, Any, str]]: ...

    def _conversation_from(self, client: LettaClient | AsyncLettaClient) -> Callable[[], Any]:
        """How ``client`` gets this call its conversation: its thread's, else a new one."""
        if self._thread_key is None:
            return functools.partial(client.create_conversation, self.agent_id)
        return functools.partial(client.thread_conversation, *self._thread_key)

    def _use_conversation(self, created: str) -> None:
        """Talk in the conversation just found or created, and remember it for the thread.

        If another call of the same thread created one meanwhile, the first one
        remembered wins, so that the thread's turns never split across two.
        """
        if self._thread_key is not None:
            created = self._thread_conversations.setdefault(self._thread_key, created)
        self.builder.conversation_id = created
        self._fresh = False

    @overload
    def _open(self, client: LettaClient) -> EventStream: ...

    @overload
    def _open(self, client: AsyncLettaClient) -> AsyncEventStream: ...

    def _open(self, client: LettaClient | AsyncLettaClient) -> EventStream | AsyncEventStream:
        """The event stream of this call on ``client``, sync or async alike."""
        hooks = {**self._reporter.hooks(), "total_timeout": self._total_timeout}
        if self._resume_from is not None:
            return client.resume(self.agent_id, self._resume_from, **hooks)
        conversation_id = self.builder.conversation_id
        return client.stream(self.agent_id, self.request, conversation_id=conversation_id, **hooks)


def _event_name(event: LettaEvent) -> str:
    return f"letta.{event.message_type}"


class StreamRun(NamedTuple):
    """A model run of ``stream()``: its id and the handlers its Letta events go to."""

    run_id: UUID
    handlers: list[BaseCallbackHandler]


class CallScope(NamedTuple):
    """What an entry point of ChatLetta knows of the call it starts.

    LangChain hands ``_stream`` and ``_generate`` the call keywords alone (and
    ``_stream`` no run manager), so the target resolved for the run's metadata,
    and the run of a ``stream()``, reach them through :data:`CALL_SCOPE`.

    Attributes:
        target: Where the call goes, as the entry point resolved it.
        run: The ``stream()`` run whose handlers see Letta events, if any.
    """

    target: LettaTarget
    run: StreamRun | None = None


CALL_SCOPE: ContextVar[CallScope | None] = ContextVar("letta_call_scope", default=None)
"""The scope of the call being run, set only while ChatLetta runs it."""


@contextmanager
def scoped(scope: CallScope) -> Iterator[None]:
    """Run the block with ``scope`` set."""
    token = CALL_SCOPE.set(scope)
    try:
        yield
    finally:
        CALL_SCOPE.reset(token)


def stream_run(config: RunnableConfig, callbacks: Callbacks, verbose: bool) -> StreamRun | None:
    """The run ``stream()`` is about to start, if it has handlers to see Letta events.

    LangChain's ``stream()`` does not hand ``_stream`` its run manager, so the run's
    id is chosen here (``config["run_id"]``) and its handlers made as LangChain makes
    them (the config's and the model's ``callbacks``).
    """
    handlers = CallbackManager.configure(config.get("callbacks"), callbacks, verbose).handlers
    if not handlers:
        return None
    run_id = config.get("run_id") or uuid.uuid4()
    config["run_id"] = run_id
    return StreamRun(run_id, handlers)


def with_target_metadata(config: RunnableConfig, target: LettaTarget) -> RunnableConfig:
    """``config`` with the target's agent and conversation named in the run's metadata."""
    metadata = {**config.get("metadata", {})}
    if target.agent_id:
        metadata["letta_agent_id"] = target.agent_id
    if target.conversation_id:
        metadata["letta_conversation_id"] = target.conversation_id
    return {**config, "metadata": metadata}


def resolved_target(named: LettaTarget) -> LettaTarget | None:
    """``named`` if the running entry point resolved it (the call keywords it passed on)."""
    scope = CALL_SCOPE.get()
    return named if scope is not None and scope.target == named else None


class InScope(Iterator[_T]):
    """``chunks``, the first made with ``scope`` set (never while the consumer holds one).

    The call reads its scope once, when it starts: while the first chunk is made.
    After that each chunk is passed on as it comes, with nothing between.
    """

    def __init__(self, chunks: Iterator[_T], scope: CallScope) -> None:
        self._chunks = chunks
        self._scope: CallScope | None = scope

    def __iter__(self) -> InScope[_T]:
        return self

    def __next__(self) -> _T:
        scope, self._scope = self._scope, None
        if scope is None:
            return next(self._chunks)
        token = CALL_SCOPE.set(scope)
        try:
            return next(self._chunks)
        finally:
            CALL_SCOPE.reset(token)

    def close(self) -> None:
        """Stop the stream (LangChain's generator) early."""
        self._chunks.close()  # type: ignore[attr-defined]  # a generator


class AsyncInScope(AsyncIterator[_T]):
    """Async :class:`InScope`."""

    def __init__(self, chunks: AsyncIterator[_T], scope: CallScope) -> None:
        self._chunks = chunks
        self._scope: CallScope | None = scope

    def __aiter__(self) -> AsyncInScope[_T]:
        return self

    def __anext__(self) -> Awaitable[_T]:
        if self._scope is None:
            return self._chunks.__anext__()
        return self._first()

    async def _first(self) -> _T:
        scope, self._scope = self._scope, None
        token = CALL_SCOPE.set(scope)
        try:
            return await self._chunks.__anext__()
        finally:
            CALL_SCOPE.reset(token)

    async def aclose(self) -> None:
        """Stop the stream (LangChain's async generator) early."""
        await self._chunks.aclose()  # type: ignore[attr-defined]  # an async generator


def parent_run_callbacks(run_manager: CallbackManagerForLLMRun | None) -> CallbackManager | None:
    """The callbacks to which each Letta event is dispatched, as a custom event.

    Inside a chain or a graph node, the run that called the model gets them (where
    ``dispatch_custom_event`` would put them); a bare model's run gets them itself. The
    model's own handlers (its constructor's ``callbacks``) see them either way.
    """
    parent = get_callback_manager_for_config(ensure_config())
    handlers, run_id = _observers(parent.handlers, parent.parent_run_id, run_manager)
    return CallbackManager(handlers=handlers, parent_run_id=run_id) if run_id else None


def async_parent_run_callbacks(
    run_manager: AsyncCallbackManagerForLLMRun | None,
) -> AsyncCallbackManager | None:
    """Async :func:`parent_run_callbacks`."""
    parent = get_async_callback_manager_for_config(ensure_config())
    handlers, run_id = _observers(parent.handlers, parent.parent_run_id, run_manager)
    return AsyncCallbackManager(handlers=handlers, parent_run_id=run_id) if run_id else None


def _observers(
    inherited: list[BaseCallbackHandler],
    parent_run_id: UUID | None,
    run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
) -> tuple[list[BaseCallbackHandler], UUID | None]:
    """The handlers that see Letta events, and the run they are dispatched on."""
    own: list[BaseCallbackHandler] = []
    own_run_id: UUID | None = None
    scope = CALL_SCOPE.get()
    if run_manager is not None:
        own, own_run_id = run_manager.handlers, run_manager.run_id
    elif scope is not None and scope.run is not None:
        own, own_run_id = scope.run.handlers, scope.run.run_id
    if parent_run_id is None:
        return list(own), own_run_id if own else None
    handlers = [*inherited, *(handler for handler in own if handler not in inherited)]
    return handlers, parent_run_id if handlers else None


def generation_chunks(
    builder: ChunkBuilder,
    events: Iterator[Pair],
    run_manager: CallbackManagerForLLMRun | None,
) -> Iterator[ChatGenerationChunk]:
    """The chunks of a call, each shown to ``on_llm_new_token``, then the closing one."""
    for _event, message in events:
        if message is not None:
            chunk = generation_chunk(message)
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
    chunk = generation_chunk(builder.last_chunk())
    if run_manager:
        run_manager.on_llm_new_token("", chunk=chunk)
    yield chunk


async def ageneration_chunks(
    builder: ChunkBuilder,
    events: AsyncIterator[Pair],
    run_manager: AsyncCallbackManagerForLLMRun | None,
) -> AsyncIterator[ChatGenerationChunk]:
    """Async :func:`generation_chunks`."""
    async for _event, message in events:
        if message is not None:
            chunk = generation_chunk(message)
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk
    chunk = generation_chunk(builder.last_chunk())
    if run_manager:
        await run_manager.on_llm_new_token("", chunk=chunk)
    yield chunk


def shown_to_callbacks(
    run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None,
) -> bool:
    """Whether a call's chunks are shown to anyone: a callback handler (tracers included)."""
    return run_manager is not None and bool(run_manager.handlers)


def chat_result(builder: ChunkBuilder) -> ChatResult:
    """The answer of a finished call, as LangChain's merge of its chunks would give it."""
    return ChatResult(generations=[ChatGeneration(message=builder.message())])
