"""Client CPU per token delta over real HTTP: ChatLetta against the official SDK and floors.

A server in another process (``bench/loopback_server.py``) on 127.0.0.1 answers
every request with one prepared token stream (0.16.8 shape), sent back to back
("saturated"), either one SSE frame per HTTP chunk (as uvicorn writes a live
Letta stream) or in 64 KiB chunks (many frames per read). This process reads
it through each path and ``time.process_time`` gives the client's own CPU:

* raw: ``httpx`` + ``httpx-sse`` + ``json.loads`` per frame (dicts only), the floor
  of a client that reads chunk by chunk;
* ``LettaClient.stream``: our client's typed events;
* ``ChatLetta.stream`` / ``astream`` / ``invoke``: the LangChain surfaces;
* ``letta-client`` / ``AsyncLetta``: the official SDK's ``agents.messages.stream``,
  when ``letta_client`` is importable (see README's scratch venv);
* LangChain floor: a ``BaseChatModel`` whose ``_stream`` yields ready-made chunks
  of one text block each, no I/O: what LangChain's own ``stream()`` costs.

Each figure is the best of several passes, the paths taking turns in each pass;
ratios are against the SDK measured in the same run. Then ``tracemalloc``
measures memory over a stream and one ten times as long. No figure here is
asserted by a test: the machine is shared and timings vary.

Run from the repository root: ``.venv/bin/python bench/bench_chat.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib
import json
import os
import platform
import pstats
import subprocess
import sys
import time
import tracemalloc
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx_sse
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from loopback_server import WORDS

from langchain_letta import ChatLetta, LettaClient, OutgoingMessage, StreamRequest

SERVER = Path(__file__).resolve().with_name("loopback_server.py")
AGENT = "agent-9d9e1f61-7d82-476c-9996-867db2b9c18f"
SHAPES = {"frame": "1 frame/chunk", "64k": "64 KiB chunks", "paced": "paced, 1 frame/0.3 ms"}
MEMORY_FACTOR = 10
PACE = "0.0003"
"""Seconds between the frames of the paced shape."""
CONCURRENCY = (200, 500)

Pass = Callable[[], int]
"""Reads one whole stream; returns how many characters of answer text it saw (checked, untimed)."""


@contextmanager
def loopback(deltas: int, shape: str) -> Iterator[str]:
    """The base URL of a server process streaming ``deltas`` text deltas in ``shape``."""
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "--deltas", str(deltas), "--shape", shape, "--pace", PACE],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield f"http://127.0.0.1:{int(process.stdout.readline())}"
    finally:
        process.kill()
        process.wait()


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
        return sum(len(event.text) for event in client.stream(AGENT, request) if _said(event))

    return run


def _said(event: Any) -> bool:
    return bool(event.message_type == "assistant_message")


def _text(chunk: AIMessageChunk) -> int:
    """Characters of answer text in a chunk, read from its blocks (``.text`` costs more)."""
    return sum(len(block.get("text", "")) for block in chunk.content if isinstance(block, dict))


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


def astream_path(base_url: str, loop: asyncio.AbstractEventLoop) -> Pass:
    """``ChatLetta.astream``."""
    model = _model(base_url)

    async def run() -> int:
        return sum([_text(chunk) async for chunk in model.astream("hi")])

    return on_loop(loop, run)


def sdk_paths(base_url: str, loop: asyncio.AbstractEventLoop) -> tuple[Pass, Pass] | str:
    """The official SDK's ``agents.messages.stream``, sync and async, or why it is absent."""
    try:
        letta = importlib.import_module("letta_client")
    except ImportError as error:
        return f"letta-client is not importable in {sys.executable} ({error})"
    messages = [{"role": "user", "content": "hi"}]
    # messages.stream is marked deprecated in favour of a newer route; it is the one
    # ChatLetta's requests take, so the comparison stays like for like.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=__name__)
    sync = letta.Letta(base_url=base_url, api_key="bench", max_retries=0)
    asynchronous = letta.AsyncLetta(base_url=base_url, api_key="bench", max_retries=0)

    def run() -> int:
        stream = sync.agents.messages.stream(AGENT, messages=messages, stream_tokens=True)
        return sum(len(event.content) for event in stream if _said(event))

    async def arun() -> int:
        stream = await asynchronous.agents.messages.stream(
            AGENT, messages=messages, stream_tokens=True
        )
        return sum([len(event.content) async for event in stream if _said(event)])

    return run, on_loop(loop, arun)


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


# --------------------------------------------------------------------------- timing

RAW = "raw httpx-sse + json.loads"
CLIENT = "LettaClient.stream"
STREAM = "ChatLetta.stream"
ASTREAM = "ChatLetta.astream"
INVOKE = "ChatLetta.invoke"
SDK = "letta-client (sync)"
ASDK = "letta-client (AsyncLetta)"
FLOOR = "LangChain floor (no I/O)"


def cpu_of(name: str, run: Pass, expect: int) -> float:
    """Client CPU seconds of one pass; the text it saw is checked, untimed."""
    gc.collect()
    start = time.process_time()
    seen = run()
    elapsed = time.process_time() - start
    if seen != expect:
        raise RuntimeError(f"{name}: {seen} characters of text, expected {expect}")
    return elapsed


def measure(paths: dict[str, Pass], expect: int, repeats: int) -> dict[str, float]:
    """Best CPU seconds per path; the paths take turns in each pass (shared-machine noise)."""
    for name, run in paths.items():
        cpu_of(name, run, expect)  # warm up: connections, imports, caches
    best = dict.fromkeys(paths, float("inf"))
    for _ in range(repeats):
        for name, run in paths.items():
            best[name] = min(best[name], cpu_of(name, run, expect))
    return best


def print_table(shape: str, deltas: int, best: dict[str, float]) -> None:
    """µs of client CPU per delta, and ratios to the SDK (sync, and async) of the same run."""
    bases = [name for name in (SDK, ASDK) if name in best]
    header = f"{'path (' + shape + ')':<34} {'µs/delta':>9}" + "".join(
        f" {'vs ' + ('SDK' if b == SDK else 'AsyncLetta'):>13}" for b in bases
    )
    print(f"\n{header}\n{'-' * len(header)}")
    for name, seconds in best.items():
        line = f"{name:<34} {seconds / deltas * 1e6:>9.1f}"
        line += "".join(f" {seconds / best[b]:>12.2f}x" for b in bases)
        print(line)


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


# --------------------------------------------------------------------------- concurrency


def concurrently(
    streams: int, open_stream: Callable[[str], AsyncIterator[Any]]
) -> tuple[list[float], float, int]:
    """``streams`` streams at once on one new event loop, each read to its end.

    Returns each stream's seconds to its first chunk, the seconds until the last
    stream ended, and how many streams failed.
    """

    async def one(start: float) -> float:
        first = 0.0
        async for _chunk in open_stream("hi"):
            first = first or time.perf_counter() - start
        return first

    async def run() -> tuple[list[float], float, int]:
        start = time.perf_counter()
        ones = [one(start) for _ in range(streams)]
        results = await asyncio.gather(*ones, return_exceptions=True)
        total = time.perf_counter() - start
        firsts = [result for result in results if isinstance(result, float)]
        return firsts, total, streams - len(firsts)

    return asyncio.run(run())


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def concurrency(deltas: int) -> None:
    """Time to first chunk and in all of many ``astream`` at once, and of ``AsyncLetta``'s."""
    try:
        letta: Any = importlib.import_module("letta_client")
    except ImportError:
        letta = None
    with loopback(deltas, "frame") as base_url:
        print(f"\n{deltas:,} text deltas per stream, 1 frame/chunk, all streams on one event loop")
        header = (
            f"{'path':<28} {'streams':>7} {'first p50':>10} {'first p99':>10} {'total':>8} errors"
        )
        print(f"{header}\n{'-' * len(header)}")
        for streams in CONCURRENCY:
            openers = {ASTREAM: _model(base_url).astream}
            if letta is not None:
                openers[ASDK] = _sdk_stream(letta, base_url)
            for name, open_stream in openers.items():
                firsts, total, errors = concurrently(streams, open_stream)
                print(
                    f"{name:<28} {streams:>7} {percentile(firsts, 0.5) * 1e3:>8.0f}ms "
                    f"{percentile(firsts, 0.99) * 1e3:>8.0f}ms {total:>7.1f}s {errors:>6}"
                )


def _sdk_stream(letta: Any, base_url: str) -> Callable[[str], AsyncIterator[Any]]:
    """Opens one ``AsyncLetta`` token stream; one client, made in the loop that uses it."""
    made: list[Any] = []

    async def stream(text: str) -> AsyncIterator[Any]:
        if not made:
            made.append(letta.AsyncLetta(base_url=base_url, api_key="bench", max_retries=0))
        messages = [{"role": "user", "content": text}]
        events = await made[0].agents.messages.stream(AGENT, messages=messages, stream_tokens=True)
        async for event in events:
            yield event

    return stream


# --------------------------------------------------------------------------- main


def machine() -> str:
    model_name = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model_name}), Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--deltas", type=int, default=20_000, help="text deltas per stream")
    parser.add_argument("--repeats", type=int, default=3, help="passes per measurement")
    parser.add_argument("--profile", action="store_true", help="cProfile ChatLetta.stream")
    parser.add_argument("--paced-deltas", type=int, default=5_000, help="deltas of a paced stream")
    parser.add_argument("--concurrent-deltas", type=int, default=500, help="deltas per stream")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc runs")
    parser.add_argument("--no-concurrency", action="store_true", help="skip the concurrent runs")
    parser.add_argument(
        "--shapes", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}"
    )
    args = parser.parse_args(argv)
    shapes = {shape: SHAPES[shape] for shape in args.shapes.split(",")}
    started = time.perf_counter()
    print(
        f"{machine()}; {args.deltas:,} text deltas per stream (0.16.8 shape; paced: "
        f"{args.paced_deltas:,}), "
        f"best of {args.repeats} passes; client CPU (time.process_time), server in its own process"
    )
    loop = asyncio.new_event_loop()
    for shape, label in shapes.items():
        deltas = args.paced_deltas if shape == "paced" else args.deltas
        expect = sum(len(WORDS[i % len(WORDS)]) for i in range(deltas))
        with loopback(deltas, shape) as base_url:
            paths = {
                RAW: raw_path(base_url),
                CLIENT: client_path(base_url),
                STREAM: stream_path(base_url),
                ASTREAM: astream_path(base_url, loop),
                INVOKE: invoke_path(base_url),
            }
            sdk = sdk_paths(base_url, loop)
            if isinstance(sdk, str):
                print(f"letta-client skipped: {sdk}")
            else:
                paths[SDK], paths[ASDK] = sdk
            if shape != "paced":
                paths[FLOOR] = floor_path(deltas)
            print_table(label, deltas, measure(paths, expect, args.repeats))
            if args.profile and shape == "frame":
                profiler = cProfile.Profile()
                profiler.runcall(paths[STREAM])
                print(f"\ncProfile of {STREAM} ({label}), top entries by own time:")
                pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(18)
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    if not args.no_concurrency:
        concurrency(args.concurrent_deltas)
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
