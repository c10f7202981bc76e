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

from langchain_letta._convert import (
    ChunkBuilder,
    HistoryPolicy,
    finalize_content,
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
    """Retries allowed before the server accepted a request (with the resume work)."""
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

    # The agent may come from the call's config; pass it on as a keyword so that it
    # reaches `_stream` whichever entry point was used.
    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """See :meth:`BaseChatModel.invoke`; ``configurable.agent_id`` picks the agent."""
        return super().invoke(input, config, stop=stop, **_with_agent(config, kwargs))

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        """See :meth:`BaseChatModel.ainvoke`; ``configurable.agent_id`` picks the agent."""
        return await super().ainvoke(input, config, stop=stop, **_with_agent(config, kwargs))

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        """See :meth:`BaseChatModel.stream`; ``configurable.agent_id`` picks the agent."""
        return super().stream(input, config, stop=stop, **_with_agent(config, kwargs))

    def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        """See :meth:`BaseChatModel.astream`; ``configurable.agent_id`` picks the agent."""
        return super().astream(input, config, stop=stop, **_with_agent(config, kwargs))

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        agent_id, request, builder = self._prepare(messages, kwargs)
        observers = _parent_run_callbacks()
        with self._sync_client().stream(agent_id, request) as events:
            for batch in events.batches():
                for event in batch:
                    if observers:
                        observers.on_custom_event(
                            _event_name(event), event, run_id=observers.parent_run_id
                        )
                    message = builder.chunk(event)
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
        agent_id, request, builder = self._prepare(messages, kwargs)
        observers = _async_parent_run_callbacks()
        async with self._async_letta_client().stream(agent_id, request) as events:
            async for batch in events.batches():
                for event in batch:
                    if observers:
                        await observers.on_custom_event(
                            _event_name(event), event, run_id=observers.parent_run_id
                        )
                    message = builder.chunk(event)
                    if message is not None:
                        chunk = ChatGenerationChunk(message=message)
                        if run_manager:
                            await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                        yield chunk
        chunk = ChatGenerationChunk(message=builder.last_chunk())
        if run_manager:
            await run_manager.on_llm_new_token("", chunk=chunk)
        yield chunk

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
        selected = select_new_messages(messages, agent_id, self.history)
        if not selected:
            raise ValueError(
                "nothing new to send to the Letta agent: the history ends with its own answer"
            )
        model = kwargs.get("model") or self.model
        request = StreamRequest(
            messages=[to_outgoing(message) for message in selected],
            stream_tokens=kwargs.get("stream_tokens", self.stream_tokens),
            max_steps=kwargs.get("max_steps", self.max_steps),
            override_model=model,
        )
        return agent_id, request, ChunkBuilder(agent_id, model or DEFAULT_MODEL_NAME)

    def _agent_for_call(self, kwargs: dict[str, Any]) -> str:
        agent_id = (
            kwargs.get("agent_id")
            or ensure_config().get("configurable", {}).get("agent_id")
            or self.agent_id
        )
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
        }

    def _sync_client(self) -> LettaClient:
        if self._client is None:
            self._client = LettaClient(**self._client_options())
        return self._client

    def _async_letta_client(self) -> AsyncLettaClient:
        if self._async_client is None:
            self._async_client = AsyncLettaClient(**self._client_options())
        return self._async_client


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


def _with_agent(config: RunnableConfig | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    agent_id = (config or {}).get("configurable", {}).get("agent_id")
    if agent_id and "agent_id" not in kwargs:
        return {**kwargs, "agent_id": agent_id}
    return kwargs


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
