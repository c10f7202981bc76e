"""How a response body is read: sync bodies read ahead once they arrive back to back,
async reads bounded by one timer per body. Through httpx's MockTransport, no network."""

from __future__ import annotations

import asyncio
import gzip
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from langchain_letta._wire import async_io, sync_io

PIECE = b"data: {}\n\n"


class Pieces(httpx.SyncByteStream):
    """A body of ``count`` pieces, ``gap`` seconds apart, then ``then`` (an error to raise).

    ``hold`` (if given) is waited for before the piece at ``hold_at``; ``made`` counts
    the pieces handed out, and ``closed`` is set when httpx closes the stream.
    """

    def __init__(
        self,
        count: int,
        *,
        size: int = len(PIECE),
        gap: float = 0.0,
        then: Exception | None = None,
        hold: threading.Event | None = None,
        hold_at: int = 0,
    ) -> None:
        self.count, self.size, self.gap, self.then = count, size, gap, then
        self.hold, self.hold_at = hold, hold_at
        self.made = 0
        self.closed = threading.Event()

    def piece(self, index: int) -> bytes:
        return (b"%08d" % index).ljust(self.size, b".")

    def __iter__(self) -> Iterator[bytes]:
        for index in range(self.count):
            if self.hold is not None and index == self.hold_at:
                self.hold.wait(5)
            if self.gap:
                time.sleep(self.gap)
            self.made += 1
            yield self.piece(index)
        if self.then is not None:
            raise self.then

    def close(self) -> None:
        self.closed.set()


def sync_body(stream: Pieces) -> sync_io.Body:
    client = httpx.Client(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, stream=stream))
    )
    response = client.send(client.build_request("GET", "http://letta.test/"), stream=True)
    return sync_io.Body(response)


def read_all(body: sync_io.Body, seconds: float = 5.0) -> tuple[list[bytes], object]:
    """Every read until the end; the reads' pieces, and how it ended (``b""`` or an error)."""
    reads: list[bytes] = []
    while True:
        got = body.read(seconds)
        if not isinstance(got, bytes) or not got:
            return reads, got
        reads.append(got)


def readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "letta-read-ahead" and t.is_alive()]


def until_read_ahead(body: sync_io.Body) -> list[bytes]:
    """Read a piece at a time until the body is read ahead (``BACK_TO_BACK`` fast reads)."""
    reads = []
    while body._ahead is None:  # when the thread starts is what is tested
        got = body.read(5.0)
        assert isinstance(got, bytes)
        assert got, "the body ended before it was read ahead"
        reads.append(got)
    assert len(reads) >= sync_io.BACK_TO_BACK
    assert readers()
    return reads


def test_a_body_that_arrives_back_to_back_is_read_ahead_and_handed_over_whole() -> None:
    hold = threading.Event()  # the reader is still there when it is looked for
    stream = Pieces(5_000, hold=hold, hold_at=4_000)
    body = sync_body(stream)
    first = until_read_ahead(body)  # the rest is read on a thread of its own
    hold.set()
    time.sleep(0.2)  # the reader catches up: everything that arrived goes in one read
    reads, end = read_all(body)
    assert end == b""
    assert b"".join([*first, *reads]) == b"".join(stream.piece(i) for i in range(5_000))
    assert len(reads) < 5_000 - len(first)  # pieces that waited were taken together
    body.close()
    assert stream.closed.wait(5)


def test_a_body_that_trickles_in_is_read_in_the_callers_thread_a_piece_at_a_time() -> None:
    stream = Pieces(30, gap=0.002)
    body = sync_body(stream)
    reads, end = read_all(body)
    assert end == b""
    assert reads == [stream.piece(i) for i in range(30)]
    assert body._ahead is None  # no thread was started for it
    body.close()
    assert stream.closed.is_set()


def test_pieces_read_ahead_before_a_broken_connection_come_first_then_its_error() -> None:
    stream = Pieces(500, then=httpx.ReadError("peer reset"))
    body = sync_body(stream)
    reads, end = read_all(body)
    assert isinstance(end, httpx.ReadError)
    assert b"".join(reads) == b"".join(stream.piece(i) for i in range(500))
    body.close()


def test_what_else_the_reader_raises_is_raised_in_the_callers_thread() -> None:
    stream = Pieces(500, then=RuntimeError("a transport's own bug"))
    body = sync_body(stream)
    with pytest.raises(RuntimeError, match="own bug"):
        read_all(body)
    body.close()


def test_the_reader_stops_when_read_ahead_bytes_wait_for_the_caller() -> None:
    size = 64 * 1024
    stream = Pieces(10_000, size=size)
    body = sync_body(stream)
    first = until_read_ahead(body)
    time.sleep(0.3)  # the caller reads nothing meanwhile
    waiting = stream.made - len(first)
    assert waiting * size <= sync_io.READ_AHEAD + size  # memory stays bounded
    body.close()
    assert stream.closed.wait(5)  # the reader, told to stop, closed the response


def test_a_read_ahead_body_waits_no_longer_than_the_reads_time() -> None:
    hold = threading.Event()
    stream = Pieces(1000, hold=hold, hold_at=500)
    body = sync_body(stream)
    read_all_before = until_read_ahead(body)
    while len(b"".join(read_all_before)) < 500 * len(PIECE):
        got = body.read(5.0)
        assert isinstance(got, bytes)
        read_all_before.append(got)
    started = time.monotonic()
    got = body.read(0.1)
    assert isinstance(got, httpx.ReadTimeout)
    assert time.monotonic() - started < 2
    hold.set()
    reads, end = read_all(body)
    assert end == b""
    assert b"".join([*read_all_before, *reads]) == b"".join(stream.piece(i) for i in range(1000))
    body.close()


def test_hanging_up_while_the_reader_waits_returns_at_once_and_the_reader_closes() -> None:
    hold = threading.Event()
    stream = Pieces(1000, hold=hold, hold_at=500)
    body = sync_body(stream)
    until_read_ahead(body)
    started = time.monotonic()
    body.close()
    assert time.monotonic() - started < 0.5  # not held up by the read under way
    assert not stream.closed.is_set()  # the reader owns the response while it reads
    hold.set()
    assert stream.closed.wait(5)
    deadline = time.monotonic() + 5
    while readers() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not readers()
    assert stream.made < 1000  # it stopped reading once told


# ----------------------------------------------------------------------------- async


class AsyncPieces(httpx.AsyncByteStream):
    def __init__(self, count: int, gap: float) -> None:
        self.count, self.gap = count, gap

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for index in range(self.count):
            await asyncio.sleep(self.gap)
            yield b"%08d" % index


async def async_body(stream: httpx.AsyncByteStream) -> async_io.Body:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, stream=stream))
    client = httpx.AsyncClient(transport=transport)
    response = await client.send(client.build_request("GET", "http://letta.test/"), stream=True)
    return async_io.Body(response)


def test_every_async_read_is_bounded_by_one_timer_for_the_whole_body() -> None:
    async def main() -> tuple[list[bytes], int]:
        loop = asyncio.get_running_loop()
        timers = 0
        call_at = loop.call_at

        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal timers
            timers += 1
            return call_at(*args, **kwargs)

        loop.call_at = counted  # type: ignore[method-assign,assignment]
        body = await async_body(AsyncPieces(30, gap=0.005))
        reads = []
        while (got := await body.read(0.2)) != b"":
            assert isinstance(got, bytes), got
            reads.append(got)
        await body.close()
        return reads, timers

    reads, timers = asyncio.run(main())
    assert reads == [b"%08d" % i for i in range(30)]
    sleeps = 30  # the stream's own asyncio.sleep per piece
    assert timers - sleeps <= 2  # not one per read


def test_an_async_read_past_its_time_is_a_read_timeout_when_it_is_due() -> None:
    async def main() -> tuple[object, float]:
        body = await async_body(AsyncPieces(3, gap=2.0))
        assert await body.read(5.0) != b""  # the first piece (2 s), the timer set for 5 s
        started = time.monotonic()
        outcome = await body.read(0.1)  # due sooner than the timer set for the last read
        elapsed = time.monotonic() - started
        await body.close()
        return outcome, elapsed

    outcome, elapsed = asyncio.run(main())
    assert isinstance(outcome, httpx.ReadTimeout)
    assert 0.09 <= elapsed < 1.0


def test_a_read_the_timer_finds_not_yet_due_is_given_its_whole_time() -> None:
    async def main() -> list[object]:
        body = await async_body(AsyncPieces(4, gap=0.3))
        # The timer is set for the first read (0.5 s); it fires while the second is
        # under way, due at 0.8 s, and sets itself for that: no read times out.
        outcomes = [await body.read(0.5) for _ in range(5)]
        await body.close()
        return outcomes

    assert asyncio.run(main()) == [b"%08d" % i for i in range(4)] + [b""]


def test_a_task_cancelled_while_reading_is_cancelled_not_timed_out() -> None:
    async def main() -> tuple[bool, int]:
        body = await async_body(AsyncPieces(1, gap=10.0))
        reader = asyncio.ensure_future(body.read(5.0))
        await asyncio.sleep(0.05)
        reader.cancel()
        try:
            await reader
        except asyncio.CancelledError:
            return True, reader.cancelling()
        finally:
            await body.close()
        return False, 0

    assert asyncio.run(main()) == (True, 1)


def _timer_calls(loop: asyncio.AbstractEventLoop, wrap: Any) -> None:
    """Every ``call_at`` of ``loop`` from now on goes through ``wrap(call_at, when, callback)``."""
    call_at = loop.call_at
    loop.call_at = lambda when, callback, *args, **kwargs: wrap(  # type: ignore[method-assign]
        call_at, when, lambda: callback(*args)
    )


def test_a_cancellation_asked_as_the_read_runs_out_of_time_is_not_swallowed() -> None:
    async def main() -> object:
        body = await async_body(AsyncPieces(1, gap=10.0))
        loop = asyncio.get_running_loop()
        reader: asyncio.Future[object] | None = None

        def also_cancelled(call_at: Any, when: float, callback: Any) -> asyncio.TimerHandle:
            def both() -> None:
                callback()
                if reader is not None and when < loop.time() + 1:  # the body's timer
                    reader.cancel()

            return call_at(when, both)  # type: ignore[no-any-return]

        _timer_calls(loop, also_cancelled)
        reader = asyncio.ensure_future(body.read(0.1))
        try:
            return await reader
        except asyncio.CancelledError:
            return "cancelled"
        finally:
            await body.close()

    assert asyncio.run(main()) == "cancelled"


def test_a_timer_that_fires_a_little_early_ends_the_read_without_setting_another() -> None:
    async def main() -> tuple[object, int]:
        body = await async_body(AsyncPieces(1, gap=10.0))
        loop = asyncio.get_running_loop()
        timers = 0

        def early(call_at: Any, when: float, callback: Any) -> asyncio.TimerHandle:
            nonlocal timers
            timers += 1

            def at_its_time() -> None:  # the clock it sees is still half a ms before
                loop.time = lambda: when - 0.0005  # type: ignore[method-assign]
                try:
                    callback()
                finally:
                    del loop.time

            return call_at(when, at_its_time)  # type: ignore[no-any-return]

        _timer_calls(loop, early)
        outcome = await body.read(0.1)
        await body.close()
        return outcome, timers

    outcome, timers = asyncio.run(main())
    assert isinstance(outcome, httpx.ReadTimeout)
    assert timers == 2  # the stream's own sleep and the body's one timer


def test_an_async_body_looks_its_event_loop_up_once_not_on_every_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On Python 3.11 every lookup of the running loop is a getpid() system call: two a
    # read (the loop, then the task) were a per cent of the client's CPU on a paced stream.
    lookups = 0
    get_running_loop, current_task = asyncio.get_running_loop, asyncio.current_task

    def from_body() -> bool:
        return sys._getframe(2).f_globals["__name__"] == async_io.__name__

    def loop_looked_up() -> asyncio.AbstractEventLoop:
        nonlocal lookups
        lookups += from_body()
        return get_running_loop()

    def task_looked_up(loop: asyncio.AbstractEventLoop | None = None) -> Any:
        nonlocal lookups
        lookups += loop is None and from_body()
        return current_task(loop)

    async def main() -> list[bytes]:
        body = await async_body(AsyncPieces(30, gap=0.0))
        monkeypatch.setattr(asyncio, "get_running_loop", loop_looked_up)
        monkeypatch.setattr(asyncio, "current_task", task_looked_up)
        reads = []
        while (got := await body.read(5.0)) != b"":
            assert isinstance(got, bytes), got
            reads.append(got)
        monkeypatch.undo()
        await body.close()
        return reads

    assert asyncio.run(main()) == [b"%08d" % i for i in range(30)]
    assert lookups == 1


ENCODED = {
    "none": ({}, b"data: {}\n\n" * 3),
    "identity": ({"content-encoding": "identity"}, b"data: {}\n\n" * 3),
    "gzip": ({"content-encoding": "gzip"}, gzip.compress(b"data: {}\n\n" * 3)),
    "unknown": ({"content-encoding": "x-letta"}, b"data: {}\n\n" * 3),
}


def _encoded_response(name: str) -> httpx.Response:
    headers, content = ENCODED[name]
    return httpx.Response(200, headers=headers, content=content)


@pytest.mark.parametrize("name", sorted(ENCODED))
def test_a_body_is_read_decoded_as_httpx_decodes_it_raw_when_it_names_no_coding(
    name: str,
) -> None:
    sync_client = httpx.Client(transport=httpx.MockTransport(lambda _: _encoded_response(name)))
    request = sync_client.build_request("GET", "http://letta.test/")
    sync_reads, sync_end = read_all(sync_io.Body(sync_client.send(request, stream=True)))

    async def main() -> bytes:
        transport = httpx.MockTransport(lambda _: _encoded_response(name))
        client = httpx.AsyncClient(transport=transport)
        response = await client.send(client.build_request("GET", "http://letta.test/"), stream=True)
        body, data = async_io.Body(response), b""
        while got := await body.read(5.0):
            assert isinstance(got, bytes), got
            data += got
        return data

    assert sync_end == b""
    assert b"".join(sync_reads) == asyncio.run(main()) == b"data: {}\n\n" * 3
