"""Client CPU per token delta over real HTTP: ChatLetta against letta-client, in one run.

A server in another process (``bench/loopback_server.py``) on 127.0.0.1 answers
every request with one prepared token stream (0.16.8 shape). Shapes: one SSE
frame per HTTP chunk sent back to back ("saturated", as uvicorn writes a live
Letta stream, arriving faster than the client reads), 64 KiB chunks (optional),
and "paced": one frame per write, 0.3 ms apart (a live LLM's tokens). This
process reads it through each path and ``time.process_time`` gives the client's
own CPU:

* raw: ``httpx`` + ``httpx-sse`` + ``json.loads`` per frame (dicts only);
* ``LettaClient.stream``: our client's typed events;
* ``ChatLetta.stream`` / ``astream`` / ``invoke``: the LangChain surfaces;
* letta-client (``Letta``, ``AsyncLetta`` on aiohttp through
  ``DefaultAioHttpClient``, its fastest async setup, and ``AsyncLetta`` on its
  default httpx transport): ``agents.messages.stream(stream_tokens=True)``;
* the SDK inside a minimal ``BaseChatModel`` (``_stream`` / ``_astream`` over the
  SDK's stream, one ``AIMessageChunk`` per text delta): what a user would write
  instead of ChatLetta;
* LangChain's floor: a ``BaseChatModel`` whose ``_stream`` yields ready-made
  chunks of one text block each, no I/O: what LangChain's own ``stream()`` costs.

Each figure is the best of several passes, the paths taking turns in each pass;
ratios are against the baselines measured in the same run, and the four ratios
against the peers' fastest setups are checked against their targets. Then: how long a paced delta
waits between arriving and reaching its consumer (the server stamps each delta
with its write time); 1,000 concurrent ``ChatLetta.astream`` on one event loop,
under asyncio and uvloop, against ``AsyncLetta`` + aiohttp (CPU per delta,
delay from a frame's write to its chunk, errors); ``tracemalloc`` over a stream
and one ten times as long. ``--layers`` also times each layer of ``stream`` and
``astream`` alone (the body read, our client, the chunks, LangChain's loop);
``--profile`` prints cProfile's CPU time by package and the top functions. No
figure here is asserted by a test: the machine is shared and timings vary.

Run from the repository root: ``.venv/bin/python bench/bench_chat.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib
import importlib.util
import itertools
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import time
import tracemalloc
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import httpx_sse
from httpx_aiohttp import HttpxAiohttpClient
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from loopback_server import STAMP_WIDTH, WORDS, stream_frames

from langchain_letta import (
    AsyncLettaClient,
    ChatLetta,
    LettaClient,
    OutgoingMessage,
    StreamRequest,
)
from langchain_letta.events import AssistantMessage

SERVER = Path(__file__).resolve().with_name("loopback_server.py")
AGENT = "agent-9d9e1f61-7d82-476c-9996-867db2b9c18f"
SHAPES = {"frame": "saturated, 1 frame/chunk", "64k": "saturated, 64 KiB chunks"}
SHAPES["paced"] = "paced, 1 frame/0.3 ms"
DEFAULT_SHAPES = "frame,paced"
MEMORY_FACTOR = 10
PACE = "0.0003"
"""Seconds between the frames of the paced shape."""
PROFILE_PACE = "0.0015"
"""The same, under the profiler (several times slower)."""
SCALE_LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
"""AsyncLetta's pool at scale: ChatLetta's (letta-client's default caps it at 100
connections, which would queue 900 of 1,000 streams behind the others)."""

Pass = Callable[[], int]
"""Reads one whole stream; returns how many characters of answer text it saw (checked, untimed)."""
Closer = Callable[[], Awaitable[None]]

RAW = "raw httpx-sse + json.loads"
CLIENT = "LettaClient.stream"
STREAM = "ChatLetta.stream"
ASTREAM = "ChatLetta.astream"
INVOKE = "ChatLetta.invoke"
SDK = "Letta (sync)"
ASDK = "AsyncLetta + aiohttp"
ASDK_HTTPX = "AsyncLetta (httpx)"
SDK_MODEL = "SDK in a BaseChatModel, stream"
ASDK_MODEL = "SDK in a BaseChatModel, astream"
FLOOR = "LangChain floor (no I/O)"
FLOOR_AIO = "LangChain floor on aiohttp, astream"
BASES = {SDK: "vs Letta", ASDK: "vs AsyncL+aio", SDK_MODEL: "vs SDK model"}
"""Ratio columns of every table: the baselines of the targets."""

TARGETS = (
    ("async saturated", "frame", ASTREAM, ASDK, 0.35),
    ("async paced", "paced", ASTREAM, ASDK, 0.9),
    ("sync saturated", "frame", STREAM, SDK, 0.6),
    ("sync paced", "paced", STREAM, SDK_MODEL, 0.9),
)
"""Issue 18's ratios: (name, shape, ours, baseline, target), client CPU per delta."""


@contextmanager
def loopback(deltas: int, shape: str, *options: str) -> Iterator[str]:
    """The base URL of a server process streaming ``deltas`` text deltas in ``shape``."""
    command = [sys.executable, str(SERVER), "--deltas", str(deltas), "--shape", shape]
    process = subprocess.Popen(
        [*command, "--pace", PACE, *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield f"http://127.0.0.1:{int(process.stdout.readline())}"
    finally:
        process.kill()
        process.wait()


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A new event loop of asyncio's own, or uvloop's."""
    if kind == "uvloop":
        return importlib.import_module("uvloop").new_event_loop()  # type: ignore[no-any-return]
    return asyncio.new_event_loop()


# --------------------------------------------------------------------------- paths


def raw_path(base_url: str) -> Pass:
    """httpx + httpx-sse + json.loads: dicts only, one HTTP chunk at a time."""
    client = httpx.Client(timeout=60)
    url = f"{base_url}/v1/agents/{AGENT}/messages/stream"
    body = {"messages": [{"role": "user", "content": "hi"}], "stream_tokens": True}

    def run() -> int:
        deltas = 0
        with httpx_sse.connect_sse(client, "POST", url, json=body) as source:
            for sse in source.iter_sse():
                if sse.data == "[DONE]":
                    break
                payload = json.loads(sse.data)
                if payload.get("message_type") == "assistant_message":
                    deltas += len(payload["content"])
        return deltas

    return run


def client_path(base_url: str) -> Pass:
    """Our ``LettaClient.stream``: typed events."""
    client = LettaClient(base_url=base_url, background=False, max_retries=0)
    request = StreamRequest(messages=[OutgoingMessage(content="hi")])

    def run() -> int:
        events = client.stream(AGENT, request)
        return sum(len(e.text) for e in events if isinstance(e, AssistantMessage))

    return run


def _said(event: Any) -> bool:
    return bool(event.message_type == "assistant_message")


def _texts(chunk: BaseMessage) -> list[str]:
    """The answer text of a chunk, read from its content (``.text`` costs more)."""
    content = chunk.content
    if isinstance(content, str):
        return [content]
    return [block.get("text", "") for block in content if isinstance(block, dict)]


def _text(chunk: BaseMessage) -> int:
    """Characters of answer text in a chunk."""
    return sum(len(text) for text in _texts(chunk))


def _model(base_url: str) -> ChatLetta:
    return ChatLetta(agent_id=AGENT, base_url=base_url, background=False, max_retries=0)


def stream_path(base_url: str) -> Pass:
    """``ChatLetta.stream``, each chunk dropped as it comes."""
    model = _model(base_url)
    return lambda: sum(_text(chunk) for chunk in model.stream("hi"))


def invoke_path(base_url: str) -> Pass:
    """``ChatLetta.invoke``: the whole answer as one message."""
    model = _model(base_url)
    return lambda: len(model.invoke("hi").text)


def on_loop(loop: asyncio.AbstractEventLoop, make: Callable[[], Awaitable[int]]) -> Pass:
    """An async path on one event loop kept for every pass, as an application keeps it."""
    return lambda: loop.run_until_complete(make())


def astream_path(base_url: str, loop: asyncio.AbstractEventLoop) -> tuple[Pass, Closer]:
    """``ChatLetta.astream``."""
    model = _model(base_url)

    async def run() -> int:
        return sum([_text(chunk) async for chunk in model.astream("hi")])

    return on_loop(loop, run), model.aclose


def _sdk_messages(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": message.content} for message in messages]


class SDKChatModel(BaseChatModel):
    """The SDK inside a minimal ``BaseChatModel``: what a user would write instead of ChatLetta.

    ``_stream`` (``_astream``) iterates letta-client's token stream and yields one
    ``AIMessageChunk`` of the delta's text per assistant text delta, shown to
    ``on_llm_new_token`` as LangChain's guide for a custom chat model does.
    """

    sdk: Any
    agent_id: str

    @property
    def _llm_type(self) -> str:
        return "letta-sdk"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        raise NotImplementedError("streams only")

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        stream = self.sdk.agents.messages.stream(
            self.agent_id, messages=_sdk_messages(messages), stream_tokens=True
        )
        for event in stream:
            if event.message_type == "assistant_message":
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=event.content))
                if run_manager:
                    run_manager.on_llm_new_token(event.content, chunk=chunk)
                yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        stream = await self.sdk.agents.messages.stream(
            self.agent_id, messages=_sdk_messages(messages), stream_tokens=True
        )
        async for event in stream:
            if event.message_type == "assistant_message":
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=event.content))
                if run_manager:
                    await run_manager.on_llm_new_token(event.content, chunk=chunk)
                yield chunk


def letta_sdk() -> Any:
    """The ``letta_client`` module, or the reason it cannot be imported."""
    try:
        module = importlib.import_module("letta_client")
    except ImportError as error:
        return f"letta-client is not importable in {sys.executable} ({error})"
    # messages.stream is marked deprecated in favour of a newer route; it is the one
    # ChatLetta's requests take, so the comparison stays like for like.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=__name__)
    return module


@dataclass
class Sdk:
    """letta-client's clients for one server, made on first use in the loop that uses them."""

    letta: Any
    base_url: str
    limits: httpx.Limits | None = None
    _async: dict[str, Any] = field(default_factory=dict)

    def sync(self) -> Any:
        return self.letta.Letta(base_url=self.base_url, api_key="bench", max_retries=0)

    def aio(self) -> Any:
        """``AsyncLetta`` on aiohttp (``DefaultAioHttpClient``), made once."""
        if "aio" not in self._async:
            options = {} if self.limits is None else {"limits": self.limits}
            http = self.letta.DefaultAioHttpClient(**options)
            self._async["aio"] = self.letta.AsyncLetta(
                base_url=self.base_url, api_key="bench", max_retries=0, http_client=http
            )
        return self._async["aio"]

    def httpx(self) -> Any:
        """``AsyncLetta`` on its default transport (httpx's), made once."""
        if "httpx" not in self._async:
            self._async["httpx"] = self.letta.AsyncLetta(
                base_url=self.base_url, api_key="bench", max_retries=0
            )
        return self._async["httpx"]

    async def aclose(self) -> None:
        for client in self._async.values():
            await client.close()
        self._async.clear()


async def _sdk_events(client: Any, text: str) -> AsyncIterator[Any]:
    stream = await client.agents.messages.stream(
        AGENT, messages=[{"role": "user", "content": text}], stream_tokens=True
    )
    async for event in stream:
        yield event


def sdk_paths(sdk: Sdk, loop: asyncio.AbstractEventLoop) -> dict[str, Pass]:
    """letta-client bare (sync, async on aiohttp, async on httpx), and inside a BaseChatModel."""
    sync = sdk.sync()
    messages = [{"role": "user", "content": "hi"}]

    def run() -> int:
        stream = sync.agents.messages.stream(AGENT, messages=messages, stream_tokens=True)
        return sum(len(event.content) for event in stream if _said(event))

    def arun(client: Callable[[], Any]) -> Callable[[], Awaitable[int]]:
        async def read() -> int:
            return sum(
                [len(event.content) async for event in _sdk_events(client(), "hi") if _said(event)]
            )

        return read

    model = SDKChatModel(sdk=sync, agent_id=AGENT)
    amodel: list[SDKChatModel] = []

    async def amodel_run() -> int:
        if not amodel:
            amodel.append(SDKChatModel(sdk=sdk.aio(), agent_id=AGENT))
        return sum([_text(chunk) async for chunk in amodel[0].astream("hi")])

    return {
        SDK: run,
        ASDK: on_loop(loop, arun(sdk.aio)),
        ASDK_HTTPX: on_loop(loop, arun(sdk.httpx)),
        SDK_MODEL: lambda: sum(_text(chunk) for chunk in model.stream("hi")),
        ASDK_MODEL: on_loop(loop, amodel_run),
    }


class ReadyChunks(BaseChatModel):
    """LangChain's floor: ``stream()`` over chunks made in advance, one text block each."""

    chunks: list[AIMessageChunk]

    @property
    def _llm_type(self) -> str:
        return "ready-chunks"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        raise NotImplementedError("streams only")

    def _stream(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in self.chunks:
            yield ChatGenerationChunk(message=chunk)


def floor_path(deltas: int) -> Pass:
    """LangChain's own ``stream()`` of ``deltas`` ready-made one-block chunks, no I/O."""
    blocks = [{"type": "text", "text": WORDS[i % len(WORDS)], "index": 0} for i in range(deltas)]
    model = ReadyChunks(chunks=[AIMessageChunk(content=[block]) for block in blocks])
    return lambda: sum(_text(chunk) for chunk in model.stream([HumanMessage("hi")]))


class AiohttpFloor(BaseChatModel):
    """The least a LangChain model can do over aiohttp: what no Letta model can go below.

    ``_astream`` reads the body through httpx-aiohttp (as ``AsyncLetta`` + aiohttp
    and ChatLetta do), cuts it into frames, ``json.loads`` each, and yields one
    string ``AIMessageChunk`` per text delta: no typed events, no bounds, no resume.
    """

    base_url: str
    clients: list[httpx.AsyncClient]

    @property
    def _llm_type(self) -> str:
        return "aiohttp-floor"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        raise NotImplementedError("streams only")

    async def _astream(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        if not self.clients:
            self.clients.append(HttpxAiohttpClient(timeout=60))
        url = f"{self.base_url}/v1/agents/{AGENT}/messages/stream"
        body = {"messages": [{"role": "user", "content": "hi"}], "stream_tokens": True}
        async with self.clients[0].stream("POST", url, json=body) as response:
            tail = b""
            async for piece in response.aiter_bytes():
                *frames, tail = (tail + piece).split(b"\n\n")
                for frame in frames:
                    if not frame.startswith(b"data: {"):
                        continue
                    payload = json.loads(frame[6:])
                    if payload.get("message_type") == "assistant_message":
                        text = payload["content"]
                        yield ChatGenerationChunk(message=AIMessageChunk(content=text))


def aiohttp_floor_path(base_url: str, loop: asyncio.AbstractEventLoop) -> tuple[Pass, Closer]:
    """:class:`AiohttpFloor`'s ``astream``."""
    model = AiohttpFloor(base_url=base_url, clients=[])

    async def run() -> int:
        return sum([_text(chunk) async for chunk in model.astream("hi")])

    async def close() -> None:
        for client in model.clients:
            await client.aclose()

    return on_loop(loop, run), close


# --------------------------------------------------------------------------- layers

LAYERS = (
    (
        "sync",
        (
            "httpx body (iter_bytes)",
            CLIENT,
            "ChatLetta.letta_events",
            "ChatLetta._stream",
            STREAM,
        ),
    ),
    (
        "async",
        (
            "aiohttp body (aiter_bytes)",
            "AsyncLettaClient.stream",
            "ChatLetta.aletta_events",
            "ChatLetta._astream",
            ASTREAM,
        ),
    ),
    ("sync SDK", (SDK, SDK_MODEL)),
    ("async SDK", (ASDK, ASDK_MODEL)),
)
"""Each stack from the bottom up: what each layer adds to the one below it, per delta."""


def layer_paths(
    base_url: str, loop: asyncio.AbstractEventLoop, deltas: int, expect: int
) -> tuple[dict[str, Pass], list[Closer]]:
    """The layers of ``stream`` and ``astream`` alone, each read to its end."""
    url = f"{base_url}/v1/agents/{AGENT}/messages/stream"
    body = {"messages": [{"role": "user", "content": "hi"}], "stream_tokens": True}
    size = sum(len(frame) for frame in stream_frames(deltas))  # the body, chunked framing off
    sync_http = httpx.Client(timeout=60)
    model = _model(base_url)
    async_client = AsyncLettaClient(base_url=base_url, background=False, max_retries=0)
    request = StreamRequest(messages=[OutgoingMessage(content="hi")])
    hi: list[BaseMessage] = [HumanMessage("hi")]
    made: list[httpx.AsyncClient] = []

    def sync_body() -> int:
        with sync_http.stream("POST", url, json=body) as response:
            got = sum(len(chunk) for chunk in response.iter_bytes())
        return expect if got == size else got

    async def async_body() -> int:
        if not made:
            made.append(HttpxAiohttpClient(timeout=60))
        async with made[0].stream("POST", url, json=body) as response:
            got = sum([len(chunk) async for chunk in response.aiter_bytes()])
        return expect if got == size else got

    def events() -> int:
        _, pairs = model.letta_events(hi, None, {})
        return sum(_text(chunk) for _, chunk in pairs if chunk is not None)

    async def aclient() -> int:
        stream = async_client.stream(AGENT, request)
        return sum([len(e.text) async for e in stream if isinstance(e, AssistantMessage)])

    async def aevents() -> int:
        _, pairs = model.aletta_events(hi, None, {})
        return sum([_text(chunk) async for _, chunk in pairs if chunk is not None])

    async def astream_() -> int:
        return sum([_text(chunk.message) async for chunk in model._astream(hi)])

    async def close() -> None:
        for client in made:
            await client.aclose()
        await async_client.aclose()
        await model.aclose()

    paths = {
        "httpx body (iter_bytes)": sync_body,
        "ChatLetta.letta_events": events,
        "ChatLetta._stream": lambda: sum(_text(chunk.message) for chunk in model._stream(hi)),
        "aiohttp body (aiter_bytes)": on_loop(loop, async_body),
        "AsyncLettaClient.stream": on_loop(loop, aclient),
        "ChatLetta.aletta_events": on_loop(loop, aevents),
        "ChatLetta._astream": on_loop(loop, astream_),
    }
    return paths, [close]


def print_layers(label: str, deltas: int, best: dict[str, Figure]) -> None:
    """Each stack's layers, bottom up, with what each adds to the one below."""
    header = f"{'layer (' + label + ')':<36} {'µs/delta':>9} {'of it GC':>9} {'added':>8}"
    print(f"\n{header}\n{'-' * len(header)}")
    for stack, names in LAYERS:
        print(f"{stack}:")
        below = None
        for name in names:
            if name not in best:
                continue
            figure = best[name]
            micros = figure.cpu / deltas * 1e6
            added = "" if below is None else f"{micros - below:>+8.1f}"
            print(f"{name:<36} {micros:>9.1f} {figure.gc / deltas * 1e6:>9.1f} {added:>8}")
            below = micros


# --------------------------------------------------------------------------- timing


class GcClock:
    """The garbage collector's CPU seconds (``gc.callbacks``): in all, and its full collections."""

    def __init__(self) -> None:
        self.total = 0.0
        self.full = 0
        """Collections of the oldest generation: each walks every tracked object."""
        self.longest = 0.0
        """The longest collection's seconds, since ``longest`` was last reset."""
        self._start = 0.0
        gc.callbacks.append(self)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.process_time()
            return
        seconds = time.process_time() - self._start
        self.total += seconds
        self.longest = max(self.longest, seconds)
        self.full += info["generation"] == 2


GC = GcClock()


@dataclass
class Figure:
    """The best pass of a path: client CPU seconds, and the collector's share of it."""

    cpu: float = float("inf")
    gc: float = 0.0
    passes: list[float] = field(default_factory=list)
    """Every timed pass's CPU seconds, in the order the passes ran."""


def cpu_of(name: str, run: Pass, expect: int) -> Figure:
    """Client CPU seconds of one pass; the text it saw is checked, untimed."""
    gc.collect()
    collected = GC.total
    start = time.process_time()
    seen = run()
    elapsed = time.process_time() - start
    if seen != expect:
        raise RuntimeError(f"{name}: {seen} characters of text, expected {expect}")
    return Figure(elapsed, GC.total - collected)


def measure(paths: dict[str, Pass], expect: int, repeats: int) -> dict[str, Figure]:
    """Best CPU seconds per path; the paths take turns in each pass (shared-machine noise)."""
    for name, run in paths.items():
        cpu_of(name, run, expect)  # warm up: connections, imports, caches
    best = {name: Figure() for name in paths}
    for _ in range(repeats):
        for name, run in paths.items():
            figure = cpu_of(name, run, expect)
            passes = [*best[name].passes, figure.cpu]
            if figure.cpu < best[name].cpu:
                best[name] = figure
            best[name].passes = passes
    return best


def print_table(label: str, deltas: int, best: dict[str, Figure]) -> None:
    """µs of client CPU per delta (and of it in the collector), ratios to the baselines."""
    bases = [name for name in BASES if name in best]
    header = f"{'path (' + label + ')':<36} {'µs/delta':>9} {'of it GC':>9}"
    header += "".join(f" {BASES[name]:>13}" for name in bases)
    print(f"\n{header}\n{'-' * len(header)}")
    for name, figure in best.items():
        line = f"{name:<36} {figure.cpu / deltas * 1e6:>9.1f} {figure.gc / deltas * 1e6:>9.1f}"
        line += "".join(f" {figure.cpu / best[base].cpu:>12.2f}x" for base in bases)
        print(line)


def print_targets(tables: dict[str, dict[str, Figure]]) -> None:
    """Issue 18's four ratios, from the tables of this run.

    The ratio is of the two paths' best passes; beside it, the median of the ratios
    of the passes the two made in turn (one pass each, moments apart), which one
    pass slowed by the machine moves less.
    """
    header = f"{'target':<17} {'ours':<18} {'baseline':<31} {'ratio':>7} {'median':>7}"
    header += f" {'target':>7}"
    print(f"\n{header}\n{'-' * (len(header) + 7)}")
    for name, shape, ours, base, target in TARGETS:
        best = tables.get(shape, {})
        if ours in best and base in best:
            ratio = best[ours].cpu / best[base].cpu
            turns = zip(best[ours].passes, best[base].passes, strict=True)
            median = statistics.median(mine / theirs for mine, theirs in turns)
            verdict = "met" if ratio <= target else "MISSED"
            figure = f"{ratio:>6.3f}x {median:>6.3f}x {'≤ ' + format(target, '.2f'):>7}x {verdict}"
        else:
            figure = f"{'-':>7} {'-':>7} {'≤ ' + format(target, '.2f'):>7}x not run"
        print(f"{name:<17} {ours:<18} {base:<31} {figure}")


# --------------------------------------------------------------------------- profile


GROUPS = (
    ("langchain_letta", ("/langchain_letta/",)),
    ("langchain_core", ("/langchain_core/", "langsmith")),
    ("pydantic", ("/pydantic/", "pydantic_core")),
    ("httpx/httpcore/h11/httpx_sse", ("/httpx/", "/httpcore/", "/h11/", "/httpx_sse/")),
    ("aiohttp/httpx_aiohttp", ("/aiohttp/", "/httpx_aiohttp/", "/multidict/", "/yarl/")),
    ("letta_client", ("/letta_client/",)),
    ("asyncio/uvloop/selectors/socket", ("/asyncio/", "uvloop", "selectors", "socket", "epoll")),
)


def _group(where: tuple[str, int, str]) -> str | None:
    """The package of a profiled function; ``None`` for a builtin that belongs to its callers."""
    filename, _, function = where
    text = function if filename == "~" else filename
    for group, marks in GROUPS:
        if any(mark in text for mark in marks):
            return group
    return None if filename == "~" else "other (stdlib, bench)"


def profile(name: str, run: Pass, deltas: int, label: str, top: int) -> None:
    """cProfile (CPU time) of one pass: own time by package, then the top functions.

    The own time of a builtin (``isinstance``, ``dict.get``, ...) goes to the
    packages of its callers, in proportion to what each caller spent in it.
    """
    profiler = cProfile.Profile(time.process_time)
    profiler.runcall(run)
    stats = pstats.Stats(profiler)
    totals: dict[str, float] = {}
    raw: Any = stats.stats  # type: ignore[attr-defined]
    for where, (_, _, own, _, callers) in raw.items():
        group = _group(where)
        if group is not None or not callers:
            group = group or "other (stdlib, bench)"
            totals[group] = totals.get(group, 0.0) + own
            continue
        shares = {caller: figures[2] for caller, figures in callers.items()}
        spent = sum(shares.values()) or 1.0
        for caller, share in shares.items():
            group = _group(caller) or "other (stdlib, bench)"
            totals[group] = totals.get(group, 0.0) + own * share / spent
    whole = sum(totals.values())
    print(f"\ncProfile of {name} ({label}), own CPU time by package, µs/delta (profiled):")
    for group, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"  {group:<34} {seconds / deltas * 1e6:>7.1f}  {seconds / whole:>4.0%}")
    print(f"  {'total':<34} {whole / deltas * 1e6:>7.1f}")
    print(f"top {top} functions by own time:")
    stats.sort_stats("tottime").print_stats(top)


# --------------------------------------------------------------------------- delay


def _record(texts: list[str], now: float, delays: list[float]) -> int:
    """Each stamped delta's wait, from its write to ``now``; returns how many there were."""
    count = 0
    for text in texts:
        for start in range(0, len(text), STAMP_WIDTH):
            delays.append(now - float(text[start : start + STAMP_WIDTH]))
            count += 1
    return count


def paced_delays(deltas: int, letta: Any, loop_kind: str) -> None:
    """Per delta, the time from its write by the server to its chunk in the consumer's hands."""
    print(
        f"\ndelay from a paced delta's write to its chunk ({deltas:,} deltas, 1 frame/0.3 ms), ms"
    )
    header = f"{'path':<36} {'p50':>7} {'p99':>7} {'max':>7} {'full GCs':>8} {'longest GC':>10}"
    print(f"{header}\n{'-' * len(header)}")
    loop = new_loop(loop_kind)
    with loopback(deltas, "paced", "--stamp") as base_url:
        model = _model(base_url)
        readers: dict[str, Callable[[list[float]], int]] = {}

        def sync_chunks(chunks: Callable[[], Iterator[AIMessageChunk]]) -> Callable[..., int]:
            def read(delays: list[float]) -> int:
                return sum(_record(_texts(chunk), time.time(), delays) for chunk in chunks())

            return read

        def async_chunks(
            chunks: Callable[[], AsyncIterator[Any]], texts: Callable[[Any], list[str]]
        ) -> Callable[..., int]:
            async def read(delays: list[float]) -> int:
                count = 0
                async for chunk in chunks():
                    count += _record(texts(chunk), time.time(), delays)
                return count

            return lambda delays: loop.run_until_complete(read(delays))

        readers[STREAM] = sync_chunks(lambda: model.stream("hi"))
        readers[ASTREAM] = async_chunks(lambda: model.astream("hi"), _texts)
        sdk = None
        if not isinstance(letta, str):
            sdk = Sdk(letta, base_url)
            sdk_model = SDKChatModel(sdk=sdk.sync(), agent_id=AGENT)
            readers[SDK_MODEL] = sync_chunks(lambda: sdk_model.stream("hi"))
            readers[ASDK] = async_chunks(
                lambda: _sdk_events(sdk.aio(), "hi"),
                lambda event: [event.content] if _said(event) else [],
            )
        for name, read in readers.items():
            read([])  # warm up
            delays: list[float] = []
            gc.collect()
            full, GC.longest = GC.full, 0.0
            if read(delays) != deltas:
                raise RuntimeError(f"{name}: {len(delays)} stamped deltas, expected {deltas}")
            print(
                f"{name:<36} {percentile(delays, 0.5) * 1e3:>7.2f} "
                f"{percentile(delays, 0.99) * 1e3:>7.2f} {max(delays) * 1e3:>7.2f} "
                f"{GC.full - full:>8} {GC.longest * 1e3:>8.1f}ms"
            )
        loop.run_until_complete(model.aclose())
        if sdk is not None:
            loop.run_until_complete(sdk.aclose())
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


# --------------------------------------------------------------------------- scale


@dataclass
class ScaleRun:
    """One run of many concurrent streams on one event loop."""

    cpu: float
    wall: float
    delays: list[float]
    errors: list[BaseException]
    short: int
    """Streams that ended without error but with fewer deltas than sent."""
    gc: float
    """CPU seconds in the garbage collector."""
    full_gcs: int
    longest_gc: float


Opener = Callable[[], AsyncIterator[Any]]


def scale_run(
    loop_kind: str,
    make: Callable[[], tuple[Opener, Callable[[Any], list[str]], Closer]],
    streams: int,
    deltas: int,
) -> ScaleRun:
    """``streams`` streams at once on a new event loop of ``loop_kind``, each read to its end."""

    async def run() -> ScaleRun:
        opener, texts, close = make()
        delays: list[float] = []

        async def one() -> int:
            count = 0
            async for item in opener():
                count += _record(texts(item), time.time(), delays)
            return count

        gc.collect()
        collected, full, GC.longest = GC.total, GC.full, 0.0
        start, cpu = time.perf_counter(), time.process_time()
        results = await asyncio.gather(*(one() for _ in range(streams)), return_exceptions=True)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - start
        in_gc = (GC.total - collected, GC.full - full, GC.longest)
        await close()
        errors = [result for result in results if isinstance(result, BaseException)]
        short = sum(1 for result in results if isinstance(result, int) and result != deltas)
        return ScaleRun(cpu, wall, delays, errors, short, *in_gc)

    loop = new_loop(loop_kind)
    try:
        return loop.run_until_complete(run())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def scale(streams: int, deltas: int, rate: int, loops: list[str], letta: Any) -> None:
    """Many ``ChatLetta.astream`` at once, and as many ``AsyncLetta`` + aiohttp streams."""
    per_stream = streams / rate * 1e3
    print(
        f"\n{streams:,} concurrent streams on one event loop, {deltas:,} text deltas each, "
        f"1 frame/write, ChatLetta's each in a conversation of its own; the server writes "
        f"{rate:,} frames/s in all, in turn "
        f"(a frame per stream every {per_stream:.0f} ms); delay: from a delta's write to its "
        f"chunk"
    )
    header = (
        f"{'path':<32} {'loop':<8} {'µs/delta':>9} {'of it GC':>9} {'delay p50':>10} {'p99':>8} "
        f"{'max':>8} {'full GCs':>8} {'longest GC':>10} {'wall':>6} {'errors':>6}"
    )
    print(f"{header}\n{'-' * len(header)}")
    with loopback(deltas, "scale", "--rate", str(rate)) as base_url:

        def ours() -> tuple[Opener, Callable[[Any], list[str]], Closer]:
            # Each stream in a conversation of its own, as each user of a deployed agent
            # would be: turns of one agent thread run one at a time, by design.
            model, threads = _model(base_url), itertools.count()
            opener = lambda: model.astream("hi", conversation_id=f"conv-{next(threads)}")  # noqa: E731
            return opener, _texts, model.aclose

        def theirs() -> tuple[Opener, Callable[[Any], list[str]], Closer]:
            sdk = Sdk(letta, base_url, limits=SCALE_LIMITS)
            texts = lambda event: [event.content] if _said(event) else []  # noqa: E731
            return lambda: _sdk_events(sdk.aio(), "hi"), texts, sdk.aclose

        def model() -> tuple[Opener, Callable[[Any], list[str]], Closer]:
            sdk = Sdk(letta, base_url, limits=SCALE_LIMITS)
            chat = SDKChatModel(sdk=sdk.aio(), agent_id=AGENT)
            return lambda: chat.astream("hi"), _texts, sdk.aclose

        makers = {ASTREAM: ours}
        if not isinstance(letta, str):
            makers[ASDK] = theirs
            makers[ASDK_MODEL] = model  # on the first loop only: what any LangChain model pays
        for position, loop_kind in enumerate(loops):
            for name, make in makers.items():
                if name == ASDK_MODEL and position:
                    continue
                run = scale_run(loop_kind, make, streams, deltas)
                got = len(run.delays)
                print(
                    f"{name:<32} {loop_kind:<8} {run.cpu / max(got, 1) * 1e6:>9.1f} "
                    f"{run.gc / max(got, 1) * 1e6:>9.1f} "
                    f"{percentile(run.delays, 0.5) * 1e3:>8.1f}ms "
                    f"{percentile(run.delays, 0.99) * 1e3:>6.1f}ms "
                    f"{max(run.delays, default=float('nan')) * 1e3:>6.0f}ms "
                    f"{run.full_gcs:>8} {run.longest_gc * 1e3:>8.0f}ms {run.wall:>5.1f}s "
                    f"{len(run.errors) + run.short:>6}"
                )
                if run.errors:
                    print(f"  first error: {run.errors[0]!r}")


# --------------------------------------------------------------------------- memory


def memory(deltas: int) -> tuple[float, float]:
    """MiB alive at the last text delta of ``ChatLetta.stream``, with each chunk dropped.

    First: all that ``tracemalloc`` sees (LangChain's ``stream`` keeps every chunk
    for ``on_llm_end``); second: what the model's own generator keeps (``_stream``,
    allocations in this package's files).
    """
    text = sum(len(WORDS[i % len(WORDS)]) for i in range(deltas))
    with loopback(deltas, "64k") as base_url:
        model = _model(base_url)
        model.invoke("hi")  # connection and imports first, outside the figures
        figures = []
        for chunks, ours in (
            (lambda: model.stream("hi"), False),
            (lambda: model._stream([HumanMessage("hi")]), True),
        ):
            gc.collect()
            tracemalloc.start()
            seen = 0
            try:
                for chunk in chunks():
                    seen += len(chunk.text)
                    if seen == text:  # the chunk with the last text delta, still held
                        snapshot = tracemalloc.take_snapshot()
                        seen += 1
            finally:
                tracemalloc.stop()
            if ours:
                snapshot = snapshot.filter_traces([tracemalloc.Filter(True, "*langchain_letta*")])
            figures.append(sum(s.size for s in snapshot.statistics("filename")) / 2**20)
    return figures[0], figures[1]


# --------------------------------------------------------------------------- main


PACKAGES = ("langchain-core", "httpx", "aiohttp", "httpx-aiohttp", "letta-client", "uvloop")


def machine() -> str:
    model_name = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} absent")
    return (
        f"{os.cpu_count()} CPUs ({model_name}), Python {platform.python_version()}; "
        + ", ".join(versions)
    )


def layers_of(args: argparse.Namespace) -> set[str]:
    """The paths timed only for the layer tables."""
    if not args.layers:
        return set()
    return {name for _, names in LAYERS[:2] for name in names} - {CLIENT, STREAM, ASTREAM}


def run_shape(shape: str, args: argparse.Namespace, letta: Any) -> dict[str, Figure]:
    """The table of one shape: every path on one server, taking turns."""
    label = SHAPES[shape]
    deltas = args.paced_deltas if shape == "paced" else args.deltas
    repeats = args.paced_repeats if shape == "paced" else args.repeats
    expect = sum(len(WORDS[i % len(WORDS)]) for i in range(deltas))
    loop = new_loop(args.loop)
    with loopback(deltas, shape) as base_url:
        astream, close_astream = astream_path(base_url, loop)
        paths = {
            RAW: raw_path(base_url),
            CLIENT: client_path(base_url),
            STREAM: stream_path(base_url),
            ASTREAM: astream,
            INVOKE: invoke_path(base_url),
        }
        sdk = None
        if not isinstance(letta, str):
            sdk = Sdk(letta, base_url)
            paths |= sdk_paths(sdk, loop)
        if shape != "paced":
            paths[FLOOR] = floor_path(deltas)
        paths[FLOOR_AIO], close_floor = aiohttp_floor_path(base_url, loop)
        closers = [close_astream, close_floor]
        if args.layers:
            layers, more = layer_paths(base_url, loop, deltas, expect)
            paths |= layers
            closers += more
        best = measure(paths, expect, repeats)
        shown = {name: figure for name, figure in best.items() if name not in layers_of(args)}
        print_table(label, deltas, shown)
        if args.layers:
            print_layers(label, deltas, best)
        for close in closers:
            loop.run_until_complete(close())
        if sdk is not None:
            loop.run_until_complete(sdk.aclose())
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    if args.profile:
        profile_shape(shape, args)
    return best


def profile_shape(shape: str, args: argparse.Namespace) -> None:
    """cProfile of ``ChatLetta.stream`` and ``astream`` on a server of their own.

    Paced, the frames are 1.5 ms apart and there are 2,000 at most: slowed down by
    the profiler, the client must still find each frame alone, as it does unprofiled.
    """
    label = SHAPES[shape]
    deltas = args.deltas
    options: list[str] = []
    if shape == "paced":
        deltas = min(args.paced_deltas, 2000)
        options = ["--pace", PROFILE_PACE]
        label = f"paced, 1 frame/{float(PROFILE_PACE) * 1e3:g} ms"
    loop = new_loop(args.loop)
    with loopback(deltas, shape, *options) as base_url:
        astream, close = astream_path(base_url, loop)
        for name, run in ((STREAM, stream_path(base_url)), (ASTREAM, astream)):
            run()  # warm up
            profile(name, run, deltas, label, args.profile_top)
        loop.run_until_complete(close())
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--deltas", type=int, default=20_000, help="text deltas per stream")
    parser.add_argument("--repeats", type=int, default=3, help="passes per measurement")
    parser.add_argument("--paced-deltas", type=int, default=5_000, help="deltas of a paced stream")
    parser.add_argument("--paced-repeats", type=int, default=7, help="passes per paced measurement")
    parser.add_argument(
        "--shapes", default=DEFAULT_SHAPES, help=f"comma-separated, of {', '.join(SHAPES)}"
    )
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="asyncio", help="of the async paths"
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile ChatLetta.stream and astream per shape"
    )
    parser.add_argument("--profile-top", type=int, default=25, help="functions listed")
    parser.add_argument(
        "--layers", action="store_true", help="also time each layer of stream and astream alone"
    )
    parser.add_argument("--no-delay", action="store_true", help="skip the paced delay check")
    parser.add_argument("--no-scale", action="store_true", help="skip the concurrent streams")
    parser.add_argument("--scale-streams", type=int, default=1000, help="concurrent streams")
    parser.add_argument("--scale-deltas", type=int, default=50, help="text deltas per stream")
    parser.add_argument("--scale-rate", type=int, default=5000, help="frames/s the server writes")
    parser.add_argument(
        "--scale-loops", default="asyncio,uvloop", help="event loops of the concurrent runs"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc runs")
    args = parser.parse_args(argv)
    shapes = [shape for shape in args.shapes.split(",") if shape]
    for shape in shapes:
        if shape not in SHAPES:
            parser.error(f"unknown shape {shape!r}, not one of {', '.join(SHAPES)}")
    started = time.perf_counter()
    print(machine())
    print(
        f"{args.deltas:,} text deltas per stream (0.16.8 shape; paced: {args.paced_deltas:,}), "
        f"best of {args.repeats} passes (paced: {args.paced_repeats}); client CPU "
        f"(time.process_time), server in its own process; async paths on {args.loop}"
    )
    letta = letta_sdk()
    if isinstance(letta, str):
        print(f"letta-client rows skipped: {letta}")
    tables = {shape: run_shape(shape, args, letta) for shape in shapes}
    print_targets(tables)
    if not args.no_delay:
        paced_delays(args.paced_deltas, letta, args.loop)
    if not args.no_scale:
        loops = [kind for kind in args.scale_loops.split(",") if kind]
        if "uvloop" in loops and importlib.util.find_spec("uvloop") is None:
            print("\nuvloop is not installed: the concurrent runs are on asyncio only")
            loops.remove("uvloop")
        scale(args.scale_streams, args.scale_deltas, args.scale_rate, loops, letta)
    if not args.no_memory:
        for deltas in (args.deltas, args.deltas * MEMORY_FACTOR):
            everything, ours = memory(deltas)
            print(
                f"\nmemory at the last of {deltas:,} deltas, chunks dropped: "
                f"{everything:.1f} MiB alive in all (LangChain's stream keeps its chunks), "
                f"{ours:.2f} MiB kept by ChatLetta itself"
            )
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
