"""Cut-and-resume fuzz: a background run cut anywhere gives the answer of the uncut run.

A proxy may cut a stream at any byte: between two frames, inside one, inside a
multi-byte character, between the two line feeds that end a frame, before or after
``stop_reason``, ``usage_statistics`` or ``[DONE]``, inside the HTTP chunk framing.
Whatever the byte, the client must resume after the last ``seq_id`` it saw, and
``ChatLetta`` must answer exactly what it answers when nothing is cut: the same
content (every character once, in order), usage and metadata. Issue 17, item 8: a
sync ``invoke`` in a conversation, cut after seq 85 of a 645-character answer, once
returned 548 characters without an error.

Every case runs through real sockets and the package's real transports (httpx for
sync, aiohttp for async), on both routes (the agent's own thread and a conversation),
through ``invoke``/``stream`` and ``ainvoke``/``astream``:

- one cut, made by the fake server in the body (``Reply.with_faults(cut_at_byte=[…])``),
  at every frame boundary and at every place inside a frame where a cut splits it
  differently (:func:`inside`): each combination of route, sync/async and surface
  gets one of those places per frame in turn, so that together they try each place
  of each frame; ``LETTA_FUZZ_EVERY_BYTE=1`` tries every byte in every combination
  instead (hours, not a minute);
- two cuts: the first stream cut, then the resumed one cut again (at its first byte,
  inside its first frame, at a boundary, inside ``[DONE]``...);
- one cut in the raw bytes of the HTTP response (:class:`CuttingProxy`), inside chunk
  size lines and the CRLFs around chunk data as well: the transports' own parsers.

The streams: real background runs of 0.16.8 and 0.11.7 (token-streamed tool calls,
reasoning and text) and of a 0.16.8 conversation, and a long one built from 0.16.8's
frames (a 645-character answer in 135 deltas after 28 of reasoning, with 2-, 3- and
4-byte UTF-8 characters), sent both one frame per write (a paced stream) and all at
once (a burst, as Letta's Redis reader sends a batch of up to 100 frames).

A cut before the first frame is whole leaves the client without a run id: it sends
the same request again (the fake server, as 0.16.7+ does, knows its otids and answers
with the run they started, from its start), and the answer must still be exact, the
turn taken once.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.messages.ai import add_ai_message_chunks

from langchain_letta import ChatLetta
from langchain_letta.testing import FakeLettaServer, Reply
from tests.conftest import CAPTURES

AGENT = "agent-55573f99-7c7b-4e3c-a4ac-cada9620ce68"
CONVERSATION = "conv-7d0e3c52-5d33-4a5e-9a57-0f6b4b0f2c11"
EVERY_BYTE = os.environ.get("LETTA_FUZZ_EVERY_BYTE") == "1"

Route = Literal["agent", "conversation"]
Mode = Literal["sync", "async"]
Surface = Literal["invoke", "stream"]
Combo = tuple[Route, Mode, Surface]
COMBOS: list[Combo] = [
    (route, mode, surface)
    for route in ("agent", "conversation")
    for mode in ("sync", "async")
    for surface in ("invoke", "stream")
]
COMBO_IDS = ["-".join(combo) for combo in COMBOS]

# ------------------------------------------------------------------ the streams

# A long answer as a model streams it: words and pieces of words, accents, CJK and an
# emoji (2-, 3- and 4-byte UTF-8, which a cut can split), a line break, and text that
# looks like SSE framing. 645 characters, as the answer that lost 97 of them.
ANSWER = (
    "Here is a summary of what you asked about. The café on the corner opens at "
    "7:30 and serves a crème brûlée that regulars call the best in town; its "
    "owner, Zoë, learnt the recipe in Lyon. 日本語のメニューもあります — "
    "ask for the green-tea set 🍵.\nA few notes: the stream format uses "
    '"data: " lines ended by a blank line, and [DONE] closes it, so none of '
    "that text may confuse a parser that reads this answer. Prices: a coffee "
    "costs €3.20, a pastry €2.80, and the tasting menu €24. Opening hours are "
    "Monday to Saturday, 7:30\u201318:00; on Sundays the kitchen closes at 14:00. "
    "Reservations are taken by phone only. Ελληνικά, русский, עברית: all welcome. "
    "Merci, danke!"
)
REASONING = (
    "The user wants a summary of the café: hours, prices, the menu in two "
    "languages. Keep it short; mention the crème brûlée and Zoë."
)
HELLO = "Hello from the fake model"
_TOKEN = re.compile(r"\s*\S{1,6}|\s+")


def tokens(text: str) -> list[str]:
    """``text`` in pieces as a model streams them: a word with its space, long words split."""
    pieces = _TOKEN.findall(text)
    assert "".join(pieces) == text
    return pieces


def long_answer(*, burst: bool) -> Reply:
    """A background run of 0.16.8 frames with many deltas: reasoning, then a long answer.

    Built from a real token stream (``memgpt_v2_agent/02-stream-tokens.sse``): its
    ping, reasoning, assistant, ``stop_reason`` and usage frames, every field as
    recorded but the delta, numbered as Letta's Redis stream numbers them, and
    serialised as Letta does (compact JSON, UTF-8 unescaped). ``burst``: sent in one
    write rather than one frame per write.
    """
    template = Reply.from_capture(CAPTURES / "0.16.8/memgpt_v2_agent/02-stream-tokens.sse")
    frames = template.frames()
    ping, reasoning, text = (json.loads(frames[i].removeprefix(b"data: ")) for i in (0, 1, 3))
    payloads = [ping]
    payloads += [{**reasoning, "reasoning": piece} for piece in tokens(REASONING)]
    payloads += [{**text, "content": piece} for piece in tokens(ANSWER)]
    numbered = [
        b"data: %s\n\n"
        % json.dumps({**payload, "seq_id": seq}, separators=(",", ":"), ensure_ascii=False).encode()
        for seq, payload in enumerate(payloads, start=1)
    ]
    numbered += frames[-3:]  # stop_reason, usage_statistics, [DONE]: seq_ids not shown
    return Reply(body=b"".join(numbered), split_frames=not burst)


@dataclass(frozen=True)
class Stream:
    """A background run to cut, and the text of its answer."""

    reply: Reply
    text: str

    @functools.cached_property
    def frames(self) -> list[bytes]:
        return self.reply.frames()

    @functools.cached_property
    def starts(self) -> list[int]:
        """Where each frame starts in the body, and where the body ends."""
        return [0, *itertools.accumulate(len(frame) for frame in self.frames)]

    def after(self, whole: int) -> Stream:
        """What a resume after the first ``whole`` frames sends."""
        return Stream(Reply(body=b"".join(self.frames[whole:])), self.text)


def recorded(path: str) -> Stream:
    return Stream(Reply.from_capture(CAPTURES / path), HELLO)


STREAMS = {
    # Real background runs: a memory tool call in tokens, its return, the answer in tokens.
    "0.16.8-tool": recorded("0.16.8/background-redis/32-bg-disconnect-full-reread.sse"),
    # The same on 0.11.7, reasoning first.
    "0.11.7-reasoning-tool": recorded("0.11.7/background-redis/32-bg-disconnect-full-reread.sse"),
    # A 0.16.8 conversation's run (POST /v1/conversations/{id}/messages), in tokens.
    "0.16.8-conversation": recorded("0.16.8/lab-features/32-conversation-tokens-background.sse"),
    # 645 characters in 135 deltas after 28 of reasoning: one frame per write, or all at once.
    "long-paced": Stream(long_answer(burst=False), ANSWER),
    "long-burst": Stream(long_answer(burst=True), ANSWER),
}


def test_the_streams_are_background_runs_numbered_as_letta_numbers_them() -> None:
    for name, stream in STREAMS.items():
        assert b'"seq_id":null' not in stream.reply.body, name
        payloads = [
            json.loads(frame.removeprefix(b"data: "))
            for frame in stream.frames
            if frame.startswith(b"data: {")
        ]
        shown = [payload["seq_id"] for payload in payloads if "seq_id" in payload]
        assert shown == list(range(1, len(shown) + 1)), name
        assert payloads[0]["seq_id"] == 1  # 0.16.8: the ping; 0.11.7 sends none
        assert payloads[0]["run_id"]
        assert [p["message_type"] for p in payloads[-2:]] == ["stop_reason", "usage_statistics"]
        assert stream.frames[-1] == b"data: [DONE]\n\n"
    assert len(ANSWER) == 645
    long = STREAMS["long-paced"]
    assert len(long.frames) == 1 + 28 + 135 + 3
    assert long.reply.body == STREAMS["long-burst"].reply.body
    assert len(long.reply.body) > 60_000


# ------------------------------------------------------------------ cut points


def inside(frame: bytes) -> list[int]:
    """The offsets inside one frame where a cut splits it differently.

    In ``data:`` (the field name not whole), right after ``data: `` (no value yet),
    in the middle of the JSON, inside the first multi-byte character (half of it),
    before the line feed that ends the line, and between it and the blank line.
    """
    offsets = {1, 6, len(frame) // 2, len(frame) - 2, len(frame) - 1}
    text = frame.decode()
    for index, character in enumerate(text):
        if len(character.encode()) > 1:
            offsets.add(len(text[:index].encode()) + 1)
            break
    return sorted(offset for offset in offsets if 0 < offset < len(frame))


def places(stream: Stream, index: int) -> list[int]:
    """Every place frame ``index`` can be cut: at its start, and each of :func:`inside`."""
    start = stream.starts[index]
    return [start] + [start + offset for offset in inside(stream.frames[index])]


def one_cut_points(stream: Stream, combo: int) -> list[int]:
    """The bytes this combination cuts at: one place per frame, each combination another.

    Frame ``i`` is cut at its place ``i + combo`` (in turn), and the body at its very end
    (all but the end of the response); with ``EVERY_BYTE``, at every byte.
    """
    body = len(stream.reply.body)
    if EVERY_BYTE:
        return list(range(body + 1))
    points = {body}
    for index in range(len(stream.frames)):
        choices = places(stream, index)
        points.add(choices[(index + combo) % len(choices)])
    return sorted(points)


def two_cut_points(stream: Stream, combo: int) -> list[tuple[int, int]]:
    """Pairs of cuts: one in the first stream, one in its resume (counted from its start).

    The first at the start and in the middle of frames spread over the run; the second
    at the resume's first byte (nothing comes), inside and after its first frame, in
    the middle of the rest, at the start of ``stop_reason``, inside ``[DONE]``, and
    after its whole body. Each combination takes every fourth pair, in turn.
    """
    n = len(stream.frames)
    pairs: list[tuple[int, int]] = []
    for index in sorted({1, 2, n // 3, n // 2, n - 4, n - 3, n - 2}):
        start, frame = stream.starts[index], stream.frames[index]
        rest = stream.after(index)
        m = len(rest.frames)
        seconds = {
            0,
            len(rest.frames[0]) // 2,
            rest.starts[1],
            rest.starts[m // 2] + len(rest.frames[m // 2]) // 2,
            rest.starts[max(m - 3, 0)],
            rest.starts[m - 1] + 3,
            rest.starts[m],
        }
        for first in (start, start + len(frame) // 2):
            pairs += [(first, second) for second in sorted(seconds)]
    return pairs if EVERY_BYTE else pairs[combo % 4 :: 4]


def whole_frames(stream: Stream, cut: int) -> int:
    """How many frames a cut at this byte leaves whole (their blank line included)."""
    return sum(1 for end in stream.starts[1:] if end <= cut)


def expected_resumes(stream: Stream, cuts: Sequence[int]) -> list[int]:
    """The cursors the client must resume after.

    A cut before the first whole frame (the ping, with the run id) is no resume: the
    request is sent again, and the run's stream starts over.
    """
    cursor = 0
    resumes: list[int] = []
    for cut in cuts:
        sent = stream.after(cursor)
        if cut >= len(sent.reply.body) or cursor + whole_frames(sent, cut) == len(stream.frames):
            return resumes  # [DONE] arrived: the call is over
        cursor += whole_frames(sent, cut)
        if cursor:
            resumes.append(cursor)
    return resumes


# ------------------------------------------------------------------ running cases


@dataclass
class Answer:
    """What a call gave: the message (or the chunks summed), or the error that ended it."""

    content: Any = None
    usage: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    tool_calls: Any = None
    error: BaseException | None = None

    @classmethod
    def of(cls, message: BaseMessage) -> Answer:
        return cls(
            content=message.content,
            usage=getattr(message, "usage_metadata", None),
            metadata=dict(message.response_metadata),
            tool_calls=[
                getattr(message, name, None) for name in ("tool_calls", "tool_call_chunks")
            ],
        )

    @property
    def text(self) -> str:
        blocks = self.content if isinstance(self.content, list) else [self.content]
        return "".join(
            block.get("text", "") if isinstance(block, dict) else str(block)
            for block in blocks
            if not isinstance(block, dict) or block.get("type") == "text"
        )


def summed(chunks: Sequence[AIMessageChunk]) -> AIMessageChunk:
    return add_ai_message_chunks(chunks[0], *chunks[1:])


def call(model: ChatLetta, surface: Surface) -> Answer:
    try:
        if surface == "invoke":
            return Answer.of(model.invoke("hi"))
        return Answer.of(summed(list(model.stream("hi"))))
    except Exception as error:  # compared, not swallowed
        return Answer(error=error)


async def acall(model: ChatLetta, surface: Surface) -> Answer:
    try:
        if surface == "invoke":
            return Answer.of(await model.ainvoke("hi"))
        return Answer.of(summed([chunk async for chunk in model.astream("hi")]))
    except Exception as error:  # compared, not swallowed
        return Answer(error=error)


@dataclass
class Case:
    """One call: where its streams were cut, what it gave, what it asked of the server."""

    cuts: Sequence[int]
    answer: Answer
    resumes: list[int]
    accepted: int


class Cutter:
    """A fake server for many cases: each message request gets the current reply.

    ``proxy``: reach it through a :class:`CuttingProxy`, which cuts the raw bytes of
    the responses rather than the server the bodies.
    """

    def __init__(self, stream: Stream, *, proxy: bool = False) -> None:
        self.stream = stream
        self.reply = stream.reply
        self.server = FakeLettaServer(lambda request: self.reply)
        self.server.conversations[CONVERSATION] = AGENT
        self.proxy: CuttingProxy | None = None
        self._use_proxy = proxy

    def __enter__(self) -> Cutter:
        self.server.start()
        if self._use_proxy:
            self.proxy = CuttingProxy(int(self.server.base_url.rsplit(":", 1)[1]))
            self.proxy.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        self.server.stop()

    def model(self, route: Route) -> ChatLetta:
        base_url = self.server.base_url if self.proxy is None else self.proxy.base_url
        conversation = CONVERSATION if route == "conversation" else None
        # total_timeout: a client that waits for what never comes fails the case, soon
        return ChatLetta(
            agent_id=AGENT, conversation_id=conversation, base_url=base_url, total_timeout=10
        )

    def run(self, combo: Combo, cases: Sequence[Sequence[int]]) -> tuple[Answer, list[Case]]:
        """The uncut answer, then each case's."""
        route, mode, surface = combo
        done: list[Case] = []
        server = self.server
        start = len(server.received)

        def one(cuts: Sequence[int], answer: Answer, before: int, accepted: int) -> None:
            new = server.received[before:]
            resumes = [r.json()["starting_after"] for r in new if r.path.startswith("/v1/runs/")]
            done.append(Case(cuts, answer, resumes, len(server.accepted) - accepted))

        def arm(cuts: Sequence[int]) -> tuple[int, int]:
            if self.proxy is None:
                self.reply = self.stream.reply.with_faults(cut_at_byte=cuts)
            else:
                self.proxy.cuts[:] = cuts
            return len(server.received), len(server.accepted)

        if mode == "sync":
            model = self.model(route)
            reference = call(model, surface)
            for cuts in cases:
                before, accepted = arm(cuts)
                one(cuts, call(model, surface), before, accepted)
            model.close()
        else:

            async def main() -> Answer:
                model = self.model(route)
                first = await acall(model, surface)
                for cuts in cases:
                    before, accepted = arm(cuts)
                    one(cuts, await acall(model, surface), before, accepted)
                await model.aclose()
                return first

            reference = asyncio.run(main())
        expected_path = (
            f"/v1/conversations/{CONVERSATION}/messages"
            if route == "conversation"
            else "/v1/conversations/default/messages"  # agent-direct mode (0.16.6+)
        )
        sent = [r.path for r in server.received[start:] if r.method == "POST"]
        assert {path for path in sent if not path.startswith("/v1/runs/")} == {expected_path}
        return reference, done


def mismatches(
    stream: Stream, reference: Answer, cases: list[Case], *, raw: bool = False
) -> list[str]:
    """What differs from the uncut answer, case by case (empty: every case is exact).

    ``raw``: the cuts were made in the raw bytes of the response; resume cursors are not
    predicted then (only that the answer is exact).
    """
    found: list[str] = []
    for case in cases:
        answer = case.answer
        where = f"cut at {list(case.cuts)}"
        if case.accepted != 1:
            found.append(f"{where}: {case.accepted} messages accepted")
        expected = None if raw else expected_resumes(stream, case.cuts)
        if answer.error is not None:
            found.append(f"{where}: {type(answer.error).__name__}: {answer.error}")
            continue
        if expected is not None and case.resumes != expected:
            found.append(f"{where}: resumed after {case.resumes}, expected {expected}")
        if answer.text != reference.text:
            found.append(
                f"{where}: {len(answer.text)} characters of {len(reference.text)}: {answer.text!r}"
            )
        for name in ("content", "usage", "metadata", "tool_calls"):
            if getattr(answer, name) != getattr(reference, name):
                found.append(f"{where}: {name} differs: {getattr(answer, name)!r}")
    return found


@pytest.fixture(scope="module")
def cutters() -> Iterator[Callable[..., Cutter]]:
    """One running fake server (and proxy) per stream, for every test of the module."""
    made: dict[tuple[str, bool], Cutter] = {}

    def cutter(name: str, *, proxy: bool = False) -> Cutter:
        if (name, proxy) not in made:
            made[name, proxy] = Cutter(STREAMS[name], proxy=proxy).__enter__()
        return made[name, proxy]

    yield cutter
    for each in made.values():
        each.__exit__(None, None, None)


def check(cutter: Cutter, combo: Combo, cases: Sequence[Sequence[int]]) -> None:
    """Run the cases; every answer must be the uncut one."""
    stream = cutter.stream
    raw = cutter.proxy is not None
    reference, done = cutter.run(combo, cases)
    assert reference.error is None, reference.error
    assert reference.text == stream.text
    assert reference.usage is not None
    assert reference.metadata["stop_reason"] in ("end_turn", "requires_approval")
    found = mismatches(stream, reference, done, raw=raw)
    assert not found, f"{len(found)} of {len(cases)} cases differ:\n" + "\n".join(found[:20])


# ------------------------------------------------------------------ the fuzz


@pytest.mark.parametrize("name", list(STREAMS))
@pytest.mark.parametrize("combo", range(len(COMBOS)), ids=COMBO_IDS)
def test_one_cut_anywhere_gives_the_uncut_answer(
    cutters: Callable[..., Cutter], name: str, combo: int
) -> None:
    cases = [[cut] for cut in one_cut_points(STREAMS[name], combo)]
    check(cutters(name), COMBOS[combo], cases)


@pytest.mark.parametrize("name", list(STREAMS))
@pytest.mark.parametrize("combo", range(len(COMBOS)), ids=COMBO_IDS)
def test_a_resume_cut_again_gives_the_uncut_answer(
    cutters: Callable[..., Cutter], name: str, combo: int
) -> None:
    check(cutters(name), COMBOS[combo], two_cut_points(STREAMS[name], combo))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_cut_in_the_raw_http_bytes_gives_the_uncut_answer(
    cutters: Callable[..., Cutter], mode: Mode
) -> None:
    """Cut inside the chunked framing too: a size line, the CRLFs, the last chunk.

    Every other frame, at one of six places in turn: in its size line, before and
    after the size line's CRLF, in its data, before and inside its closing CRLF.
    """
    stream = STREAMS["long-burst"]
    raw = b"".join(b"%x\r\n%b\r\n" % (len(frame), frame) for frame in stream.frames) + b"0\r\n\r\n"
    points: set[int] = set()
    position = 0
    for index, frame in enumerate(stream.frames):
        head = len(b"%x\r\n" % len(frame))
        spots = [
            1,
            head - 1,
            head,
            head + len(frame) // 2,
            head + len(frame),
            head + len(frame) + 1,
        ]
        if index % 2 == 0 or index >= len(stream.frames) - 3:
            points.add(position + spots[(index // 2) % len(spots)])
        position += head + len(frame) + 2
    points |= {len(raw) - 4, len(raw) - 2, len(raw) - 1}  # inside the last chunk
    route: Route = "conversation" if mode == "sync" else "agent"
    combo: Combo = (route, mode, "invoke")
    check(cutters("long-burst", proxy=True), combo, [[cut] for cut in sorted(points)])


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("name", ["long-paced", "long-burst"])
def test_the_reported_cut_after_seq_85_of_a_645_character_answer_in_a_conversation(
    cutters: Callable[..., Cutter], name: str, mode: Mode
) -> None:
    """Issue 17, item 8: a FIN after seq 85 (byte 30,896 there); resumed after 85."""
    stream = STREAMS[name]
    after_85 = stream.starts[85]
    assert 30_000 < after_85 < 32_000
    cases = [[after_85], [after_85 - 1], [after_85 + 1]]  # at, before, after its blank line
    reference, done = cutters(name).run(("conversation", mode, "invoke"), cases)
    assert reference.text == ANSWER
    assert [case.resumes for case in done] == [[85], [84], [85]]
    assert not mismatches(stream, reference, done)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("cut", [False, True], ids=["whole", "cut-inside-the-gap"])
def test_frames_out_of_seq_order_on_one_connection_are_not_dropped(
    cutters: Callable[..., Cutter], mode: Mode, cut: bool
) -> None:
    """Not a cut: the one way found to lose a block of deltas silently, as reported.

    Letta 0.16.8 stores a background run's frames in a Redis stream and its readers
    send them in the order they were added (``redis_sse_stream_generator``). The writer
    (``RedisSSEStreamWriter``) flushes from ``write_chunk`` and from a periodic task, with
    no lock, and records ``last_flush`` only after its pipeline has run: while the
    periodic flush of seq 62-78 is in flight, each new chunk (79, 80, ...) is flushed on
    its own, possibly on another pooled connection, and may be added first. The client
    then got 79-85 after 61, took the cursor to 85, and dropped 62-78 as replays: the
    answer ended with ``end_turn``, a block of deltas short, and no error (the shape of
    issue 17, item 8: 548 of 645 characters, seq 62-78, resumed after 85).

    Every frame is delivered once, as it arrives (79-85 before 62-78, as sent: holding
    deltas back for a gap that may never close would stall the answer). ``cut``: the
    connection breaks right after 79-85, the gap still open; the client resumes after
    61, not 85, and skips the 79-85 the server sends again.
    """
    stream = STREAMS["long-burst"]
    frames = stream.frames  # frame i holds seq i + 1
    swapped = frames[:61] + frames[78:85] + frames[61:78] + frames[85:]
    arrived = "".join(
        payload["content"]
        for payload in (json.loads(frame.removeprefix(b"data: ")) for frame in swapped[:-1])
        if payload["message_type"] == "assistant_message"
    )
    assert arrived != ANSWER  # the order as sent: not the order of the seq_ids
    assert sorted(arrived) == sorted(ANSWER)
    cutter = cutters("long-burst")
    reply = Reply(body=b"".join(swapped))
    cutter.reply = reply.with_faults(cut_at_byte=[len(b"".join(swapped[:68]))]) if cut else reply
    before = len(cutter.server.received)
    try:
        model = cutter.model("conversation")
        answer = call(model, "invoke") if mode == "sync" else asyncio.run(acall(model, "invoke"))
    finally:
        cutter.reply = stream.reply
    resumes = [
        r.json()["starting_after"]
        for r in cutter.server.received[before:]
        if r.path.startswith("/v1/runs/")
    ]
    assert answer.error is None
    assert answer.metadata["stop_reason"] == "end_turn"
    assert answer.text == arrived  # before the fix: 564 characters, the 81 of 62-78 missing
    assert resumes == ([61] if cut else [])


# ------------------------------------------------------------------ the raw cut


_ARMED = re.compile(
    rb"POST /v1/(agents/[^/ ]+/messages/stream|conversations/[^/ ]+/messages|runs/)"
)


class CuttingProxy:
    """A TCP proxy that cuts the raw bytes of message and resume responses, with a FIN.

    ``cuts``: for each such response in turn, how many bytes after its head (the
    chunked body as sent: size lines, data, CRLFs) reach the client before the proxy
    closes the connection. Other responses (the health probe) pass whole.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.cuts: list[int] = []
        self.base_url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True)

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(5), "the proxy did not start"

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(5)

    async def _serve(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._ready.set()
        async with server:
            await self._stopping.wait()
        # asyncio.run then cancels the connections still open, and each closes its sockets

    async def _connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.upstream_port
        )
        armed: list[int | None] = [None]  # bytes of the current body left before the cut
        heads = [b""]  # the head of the current armed response, until its blank line

        async def requests() -> None:
            try:
                while data := await client_reader.read(65536):
                    if _ARMED.match(data) and self.cuts:
                        armed[0], heads[0] = self.cuts.pop(0), b""
                    upstream_writer.write(data)
                    await upstream_writer.drain()
            except OSError:
                pass
            finally:
                upstream_writer.close()

        async def responses() -> None:
            try:
                while data := await upstream_reader.read(65536):
                    left = armed[0]
                    if left is not None and heads[0] is not None:
                        head = heads[0] + data
                        end = head.find(b"\r\n\r\n")
                        if end < 0:
                            heads[0] = head
                            client_writer.write(data)
                            continue
                        heads[0] = None
                        in_data = end + 4 - (len(head) - len(data))
                        client_writer.write(data[:in_data])
                        data = data[in_data:]
                    if left is not None:
                        if len(data) >= left:
                            client_writer.write(data[:left])
                            await client_writer.drain()
                            armed[0] = None
                            return  # the finally closes both sides: a FIN
                        armed[0] = left - len(data)
                    client_writer.write(data)
                    await client_writer.drain()
            except OSError:
                pass
            finally:
                client_writer.close()
                upstream_writer.close()

        await asyncio.gather(requests(), responses())


def test_the_fuzz_tries_each_place_of_each_frame_in_some_combination() -> None:
    for stream in STREAMS.values():
        tried = set().union(*(one_cut_points(stream, combo) for combo in range(len(COMBOS))))
        for index in range(len(stream.frames)):
            assert set(places(stream, index)) <= tried
