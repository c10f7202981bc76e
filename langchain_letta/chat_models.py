"""ChatLetta: a stateful Letta agent as a LangChain chat model."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

import httpx
from langchain_core.caches import BaseCache
from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    ensure_config,
)
from langchain_core.runnables.config import get_config_list
from langchain_core.tools import BaseTool
from langchain_core.utils import from_env, secret_from_env
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from langchain_letta._calls import (
    AsyncInScope,
    Call,
    CallDefaults,
    CallScope,
    Clients,
    InScope,
    Pair,
    ageneration_chunks,
    chat_result,
    generation_chunks,
    plan_call,
    resolved_target,
    scoped,
    shown_to_callbacks,
    stream_run,
    with_target_metadata,
)
from langchain_letta._chunks import DEFAULT_MODEL_NAME, ChunkBuilder
from langchain_letta._requests import (
    CALL_KEYWORDS,
    REQUEST_FIELDS,
    CallOptions,
    HistoryPolicy,
    LettaTarget,
    choose_conversation,
    choose_target,
)
from langchain_letta._strict import check_names, field_names
from langchain_letta._structured import STRUCTURED_OUTPUT_RECEIVED, AnsweredTurn, structured_output
from langchain_letta._tools import waiting_call
from langchain_letta._wire import (
    DEFAULT_TOTAL_TIMEOUT,
    AsyncLettaClient,
    DialectSetting,
    LettaClient,
    check_credential,
    validate_agent_id,
    validate_base_url,
    validate_conversation_id,
)
from langchain_letta._wire.retry import DEFAULT_RETRY_TIMEOUT

__all__ = [
    "CALL_KEYWORDS",
    "DEFAULT_MODEL_NAME",
    "STRUCTURED_OUTPUT_RECEIVED",
    "CallOptions",
    "ChatLetta",
    "LettaTarget",
]


class ChatLetta(BaseChatModel):
    """A Letta agent as a chat model: its memory, tools and reasoning stay on the server.

    Each call sends only what the agent has not seen (see ``history``) and streams
    back what it does: text, ``reasoning`` blocks, and the agent's own tool calls
    and results as ``server_tool_call`` / ``server_tool_result`` blocks (never
    ``tool_calls``, which LangGraph would run). Tools the caller runs are bound with
    :meth:`bind_tools`. The last chunk carries usage, the stop reason, the run id and
    the agent id, by which a later call recognises this agent's answers.

    Example:
        .. code-block:: python

            from langchain_letta import ChatLetta

            model = ChatLetta(agent_id="agent-…", base_url="http://localhost:8283")
            for chunk in model.stream("Please remember that I like tea."):
                print(chunk.content_blocks)

    The agent and the conversation may be chosen per call (see :meth:`target_for`).
    A message is never sent twice; a stream that cannot be read to its end raises
    an error carrying ``progress`` and ``partial_message``, and
    ``model.stream([], resume_from=error.progress)`` reads the rest. An unknown
    argument or call keyword raises ``TypeError``, and an input with nothing to
    send ``ValueError``, before anything is sent. ``temperature``, ``max_tokens``
    and ``stop`` are accepted and not sent: the agent's configuration decides.
    """

    # Inputs stay out of validation errors: a refused api_key must not be shown.
    model_config = ConfigDict(populate_by_name=True, hide_input_in_errors=True)

    cache: BaseCache | bool | None = Field(default=False, exclude=True)
    """Off by default, even with a global LLM cache: a cached answer never reaches the agent,
    whose memory would miss the turn. ``True`` or a cache opts in (stateless use only)."""

    agent_id: str | None = None
    """The agent to talk to; may be given per call instead (``configurable.agent_id``)."""
    conversation_id: str | None = None
    """A conversation of the agent (Letta 0.16.2+) to talk in; may be given per call
    (``configurable.conversation_id``). ``None``: the agent's own thread."""
    conversation_per_thread: bool = False
    """Give each LangGraph thread (``configurable.thread_id``) its own conversation of
    the agent, created on first use and remembered, so that one agent serves many
    threads in parallel without their turns mixing."""
    conversation_per_call: bool = False
    """Start a new conversation of the agent (Letta 0.16.2+) for each call whose history
    continues none (no answer of the agent in it), so independent requests (a batch, an
    evaluation) do not mix; the server keeps every conversation made."""
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
    default_headers: Mapping[str, str] | None = Field(default=None, exclude=True, repr=False)
    """Headers sent with every request; never shown nor serialised (credentials)."""
    http_client: httpx.Client | None = Field(default=None, exclude=True)
    """An ``httpx.Client`` for sync calls, used as it is (a custom transport, TLS, a
    proxy, a mock); its owner closes it. ``None``: httpx's own, made on first use."""
    http_async_client: httpx.AsyncClient | None = Field(default=None, exclude=True)
    """An ``httpx.AsyncClient`` for async calls, used as it is. ``None``: aiohttp's
    (through httpx-aiohttp) on asyncio, made on first use in each event loop."""
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
    include_return_message_types: list[str] | None = None
    """Only these Letta ``message_type`` values come back (Letta 0.8.3+); all if unset."""
    enable_thinking: bool | None = None
    """Letta's deprecated reasoning switch (0.10.0+); servers accept it, never act on it."""
    override_system: str | None = None
    """A system prompt for this call instead of the agent's own (Letta 0.16.7+)."""
    include_compaction_messages: bool | None = None
    """Stream ``summary_message`` / ``event_message`` when Letta compacts the agent's
    context (0.16.5+); they come back as ``non_standard`` blocks."""
    timeout: float | None = None
    """Read timeout in seconds (never below the server's ping interval)."""
    total_timeout: float | None = DEFAULT_TOTAL_TIMEOUT
    """Seconds one call may take in all, retries and resumes included (``None``: no limit);
    also a call keyword. Past it the call raises ``LettaTimeoutError``."""
    max_retries: int = 2
    """Retries of a request the server provably did not accept (refused, 429, 502-504);
    also how many resumes in a row may bring nothing new (a busy thread is waited for)."""
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
    lenient_tool_choice: bool = False
    """Take a ``tool_choice`` that forces a call, which Letta cannot honour, as ``"auto"``
    (the named tool alone, for a name); ``create_agent`` with ``ToolStrategy`` needs it."""

    _clients: Clients = PrivateAttr(default_factory=Clients)
    _thread_conversations: dict[tuple[str, str], str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_arguments(cls, values: Any) -> Any:
        """A misspelt argument is an error naming the closest one, never a silent default."""
        if isinstance(values, dict):
            check_names(values, field_names(cls), cls.__name__)
        return values

    @field_validator("agent_id")
    @classmethod
    def _check_agent_id(cls, value: str | None) -> str | None:
        return None if value is None else validate_agent_id(value)

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        return None if value is None else validate_base_url(value)

    @field_validator("api_key", "password", mode="before")
    @classmethod
    def _check_credentials(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or not isinstance(value, (str, SecretStr)):
            return value
        return check_credential(str(info.field_name), value)

    @field_validator("conversation_id")
    @classmethod
    def _check_conversation_id(cls, value: str | None) -> str | None:
        return None if value is None else validate_conversation_id(value)

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
        return {
            "agent_id": self.agent_id,
            "conversation_id": self.conversation_id,
            "model": self.model,
            "stream_tokens": self.stream_tokens,
        }

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
        config, kwargs, target = self._traced(config, kwargs)
        with scoped(CallScope(target)):
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
        config, kwargs, target = self._traced(config, kwargs)
        with scoped(CallScope(target)):
            return await super().ainvoke(input, config, stop=stop, **kwargs)

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """See :meth:`Runnable.batch`: one input at a time, in order, if two share a thread.

        Turns of one agent thread never overlap (they would be stored interleaved);
        inputs that each go to a thread of their own run at once.
        """
        configs = self._in_turn(len(inputs), config, kwargs)
        return super().batch(inputs, configs, return_exceptions=return_exceptions, **kwargs)

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Async :meth:`batch`."""
        configs = self._in_turn(len(inputs), config, kwargs)
        return await super().abatch(inputs, configs, return_exceptions=return_exceptions, **kwargs)

    def _in_turn(
        self,
        count: int,
        config: RunnableConfig | list[RunnableConfig] | None,
        kwargs: dict[str, Any],
    ) -> list[RunnableConfig]:
        """A batch's configs, made to run one at a time when two inputs share a thread."""
        configs = get_config_list(config, count)
        if self.conversation_per_call:
            return configs
        agent_id, conversation_id = kwargs.get("agent_id"), kwargs.get("conversation_id")
        targets = [
            self.target_for(each, agent_id=agent_id, conversation_id=conversation_id)
            for each in configs
        ]
        if len(set(targets)) == len(targets):
            return configs
        return [{**each, "max_concurrency": 1} for each in configs]

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        """See :meth:`BaseChatModel.stream`; ``configurable.agent_id`` picks the agent."""
        config, kwargs, target = self._traced(config, kwargs)
        scope = CallScope(target, stream_run(config, self.callbacks, self.verbose))
        return InScope(super().stream(input, config, stop=stop, **kwargs), scope)

    def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        """See :meth:`BaseChatModel.astream`; ``configurable.agent_id`` picks the agent."""
        config, kwargs, target = self._traced(config, kwargs)
        scope = CallScope(target, stream_run(config, self.callbacks, self.verbose))
        return AsyncInScope(super().astream(input, config, stop=stop, **kwargs), scope)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer tools that the caller runs (Letta's client tools, 0.16.2+) to the agent.

        A call of one comes back as an ordinary ``tool_calls`` entry and the run
        stops with ``stop_reason="requires_approval"``; the ``ToolMessage`` s
        answering the calls go back on the next call.

        Args:
            tools: LangChain tools, pydantic models, functions or OpenAI-style dicts.
            tool_choice: ``None`` or ``"auto"`` offer the tools, ``"none"`` does not;
                a forcing choice is refused unless ``lenient_tool_choice`` is set.
            kwargs: Further call keywords to bind.

        Raises:
            ValueError: A tool that cannot be described.
            TypeError: A keyword that a call does not take (see ``CALL_KEYWORDS``).
        """
        check_names(kwargs, CALL_KEYWORDS, "ChatLetta.bind_tools", "keyword")
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        include_raw: bool = False,
        method: Literal["function_calling", "json_schema", "json_mode"] = "function_calling",
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Answers as ``schema`` (pydantic, TypedDict or JSON schema), through a client tool.

        Letta has no response format nor JSON mode: whatever the ``method``, the
        schema is a client tool whose call's arguments are the output, and that
        call is answered at once so the agent is not left waiting. An agent that
        answers in text instead gives ``None``, as LangChain's tool parsers do.

        Args:
            schema: The output's schema.
            include_raw: Return ``{"raw", "parsed", "parsing_error"}``.
            method: Accepted for compatibility; every method uses a client tool.
            kwargs: ``strict`` is accepted and has no effect (Letta's client tools
                have no strict mode); anything else is refused.

        Raises:
            ValueError: No ``schema``, or unknown keywords.
        """
        if schema is None:
            raise ValueError(
                f"ChatLetta needs a schema for structured output (method={method!r}): Letta "
                "has no JSON mode, the schema becomes a tool the agent calls"
            )
        if set(kwargs) - {"strict"}:
            raise ValueError(f"Received unsupported arguments {kwargs}")
        bound: Any = self.bind_tools(
            [schema],
            ls_structured_output_format={
                "kwargs": {"method": method, "strict": kwargs.get("strict")},
                "schema": schema,
            },
        )
        return structured_output(
            AnsweredTurn(model=self, call_kwargs=bound.kwargs), schema, include_raw
        )

    def pending_approvals(
        self,
        config: RunnableConfig | None = None,
        *,
        agent_id: str | None = None,
        conversation_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """The calls the agent's thread (or conversation) waits for, read from the server.

        For a thread whose history is gone: answer each call by its ``id`` on the
        next call (``approvals=[ApprovalDecision(...)]`` for a server tool,
        ``ToolResult(...)`` for a client tool). The target follows :meth:`target_for`.

        Returns:
            ``{"id", "name", "args"}`` per call (``args`` parsed from JSON where it parses).

        Raises:
            ValueError: No agent.
            LettaUnsupportedFeatureError: The server has no approvals (before 0.13).
        """
        agent, conversation = self._waiting_target(config, agent_id, conversation_id)
        calls = self._sync_client().pending_approval(agent, conversation)
        return [waiting_call(call) for call in calls]

    async def apending_approvals(
        self,
        config: RunnableConfig | None = None,
        *,
        agent_id: str | None = None,
        conversation_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Async :meth:`pending_approvals`."""
        agent, conversation = self._waiting_target(config, agent_id, conversation_id)
        calls = await self._async_client().pending_approval(agent, conversation)
        return [waiting_call(call) for call in calls]

    def thread_conversation(self, config: RunnableConfig | None = None) -> str | None:
        """The conversation the config's LangGraph thread talks in, once it has one."""
        return self._waiting_target(config, None, None)[1] if self.conversation_per_thread else None

    def _waiting_target(
        self, config: RunnableConfig | None, agent_id: str | None, conversation_id: str | None
    ) -> tuple[str, str | None]:
        target = self.target_for(config, agent_id=agent_id, conversation_id=conversation_id)
        per_call = self.conversation_per_call
        chosen = choose_conversation(target, (), self._thread_conversations, per_call=per_call)
        return chosen.agent_id, chosen.conversation_id

    def target_for(
        self,
        config: RunnableConfig | None = None,
        *,
        agent_id: str | None = None,
        conversation_id: str | None = None,
        thread_id: str | None = None,
    ) -> LettaTarget:
        """Where a call goes; the one rule every surface of this package follows.

        The agent and the conversation are each taken from the call (a keyword, or
        the runnable's input dict), else from ``config["configurable"]``, else from
        this model's fields. With ``conversation_per_thread`` and no conversation
        named, the LangGraph thread (``configurable.thread_id``) is returned, whose
        conversation the call will find or create.
        """
        named = LettaTarget(agent_id, conversation_id, thread_id)
        fields = LettaTarget(self.agent_id, self.conversation_id, None)
        return choose_target(config, named, fields, per_thread=self.conversation_per_thread)

    def _traced(
        self, config: RunnableConfig | None, kwargs: dict[str, Any]
    ) -> tuple[RunnableConfig, dict[str, Any], LettaTarget]:
        """Resolve the call's target, pass it on in the keywords and name it in the run's metadata.

        The agent and conversation may come from the config; ``_stream`` receives
        them as keywords whichever entry point was used, and LangSmith shows them.
        """
        config = ensure_config(config)
        target = self.target_for(
            config,
            agent_id=kwargs.get("agent_id"),
            conversation_id=kwargs.get("conversation_id"),
            thread_id=kwargs.get("thread_id"),
        )
        kwargs = {**kwargs, **{key: value for key, value in target._asdict().items() if value}}
        return with_target_metadata(config, target), kwargs, target

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        builder, events = self.letta_events(messages, run_manager, CallOptions.parse(kwargs))
        return generation_chunks(builder, events, run_manager)

    def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        builder, events = self.aletta_events(messages, run_manager, CallOptions.parse(kwargs))
        return ageneration_chunks(builder, events, run_manager)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        options = CallOptions.parse(kwargs)
        shown = shown_to_callbacks(run_manager)
        builder, events = self.letta_events(messages, run_manager, options, text_chunks=shown)
        for _chunk in generation_chunks(builder, events, run_manager):
            pass  # the callbacks see every chunk; the answer is the builder's
        return chat_result(builder)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        options = CallOptions.parse(kwargs)
        shown = shown_to_callbacks(run_manager)
        builder, events = self.aletta_events(messages, run_manager, options, text_chunks=shown)
        async for _chunk in ageneration_chunks(builder, events, run_manager):
            pass
        return chat_result(builder)

    def letta_events(
        self,
        messages: Sequence[BaseMessage],
        run_manager: CallbackManagerForLLMRun | None = None,
        options: CallOptions | Mapping[str, Any] | None = None,
        *,
        target: LettaTarget | None = None,
        text_chunks: bool = True,
    ) -> tuple[ChunkBuilder, Iterator[Pair]]:
        """Each Letta event of one call, in order, with the chunk it makes (or ``None``).

        Every surface (``stream``, ``invoke``, :class:`~langchain_letta.LettaAgentRunnable`)
        reads a call through this.

        Args:
            messages: The call's input.
            run_manager: The run that sees retries and the Letta events.
            options: The call keywords (``agent_id``, ``approvals``, ``tools``, ...),
                as :class:`CallOptions` or as a dict of keywords.
            target: Where the call goes, if the caller resolved it with
                :meth:`target_for`; else resolved here.
            text_chunks: ``False``: text and reasoning deltas make no chunk, for a
                caller that shows no chunk to anyone; the answer is the same.

        Returns:
            The builder (``message()`` is the answer once the events are consumed)
            and the events; nothing is sent before the first is asked for.
        """
        call = self._plan(messages, CallOptions.of(options), target, text_chunks)
        return call.builder, call.events(self._sync_client(), run_manager)

    def aletta_events(
        self,
        messages: Sequence[BaseMessage],
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        options: CallOptions | Mapping[str, Any] | None = None,
        *,
        target: LettaTarget | None = None,
        text_chunks: bool = True,
    ) -> tuple[ChunkBuilder, AsyncIterator[Pair]]:
        """Async :meth:`letta_events`."""
        call = self._plan(messages, CallOptions.of(options), target, text_chunks)
        return call.builder, call.aevents(self._async_client(), run_manager)

    def _plan(
        self,
        messages: Sequence[BaseMessage],
        options: CallOptions,
        target: LettaTarget | None,
        text_chunks: bool,
    ) -> Call:
        """Plan one call: its target (resolved here if not given), then :func:`plan_call`.

        Raises:
            ValueError: No agent, an invalid id, or what :func:`plan_call` refuses.
        """
        named = options.named_target
        if target is None:
            target = resolved_target(named) or self.target_for(ensure_config(), **named._asdict())
        chosen = choose_conversation(
            target, messages, self._thread_conversations, per_call=self.conversation_per_call
        )
        defaults = CallDefaults(
            history=self.history,
            conversation_per_call=self.conversation_per_call,
            lenient_tool_choice=self.lenient_tool_choice,
            model=self.model,
            request_fields={name: getattr(self, name) for name in REQUEST_FIELDS},
        )
        call = plan_call(messages, options, chosen, defaults, self._thread_conversations)
        call.builder.text_chunks = text_chunks
        return call

    def _sync_client(self) -> LettaClient:
        return self._clients.sync(
            lambda: LettaClient(http_client=self.http_client, **self._client_options())
        )

    def _async_client(self) -> AsyncLettaClient:
        return self._clients.async_(
            lambda: AsyncLettaClient(http_client=self.http_async_client, **self._client_options())
        )

    def _client_options(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "api_key": self.api_key,
            "password": self.password,
            "user_id": self.user_id,
            "headers": self.default_headers,
            "timeout": self.timeout,
            "total_timeout": self.total_timeout,
            "dialect": self.dialect,
            "max_retries": self.max_retries,
            "retry_timeout": self.retry_timeout,
            "background": self.background,
            "cancel_on_close": self.cancel_on_close,
        }

    def close(self) -> None:
        """Close the model's connections (a later call opens new ones)."""
        self._clients.close()

    async def aclose(self) -> None:
        """Close the model's connections, the async ones included."""
        await self._clients.aclose()

    def __enter__(self) -> ChatLetta:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> ChatLetta:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
