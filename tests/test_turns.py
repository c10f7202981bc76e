"""One turn at a time per agent thread, in this process: never overlapping, in call order.

A raw server streams each answer over a while and records when each request came and
when its answer ended; turns of one thread must not overlap, different threads must.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from langchain_letta import ChatLetta
from langchain_letta._wire import turns
from langchain_letta.errors import LettaInvalidRequestError, LettaTimeoutError
from langchain_letta.testing import FakeLettaServer, Reply
from tests.conftest import CAPTURES
from tests.test_transports import SSE_HEAD, FaultServer, chunk, frame

AGENT = "agent-0b5c3f0e-turns"
SLOW = 0.3
"""How long the server takes to answer each turn."""
CLOSE = b"connection: close\r\n"
"""The server closes every connection after its answer, and says so (none is reused)."""


class SlowServer(FaultServer):
    """Answers every message over ``SLOW`` seconds; ``turns`` holds (start, end, text).

    A turn goes on to its end if the client leaves (as Letta's does), and is listed by
    ``GET /v1/runs/`` while it does.
    """

    def __init__(self, head_after: float = 0.0) -> None:
        self.turns: list[tuple[float, float, str]] = []
        self.running: list[str] = []
        self.head_after = head_after
        """Seconds each run goes on before the answer's head is sent."""
        super().__init__(self._answer)

    @property
    def asked_for_runs(self) -> bool:
        """Whether the client asked for the runs under way."""
        return any(request.startswith(b"GET /v1/runs") for request in self.requests)

    def _answer(self, server: FaultServer, connection: socket.socket) -> None:
        started = time.monotonic()
        request: bytes = self.current.request
        if request.startswith(b"GET"):
            runs = [
                {"id": f"run-{text}", "status": "running", "agent_id": AGENT}
                for text in self.running
            ]
            answer = runs if request.startswith(b"GET /v1/runs") else {"version": "0.16.8"}
            body = json.dumps(answer).encode()
            head = b"HTTP/1.1 200 OK\r\n%scontent-type: application/json\r\ncontent-length: %d"
            connection.sendall(head % (CLOSE, len(body)) + b"\r\n\r\n" + body)
            return
        text = json.loads(request.partition(b"\r\n\r\n")[2])["messages"][0]["content"]
        self.running.append(text)
        try:
            time.sleep(self.head_after)
            connection.sendall(SSE_HEAD.replace(b"\r\n", b"\r\n" + CLOSE, 1))
            for word in ("thinking", "about", text):
                time.sleep(SLOW / 3)
                message = {"message_type": "assistant_message", "id": "message-1", "content": word}
                with contextlib.suppress(OSError):  # the client left: the run goes on
                    connection.sendall(chunk(frame(message)))
            with contextlib.suppress(OSError):
                connection.sendall(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        finally:
            self.turns.append((started, time.monotonic(), text))
            self.running.remove(text)


def model(server: SlowServer, **options: Any) -> ChatLetta:
    return ChatLetta(
        agent_id=AGENT, base_url=server.base_url, background=False, max_retries=0, **options
    )


def overlapping(recorded: list[tuple[float, float, str]]) -> bool:
    spans = sorted(recorded)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


def test_a_batch_on_one_agent_thread_runs_in_order_one_turn_at_a_time() -> None:
    with SlowServer() as server:
        answers = model(server).batch(["one", "two", "three"])
    assert [answer.text for answer in answers] == [
        f"thinkingabout{w}" for w in ("one", "two", "three")
    ]
    assert [text for *_, text in sorted(server.turns)] == ["one", "two", "three"]
    assert not overlapping(server.turns)


def test_abatch_on_one_agent_thread_runs_in_order_one_turn_at_a_time() -> None:
    with SlowServer() as server:
        asyncio.run(model(server).abatch(["one", "two", "three"]))
    assert [text for *_, text in sorted(server.turns)] == ["one", "two", "three"]
    assert not overlapping(server.turns)


def test_threads_and_tasks_of_several_models_share_the_turns_of_one_agent_thread() -> None:
    with SlowServer() as server:

        def sync_turn(text: str) -> None:
            model(server).invoke(text)

        async def async_turns() -> None:
            await asyncio.gather(*(model(server).ainvoke(t) for t in ("a1", "a2")))

        workers = [threading.Thread(target=sync_turn, args=(t,)) for t in ("s1", "s2")]
        workers.append(threading.Thread(target=asyncio.run, args=(async_turns(),)))
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(10)
    assert sorted(text for *_, text in server.turns) == ["a1", "a2", "s1", "s2"]
    assert not overlapping(server.turns)


def test_different_conversations_still_run_at_once() -> None:
    conversations = [{"configurable": {"conversation_id": f"conv-{i}"}} for i in range(3)]
    with SlowServer() as server:
        # Known to be 0.16.8 (the probe says so): conversations are allowed.
        asyncio.run(model(server).abatch(["one", "two", "three"], conversations))  # type: ignore[arg-type]
    assert len(server.turns) == 3
    assert overlapping(server.turns)


def test_a_waiter_cancelled_before_its_turn_sends_nothing() -> None:
    async def main() -> None:
        first = asyncio.create_task(model(server).ainvoke("first"))
        await asyncio.sleep(SLOW / 3)  # the first turn is under way
        second = asyncio.create_task(model(server).ainvoke("second"))
        await asyncio.sleep(0.05)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        await first
        await model(server).ainvoke("third")  # the line moved on

    with SlowServer() as server:
        asyncio.run(main())
    assert [text for *_, text in sorted(server.turns)] == ["first", "third"]
    assert not any(b'"second"' in request for request in server.requests)  # never sent


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_wait_for_a_turn_is_bounded_by_the_deadline_and_sends_nothing(mode: str) -> None:
    def wait_behind_a_turn() -> BaseException | None:
        holder = threading.Thread(target=model(server).invoke, args=("first",))
        holder.start()
        time.sleep(SLOW / 3)
        waiting = model(server, total_timeout=0.1)
        try:
            if mode == "sync":
                waiting.invoke("second")
            else:
                asyncio.run(waiting.ainvoke("second"))
        except LettaTimeoutError as error:
            return error
        finally:
            holder.join(5)
        return None

    with SlowServer() as server:
        error = wait_behind_a_turn()
    assert isinstance(error, LettaTimeoutError)
    assert "waiting for the previous turn" in str(error)
    assert not error.request_accepted
    assert [text for *_, text in server.turns] == ["first"]


def test_a_second_turn_opened_in_the_thread_that_holds_one_is_refused_not_a_deadlock() -> None:
    with SlowServer() as server:
        letta = model(server)
        stream = letta.stream("first")
        next(stream)  # the first turn is open in this thread
        with pytest.raises(LettaInvalidRequestError, match="already has a turn open"):
            letta.invoke("second")
        stream.close()
        assert "third" in letta.invoke("third").text  # closing ended the turn
    assert [text for *_, text in server.turns if text != "first"] == ["third"]


def test_turns_are_granted_in_the_order_they_were_asked_for_threads_and_tasks_mixed() -> None:
    key = ("http://letta.test", AGENT, None)
    holder = turns.acquire(key, 1.0)
    assert holder is not None
    order: list[str] = []

    released = threading.Event()

    def sync_waiter(name: str) -> None:
        queue = turns.acquire(key, 5.0)
        assert queue is not None
        order.append(name if released.is_set() else f"{name} (too early)")
        queue.release()

    async def async_waiter(name: str) -> None:
        queue = await turns.aacquire(key, 5.0)
        assert queue is not None
        order.append(name if released.is_set() else f"{name} (too early)")
        queue.release()

    waiters = [
        threading.Thread(target=sync_waiter, args=("thread-1",)),
        threading.Thread(target=asyncio.run, args=(async_waiter("task-1"),)),
        threading.Thread(target=sync_waiter, args=("thread-2",)),
    ]
    for waiter in waiters:
        waiter.start()
        time.sleep(0.1)  # in line before the next one comes
    released.set()
    holder.release()
    for waiter in waiters:
        waiter.join(5)
    assert order == ["thread-1", "task-1", "thread-2"]
    last = turns.acquire(key, 0)  # free again, and nobody left in line
    assert last is not None
    last.release()


def ended_before_the_next_began(recorded: list[tuple[float, float, str]], texts: list[str]) -> None:
    assert [text for *_, text in sorted(recorded)] == texts  # each turn stored, in order
    assert not overlapping(recorded)


def test_a_stream_left_early_keeps_its_turn_until_its_run_is_over() -> None:
    """``break``: the run goes on on the server; the next turn starts once it is over."""
    with SlowServer() as server:
        letta = model(server)
        for _chunk in letta.stream("first"):
            break
        assert "second" in letta.invoke("second").text
    ended_before_the_next_began(server.turns, ["first", "second"])


@pytest.mark.parametrize("waiting_on", ["the consumer", "a read"])
def test_a_task_cancelled_mid_stream_keeps_its_turn_until_its_run_is_over(waiting_on: str) -> None:
    """The cancellation lands while the consumer works on a chunk, or while the task waits
    for the next read, which ends the body's iterator: this foreground run cannot be read
    to its end, so the server's listing of runs tells when it is over."""

    async def main() -> None:
        letta = model(server)
        streaming = asyncio.Event()

        async def read() -> None:
            async for _chunk in letta.astream("first"):
                streaming.set()
                if waiting_on == "the consumer":
                    await asyncio.sleep(10)  # cancelled here, mid-stream

        first = asyncio.create_task(read())
        await asyncio.wait_for(streaming.wait(), 10)  # the run is under way (however loaded)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert "second" in (await letta.ainvoke("second")).text

    with SlowServer() as server:
        asyncio.run(main())
    ended_before_the_next_began(server.turns, ["first", "second"])
    assert server.asked_for_runs == (waiting_on == "a read")


def test_a_task_cancelled_before_the_answer_came_keeps_its_turn_until_its_run_is_over() -> None:
    """No body to read: the server's listing of runs tells when the run is over."""

    async def main() -> None:
        letta = model(server)
        first = asyncio.create_task(letta.ainvoke("first"))
        deadline = time.monotonic() + 10
        while not server.running and time.monotonic() < deadline:  # the server took it
            await asyncio.sleep(0.01)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert "second" in (await letta.ainvoke("second")).text

    with SlowServer(head_after=SLOW) as server:
        asyncio.run(main())
    ended_before_the_next_began(server.turns, ["first", "second"])
    assert server.asked_for_runs


@pytest.mark.parametrize("waiting_on", ["the consumer", "a read"])
def test_ctrl_c_mid_stream_keeps_the_turn_until_the_run_is_over(waiting_on: str) -> None:
    """The sync twin: ``KeyboardInterrupt`` in the consumer's code, or in a read (a signal
    that interrupts the socket's wait, as Ctrl-C does), which ends the body's iterator."""
    streaming = threading.Event()

    def interrupt() -> None:
        streaming.wait(10)
        time.sleep(SLOW / 10)  # the next read is waiting (the next word is SLOW / 3 away)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    def read(letta: ChatLetta) -> None:
        for _chunk in letta.stream("first"):
            streaming.set()
            if waiting_on == "the consumer":
                time.sleep(10)  # interrupted here, mid-stream

    with SlowServer() as server:
        letta = model(server)
        interrupter = threading.Thread(target=interrupt)
        interrupter.start()
        with pytest.raises(KeyboardInterrupt):
            read(letta)
        interrupter.join()
        assert "second" in letta.invoke("second").text
    ended_before_the_next_began(server.turns, ["first", "second"])
    assert server.asked_for_runs == (waiting_on == "a read")


BACKGROUND_TOKENS = CAPTURES / "0.16.8/background-redis/02-bg-tokens.sse"


def test_the_fake_server_lists_a_run_as_under_way_while_its_answer_is_sent() -> None:
    reply = Reply.from_capture(CAPTURES / "0.16.8/letta_v1_agent/02-stream-tokens.sse")
    body = {"messages": [{"role": "user", "content": "first"}]}
    query = {"agent_id": AGENT, "active": "true"}
    with (
        FakeLettaServer([reply.with_faults(stall_after=2)], version="0.16.8") as server,
        httpx.Client(base_url=server.base_url) as client,
    ):
        with client.stream("POST", f"/v1/agents/{AGENT}/messages/stream", json=body) as answer:
            pieces = answer.iter_bytes()  # kept: a dropped iterator closes the response
            next(pieces)  # the answer is under way, and stalls
            runs = client.get("/v1/runs/", params=query).json()
            assert [(run["status"], run["agent_id"], run["conversation_id"]) for run in runs] == [
                ("running", AGENT, None)
            ]
            assert client.get("/v1/runs/", params={**query, "agent_id": "agent-other"}).json() == []
        # the client left: this fake's run ends with its answer
        deadline = time.monotonic() + 10
        while server.under_way and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.get("/v1/runs/active", params={"agent_ids": AGENT}).json() == []


def started(server: FakeLettaServer) -> None:
    """Wait until the server started a run and the client read its first frame."""
    deadline = time.monotonic() + 10
    while not server.runs and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # its first frame read; the next read waits: it stalls


@pytest.mark.parametrize("flavour", ["async", "sync"])
def test_a_background_run_whose_read_a_stop_cut_is_read_again_before_the_next_turn(
    flavour: str,
) -> None:
    # A cancellation (async) or a Ctrl-C (sync) in a read ends the body's iterator, so the
    # rest of the run cannot be read from it: the run is read again from the cursor
    # (resumed), and the thread's next turn is sent only once that stream has ended.
    reply = Reply.from_capture(BACKGROUND_TOKENS)

    async def main(server: FakeLettaServer) -> None:
        letta = ChatLetta(agent_id=AGENT, base_url=server.base_url, max_retries=0)
        first = asyncio.create_task(letta.ainvoke("first"))
        await asyncio.to_thread(started, server)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(letta.ainvoke("second"), 10)
        await letta.aclose()

    def interrupt(server: FakeLettaServer) -> None:
        started(server)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    with FakeLettaServer([reply.with_faults(stall_after=1), reply]) as server:
        if flavour == "async":
            asyncio.run(main(server))
        else:
            letta = ChatLetta(agent_id=AGENT, base_url=server.base_url, max_retries=0)
            interrupter = threading.Thread(target=interrupt, args=(server,))
            interrupter.start()
            with pytest.raises(KeyboardInterrupt):
                letta.invoke("first")
            interrupter.join()
            letta.invoke("second")
            letta.close()
    kinds = [
        "resume" if "/runs/" in r.path else "message" for r in server.received if r.method == "POST"
    ]
    assert kinds == ["message", "resume", "message"]
    assert server.resume_requests[0].json()["starting_after"] == 1
