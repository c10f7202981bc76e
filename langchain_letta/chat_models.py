"""ChatLetta: a stateful Letta agent as a LangChain chat model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableConfig, ensure_config
from langchain_core.runnables.config import (
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
)
from langchain_core.utils import from_env, secret_from_env
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr, field_validator
from tenacity import RetryCallState

from langchain_letta._convert import (
    ChunkBuilder,
    HistoryPolicy,
    finalize_content,
    nothing_to_send,
    select_new_messages,
    to_outgoing,
)
from langchain_letta._wire import (
    AsyncLettaClient,
    DialectSetting,
    LettaClient,
    StreamRequest,
    validate_agent_id,
)
from langchain_letta._wire.retry import DEFAULT_RETRY_TIMEOUT
from langchain_letta.errors import LettaError, StreamProgress
from langchain_letta.events import LettaEvent

DEFAULT_MODEL_NAME = "letta-agent"


class ChatLetta(BaseChatModel):
    """A Letta agent as a chat model: its memory, tools and reasoning stay on the server.

    Each call sends only what the agent has not seen (see ``history``) and streams
    back what it does: assistant text, ``reasoning`` blocks, and Letta's own
    server-run tool calls and results as ``server_tool_call`` /
    ``server_tool_result`` blocks (never ``tool_calls``, which LangGraph would try
    to run). The last chunk carries usage, the stop reason, the run id and the
    agent id, which is how a later call recognises this agent's answers.

    Example:
        .. code-block:: python

            from langchain_letta import ChatLetta

            model = ChatLetta(agent_id="agent-…", base_url="http://localhost:8283")
            for chunk in model.stream("Please remember that I like tea."):
                print(chunk.content_blocks)

    The agent can also be chosen per call, so one model serves many agents:
    ``model.invoke(messages, config={"configurable": {"agent_id": "agent-…"}})``.

    A message is never sent twice: requests are retried only while the server
    provably has not accepted them, and a dropped stream of a background run is
    read again from its last ``seq_id``. When that is impossible the
    ``LettaStreamInterruptedError`` carries ``progress`` and ``partial_message``;
    ``model.stream([], resume_from=error.progress)`` reads the rest later.

    ``temperature``, ``max_tokens`` and ``stop`` are accepted for compatibility and
    not sent: a Letta agent's LLM settings live in the agent's configuration.
    """

    model_config = ConfigDict(populate_by_name=True)

    agent_id: str | None = None
    """The agent to talk to; may be given per call instead (``configurable.agent_id``)."""
    base_url: str | None = Field(default_factory=from_env("LETTA_BASE_URL", default=None))
    """Server URL; ``LETTA_BASE_URL``, else ``http://localhost:8283``."""
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env("LETTA_API_KEY", default=None)
    )
    """Bearer token (Letta Cloud); ``LETTA_API_KEY``."""
    password: SecretStr | None = None
    """A self-hosted server's password (``X-BARE-PASSWORD``)."""
    user_id: str | None = None
    """The acting user on a self-hosted server."""
    stream_tokens: bool = True
    """Ask for token deltas; servers that cannot stream tokens send whole messages instead."""
    history: HistoryPolicy = "new"
    """Which messages to send: ``"new"`` (after this agent's last answer), ``"last"``, ``"all"``."""
    dialect: DialectSetting = "auto"
    """Request dialect; ``"auto"`` asks the server's version once."""
    model: str | None = None
    """A model handle to use instead of the agent's (``override_model``, Letta 0.16+)."""
    max_steps: int | None = None
    """Most agent steps per call; the server's default if unset."""
    timeout: float | None = None
    """Read timeout in seconds (never below the server's ping interval)."""
    max_retries: int = 2
    """Retries of a request the server provably did not accept (connection refused, 429,
    502-504, busy); also how many resumes in a row may bring nothing new."""
    retry_timeout: float = DEFAULT_RETRY_TIMEOUT
    """No retry starts, and no wait ends, after this many seconds (a longer ``Retry-After``
    ends the retries at once)."""
    background: bool | None = None
    """Ask for a resumable background run; ``None``: where the server has them (0.11.5+)."""
    cancel_on_close: bool = False
    """If the consumer stops early, cancel the run on the server too (needs Redis there)."""
    streaming: bool = False
    """Route ``invoke`` through streaming (LangChain convention)."""
    temperature: float | None = None
    """Accepted, not sent: the agent's LLM configuration decides."""
    max_tokens: int | None = None
    """Accepted, not sent: the agent's LLM configuration decides."""
    stop: list[str] | None = None
    """Accepted, not sent: Letta has no stop sequences."""

    _client: LettaClient | None = PrivateAttr(default=None)
    _async_client: AsyncLettaClient | None = PrivateAttr(default=None)

    @field_validator("agent_id")
    @classmethod
    def _check_agent_id(cls, value: str | None) -> str | None:
        return None if value is None else validate_agent_id(value)

    @property
    def _llm_type(self) -> str:
        return "letta"

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """ChatLetta can be saved with ``dumpd`` and loaded back (secrets as env references)."""
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        """The import path ``load`` uses to rebuild the model."""
        return ["langchain_letta", "chat_models"]

    @property
    def lc_secrets(self) -> dict[str, str]:
        """Secrets are serialised as the names of the environment variables that hold them."""
        return {"api_key": "LETTA_API_KEY", "password": "LETTA_SERVER_PASSWORD"}

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"agent_id": self.agent_id, "model": self.model, "stream_tokens": self.stream_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="letta",
            ls_model_name=kwargs.get("model") or self.model or DEFAULT_MODEL_NAME,
            ls_model_type="chat",
        )
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """See :meth:`BaseChatModel.invoke`; ``configurable.agent_id`` picks the agent."""
        config, kwargs = self._traced(config, kwargs)
        return super().invoke(input, config, stop=stop, **kwargs)

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """See :meth:`BaseChatModel.ainvoke`; ``configurable.agent_id`` picks the agent."""
        config, kwargs = self._traced(config, kwargs)
        return await super().ainvoke(input, config, stop=stop, **kwargs)

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        """See :meth:`BaseChatModel.stream`; ``configurable.agent_id`` picks the agent."""
        config, kwargs = self._traced(config, kwargs)
        return super().stream(input, config, stop=stop, **kwargs)

    def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        """See :meth:`BaseChatModel.astream`; ``configurable.agent_id`` picks the agent."""
        config, kwargs = self._traced(config, kwargs)
        return super().astream(input, config, stop=stop, **kwargs)

    def _traced(
        self, config: RunnableConfig | None, kwargs: dict[str, Any]
    ) -> tuple[RunnableConfig, dict[str, Any]]:
        """Pass the call's agent on to ``_stream``, and name it in the run's metadata.

        The agent may come from ``configurable.agent_id``; ``_stream`` receives it as a
        keyword whichever entry point was used, and LangSmith shows it on the run.
        """
        config = ensure_config(config)
        agent_id = self._agent_from(config, kwargs.get("agent_id"))
        if agent_id:
            kwargs = {**kwargs, "agent_id": agent_id}
            config = {
                **config,
                "metadata": {**config.get("metadata", {}), "letta_agent_id": agent_id},
            }
        return config, kwargs

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        builder, events = self._letta_events(messages, run_manager, kwargs)
        for _event, message in events:
            if message is not None:
                chunk = ChatGenerationChunk(message=message)
                if run_manager:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        chunk = ChatGenerationChunk(message=builder.last_chunk())
        if run_manager:
            run_manager.on_llm_new_token("", chunk=chunk)
        yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        builder, events = self._aletta_events(messages, run_manager, kwargs)
        async for _event, message in events:
            if message is not None:
                chunk = ChatGenerationChunk(message=message)
                if run_manager:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        chunk = ChatGenerationChunk(message=builder.last_chunk())
        if run_manager:
            await run_manager.on_llm_new_token("", chunk=chunk)
        yield chunk

    def _letta_events(
        self,
        messages: Sequence[BaseMessage],
        run_manager: CallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
    ) -> tuple[ChunkBuilder, Iterator[tuple[LettaEvent, AIMessageChunk | None]]]:
        """Each Letta event of one call with the chunk it makes (the core of every surface)."""
        agent_id, request, builder = self._prepare(messages, kwargs)
        client = self._sync_client()
        notices = _Notices()
        resume_from = kwargs.get("resume_from")
        if resume_from is not None:
            stream = client.resume(agent_id, resume_from, **notices.hooks())
        else:
            stream = client.stream(agent_id, request, **notices.hooks())

        def events() -> Iterator[tuple[LettaEvent, AIMessageChunk | None]]:
            observers = _parent_run_callbacks()
            emitted: list[AIMessageChunk] = []
            try:
                with stream:
                    for batch in stream.batches():
                        notices.flush(run_manager, observers)
                        for event in batch:
                            if observers:
                                observers.on_custom_event(
                                    _event_name(event), event, run_id=observers.parent_run_id
                                )
                            message = builder.chunk(event)
                            if message is not None:
                                emitted.append(message)
                            yield event, message
            except LettaError as error:
                notices.flush(run_manager, observers)
                error.partial_message = _partial(emitted)
                raise
            notices.flush(run_manager, observers)

        return builder, events()

    def _aletta_events(
        self,
        messages: Sequence[BaseMessage],
        run_manager: AsyncCallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
    ) -> tuple[ChunkBuilder, AsyncIterator[tuple[LettaEvent, AIMessageChunk | None]]]:
        """Async twin of :meth:`_letta_events`."""
        agent_id, request, builder = self._prepare(messages, kwargs)
        client = self._async_letta_client()
        notices = _Notices()
        resume_from = kwargs.get("resume_from")
        if resume_from is not None:
            stream = client.resume(agent_id, resume_from, **notices.hooks())
        else:
            stream = client.stream(agent_id, request, **notices.hooks())

        async def events() -> AsyncIterator[tuple[LettaEvent, AIMessageChunk | None]]:
            observers = _async_parent_run_callbacks()
            emitted: list[AIMessageChunk] = []
            try:
                async with stream:
                    async for batch in stream.batches():
                        await notices.aflush(run_manager, observers)
                        for event in batch:
                            if observers:
                                await observers.on_custom_event(
                                    _event_name(event), event, run_id=observers.parent_run_id
                                )
                            message = builder.chunk(event)
                            if message is not None:
                                emitted.append(message)
                            yield event, message
            except LettaError as error:
                await notices.aflush(run_manager, observers)
                error.partial_message = _partial(emitted)
                raise
            await notices.aflush(run_manager, observers)

        return builder, events()

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chunks = self._stream(messages, stop, run_manager, **kwargs)
        return _result(chunks)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chunks = [chunk async for chunk in self._astream(messages, stop, run_manager, **kwargs)]
        return _result(chunks)

    def _prepare(
        self, messages: Sequence[BaseMessage], kwargs: dict[str, Any]
    ) -> tuple[str, StreamRequest, ChunkBuilder]:
        agent_id = self._agent_for_call(kwargs)
        model = kwargs.get("model") or self.model
        builder = ChunkBuilder(agent_id, model or DEFAULT_MODEL_NAME)
        selected = select_new_messages(messages, agent_id, self.history)
        if not selected and kwargs.get("resume_from") is None:
            raise ValueError(nothing_to_send(messages, agent_id))
        request = StreamRequest(
            messages=[to_outgoing(message) for message in selected],
            stream_tokens=kwargs.get("stream_tokens", self.stream_tokens),
            max_steps=kwargs.get("max_steps", self.max_steps),
            override_model=model,
        )
        return agent_id, request, builder

    def _agent_from(self, config: RunnableConfig, explicit: str | None = None) -> str | None:
        """The call's agent: named explicitly, else ``configurable.agent_id``, else the model's."""
        return explicit or config.get("configurable", {}).get("agent_id") or self.agent_id

    def _agent_for_call(self, kwargs: dict[str, Any]) -> str:
        agent_id = self._agent_from(ensure_config(), kwargs.get("agent_id"))
        if not agent_id:
            raise ValueError(
                "ChatLetta needs an agent: ChatLetta(agent_id=...) or "
                'config={"configurable": {"agent_id": ...}}'
            )
        return validate_agent_id(str(agent_id))

    def _client_options(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "api_key": self.api_key,
            "password": self.password,
            "user_id": self.user_id,
            "timeout": self.timeout,
            "dialect": self.dialect,
            "max_retries": self.max_retries,
            "retry_timeout": self.retry_timeout,
            "background": self.background,
            "cancel_on_close": self.cancel_on_close,
        }

    def _sync_client(self) -> LettaClient:
        if self._client is None:
            self._client = LettaClient(**self._client_options())
        return self._client

    def _async_letta_client(self) -> AsyncLettaClient:
        if self._async_client is None:
            self._async_client = AsyncLettaClient(**self._client_options())
        return self._async_client


class _Notices:
    """Retries and resumes the client reports, passed on to callbacks between batches.

    The client calls its hooks from inside its I/O; the model forwards what they
    recorded from its own loop, where sync and async callbacks can both be called.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[str, dict[str, Any], RetryCallState | None]] = []

    def hooks(self) -> dict[str, Any]:
        return {"on_retry": self._retry, "on_resume": self._resume}

    def _retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        data = {"attempt": state.attempt_number, "error": str(error), "wait": state.upcoming_sleep}
        self._pending.append(("letta.retry", data, state))

    def _resume(self, progress: StreamProgress, error: LettaError) -> None:
        data = {"run_id": progress.run_id, "starting_after": progress.last_seq_id}
        self._pending.append(("letta.resume", {**data, "error": str(error)}, None))

    def flush(
        self, run_manager: CallbackManagerForLLMRun | None, observers: CallbackManager | None
    ) -> None:
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
        pending, self._pending = self._pending, []
        for name, data, state in pending:
            if run_manager and state is not None:
                await run_manager.on_retry(state)
            if observers:
                await observers.on_custom_event(name, data, run_id=observers.parent_run_id)


def _partial(chunks: list[AIMessageChunk]) -> AIMessage | None:
    """What the agent had said when the stream failed, as one message."""
    if not chunks:
        return None
    merged = chunks[0] + chunks[1:] if len(chunks) > 1 else chunks[0]
    return finalize_content(AIMessage(content=merged.content, response_metadata={}))


def _event_name(event: LettaEvent) -> str:
    return f"letta.{event.message_type}"


def _parent_run_callbacks() -> CallbackManager | None:
    """Callbacks of the run this model runs inside, to which each Letta event is dispatched.

    A bare ``model.stream()`` has no parent run: then nothing is dispatched (the
    events are in the chunks anyway), rather than an error per event.
    """
    manager = get_callback_manager_for_config(ensure_config())
    return manager if manager.parent_run_id is not None and manager.handlers else None


def _async_parent_run_callbacks() -> AsyncCallbackManager | None:
    manager = get_async_callback_manager_for_config(ensure_config())
    return manager if manager.parent_run_id is not None and manager.handlers else None


def _result(chunks: Iterator[ChatGenerationChunk] | list[ChatGenerationChunk]) -> ChatResult:
    merged: ChatGenerationChunk | None = None
    for chunk in chunks:
        merged = chunk if merged is None else merged + chunk
    if merged is None:  # pragma: no cover - _stream always yields the last chunk
        raise ValueError("the Letta stream produced no output")
    message = merged.message
    aggregate = AIMessage(
        content=message.content,
        response_metadata=message.response_metadata,
        usage_metadata=getattr(message, "usage_metadata", None),
        id=message.id,
    )
    return ChatResult(generations=[ChatGeneration(message=finalize_content(aggregate))])
