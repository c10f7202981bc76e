"""Throughput of the streaming hot path: bytes -> SSE frames -> typed events.

Replays a real Letta capture (token streaming, many small frames), repeated to a
long stream, through:

* ours: ``StreamState().feed(chunk)``, the exact per-read work of the client;
* baseline A: httpx-sse's own decoders (as ``EventSource.iter_sse`` drives them)
  plus ``json.loads`` per frame, i.e. what a naive client does;
* baseline B: the official ``letta-client`` SDK's ``Stream`` (its SSE decoder and
  model construction), when that package is importable; skipped otherwise.

Each path gets the same network reads (4 KiB, 64 KiB, one frame per read) and is
timed with ``time.perf_counter`` as the best of several repeats. A second table
times SSE framing alone (no JSON), and a ``tracemalloc`` run checks that our
memory stays flat when the stream is ten times longer.

Run from the repository root: ``.venv/bin/python bench/bench_stream.py``.
"""

from __future__ import annotations

import argparse
import codecs
import cProfile
import gc
import importlib
import json
import platform
import pstats
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from httpx_sse._decoders import SSEDecoder, SSELineDecoder

from langchain_letta._wire.sse import SSEFrameDecoder
from langchain_letta._wire.state import StreamState

REPO = Path(__file__).resolve().parent.parent
CAPTURE = REPO / "tests/data/letta-streams/0.16.8/memgpt_v2_agent/04-tool-call-tokens.sse"
DONE_FRAME = b"data: [DONE]\n\n"
DEFAULT_FRAMES = 20_000
MEMORY_FACTOR = 10
SLOW_REPEATS = 3
"""Passes for baseline B's full path, several times slower than the others."""

OURS = "ours  StreamState.feed"
BASE_A = "A     httpx-sse + json.loads"
BASE_B = "B     letta-client Stream"
OURS_FRAMES = "ours  SSEFrameDecoder.feed"
BASE_A_FRAMES = "A     httpx-sse decoders"
BASE_B_FRAMES = "B     letta-client SSEDecoder"

Runner = Callable[[Sequence[bytes]], int]
"""Consumes every read of one stream; returns how many payloads (not ``[DONE]``) it parsed."""


# --------------------------------------------------------------------------- input


@dataclass(frozen=True)
class Workload:
    """One synthetic stream: a body of whole frames, repeated, then ``[DONE]``."""

    body: bytes
    """The capture's frames without ``[DONE]``, repeated to about the wanted count."""
    payloads: int
    """Data frames in ``body``: the events every path parses."""
    pings: int
    """Of those, keep-alive pings (ours parses but does not return them)."""
    copies: int
    """How many times the capture was repeated."""

    @property
    def stream(self) -> bytes:
        return self.body + DONE_FRAME


def load_workload(capture: Path, target_frames: int) -> Workload:
    """Repeat the capture's frames (its ``[DONE]`` dropped) to about ``target_frames``."""
    frames = [f + b"\n\n" for f in capture.read_bytes().split(b"\n\n") if f.strip()]
    frames = [f for f in frames if f != DONE_FRAME]
    copies = max(1, round(target_frames / len(frames)))
    pings = sum(b'"message_type":"ping"' in f for f in frames)
    return Workload(b"".join(frames) * copies, len(frames) * copies, pings * copies, copies)


def split_fixed(data: bytes, size: int) -> list[bytes]:
    """Cut ``data`` into reads of ``size`` bytes (frames and UTF-8 sequences cut anywhere)."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def split_frames(data: bytes) -> list[bytes]:
    """One read per SSE frame: the worst case for per-read overhead."""
    return [f + b"\n\n" for f in data.split(b"\n\n") if f]


# --------------------------------------------------------------------------- paths


def run_ours(chunks: Sequence[bytes]) -> int:
    """The client's per-read work: frames, typed events, progress; pings dropped."""
    state = StreamState()
    events = 0
    for chunk in chunks:
        events += len(state.feed(chunk))
        if state.done:
            break
    if not state.done:
        raise RuntimeError("ours: the stream ended before [DONE]")
    return events


def run_ours_frames(chunks: Sequence[bytes]) -> int:
    """Our SSE framing alone (``SSEFrameDecoder.feed``), no JSON."""
    decoder = SSEFrameDecoder()
    return sum(1 for chunk in chunks for frame in decoder.feed(chunk) if frame.data != "[DONE]")


def _httpx_sse_frames(chunks: Sequence[bytes]) -> Iterator[str]:
    """Payloads as ``EventSource.iter_sse`` yields them over ``response.iter_text()``."""
    text_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # as httpx's
    lines = SSELineDecoder()
    decoder = SSEDecoder()

    def events(batch: list[str]) -> Iterator[str]:
        for line in batch:
            sse = decoder.decode(line.rstrip("\n"))
            if sse is not None:
                yield sse.data

    for chunk in chunks:
        text = text_decoder.decode(chunk)
        if text:  # httpx's TextChunker drops empty text
            yield from events(lines.decode(text))
    yield from events(lines.flush())


def run_httpx_sse(chunks: Sequence[bytes]) -> int:
    """Baseline A: httpx-sse framing, then ``json.loads`` per payload (plain dicts)."""
    for payloads, data in enumerate(_httpx_sse_frames(chunks)):
        if data == "[DONE]":
            return payloads
        json.loads(data)
    raise RuntimeError("httpx-sse: the stream ended before [DONE]")


def run_httpx_sse_frames(chunks: Sequence[bytes]) -> int:
    """httpx-sse framing alone, no JSON."""
    return sum(1 for data in _httpx_sse_frames(chunks) if data != "[DONE]")


class _ReplayResponse:
    """Just enough of ``httpx.Response`` for the SDK's ``Stream``: the reads, and close()."""

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = chunks
        self.status_code = 200

    def iter_bytes(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def close(self) -> None:
        pass


def load_sdk() -> tuple[Runner, Runner] | str:
    """Baseline B runners (full, framing only), or why the SDK cannot be used."""
    try:
        letta = importlib.import_module("letta_client")
        streaming = importlib.import_module("letta_client._streaming")
        types = importlib.import_module("letta_client.types.agents")
    except ImportError as error:
        return f"letta-client is not importable in {sys.executable} ({error})"
    # The SDK's own choices: messages.stream() passes Stream[LettaStreamingResponse],
    # and the chunk type is taken from it exactly like this in _response.py.
    stream_cls: Any = streaming.Stream[types.LettaStreamingResponse]
    cast_to = streaming.extract_stream_chunk_type(stream_cls)
    # No request is ever sent: the client only supplies its decoder and model path.
    client = letta.Letta(api_key="bench", base_url="http://127.0.0.1:9")

    def run_sdk(chunks: Sequence[bytes]) -> int:
        """Baseline B: Stream.__stream__ = SSEDecoder + sse.json() + _process_response_data."""
        stream = streaming.Stream(cast_to=cast_to, response=_ReplayResponse(chunks), client=client)
        return sum(1 for _ in stream)

    def run_sdk_frames(chunks: Sequence[bytes]) -> int:
        """The SDK's SSE framing alone, no JSON."""
        frames = client._make_sse_decoder().iter_bytes(iter(chunks))
        return sum(1 for sse in frames if sse.data != "[DONE]")

    return run_sdk, run_sdk_frames


# --------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Candidate:
    """One path under test, and the event count it must report on every pass."""

    name: str
    runner: Runner
    expect: int
    max_repeats: int | None = None
    """Fewer passes for a slow baseline, to keep the whole run under a minute."""


def timed(candidate: Candidate, chunks: Sequence[bytes]) -> float:
    """Wall time of one full pass over ``chunks``; the count is checked, untimed."""
    gc.collect()
    start = time.perf_counter()
    count = candidate.runner(chunks)
    elapsed = time.perf_counter() - start
    if count != candidate.expect:
        raise RuntimeError(f"{candidate.name}: {count} events, expected {candidate.expect}")
    return elapsed


def measure(
    candidates: Sequence[Candidate], reads: dict[str, list[bytes]], payloads: int, repeats: int
) -> dict[tuple[str, str], float]:
    """Payloads per second, keyed by (path, read size): best of ``repeats`` passes.

    The paths take turns within each repeat, so a burst of noise on a shared
    machine slows one pass of each rather than every pass of one.
    """
    rates: dict[tuple[str, str], float] = {}
    for label, chunks in reads.items():
        best = dict.fromkeys((c.name for c in candidates), float("inf"))
        for i in range(repeats):
            for candidate in candidates:
                if candidate.max_repeats is None or i < candidate.max_repeats:
                    best[candidate.name] = min(best[candidate.name], timed(candidate, chunks))
        for name, seconds in best.items():
            rates[name, label] = payloads / seconds
    return rates


def print_table(
    title: str, unit: str, rates: dict[tuple[str, str], float], bases: dict[str, str]
) -> None:
    """One row per (path, read size), with a ratio column per baseline that was measured."""
    present = {k: v for k, v in bases.items() if any(path == v for path, _ in rates)}
    header = f"{'path':<30} {'reads':<8} {unit:>10}"
    header += "".join(f" {'vs ' + key:>7}" for key in present)
    print(f"\n{title}\n{header}\n{'-' * len(header)}")
    for (path, reads), rate in rates.items():
        line = f"{path:<30} {reads:<8} {rate:>10,.0f}"
        for base in present.values():
            line += f" {rate / rates[base, reads]:>6.2f}x"
        print(line)


# --------------------------------------------------------------------------- memory


def traced_peaks(chunks: Sequence[bytes], copies: int) -> tuple[int, int]:
    """tracemalloc peaks of ours after one copy of ``chunks`` and after ``copies`` copies.

    One stream, one pass: the first figure is the peak over the first copy (the
    benchmark's stream), the second over the whole, ``copies`` times longer stream.
    The reads exist before tracing starts, so a peak is what the client itself
    holds: its unfinished tail plus one read's frames and events (dropped after
    each read, as a consumer of ``EventStream.batches()`` would).
    """
    gc.collect()
    tracemalloc.start()
    try:
        state = StreamState()
        for chunk in chunks:
            state.feed(chunk)
        first = tracemalloc.get_traced_memory()[1]
        for _ in range(copies - 1):
            for chunk in chunks:
                state.feed(chunk)
        state.feed(DONE_FRAME)
        if not state.done:
            raise RuntimeError("memory run: no [DONE]")
        return first, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="stream length")
    parser.add_argument("--repeats", type=int, default=5, help="passes per measurement")
    parser.add_argument(
        "--profile", action="store_true", help="also print cProfile's top entries for ours"
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    work = load_workload(CAPTURE, args.frames)
    stream = work.stream
    reads = {
        "4 KiB": split_fixed(stream, 4 * 1024),
        "64 KiB": split_fixed(stream, 64 * 1024),
        "1 frame": split_frames(stream),
    }
    print(
        f"input: {CAPTURE.relative_to(REPO)} x{work.copies} = {work.payloads:,} frames "
        f"({work.pings:,} pings) + [DONE], {len(stream) / 2**20:.1f} MiB"
    )
    print(
        f"best of {args.repeats} passes ({SLOW_REPEATS} for B); Python {platform.python_version()} "
        f"on {platform.machine()}; events/s = data frames parsed per second "
        "(the same count for every path)"
    )

    full = [
        Candidate(OURS, run_ours, work.payloads - work.pings),  # pings parsed, not returned
        Candidate(BASE_A, run_httpx_sse, work.payloads),
    ]
    framing = [
        Candidate(OURS_FRAMES, run_ours_frames, work.payloads),
        Candidate(BASE_A_FRAMES, run_httpx_sse_frames, work.payloads),
    ]
    sdk = load_sdk()
    if isinstance(sdk, str):
        print(f"baseline B skipped: {sdk}")
    else:
        full.append(Candidate(BASE_B, sdk[0], work.payloads, max_repeats=SLOW_REPEATS))
        framing.append(Candidate(BASE_B_FRAMES, sdk[1], work.payloads))

    print_table(
        "bytes -> typed events",
        "events/s",
        measure(full, reads, work.payloads, args.repeats),
        {"A": BASE_A, "B": BASE_B},
    )
    print_table(
        "SSE framing only, no JSON",
        "frames/s",
        measure(framing, reads, work.payloads, args.repeats),
        {"A": BASE_A_FRAMES, "B": BASE_B_FRAMES},
    )

    body_reads = split_fixed(work.body, 64 * 1024)
    short, long = traced_peaks(body_reads, MEMORY_FACTOR)
    print(
        f"\nmemory, ours with 64 KiB reads, tracemalloc peak: "
        f"after {work.payloads:,} frames {short / 1024:,.0f} KiB; "
        f"after {work.payloads * MEMORY_FACTOR:,} frames {long / 1024:,.0f} KiB "
        f"({long / short:.2f}x for a {MEMORY_FACTOR}x longer stream)"
    )

    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(run_ours, reads["64 KiB"])
        print("\ncProfile of ours, 64 KiB reads, top entries by own time:")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(15)

    print(f"\ntotal {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
