"""The twin rule (CONTRIBUTING.md, "Twins"): sync and async code have one source of truth.

The sync shell is generated from the async one; the I/O primitives each shell uses
differ by nature, and are held to the same names and parameters.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from langchain_letta import ChatLetta, LettaAgentRunnable
from langchain_letta._wire import async_io, sync_io, turns
from scripts import gen_sync


@pytest.mark.parametrize(("source", "target"), sorted(gen_sync.TWINS.items()))
def test_the_sync_module_is_generated_from_its_async_twin(source: str, target: str) -> None:
    committed = (gen_sync.WIRE / target).read_text(encoding="utf-8")
    assert committed == gen_sync.generate(source), (
        f"{target} differs from what {source} generates: edit {source}, then run "
        "`python -m scripts.gen_sync`"
    )


def required(function: Any) -> list[str]:
    """The parameters a shell passes (those without a default)."""
    return [
        name
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.default is inspect.Parameter.empty
    ]


def test_both_flavours_of_io_primitives_offer_the_same_names() -> None:
    assert async_io.__all__ == sync_io.__all__
    for module in (async_io, sync_io):
        assert all(hasattr(module, name) for name in module.__all__)


@pytest.mark.parametrize("name", sync_io.__all__)
def test_each_io_primitive_takes_the_same_arguments_in_both_flavours(name: str) -> None:
    sync, async_ = getattr(sync_io, name), getattr(async_io, name)
    if name == "Finishers":
        assert required(sync.start) == required(async_.start)
        assert callable(sync.close)
        assert inspect.iscoroutinefunction(async_.aclose)
    elif name == "Body":
        for method in ("read", "rest", "close"):
            assert required(getattr(sync, method)) == required(getattr(async_, method))
            assert inspect.iscoroutinefunction(getattr(async_, method))
            assert not inspect.iscoroutinefunction(getattr(sync, method))
    elif inspect.isfunction(sync):
        assert required(sync) == required(async_)
        awaited = inspect.iscoroutinefunction(async_) or inspect.isasyncgenfunction(async_)
        assert awaited != (name in {"make_http", "for_request"})  # the rest is awaited
    elif name.isupper():
        assert isinstance(sync, tuple)
        assert isinstance(async_, tuple)
        assert all(issubclass(kind, BaseException) for kind in (*sync, *async_))


def test_a_turn_is_taken_alike_in_both_flavours() -> None:
    """``turns.acquire`` / ``aacquire`` are hand-kept: the queue they share decides."""
    assert inspect.signature(turns.acquire) == inspect.signature(turns.aacquire)


ENTRY_POINTS = [
    (ChatLetta, ("stream", "astream")),
    (ChatLetta, ("pending_approvals", "apending_approvals")),
    (ChatLetta, ("batch", "abatch")),
    (ChatLetta, ("_generate", "_agenerate")),
    (ChatLetta, ("_stream", "_astream")),
    (LettaAgentRunnable, ("invoke", "ainvoke")),
    (LettaAgentRunnable, ("stream", "astream")),
]
"""The public sync/async pairs LangChain's interfaces ask for: hand-kept, each a few
lines over one shared plan (the call's target, options and events are decided once)."""


@pytest.mark.parametrize(("owner", "pair"), ENTRY_POINTS, ids=lambda x: str(x))
def test_each_entry_point_pair_takes_the_same_arguments(owner: type, pair: tuple[str, str]) -> None:
    sync, asynchronous = (getattr(owner, name) for name in pair)
    assert list(inspect.signature(sync).parameters) == list(
        inspect.signature(asynchronous).parameters
    )
    body = max(len(inspect.getsource(function).splitlines()) for function in (sync, asynchronous))
    assert body <= 40, f"{owner.__name__}.{pair}: put the logic in the shared plan, not the twins"
