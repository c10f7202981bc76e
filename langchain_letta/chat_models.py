"""ChatLetta: a stateful Letta agent as a LangChain chat model."""

from __future__ import annotations

import asyncio
import copy
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from operator import itemgetter
from typing import Any, Literal, NamedTuple, overload
from uuid import UUID

import httpx
from langchain_core.caches import BaseCache
from langchain_core.callbacks import (
    AsyncCallbackManager,
    AsyncCallbackManagerForLLMRun,
    BaseCallbackHandler,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.output_parsers import (
    JsonOutputKeyToolsParser,
    JsonOutputToolsParser,
    PydanticToolsParser,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableMap,
    RunnablePassthrough,
    RunnableSerializable,
    ensure_config,
)
from langchain_core.runnables.config import (
    get_async_callback_manager_for_config,
    get_callback_manager_for_config,
    get_config_list,
)
from langchain_core.tools import BaseTool
from langchain_core.utils import from_env, secret_from_env
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
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
from pydantic_core import from_json
from tenacity import RetryCallState

from langchain_letta._convert import (
    ChunkBuilder,
    HistoryPolicy,
    as_chunk,
    blank_message,
    conversation_in_history,
    input_messages,
    last_answer,
    nothing_to_send,
    pending_approval_calls,
    select_new_messages,
)
from langchain_letta._strict import check_names, field_names
from langchain_letta._tools import offered_tools, outgoing
from langchain_letta._wire import (
    AsyncEventStream,
    AsyncLettaClient,
    DialectSetting,
    EventStream,
    LettaClient,
    StreamRequest,
    check_credential,
    validate_agent_id,
    validate_base_url,
    validate_conversation_id,
)
from langchain_letta._wire.client import DEFAULT_TOTAL_TIMEOUT
from langchain_letta._wire.requests import VERSIONED_FIELDS, ApprovalDecision, ToolResult
from langchain_letta._wire.retry import DEFAULT_RETRY_TIMEOUT
from langchain_letta.errors import LettaError, LettaPendingApprovalError, StreamProgress
from langchain_letta.events import LettaEvent, ToolCall

DEFAULT_MODEL_NAME = "letta-agent"

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
        "stream_tokens",
        "max_steps",
        "total_timeout",
        *VERSIONED_FIELDS,
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


class ChatLetta(BaseChatModel):
    """A Letta agent as a chat model: its memory, tools and reasoning stay on the server.

    Each call sends only what the agent has not seen (see ``history``) and streams
    back what it does: assistant text, ``reasoning`` blocks, and Letta's own
    server-run tool calls and results as ``server_tool_call`` /
    ``server_tool_result`` blocks (never ``tool_calls``, which LangGraph would try
    to run); a call waiting for the client's approval is such a block with
    ``extras={"requires_approval": True}``, answered with ``approvals=`` on the next
    call, and any other Letta message (approval responses, compaction summaries and
    events) a ``non_standard`` block holding it as sent. Tools the caller runs are
    bound with :meth:`bind_tools` (Letta's client tools): their calls are ordinary
    ``tool_calls``, and the ``ToolMessage`` s answering them go back on the next call.
    The last chunk carries usage, the stop reason, the run id and the
    agent id, which is how a later call recognises this agent's answers.

    Example:
        .. code-block:: python

            from langchain_letta import ChatLetta

            model = ChatLetta(agent_id="agent-…", base_url="http://localhost:8283")
            for chunk in model.stream("Please remember that I like tea."):
                print(chunk.content_blocks)

    The agent can also be chosen per call, so one model serves many agents:
    ``model.invoke(messages, config={"configurable": {"agent_id": "agent-…"}})``.
    A conversation (one of the agent's threads, Letta 0.16.2+) is chosen the same
    way, with ``conversation_id``; ``conversation_per_thread=True`` gives each
    LangGraph thread its own conversation (see :meth:`target_for`).

    A message is never sent twice: requests are retried only while the server
    provably has not accepted them, and a dropped stream of a background run is
    read again from its last ``seq_id``. When that is impossible the
    ``LettaStreamInterruptedError`` carries ``progress`` and ``partial_message``;
    ``model.stream([], resume_from=error.progress)`` reads the rest later.

    ``temperature``, ``max_tokens`` and ``stop`` are accepted for compatibility and
    not sent: a Letta agent's LLM settings live in the agent's configuration.

    Inputs are strict: an unknown argument (``ChatLetta(conversationid=...)``) or
    call keyword (``model.invoke("hi", foo_bar=1)``) raises ``TypeError`` naming the
    closest valid name, and an input with nothing to say (empty or blank text) or
    a ``ToolMessage`` that answers no call raises ``ValueError``; either before
    anything is sent.
    """

    # Inputs stay out of validation errors: a refused api_key must not be shown.
    model_config = ConfigDict(populate_by_name=True, hide_input_in_errors=True)

    cache: BaseCache | bool | None = Field(default=False, exclude=True)
    """Off by default, even when a global LLM cache is set: a cached answer would never
    reach the agent, whose memory would silently miss the turn. ``True`` (the global
    cache) or a cache object opts in, for a stateless use of the agent only."""

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
    """Start a new conversation of the agent (Letta 0.16.2+) for each call that does not
    continue one: a call whose history holds an answer of the agent goes on in that
    answer's conversation (a tool loop, a follow-up), any other gets a fresh one. The
    agent then serves independent requests as a stateless model would (its memory
    blocks still shared), e.g. a batch or an evaluation; the server keeps every
    conversation made. A LangGraph thread with ``conversation_per_thread`` keeps its own."""
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
    """Headers sent with every request (a proxy's or a gateway's, say). Never shown nor
    serialised, since they may carry credentials."""
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
    """Letta's deprecated per-request reasoning switch (0.10.0+). Servers up to 0.16.8
    accept it and do not act on it: the agent's LLM configuration decides."""
    override_system: str | None = None
    """A system prompt for this call instead of the agent's own (Letta 0.16.7+)."""
    include_compaction_messages: bool | None = None
    """Stream ``summary_message`` / ``event_message`` when Letta compacts the agent's
    context (0.16.5+); they come back as ``non_standard`` blocks."""
    timeout: float | None = None
    """Read timeout in seconds (never below the server's ping interval)."""
    total_timeout: float | None = DEFAULT_TOTAL_TIMEOUT
    """Seconds one call may take in all: retries, waits, the stream and its resumes
    (900 by default; ``None``: no limit). Also a call keyword. Past it the call ends
    with ``LettaTimeoutError``, carrying ``progress`` and the partial answer."""
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
    lenient_tool_choice: bool = False
    """Accept a ``tool_choice`` that forces a call (``"any"``, a tool's name), which Letta
    cannot honour per request, as ``"auto"`` (the named tool alone, for a name): the
    agent's LLM decides. ``create_agent(response_format=ToolStrategy(...))`` binds with
    ``tool_choice="any"`` and needs it. Off: such a choice is refused."""

    _clients: _Clients = PrivateAttr(default_factory=lambda: _Clients())
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

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """See :meth:`Runnable.batch`: one input at a time, in order, if two share a thread.

        Turns of one agent thread never overlap (they would be stored interleaved), so
        inputs that go to the same agent thread run in the order given; inputs that
        each go to a thread of their own (other agents, conversations,
        ``conversation_per_call``) run at once, as with any chat model.
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
        chosen = {
            "agent_id": kwargs.get("agent_id"),
            "conversation_id": kwargs.get("conversation_id"),
        }
        targets = [self.target_for(each, **chosen) for each in configs]
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
        config, kwargs = self._traced(config, kwargs)
        run = self._stream_run(config)
        chunks = super().stream(input, config, stop=stop, **kwargs)
        return chunks if run is None else _in_run(chunks, run)

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
        run = self._stream_run(config)
        chunks = super().astream(input, config, stop=stop, **kwargs)
        return chunks if run is None else _ain_run(chunks, run)

    def _stream_run(self, config: RunnableConfig) -> _Run | None:
        """The run ``stream()`` is about to start, if it has handlers to see Letta events.

        LangChain's ``stream()`` does not hand ``_stream`` its run manager, so the run's
        id is chosen here (``config["run_id"]``) and its handlers made as LangChain makes
        them; ``_stream`` finds both while its chunks are read (see :func:`_in_run`).
        """
        handlers = CallbackManager.configure(
            config.get("callbacks"), self.callbacks, self.verbose
        ).handlers
        if not handlers:
            return None
        run_id = config.get("run_id") or uuid.uuid4()
        config["run_id"] = run_id
        return _Run(run_id, handlers)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer tools that the caller runs (Letta's client tools, 0.16.2+) to the agent.

        A call of one comes back as an ordinary ``tool_calls`` entry (its id is
        Letta's ``tool_call_id``) and the run stops with
        ``stop_reason="requires_approval"``: ToolNode, ``create_agent`` or your
        own code runs the tool, and the ``ToolMessage`` s answering the calls are
        sent as the tool results on the next call. The agent's own tools need no
        binding: they run on the server and come back as ``server_tool_call`` /
        ``server_tool_result`` blocks.

        Args:
            tools: LangChain tools, pydantic models, functions or OpenAI-style dicts.
            tool_choice: ``None`` or ``"auto"`` offer the tools, ``"none"`` does not.
                Letta cannot force a call per request, so a forcing choice
                (``"any"``, ``"required"``, ``True``, a tool's name) is refused,
                unless ``lenient_tool_choice`` is set.
            kwargs: Further call keywords to bind.

        Raises:
            ValueError: A tool that cannot be described. Two tools with one name, and
                a ``tool_choice`` that Letta cannot honour, are refused when called,
                before anything is sent.
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

        Letta has no per-request response format or JSON mode, so whatever the
        ``method``, the schema is offered as a client tool the agent calls with its
        answer, and the call's arguments are the output. The agent's run then
        waits for that tool's result: it is answered at once ("Structured output
        received."), in one more request without callbacks, so that the agent is
        not left waiting and its next message goes through. Letta cannot force the
        call: an agent that answers in text instead gives ``None`` (``parsed=None``
        with ``include_raw``), as LangChain's tool parsers do.

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
        answered = _AnsweredTurn(model=self, call_kwargs=bound.kwargs)
        parser: JsonOutputToolsParser
        if isinstance(schema, type) and is_basemodel_subclass(schema):
            parser = PydanticToolsParser(tools=[schema], first_tool_only=True)
        else:
            name = convert_to_openai_tool(schema)["function"]["name"]
            parser = JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
        if not include_raw:
            return answered | parser
        parsed = RunnablePassthrough.assign(
            parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
        )
        unparsed = RunnablePassthrough.assign(parsed=lambda _: None)
        with_fallback = parsed.with_fallbacks([unparsed], exception_key="parsing_error")
        return RunnableMap(raw=answered) | with_fallback

    def pending_approvals(
        self,
        config: RunnableConfig | None = None,
        *,
        agent_id: str | None = None,
        conversation_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """The calls the agent's thread (or conversation) waits for, read from the server.

        For a thread left waiting when the history that asked is gone (a restart,
        another process): answer each call by its ``id`` on the next call,
        ``approvals=[ApprovalDecision(...)]`` for a server tool and
        ``ToolResult(...)`` for a client tool, so the agent is never stuck.
        The target follows :meth:`target_for`.

        Returns:
            ``{"id", "name", "args"}`` per call (``args`` parsed from JSON where it parses).

        Raises:
            ValueError: No agent.
            LettaUnsupportedFeatureError: The server has no approvals (before 0.13).
        """
        agent, conversation = self._waiting_target(config, agent_id, conversation_id)
        client = self._clients.sync(self)
        return [_call_dict(call) for call in client.pending_approval(agent, conversation)]

    async def apending_approvals(
        self,
        config: RunnableConfig | None = None,
        *,
        agent_id: str | None = None,
        conversation_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Async :meth:`pending_approvals`."""
        agent, conversation = self._waiting_target(config, agent_id, conversation_id)
        client = self._clients.async_(self)
        return [_call_dict(call) for call in await client.pending_approval(agent, conversation)]

    def _waiting_target(
        self, config: RunnableConfig | None, agent_id: str | None, conversation_id: str | None
    ) -> tuple[str, str | None]:
        target = self.target_for(config, agent_id=agent_id, conversation_id=conversation_id)
        agent, conversation, _thread_key = self._conversation_for(target, ())
        return agent, conversation

    def _conversation_for(
        self, target: LettaTarget, messages: Sequence[BaseMessage]
    ) -> tuple[str, str | None, tuple[str, str] | None]:
        """The agent, the conversation a call with ``messages`` talks in, and a thread without one.

        The one place that chooses: the conversation named, else the LangGraph
        thread's (remembered, or found in its history), else, with
        ``conversation_per_call``, the one the history continues; ``None`` is the
        agent's own thread. The thread key is returned while that thread has no
        conversation yet (the call creates it).

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
            conversation_id = self._thread_conversations.get(thread_key) or conversation_in_history(
                messages, agent_id
            )
            if conversation_id is not None:
                self._thread_conversations.setdefault(thread_key, conversation_id)
                thread_key = None
        elif conversation_id is None and self.conversation_per_call:
            conversation_id = conversation_in_history(messages, agent_id)
        if conversation_id is not None:
            validate_conversation_id(conversation_id)
        return agent_id, conversation_id, thread_key

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
        the runnable's input dict), else from ``config["configurable"]``
        (``agent_id``, ``conversation_id``), else from this model's fields. With
        ``conversation_per_thread`` and no conversation named, the LangGraph thread
        (``configurable.thread_id``) is returned, whose conversation the call will
        find or create.
        """
        configurable = ensure_config(config).get("configurable", {})
        agent = agent_id or configurable.get("agent_id") or self.agent_id
        conversation = (
            conversation_id or configurable.get("conversation_id") or self.conversation_id
        )
        thread = None
        if conversation is None and self.conversation_per_thread:
            thread = thread_id or configurable.get("thread_id")
        return LettaTarget(
            str(agent) if agent else None,
            str(conversation) if conversation else None,
            str(thread) if thread is not None else None,
        )

    def _traced(
        self, config: RunnableConfig | None, kwargs: dict[str, Any]
    ) -> tuple[RunnableConfig, dict[str, Any]]:
        """Pass the call's target on to ``_stream``, and name it in the run's metadata.

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
        named = {
            "agent_id": target.agent_id,
            "conversation_id": target.conversation_id,
            "thread_id": target.thread_id,
        }
        kwargs = {**kwargs, **{key: value for key, value in named.items() if value}}
        metadata = {**config.get("metadata", {})}
        if target.agent_id:
            metadata["letta_agent_id"] = target.agent_id
        if target.conversation_id:
            metadata["letta_conversation_id"] = target.conversation_id
        return {**config, "metadata": metadata}, kwargs

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        builder, events = self.letta_events(messages, run_manager, kwargs)
        yield from _chunks(builder, events, run_manager)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        builder, events = self.aletta_events(messages, run_manager, kwargs)
        async for chunk in _achunks(builder, events, run_manager):
            yield chunk

    def letta_events(
        self,
        messages: Sequence[BaseMessage],
        run_manager: CallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
        *,
        text_chunks: bool = True,
    ) -> tuple[ChunkBuilder, Iterator[tuple[LettaEvent, AIMessageChunk | None]]]:
        """Each Letta event of one call with the chunk it makes (the core of every surface).

        ``stream``, ``invoke`` and :class:`~langchain_letta.LettaAgentRunnable` all read
        a call through this: the typed events, in order, each paired with its chunk
        (``None`` for an event that makes none, or whose delta is carried by a later
        chunk of the same read). ``kwargs`` are the call keywords (``agent_id``,
        ``approvals``, ``tools``, ...); ``run_manager`` sees retries. With
        ``text_chunks=False`` text and reasoning deltas make no chunk (their
        ``None`` pairs), for a caller that shows no chunk to anyone: the answer is
        the same (``ChunkBuilder.text_chunks``).

        Returns:
            The builder (``message()`` is the answer, ``last_chunk()`` closes the
            stream, once the events are consumed) and the events; nothing is sent
            before the first is asked for.
        """
        call = self._call(messages, kwargs)
        call.builder.text_chunks = text_chunks
        client = self._clients.sync(self)

        def events() -> Iterator[tuple[LettaEvent, AIMessageChunk | None]]:
            if call.needs_conversation:
                call.use_conversation(client.create_conversation(call.agent_id))
            stream = call.open(client)
            observers = _parent_run_callbacks(run_manager)
            notices = call.notices
            try:
                with stream:
                    for batch in stream.batches():
                        notices.flush(run_manager, observers)
                        for event, chunk in call.builder.batch(batch):
                            if observers:
                                observers.on_custom_event(
                                    _event_name(event), event, run_id=observers.parent_run_id
                                )
                            yield event, chunk
            except LettaError as error:
                notices.flush(run_manager, observers)
                _complete(error, messages, call)
                raise
            notices.flush(run_manager, observers)

        return call.builder, events()

    def aletta_events(
        self,
        messages: Sequence[BaseMessage],
        run_manager: AsyncCallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
        *,
        text_chunks: bool = True,
    ) -> tuple[ChunkBuilder, AsyncIterator[tuple[LettaEvent, AIMessageChunk | None]]]:
        """Async twin of :meth:`letta_events`."""
        call = self._call(messages, kwargs)
        call.builder.text_chunks = text_chunks
        client = self._clients.async_(self)

        async def events() -> AsyncIterator[tuple[LettaEvent, AIMessageChunk | None]]:
            if call.needs_conversation:
                call.use_conversation(await client.create_conversation(call.agent_id))
            stream = call.open(client)
            observers = _async_parent_run_callbacks(run_manager)
            notices = call.notices
            try:
                async with stream:
                    async for batch in stream.batches():
                        await notices.aflush(run_manager, observers)
                        for event, chunk in call.builder.batch(batch):
                            if observers:
                                await observers.on_custom_event(
                                    _event_name(event), event, run_id=observers.parent_run_id
                                )
                            yield event, chunk
            except LettaError as error:
                await notices.aflush(run_manager, observers)
                _complete(error, messages, call)
                raise
            await notices.aflush(run_manager, observers)

        return call.builder, events()

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        shown = _shown(run_manager)
        builder, events = self.letta_events(messages, run_manager, kwargs, text_chunks=shown)
        for _chunk in _chunks(builder, events, run_manager):
            pass  # the callbacks see every chunk; the answer is the builder's
        return _result(builder)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        shown = _shown(run_manager)
        builder, events = self.aletta_events(messages, run_manager, kwargs, text_chunks=shown)
        async for _chunk in _achunks(builder, events, run_manager):
            pass
        return _result(builder)

    def _call(self, messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> _Call:
        """Plan one call: its target, what it sends, and the builder of its chunks.

        Raises:
            TypeError: A call keyword ChatLetta does not take (see ``CALL_KEYWORDS``).
            ValueError: No agent, an invalid id, nothing new to send, blank text, or a
                ``ToolMessage`` that answers no call.
        """
        check_names(kwargs, CALL_KEYWORDS, "ChatLetta", "call keyword")
        target = self.target_for(
            ensure_config(),
            agent_id=kwargs.get("agent_id"),
            conversation_id=kwargs.get("conversation_id"),
            thread_id=kwargs.get("thread_id"),
        )
        agent_id, conversation_id, thread_key = self._conversation_for(target, messages)
        model = kwargs.get("model") or self.model
        resume_from = kwargs.get("resume_from")
        fresh = thread_key is not None or (
            conversation_id is None and self.conversation_per_call and resume_from is None
        )
        selected = select_new_messages(
            messages, agent_id, self.history, conversation_id, fresh=fresh
        )
        approvals = _approvals(kwargs.get("approvals"))
        if not selected and not approvals and resume_from is None:
            raise ValueError(nothing_to_send(messages, agent_id))
        blank = None if resume_from is not None else blank_message(selected, agent_id)
        if blank is not None:
            raise ValueError(blank)
        position = last_answer(messages, agent_id, conversation_id, fresh=fresh)
        answer = None if position is None else messages[position]
        tools = offered_tools(
            kwargs.get("tools"), kwargs.get("tool_choice"), lenient=self.lenient_tool_choice
        )
        request = StreamRequest(
            messages=outgoing(selected, answer, approvals),
            client_tools=tools,
            stream_tokens=kwargs.get("stream_tokens", self.stream_tokens),
            max_steps=kwargs.get("max_steps", self.max_steps),
            override_model=model,
            # fields and call keywords; the client refuses each where the release lacks it
            **{name: kwargs.get(name, getattr(self, name)) for name in VERSIONED_FIELDS},
        )
        builder = ChunkBuilder(
            agent_id,
            model or DEFAULT_MODEL_NAME,
            conversation_id,
            client_tools=[tool.name for tool in tools or ()],
        )
        total_timeout = kwargs.get("total_timeout")
        return _Call(
            self, agent_id, request, builder, (thread_key, fresh), resume_from, total_timeout
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


STRUCTURED_OUTPUT_RECEIVED = "Structured output received."
"""The result ``with_structured_output`` gives the agent for its structured answer."""


class _AnsweredTurn(RunnableSerializable[LanguageModelInput, AIMessage]):
    """The model called with the output tool, whose call of that tool is answered at once.

    The answer goes in a second request, made without the caller's callbacks: it
    is housekeeping (the agent's reply to it is not part of the output), and a
    traced second model call would count as a second answer. The model is called
    itself, not through a binding, whose config would take the callbacks back
    from the surrounding run.
    """

    model: ChatLetta
    call_kwargs: dict[str, Any]
    """The keywords of every call: the tool and the structured output format."""

    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AIMessage:
        messages = input_messages(input)
        options = {**self.call_kwargs, **kwargs}
        reply = self.model.invoke(messages, config, **options)
        results = _received(reply)
        if results:
            self.model.invoke([*messages, reply, *results], _untraced(config), **options)
        return reply

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[AIMessage]:
        """The answer as one chunk, which a tool parser downstream reads as it streams."""
        yield as_chunk(self.invoke(input, config, **kwargs))

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessage]:
        """Async :meth:`stream`."""
        yield as_chunk(await self.ainvoke(input, config, **kwargs))

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AIMessage:
        messages = input_messages(input)
        options = {**self.call_kwargs, **kwargs}
        reply = await self.model.ainvoke(messages, config, **options)
        results = _received(reply)
        if results:
            closing = [*messages, reply, *results]
            await self.model.ainvoke(closing, _untraced(config), **options)
        return reply


def _received(reply: AIMessage) -> list[ToolMessage]:
    """The results that close a structured answer: one per client tool call it made."""
    return [
        ToolMessage(STRUCTURED_OUTPUT_RECEIVED, tool_call_id=str(call["id"]))
        for call in reply.tool_calls
    ]


def _untraced(config: RunnableConfig | None) -> RunnableConfig:
    # A manager of its own, with no handler and no parent: nothing inherited is called.
    no_callbacks = CallbackManager(handlers=[])
    return {
        **ensure_config(config),
        "callbacks": no_callbacks,
        "run_name": "letta_structured_close",
    }


class _Clients:
    """A model's HTTP clients, made on first use and reused, so calls share connections.

    A copy of the model (``deepcopy``, ``pickle``, ``model_copy(deep=True)``) starts
    without clients: connections and locks cannot be copied, and a copy opens its own.
    The async client belongs to the event loop that made it: ``asyncio.run`` twice
    gets a new one, since pooled connections cannot move between loops.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sync: LettaClient | None = None
        self._async: tuple[asyncio.AbstractEventLoop, AsyncLettaClient] | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> _Clients:
        return _Clients()

    def __reduce__(self) -> tuple[type[_Clients], tuple[()]]:
        return (_Clients, ())

    def sync(self, model: ChatLetta) -> LettaClient:
        with self._lock:
            if self._sync is None:
                self._sync = LettaClient(http_client=model.http_client, **model._client_options())
            return self._sync

    def async_(self, model: ChatLetta) -> AsyncLettaClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._async is None or self._async[0] is not loop:
                http = model.http_async_client
                self._async = (loop, AsyncLettaClient(http_client=http, **model._client_options()))
            return self._async[1]

    def close(self) -> None:
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        self.close()
        with self._lock:
            made, self._async = self._async, None
        if made is not None and made[0] is asyncio.get_running_loop():
            await made[1].aclose()


class _Call:
    """One planned call; the sync and async paths differ only in how they do its I/O.

    Attributes:
        agent_id: The agent.
        request: What is sent.
        builder: Turns the call's events into chunks; knows the conversation.
        notices: Retries and resumes reported by the client, for the callbacks.
    """

    def __init__(
        self,
        model: ChatLetta,
        agent_id: str,
        request: StreamRequest,
        builder: ChunkBuilder,
        new_conversation: tuple[tuple[str, str] | None, bool],
        resume_from: StreamProgress | None,
        total_timeout: float | None,
    ) -> None:
        self._model = model
        self._total_timeout = total_timeout
        self.agent_id = agent_id
        self.request = request
        self.builder = builder
        self._thread_key, self._fresh = new_conversation
        self._resume_from = resume_from
        self.notices = _Notices()

    @property
    def needs_conversation(self) -> bool:
        """Whether the call starts a conversation (its thread's, or its own): create one first."""
        return self._fresh

    def use_conversation(self, created: str) -> None:
        """Talk in the conversation just created, and remember it for the thread.

        If another call of the same thread created one meanwhile, the first one
        remembered wins, so that the thread's turns never split across two.
        """
        if self._thread_key is not None:
            created = self._model._thread_conversations.setdefault(self._thread_key, created)
        self.builder.conversation_id = created
        self._fresh = False

    @overload
    def open(self, client: LettaClient) -> EventStream: ...

    @overload
    def open(self, client: AsyncLettaClient) -> AsyncEventStream: ...

    def open(self, client: LettaClient | AsyncLettaClient) -> EventStream | AsyncEventStream:
        """The event stream of this call on ``client`` (sync or async alike)."""
        hooks = {**self.notices.hooks(), "total_timeout": self._total_timeout}
        if self._resume_from is not None:
            return client.resume(self.agent_id, self._resume_from, **hooks)
        conversation_id = self.builder.conversation_id
        return client.stream(self.agent_id, self.request, conversation_id=conversation_id, **hooks)


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
        # tenacity reuses its state for the next attempt before the callbacks run: keep
        # this retry's attempt and outcome as they are now.
        self._pending.append(("letta.retry", data, copy.copy(state)))

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


def _call_dict(call: ToolCall) -> dict[str, Any]:
    """A waiting call as the caller answers it: its id, the tool's name, the arguments."""
    try:  # from_json: a hostile depth is a ValueError, not a RecursionError
        args = from_json(call.arguments or "{}")
    except ValueError:
        args = call.arguments
    return {"id": call.tool_call_id, "name": call.name, "args": args}


def _approvals(given: Any) -> list[ApprovalDecision | ToolResult]:
    """The ``approvals=`` call keyword: answers to calls a run waits for.

    Raises:
        TypeError: Anything but a list of ``ApprovalDecision`` and ``ToolResult``.
    """
    answers = list(given or ())
    for item in answers:
        if not isinstance(item, (ApprovalDecision, ToolResult)):
            raise TypeError(
                "approvals= takes ApprovalDecision (a server tool) and ToolResult (a client "
                f"tool) objects, not {type(item).__name__}"
            )
    return answers


def _complete(error: LettaError, messages: Sequence[BaseMessage], call: _Call) -> None:
    """Add what the client knows to an error: the partial answer, the calls still pending."""
    error.partial_message = call.builder.partial()
    if isinstance(error, LettaPendingApprovalError) and not error.pending_tool_calls:
        conversation_id = call.builder.conversation_id
        error.pending_tool_calls = pending_approval_calls(messages, call.agent_id, conversation_id)


def _event_name(event: LettaEvent) -> str:
    return f"letta.{event.message_type}"


class _Run(NamedTuple):
    """A model run of ``stream()``: its id and the handlers its Letta events go to."""

    run_id: UUID
    handlers: list[BaseCallbackHandler]


_STREAM_RUN: ContextVar[_Run | None] = ContextVar("letta_stream_run", default=None)
"""The run whose chunks are being read, set only while ``_stream`` makes them."""


def _in_run(chunks: Iterator[AIMessageChunk], run: _Run) -> Iterator[AIMessageChunk]:
    """``chunks``, each made with ``run`` known to ``_stream`` (never to the consumer)."""
    try:
        while True:
            token = _STREAM_RUN.set(run)
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            finally:
                _STREAM_RUN.reset(token)
            yield chunk
    finally:
        chunks.close()  # type: ignore[attr-defined]  # a generator


async def _ain_run(
    chunks: AsyncIterator[AIMessageChunk], run: _Run
) -> AsyncIterator[AIMessageChunk]:
    """Async :func:`_in_run`."""
    try:
        while True:
            token = _STREAM_RUN.set(run)
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            finally:
                _STREAM_RUN.reset(token)
            yield chunk
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]  # an async generator


def _parent_run_callbacks(run_manager: CallbackManagerForLLMRun | None) -> CallbackManager | None:
    """The callbacks to which each Letta event is dispatched, as a custom event.

    Inside a chain or a graph node, the run that called the model gets them (where
    ``dispatch_custom_event`` would put them); a bare model's run gets them itself. The
    model's own handlers (its constructor's ``callbacks``) see them either way.
    """
    parent = get_callback_manager_for_config(ensure_config())
    handlers, run_id = _observers(parent.handlers, parent.parent_run_id, run_manager)
    return CallbackManager(handlers=handlers, parent_run_id=run_id) if run_id else None


def _async_parent_run_callbacks(
    run_manager: AsyncCallbackManagerForLLMRun | None,
) -> AsyncCallbackManager | None:
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
    if run_manager is not None:
        own, own_run_id = run_manager.handlers, run_manager.run_id
    elif (run := _STREAM_RUN.get()) is not None:
        own, own_run_id = run.handlers, run.run_id
    if parent_run_id is None:
        return list(own), own_run_id if own else None
    handlers = [*inherited, *(handler for handler in own if handler not in inherited)]
    return handlers, parent_run_id if handlers else None


def _chunks(
    builder: ChunkBuilder,
    events: Iterator[tuple[LettaEvent, AIMessageChunk | None]],
    run_manager: CallbackManagerForLLMRun | None,
) -> Iterator[ChatGenerationChunk]:
    """The chunks of a call, each shown to ``on_llm_new_token``, then the closing one."""
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


async def _achunks(
    builder: ChunkBuilder,
    events: AsyncIterator[tuple[LettaEvent, AIMessageChunk | None]],
    run_manager: AsyncCallbackManagerForLLMRun | None,
) -> AsyncIterator[ChatGenerationChunk]:
    """Async twin of :func:`_chunks`."""
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


def _shown(run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None) -> bool:
    """Whether a call's chunks are shown to anyone: a callback handler (tracers included)."""
    return run_manager is not None and bool(run_manager.handlers)


def _result(builder: ChunkBuilder) -> ChatResult:
    """The answer of a finished call, as LangChain's merge of its chunks would give it."""
    return ChatResult(generations=[ChatGeneration(message=builder.message())])
