"""SSEFrameDecoder: frames out of network reads cut anywhere."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable

import pytest
from httpx_sse import ServerSentEvent

from langchain_letta._wire.sse import FrameTooLargeError, SSEFrameDecoder
from tests.conftest import CAPTURES

Frame = tuple[str, str, str, int | None]


def _frames(events: list[ServerSentEvent]) -> list[Frame]:
    return [(e.event, e.data, e.id, e.retry) for e in events]


def _feed(*chunks: bytes, decoder: SSEFrameDecoder | None = None) -> list[Frame]:
    decoder = decoder or SSEFrameDecoder()
    frames: list[Frame] = []
    for chunk in chunks:
        frames += _frames(decoder.feed(chunk))
    return frames


def _expected(body: bytes) -> list[Frame]:
    """The frames of a capture, read independently (its frames are simple: event?, one data)."""
    frames: list[Frame] = []
    for block in body.decode().split("\n\n"):
        if not block:
            continue
        event, data = "message", ""
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
        frames.append((event, data, "", None))
    return frames


ERROR_CAPTURE = (CAPTURES / "0.16.8/memgpt_v2_agent/14-llm-error-steps.sse").read_bytes()
TOOL_CAPTURE = (CAPTURES / "0.16.8/memgpt_v2_agent/03-tool-call-steps.sse").read_bytes()
TOKENS_CAPTURE = (CAPTURES / "0.16.8/memgpt_v2_agent/04-tool-call-tokens.sse").read_bytes()


# --- whole reads ------------------------------------------------------------------------


def test_one_read_holding_many_frames_yields_them_all_in_order() -> None:
    frames = _feed(TOOL_CAPTURE)
    assert frames == _expected(TOOL_CAPTURE)
    assert len(frames) == 9
    assert frames[-1] == ("message", "[DONE]", "", None)


def test_one_read_with_an_error_frame_keeps_its_event_name() -> None:
    frames = _feed(ERROR_CAPTURE)
    assert [f[0] for f in frames] == ["message", "message", "error", "message"]
    assert frames == _expected(ERROR_CAPTURE)


def test_a_read_without_a_frame_end_yields_nothing_yet() -> None:
    decoder = SSEFrameDecoder()
    assert decoder.feed(b'data: {"message_type":"ping"}\n') == []
    assert _frames(decoder.feed(b"\n")) == [("message", '{"message_type":"ping"}', "", None)]


def test_empty_reads_change_nothing() -> None:
    assert _feed(b"", b"data: a", b"", b"\n\n", b"") == [("message", "a", "", None)]


# --- frames split across reads ----------------------------------------------------------


@pytest.mark.parametrize("body", [ERROR_CAPTURE, TOOL_CAPTURE], ids=["error", "tool-steps"])
def test_a_capture_split_at_every_byte_position_yields_the_same_frames(body: bytes) -> None:
    expected = _expected(body)
    for cut in range(len(body) + 1):
        assert _feed(body[:cut], body[cut:]) == expected, f"split at byte {cut}"


def test_a_capture_fed_one_byte_at_a_time_yields_the_same_frames() -> None:
    chunks = [TOKENS_CAPTURE[i : i + 1] for i in range(len(TOKENS_CAPTURE))]
    assert _feed(*chunks) == _expected(TOKENS_CAPTURE)


def test_a_capture_in_three_uneven_reads() -> None:
    body = TOKENS_CAPTURE
    assert _feed(body[:7], body[7:4099], body[4099:]) == _expected(body)


# --- line endings -----------------------------------------------------------------------


def test_crlf_line_endings() -> None:
    body = b"data: a\r\n\r\nevent: error\r\ndata: b\r\n\r\n"
    assert _feed(body) == [("message", "a", "", None), ("error", "b", "", None)]


@pytest.mark.parametrize("cut", range(len(b"data: a\r\ndata: b\r\n\r\n") + 1))
def test_crlf_split_anywhere_is_one_line_ending(cut: int) -> None:
    body = b"data: a\r\ndata: b\r\n\r\n"
    assert _feed(body[:cut], body[cut:]) == [("message", "a\nb", "", None)]


def test_cr_at_the_end_of_a_read_and_lf_at_the_start_of_the_next() -> None:
    decoder = SSEFrameDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []
    assert _frames(decoder.feed(b"\n\r\n")) == [("message", "a\nb", "", None)]


def test_crlf_blank_line_split_between_cr_and_lf() -> None:
    assert _feed(b"data: a\r\n\r", b"\ndata: b\r\n\r\n") == [
        ("message", "a", "", None),
        ("message", "b", "", None),
    ]


def test_lone_cr_line_endings() -> None:
    frames = _feed(b"data: a\rdata: b\r\rdata: c\r\r", b"data: d\n\n")
    assert frames == [
        ("message", "a\nb", "", None),
        ("message", "c", "", None),
        ("message", "d", "", None),
    ]


def test_lone_cr_at_the_end_of_a_read_followed_by_a_new_line_of_text() -> None:
    assert _feed(b"data: a\r", b"data: b\r\r", b"\n") == [("message", "a\nb", "", None)]


def test_frame_ended_by_lone_crs_at_the_end_of_a_read_is_complete() -> None:
    decoder = SSEFrameDecoder()
    assert _frames(decoder.feed(b"data: [DONE]\r\r")) == [("message", "[DONE]", "", None)]
    assert decoder.tail() == ""


def test_mixed_line_endings_in_one_read() -> None:
    assert _feed(b"data: a\n\rdata: b\r\n\ndata: c\r\r\n") == [
        ("message", "a", "", None),
        ("message", "b", "", None),
        ("message", "c", "", None),
    ]


# --- multi-line frames, comments, fields -------------------------------------------------


def test_event_error_frame_from_0_11() -> None:
    body = (CAPTURES / "0.11.7/memgpt_agent/14-llm-error-steps.sse").read_bytes()
    frames = _feed(body)
    assert [f[0] for f in frames] == ["message", "error"]
    assert frames[1][1].startswith('{"error": "INTERNAL_SERVER_ERROR: OpenAI API error')


def test_event_cancelled_frame() -> None:
    frames = _feed(b'event: cancelled\ndata: {"message": "Run was cancelled"}\n\n')
    assert frames == [("cancelled", '{"message": "Run was cancelled"}', "", None)]


def test_comment_only_frames_are_dropped() -> None:
    assert _feed(b": keepalive\n\ndata: a\n\n:\n\n") == [("message", "a", "", None)]


def test_comment_lines_inside_a_frame_are_ignored() -> None:
    assert _feed(b": ping\ndata: a\n: more\n\n") == [("message", "a", "", None)]


def test_id_and_retry_fields() -> None:
    assert _feed(b"id: 42\nretry: 3000\ndata: a\n\n") == [("message", "a", "42", 3000)]


def test_retry_that_is_not_a_number_is_ignored() -> None:
    assert _feed(b"retry: soon\ndata: a\n\n") == [("message", "a", "", None)]


def test_multi_line_data_is_joined_with_newlines() -> None:
    assert _feed(b"data: line one\ndata: line two\ndata:\ndata: four\n\n") == [
        ("message", "line one\nline two\n\nfour", "", None)
    ]


def test_data_without_space_after_the_colon() -> None:
    assert _feed(b"data:a\n\ndata:  b\n\n") == [
        ("message", "a", "", None),
        ("message", " b", "", None),
    ]


def test_unknown_fields_are_ignored() -> None:
    assert _feed(b"foo: bar\ndata: a\n\n") == [("message", "a", "", None)]


def test_extra_blank_lines_between_frames_add_no_frames() -> None:
    assert _feed(b"data: a\n\n\n\n\ndata: b\n\n") == [
        ("message", "a", "", None),
        ("message", "b", "", None),
    ]


# --- UTF-8 ------------------------------------------------------------------------------

UTF8_BODY = 'data: {"content":"Grüße, 東京 👋"}\n\n'.encode()


@pytest.mark.parametrize("cut", range(len(UTF8_BODY) + 1))
def test_multibyte_character_split_across_reads(cut: int) -> None:
    assert _feed(UTF8_BODY[:cut], UTF8_BODY[cut:]) == [
        ("message", '{"content":"Grüße, 東京 👋"}', "", None)
    ]


def test_multibyte_text_fed_one_byte_at_a_time() -> None:
    chunks = [UTF8_BODY[i : i + 1] for i in range(len(UTF8_BODY))]
    assert _feed(*chunks) == [("message", '{"content":"Grüße, 東京 👋"}', "", None)]


BROKEN_UTF8 = b"data: a\xff\xe6\x9db\n\ndata: \xe6\x9d\xb1\xf0\x9f\x91\x8b!\n\ndata: \xf0\x9f\n\n"
"""An invalid byte, characters cut short before ASCII and at a frame's end, and whole ones."""


def test_reads_cut_anywhere_decode_as_the_whole_body_does_invalid_bytes_included() -> None:
    # Reads that end in ASCII while nothing is held are decoded in one call; the
    # others through the incremental decoder: the text must not depend on the cuts.
    whole = [
        ("message", block.removeprefix("data: "), "", None)
        for block in BROKEN_UTF8.decode("utf-8", "replace").split("\n\n")[:-1]
    ]
    assert whole[0][1] == "a\ufffd\ufffdb"
    assert whole[2][1] == "\ufffd"
    for first in range(len(BROKEN_UTF8) + 1):
        for second in range(first, len(BROKEN_UTF8) + 1):
            cuts = BROKEN_UTF8[:first], BROKEN_UTF8[first:second], BROKEN_UTF8[second:]
            assert _feed(*cuts) == whole, cuts


# --- tail -------------------------------------------------------------------------------


def test_tail_is_empty_after_complete_frames() -> None:
    decoder = SSEFrameDecoder()
    decoder.feed(TOOL_CAPTURE)
    assert decoder.tail() == ""


def test_tail_returns_a_cut_off_last_frame() -> None:
    decoder = SSEFrameDecoder()
    assert _frames(decoder.feed(b'data: a\n\ndata: {"cut'))[0][1] == "a"
    assert decoder.tail() == 'data: {"cut'


def test_tail_of_a_real_capture_cut_with_head_c() -> None:
    body = (CAPTURES / "0.16.8/background-redis/33-bg-headc-part1.sse").read_bytes()
    decoder = SSEFrameDecoder()
    frames = decoder.feed(body)
    assert frames
    last_line = body.decode().rstrip("\n").rsplit("\n", 1)[-1]
    assert decoder.tail() == last_line


def test_tail_keeps_a_frame_missing_only_its_blank_line() -> None:
    decoder = SSEFrameDecoder()
    decoder.feed(b"data: a\n")
    assert decoder.tail() == "data: a"


def test_tail_flushes_an_incomplete_multibyte_character() -> None:
    decoder = SSEFrameDecoder()
    decoder.feed("data: é".encode()[:-1])
    assert decoder.tail() == "data: \ufffd"


# --- size limit -------------------------------------------------------------------------


def test_frame_growing_past_the_limit_raises() -> None:
    decoder = SSEFrameDecoder(max_frame_bytes=100)
    decoder.feed(b"data: " + b"x" * 50)
    with pytest.raises(FrameTooLargeError, match="100"):
        decoder.feed(b"x" * 50)


def test_frame_too_large_is_a_value_error() -> None:
    decoder = SSEFrameDecoder(max_frame_bytes=10)
    with pytest.raises(ValueError, match="exceeded 10"):
        decoder.feed(b"data: 0123456789")


def test_unfinished_frame_exactly_at_the_limit_is_accepted() -> None:
    decoder = SSEFrameDecoder(max_frame_bytes=10)
    assert decoder.feed(b"data: 0123") == []
    assert _frames(decoder.feed(b"\n\n")) == [("message", "0123", "", None)]


def test_limit_counts_only_the_unfinished_frame() -> None:
    decoder = SSEFrameDecoder(max_frame_bytes=20)
    for _ in range(10):
        assert _frames(decoder.feed(b"data: 0123456789\n\n")) == [
            ("message", "0123456789", "", None)
        ]


def test_complete_frame_over_the_limit_in_one_read_raises() -> None:
    decoder = SSEFrameDecoder(max_frame_bytes=10)
    with pytest.raises(FrameTooLargeError):
        decoder.feed(b"data: " + b"x" * 100 + b"\n\n")


# --- cost: linear in the bytes, whatever the read size ----------------------------------

BIG_FRAME = b"data: " + b"x" * (4 * 1024 * 1024) + b"\n\n"
ETHERNET_READ = 1460


def _reads(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


def _allocations(decoder: SSEFrameDecoder, reads: list[bytes], per_read: list[int]) -> None:
    """Feed ``reads``, appending to ``per_read`` the memory each one allocated at its peak.

    A decoder that copies the unfinished frame on every read allocates its size
    again each time, so the sum grows with the square of the frame for small reads.
    """
    tracemalloc.start()
    try:
        for chunk in reads:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            try:
                decoder.feed(chunk)
            finally:
                per_read.append(tracemalloc.get_traced_memory()[1] - before)
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("read_size", [ETHERNET_READ, 64 * 1024])
def test_a_big_frame_costs_memory_linear_in_its_size_whatever_the_read_size(
    read_size: int,
) -> None:
    decoder = SSEFrameDecoder()
    per_read: list[int] = []
    _allocations(decoder, _reads(BIG_FRAME, read_size), per_read)
    # Joining the pieces, splitting and slicing the frame copy it a few times; copying
    # the unfinished frame on each read allocated 1440 times its size (36 in 64 KiB reads).
    assert sum(per_read) < 8 * len(BIG_FRAME)
    assert decoder.tail() == ""


def test_a_frame_that_never_ends_is_refused_at_the_limit_without_copying_it_each_read() -> None:
    limit = 2 * 1024 * 1024
    decoder = SSEFrameDecoder(max_frame_bytes=limit)
    reads = _reads(b"data: " + b"y" * (limit + 10 * ETHERNET_READ), ETHERNET_READ)
    per_read: list[int] = []
    with pytest.raises(FrameTooLargeError):
        _allocations(decoder, reads, per_read)
    fed = sum(len(chunk) for chunk in reads[: len(per_read)])
    assert limit < fed <= limit + ETHERNET_READ  # refused by the read that passed the limit
    assert sum(per_read) < 3 * limit  # each piece kept once, not a copy of all per read
    assert decoder.tail() == ""  # nothing of it is kept


def test_a_drip_of_tiny_reads_holds_about_the_size_of_the_frame() -> None:
    limit = 1024 * 1024
    decoder = SSEFrameDecoder(max_frame_bytes=limit)
    reads = _reads(b"data: " + b"z" * limit, 2)

    def feed_all() -> None:
        for chunk in reads:
            decoder.feed(chunk)

    tracemalloc.start()
    try:
        with pytest.raises(FrameTooLargeError):
            feed_all()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Kept one string per read, 2-byte reads held 30 times their size in string headers.
    assert peak < 2 * limit


def _cpu_seconds(run: Callable[[], object]) -> float:
    """The least CPU time of three runs (the least disturbed by anything else)."""
    times = []
    for _ in range(3):
        start = time.process_time()
        run()
        times.append(time.process_time() - start)
    return min(times)


def test_small_reads_of_a_big_frame_cost_about_what_big_reads_cost() -> None:
    def decode(size: int) -> Callable[[], object]:
        reads = _reads(BIG_FRAME, size)

        def run() -> list[ServerSentEvent]:
            decoder = SSEFrameDecoder()
            return [frame for chunk in reads for frame in decoder.feed(chunk)]

        return run

    small = _cpu_seconds(decode(ETHERNET_READ))
    big = _cpu_seconds(decode(64 * 1024))
    # Linear decoding: the same work plus a little per read (about 1.5x measured).
    # Quadratic decoding was about 40x (5.7 s against 0.15 s).
    assert small < 5 * big


@pytest.mark.parametrize(
    "oversized",
    [b"data: " + b"x" * 100 + b"\n\n", b"data: " + b"x" * 100],
    ids=["complete", "unfinished"],
)
def test_frames_before_an_oversized_one_in_the_same_read_come_with_the_error(
    oversized: bytes,
) -> None:
    decoder = SSEFrameDecoder(max_frame_bytes=50)
    with pytest.raises(FrameTooLargeError) as caught:
        decoder.feed(b"data: a\n\nevent: error\ndata: b\n\n" + oversized)
    assert _frames(caught.value.frames) == [("message", "a", "", None), ("error", "b", "", None)]
