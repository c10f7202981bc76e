"""Strict inputs: an unknown argument or keyword is an error that names the closest valid one.

A typo (``conversationid=``, ``agentid=``) must never fall back to a default in
silence: the message would go to the agent's own thread, or the setting would
vanish. Every surface refuses it with a ``TypeError``, as Python does for a
function's unexpected keyword, before anything is sent.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable
from typing import Any

_HINTS = {
    "response_format": "Letta has no per-request response format: use "
    "model.with_structured_output(schema), which offers the schema as a client tool",
    "temperature": "a Letta agent's LLM settings live in the agent's configuration on the "
    "server (ChatLetta(temperature=...) is accepted for compatibility and not sent)",
    "max_tokens": "a Letta agent's LLM settings live in the agent's configuration on the "
    "server (ChatLetta(max_tokens=...) is accepted for compatibility and not sent)",
    "parallel_tool_calls": "Letta cannot set parallel tool calls per request: the agent's "
    "LLM configuration decides",
}
"""Why a name that is valid elsewhere in LangChain is not one here, and what to do instead."""


def unknown_name(name: str, valid: Collection[str], owner: str, what: str = "argument") -> str:
    """The error's text for ``name``, which ``owner`` does not take: the closest valid name."""
    text = f"unknown {what} {name!r} for {owner}"
    if name in _HINTS:
        return f"{text}: {_HINTS[name]}"
    close = difflib.get_close_matches(name, sorted(valid), n=1)
    if close:
        return f"{text}; did you mean {close[0]!r}?"
    return f"{text}; it takes {', '.join(sorted(valid))}"


def check_names(
    given: Iterable[str], valid: Collection[str], owner: str, what: str = "argument"
) -> None:
    """Refuse the first of ``given`` that is not in ``valid``.

    Raises:
        TypeError: A name ``owner`` does not take, with the closest valid one.
    """
    for name in given:
        if name not in valid:
            raise TypeError(unknown_name(str(name), valid, owner, what))


def field_names(model: Any) -> frozenset[str]:
    """Every name a pydantic model class takes: its fields and their aliases."""
    names = set(model.model_fields)
    for field in model.model_fields.values():
        aliases = [field.alias, field.validation_alias]
        aliases += getattr(field.validation_alias, "choices", [])  # AliasChoices
        names.update(alias for alias in aliases if isinstance(alias, str))
    return frozenset(names)
