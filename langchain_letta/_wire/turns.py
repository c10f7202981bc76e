"""One turn at a time per agent thread, in this process: a FIFO queue shared by threads and tasks.

A Letta agent's memory is the order of its turns. Two messages sent at once into one
thread (the agent's own, or one conversation) run side by side on the server and are
stored interleaved, so every call that sends a message first takes its thread's turn
here, whichever model, copy or client sends it, sync or async; different threads go on
in parallel. Turns are granted in the order they were asked for.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field

from langchain_letta._wire.retry import logger
from langchain_letta.errors import LettaInvalidRequestError

TurnKey = tuple[str, str, str | None]
"""``(base_url, agent_id, conversation_id)``: one agent thread on one server."""


class TurnInUseError(LettaInvalidRequestError):
    """The caller already holds this thread's turn: waiting for it would never end."""

    def __init__(self, message: str) -> None:
        super().__init__(message, is_retryable=False)


@dataclass(eq=False)
class _Waiter:
    """One caller waiting: a thread (``event``) or a task (``loop`` and ``future``)."""

    owner: object
    event: threading.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[None] | None = None
    granted: bool = field(default=False)

    def wake(self) -> bool:
        """Tell the waiter its turn came; ``False`` if it can no longer be told."""
        if self.event is not None:
            self.event.set()
            return True
        assert self.loop is not None  # noqa: S101 - a task's waiter has both
        assert self.future is not None  # noqa: S101
        try:
            self.loop.call_soon_threadsafe(_grant, self.future)
        except RuntimeError:  # its event loop is closed: nobody waits there any more
            return False
        return True


def _grant(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class TurnQueue:
    """The turns of one agent thread: one holder, the others waiting in order.

    Every queue shares one lock with the registry, and is found and joined under it, so
    that a queue dropped once idle is never in use by a caller that found it before.
    """

    def __init__(self, key: TurnKey) -> None:
        self.key = key
        self.holder: object | None = None
        self._waiters: deque[_Waiter] = deque()

    def wait(self, waiter: _Waiter, timeout: float | None) -> bool:
        """Block this thread until ``waiter`` has the turn; ``False`` after ``timeout`` s."""
        assert waiter.event is not None  # noqa: S101 - a thread's waiter
        self._log_wait()
        try:
            granted = waiter.event.wait(timeout)
        except BaseException:  # KeyboardInterrupt: leave the queue, or pass the turn on
            if self._give_up(waiter):
                self.release()
            raise
        return granted or self._give_up(waiter)

    async def await_turn(self, waiter: _Waiter, timeout: float | None) -> bool:
        """Async :meth:`wait`; a task cancelled meanwhile leaves (nothing is sent for it)."""
        assert waiter.future is not None  # noqa: S101 - a task's waiter
        self._log_wait()
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except TimeoutError:
            return self._give_up(waiter)  # granted at the last moment: kept
        except BaseException:  # cancelled: leave the queue, or pass the turn on
            if self._give_up(waiter):
                self.release()
            raise
        return True

    def release(self) -> None:
        """End the holder's turn: the next waiter that can still be told gets it."""
        with _LOCK:
            self.holder = None
            while self._waiters:
                waiter = self._waiters.popleft()
                waiter.granted = True
                self.holder = waiter.owner
                if waiter.wake():
                    return
                self.holder = None
            if _QUEUES.get(self.key) is self:
                del _QUEUES[self.key]  # idle: a later call makes a new one

    def enqueue(self, waiter: _Waiter) -> _Waiter:
        """Put ``waiter`` last in line (called under the lock)."""
        self._waiters.append(waiter)
        return waiter

    def free_for(self, owner: object) -> bool:
        """Take the turn if nobody holds it or waits (called under the lock)."""
        if self.holder is not None and self.holder is owner:
            raise TurnInUseError(
                "this thread of the Letta agent already has a turn open here (a stream not "
                "read to its end nor closed): finish or close it before sending the next "
                "message; nothing was sent"
            )
        if self.holder is None and not self._waiters:
            self.holder = owner
            return True
        return False

    def _give_up(self, waiter: _Waiter) -> bool:
        """A waiter stops waiting; ``True`` if it was granted the turn meanwhile (kept)."""
        with _LOCK:
            if waiter.granted:
                return True
            self._waiters.remove(waiter)
            return False

    def _log_wait(self) -> None:
        _, agent_id, conversation_id = self.key
        logger.info(
            "waiting for the previous turn of Letta agent %s (%s) to end before sending",
            agent_id,
            conversation_id or "its own thread",
        )


_LOCK = threading.Lock()
_QUEUES: dict[TurnKey, TurnQueue] = {}


class Turn:
    """A turn taken: :meth:`release` ends it, once, from any thread."""

    def __init__(self, queue: TurnQueue) -> None:
        self._queue: TurnQueue | None = queue

    def hand_over(self) -> Turn:
        """This turn, held from now on by whatever finishes it (not by this thread or task).

        The caller that took it may then wait in line for its next turn like anyone else.
        """
        with _LOCK:
            if self._queue is not None:
                self._queue.holder = object()
        return self

    def release(self) -> None:
        """End the turn (the next in line gets it); later calls do nothing."""
        with _LOCK:
            queue, self._queue = self._queue, None
        if queue is not None:
            queue.release()


def acquire(key: TurnKey, timeout: float | None) -> Turn | None:
    """Take the turn of ``key`` in this thread (waiting in line); ``None`` after ``timeout`` s.

    Raises:
        TurnInUseError: This thread holds that turn already (an unfinished stream).
    """
    owner = threading.current_thread()
    with _LOCK:
        queue = _queue(key)
        if queue.free_for(owner):
            return Turn(queue)
        waiter = queue.enqueue(_Waiter(owner, event=threading.Event()))
    return Turn(queue) if queue.wait(waiter, timeout) else None


async def aacquire(key: TurnKey, timeout: float | None) -> Turn | None:
    """Async :func:`acquire`, for the running task."""
    owner = asyncio.current_task()
    loop = asyncio.get_running_loop()
    with _LOCK:
        queue = _queue(key)
        if queue.free_for(owner):
            return Turn(queue)
        waiter = queue.enqueue(_Waiter(owner, loop=loop, future=loop.create_future()))
    return Turn(queue) if await queue.await_turn(waiter, timeout) else None


def _queue(key: TurnKey) -> TurnQueue:
    queue = _QUEUES.get(key)
    if queue is None:
        queue = _QUEUES[key] = TurnQueue(key)
    return queue


def forget(base_url: str) -> None:
    """Drop the turns of every thread on ``base_url``: a new server there has no runs.

    A turn still held (a run being read to its end) releases nothing of the new ones.
    """
    with _LOCK:
        for key in [key for key in _QUEUES if key[0] == base_url]:
            del _QUEUES[key]
