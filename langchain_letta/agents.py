"""LettaAgentRunnable: a Letta agent as a Runnable, for users who think in agents.

Where :class:`~langchain_letta.ChatLetta` is a chat model (messages in, message
chunks out), this runnable is the agent itself: it takes a question, streams the
typed Letta events as they happen (reasoning, tool calls and results, text) and
answers with a :class:`LettaResponse`, an ``AIMessage`` that also carries the run
id, the stop reason and every event, so that it composes with output parsers in
LCEL (``prompt | agent | StrOutputParser()``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, cast

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import RunnableConfig, RunnableSerializable, ensure_config
from pydantic import Field, model_validator

from langchain_letta._calls import with_target_metadata
from langchain_letta._requests import CALL_KEYWORDS, CallOptions, LettaTarget, input_messages
from langchain_letta._strict import check_names, field_names
from langchain_letta.chat_models import ChatLetta
from langchain_letta.events import LettaEvent

AgentInput = str | Sequence[Any] | PromptValue | dict[str, Any]
"""A question, messages, a prompt value, or ``{"input": ..., "agent_id": ...,
"conversation_id": ...}``."""


class LettaResponse(AIMessage):
    """The agent's answer: an ``AIMessage`` (text, blocks, usage) plus the run it came from.

    Attributes:
        agent_id: The agent that answered.
        run_id: Letta's run id, where the server has runs.
        stop_reason: Why the run ended (``end_turn``, ``max_steps``, ...).
        events: Every Letta event of the run, typed, in order (pings left out).
    """

    agent_id: str = ""
    run_id: str | None = None
    stop_reason: str | None = None
    events: list[Any] = Field(default_factory=list)


class LettaAgentRunnable(RunnableSerializable[AgentInput, LettaResponse]):
    """A Letta agent as a Runnable: question in, typed events streamed, response out.

    Build it from a model, ``LettaAgentRunnable(model=ChatLetta(...))``, or from
    ChatLetta's own arguments, ``LettaAgentRunnable(agent_id="agent-…")``. The agent
    for a call is, in order: ``input["agent_id"]``, ``configurable.agent_id`` in the
    config, the model's ``agent_id``; the conversation likewise
    (:meth:`ChatLetta.target_for`).

    ``invoke``, ``stream`` and their async twins take ChatLetta's call keywords
    (``approvals=``, ``total_timeout=``, ...). An unknown argument or keyword raises
    ``TypeError`` naming the closest valid one, before anything is sent.
    """

    model: ChatLetta

    @model_validator(mode="before")
    @classmethod
    def _model_from_arguments(cls, values: Any) -> Any:
        """ChatLetta's arguments make the model; ``model`` may also be its model handle.

        Raises:
            TypeError: An unknown argument (the closest valid one named), or
                ChatLetta's arguments beside a ``model=ChatLetta(...)``.
        """
        if not isinstance(values, dict):
            return values
        own = field_names(cls)
        if "model" not in values or isinstance(values["model"], str):
            check_names(values, own | field_names(ChatLetta), cls.__name__)
            return {"model": ChatLetta(**values)}
        check_names(values, own | field_names(ChatLetta), cls.__name__)
        beside = sorted(set(values) - own)
        if beside:
            raise TypeError(
                f"{cls.__name__} takes ChatLetta's arguments or model=ChatLetta(...), not both: "
                f"set {', '.join(beside)} on the model"
            )
        return values

    @classmethod
    def is_lc_serializable(cls) -> bool:
        """Serialisable like ChatLetta (secrets as environment references)."""
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        """The import path ``load`` uses to rebuild the runnable."""
        return ["langchain_letta", "agents"]

    def invoke(
        self, input: AgentInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> LettaResponse:
        """Run one turn and return the agent's response; ``kwargs``: ChatLetta's call keywords.

        Raises:
            TypeError: A keyword ChatLetta's call does not take.
        """
        config, target = self._traced(input, config, kwargs)
        return self._call_with_config(self._respond, input, config, call=kwargs, target=target)

    async def ainvoke(
        self, input: AgentInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> LettaResponse:
        """Async :meth:`invoke`."""
        config, target = self._traced(input, config, kwargs)
        return await self._acall_with_config(
            self._arespond, input, config, call=kwargs, target=target
        )

    # Streaming yields the events themselves, not pieces of the response: that is
    # what this runnable is for, hence the narrower override.
    def stream(  # type: ignore[override]
        self, input: AgentInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[LettaEvent]:
        """Yield the typed Letta events of one turn as they arrive (``kwargs`` as for invoke)."""
        config, target = self._traced(input, config, kwargs)
        events = self._transform_stream_with_config(
            iter([input]), self._events, config, call=kwargs, target=target
        )
        yield from cast("Iterator[LettaEvent]", events)

    async def astream(  # type: ignore[override]
        self, input: AgentInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[LettaEvent]:
        """Async :meth:`stream`."""

        async def single() -> AsyncIterator[AgentInput]:
            yield input

        config, target = self._traced(input, config, kwargs)
        events = self._atransform_stream_with_config(
            single(), self._aevents, config, call=kwargs, target=target
        )
        async for event in cast("AsyncIterator[LettaEvent]", events):
            yield event

    def _traced(
        self, input: AgentInput, config: RunnableConfig | None, kwargs: dict[str, Any]
    ) -> tuple[RunnableConfig, LettaTarget]:
        """Resolve the call's target and name it, the provider and the model in the run's metadata.

        Raises:
            TypeError: A keyword ChatLetta's call does not take (before any run starts).
        """
        check_names(kwargs, CALL_KEYWORDS, f"{type(self).__name__} calls", "keyword")
        config = ensure_config(config)
        params = self.model._get_ls_params()
        metadata = {
            **config.get("metadata", {}),
            "ls_provider": params["ls_provider"],
            "ls_model_name": params["ls_model_name"],
        }
        named = {key: kwargs[key] for key in ("agent_id", "conversation_id") if kwargs.get(key)}
        target = self.model.target_for(config, **{**named, **_named_target(input)})
        return with_target_metadata({**config, "metadata": metadata}, target), target

    def _respond(
        self,
        input: AgentInput,
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        call: dict[str, Any] | None = None,
        target: LettaTarget | None = None,
    ) -> LettaResponse:
        messages, options = _call(input, call or {})
        builder, pairs = self.model.letta_events(
            messages, None, options, target=target, text_chunks=False
        )
        events = [event for event, _chunk in pairs]
        return _response(builder.message(), events)

    async def _arespond(
        self,
        input: AgentInput,
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        call: dict[str, Any] | None = None,
        target: LettaTarget | None = None,
    ) -> LettaResponse:
        messages, options = _call(input, call or {})
        builder, pairs = self.model.aletta_events(
            messages, None, options, target=target, text_chunks=False
        )
        events = [event async for event, _chunk in pairs]
        return _response(builder.message(), events)

    def _events(
        self,
        inputs: Iterator[AgentInput],
        run_manager: CallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        call: dict[str, Any] | None = None,
        target: LettaTarget | None = None,
    ) -> Iterator[Any]:
        for input in inputs:
            messages, options = _call(input, call or {})
            _builder, pairs = self.model.letta_events(
                messages, None, options, target=target, text_chunks=False
            )
            for event, _chunk in pairs:
                yield event

    async def _aevents(
        self,
        inputs: AsyncIterator[AgentInput],
        run_manager: AsyncCallbackManagerForChainRun,
        config: RunnableConfig,
        *,
        call: dict[str, Any] | None = None,
        target: LettaTarget | None = None,
    ) -> AsyncIterator[Any]:
        async for input in inputs:
            messages, options = _call(input, call or {})
            _builder, pairs = self.model.aletta_events(
                messages, None, options, target=target, text_chunks=False
            )
            async for event, _chunk in pairs:
                yield event


def _named_target(input: AgentInput) -> dict[str, str]:
    """The agent and conversation an input dict names (``{"input": ..., "agent_id": ...}``)."""
    if not isinstance(input, dict):
        return {}
    return {key: input[key] for key in ("agent_id", "conversation_id") if input.get(key)}


def _call(input: AgentInput, call: dict[str, Any]) -> tuple[list[BaseMessage], CallOptions]:
    """The messages to send and the call's options, with the agent and conversation it names."""
    options = CallOptions.parse({**call, **_named_target(input)})
    if isinstance(input, dict):
        input = input.get("input") or input.get("messages") or ""
    return input_messages(input), options


def _response(message: AIMessage, events: list[LettaEvent]) -> LettaResponse:
    metadata = message.response_metadata
    return LettaResponse(
        content=message.content,
        tool_calls=message.tool_calls,
        invalid_tool_calls=message.invalid_tool_calls,
        response_metadata=metadata,
        usage_metadata=message.usage_metadata,
        agent_id=metadata.get("agent_id", ""),
        run_id=metadata.get("run_id"),
        stop_reason=metadata.get("stop_reason"),
        events=events,
    )
