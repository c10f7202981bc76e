"""``with_structured_output``'s closing turn: the output tool's call answered at once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from operator import itemgetter
from typing import Any

from langchain_core.callbacks import CallbackManager
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.output_parsers import (
    JsonOutputKeyToolsParser,
    JsonOutputToolsParser,
    PydanticToolsParser,
)
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableMap,
    RunnablePassthrough,
    RunnableSerializable,
    ensure_config,
)
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import BaseModel

from langchain_letta._chunks import as_chunk
from langchain_letta._requests import input_messages

STRUCTURED_OUTPUT_RECEIVED = "Structured output received."
"""The result ``with_structured_output`` gives the agent for its structured answer."""


class AnsweredTurn(RunnableSerializable[LanguageModelInput, AIMessage]):
    """The model called with the output tool, whose call of that tool is answered at once.

    The answer goes in a second request, made without the caller's callbacks: it
    is housekeeping (the agent's reply to it is not part of the output), and a
    traced second model call would count as a second answer. The model is called
    itself, not through a binding, whose config would take the callbacks back
    from the surrounding run.
    """

    model: BaseChatModel
    call_kwargs: dict[str, Any]
    """The keywords of every call: the tool and the structured output format."""

    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AIMessage:
        messages = input_messages(input)
        keywords = {**self.call_kwargs, **kwargs}
        reply = self.model.invoke(messages, config, **keywords)
        results = received_results(reply)
        if results:
            self.model.invoke([*messages, reply, *results], untraced(config), **keywords)
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
        keywords = {**self.call_kwargs, **kwargs}
        reply = await self.model.ainvoke(messages, config, **keywords)
        results = received_results(reply)
        if results:
            closing = [*messages, reply, *results]
            await self.model.ainvoke(closing, untraced(config), **keywords)
        return reply


def received_results(reply: AIMessage) -> list[ToolMessage]:
    """The results that close a structured answer: one per client tool call it made."""
    return [
        ToolMessage(STRUCTURED_OUTPUT_RECEIVED, tool_call_id=str(call["id"]))
        for call in reply.tool_calls
    ]


def untraced(config: RunnableConfig | None) -> RunnableConfig:
    # A manager of its own, with no handler and no parent: nothing inherited is called.
    no_callbacks = CallbackManager(handlers=[])
    return {
        **ensure_config(config),
        "callbacks": no_callbacks,
        "run_name": "letta_structured_close",
    }


def structured_output(
    answered: AnsweredTurn, schema: dict[str, Any] | type, include_raw: bool
) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
    """``answered``'s tool call parsed as ``schema`` (``None`` if the agent made none).

    With ``include_raw``: ``{"raw", "parsed", "parsing_error"}``, as LangChain's models give it.
    """
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
