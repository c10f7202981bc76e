"""One streamed call's decisions without I/O: what to send, when to retry, resume or give up.

A message must never reach the agent twice, and every wait must end. Those rules live
here once, in :class:`StreamFlow`, a generator in the manner of httpx's auth flows: it
yields the next :mod:`action <langchain_letta._wire.actions>` (send a request, read the
response, sleep, deliver events) and is sent back what happened. The sync and async
clients each drive it with their own I/O and nothing else, so they cannot drift apart
and every fault test exercises the same decisions through both.
"""

from __future__ import annotations

import sys
import time
import urllib.parse
from collections.abc import Callable, Generator
from typing import Any, Protocol

import httpx
from tenacity import DoAttempt, DoSleep, RetryCallState, Retrying

from langchain_letta._wire.actions import (
    Action,
    Ask,
    Deliver,
    Finish,
    Hangup,
    Lock,
    Opened,
    Probe,
    Read,
    ReadBody,
    Send,
    Sleep,
    TakeTurn,
    Unlock,
)
from langchain_letta._wire.failures import UNKNOWN_FATE, error_from_http, is_event_stream
from langchain_letta._wire.requests import StreamRequest, with_stable_otids
from langchain_letta._wire.retry import logger, retry_policy, safe_to_resend, worth_resuming_again
from langchain_letta._wire.routes import LISTING_LIMIT, listed, runs_under_way
from langchain_letta._wire.state import RUN_ID, StreamState
from langchain_letta._wire.stored import recognisable, stored_otids, unsent
from langchain_letta.errors import (
    LettaAPIError,
    LettaError,
    LettaInvalidRequestError,
    LettaProtocolError,
    LettaTimeoutError,
    StreamProgress,
)

MAX_RESUMES = 50
"""Most resumes of one call, however much each brings: a server that drops the
connection after every event cannot hold a call forever (the deadline bounds it too)."""
DRAIN_TIMEOUT = 900.0
"""Most seconds the rest of an abandoned run is read for (see ``StreamFlow.after_stop``)."""
CANCEL_WAIT = 30.0
"""Most seconds the rest of a cancelled run is read for: its stream ends once the cancel
took effect on the server, and the thread's next turn waits for that."""
DRAIN_LIMIT = 64 * 1024 * 1024
"""Most bytes read of the rest of an abandoned run."""
POLL_FIRST = 0.1
"""Seconds between the first two questions whether a run that cannot be read is over."""
POLL_MOST = 2.0
"""Most seconds between two such questions (the pause doubles up to this)."""

_READ = Read(None)
"""A read bounded by the read timeout alone: the same action every time."""

OnRetry = Callable[[RetryCallState], None]
OnResume = Callable[[StreamProgress, LettaError], None]


class FlowClient(Protocol):
    """What :class:`StreamFlow` needs of the client it decides for: settings and server facts."""

    base_url: str
    read_timeout: float
    total_timeout: float | None
    max_retries: int
    retry_timeout: float
    cancel_on_close: bool

    def version_matters(self, request: StreamRequest | None, conversation_id: str | None) -> bool:
        """Whether this call can go ahead only on some releases."""
        ...

    def message_route(
        self, agent_id: str, conversation_id: str | None
    ) -> tuple[str, dict[str, Any]]:
        """Where a message goes, and what its body says of the target there."""
        ...

    def message_body(self, request: StreamRequest) -> dict[str, Any]:
        """The request in the server's dialect, with background mode decided."""
        ...

    def stored_route(
        self, agent_id: str, conversation_id: str | None
    ) -> tuple[str, dict[str, str]] | None:
        """Where the thread's recent messages are listed with their otids, if anywhere."""
        ...

    def knows_resends(self, conversation_id: str | None, body: dict[str, Any]) -> bool:
        """Whether the server answers ``body`` sent again with the run it started."""
        ...

    def active_runs_route(
        self, agent_id: str, conversation_id: str | None
    ) -> tuple[str, dict[str, str]] | None:
        """Where the agent's runs under way are listed, if anywhere."""
        ...

    def background_undecided(self, request: StreamRequest) -> bool:
        """Whether this request would be the one to find out if background mode works."""
        ...

    def learn_background(self, *, works: bool) -> None:
        """Remember whether the server runs background mode."""
        ...

    def adjust_after_rejection(
        self, status: int, body_text: str, sent: dict[str, Any], done: set[str]
    ) -> bool:
        """Change what is sent after a refusal that proves nothing was accepted."""
        ...


class StreamFlow:
    """The decisions of one streamed call (send or resume), as a generator of actions.

    Args:
        client: The client's settings and server facts.
        agent_id: The agent.
        request: What to send; ``None`` reads an existing run from ``resume_from``.
        conversation_id: The conversation, if any.
        resume_from: Where to resume from, when ``request`` is ``None``.
        on_retry: Told about every retry of a request the server did not accept.
        on_resume: Told about every resume of a dropped background run.
        total_timeout: Seconds this call may take in all; ``None``: the client's.
        clock: Monotonic seconds (tests may pass their own).
    """

    def __init__(
        self,
        client: FlowClient,
        agent_id: str,
        request: StreamRequest | None,
        *,
        conversation_id: str | None = None,
        resume_from: StreamProgress | None = None,
        on_retry: OnRetry | None = None,
        on_resume: OnResume | None = None,
        total_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.agent_id = agent_id
        self.conversation_id = conversation_id
        self.state = StreamState()
        if resume_from is not None:
            self.state.progress.run_id = resume_from.run_id
            self.state.progress.last_seq_id = resume_from.last_seq_id or 0
        self._request = (
            None if request is None else with_stable_otids(request, agent_id, conversation_id)
        )
        self._on_retry = on_retry
        self._on_resume = on_resume
        self._clock = clock
        self._total = client.total_timeout if total_timeout is None else total_timeout
        self._deadline = None if self._total is None else clock() + self._total
        self._sent = False
        self._in_flight = False
        """Set while a message is on its way: stopped then, its fate is unknown."""
        self._route: tuple[str, dict[str, Any]] = ("", {})
        self._resend_known = False
        self._held: str | None = None
        """Set when the thread holds every message: the run that took them ("" if unknown)."""

    @property
    def progress(self) -> StreamProgress:
        """Run id, last seq_id, events received and stop reason so far."""
        return self.state.progress

    def after_stop(self) -> float | None:
        """Seconds the rest of a run abandoned mid-stream may be read before its turn ends.

        A consumer that stops early (``break``, closing, cancelling) leaves the run going
        on the server: the thread's next turn must not start before it is over, so the
        rest of its stream is read (and dropped) in the background, for at most this
        long; a run being cancelled ends its stream once the cancel took effect, which
        is waited for ``CANCEL_WAIT`` at most. ``None``: nothing to wait for (the run
        ended, or was never sent).
        """
        if self.state.done or not (self._sent or self._in_flight):
            return None
        bound = CANCEL_WAIT if self._should_cancel() else DRAIN_TIMEOUT
        remaining = self._remaining()
        return bound if remaining is None else max(min(remaining, bound), 0.0)

    @property
    def resumable(self) -> bool:
        """Whether the run can be read again from the cursor (a background run)."""
        return self.state.resumable

    def wait_out(self, seconds: float) -> Generator[Ask | Sleep, Any, None]:
        """Ask until the thread has no run under way, for ``seconds`` (:meth:`after_stop`) at most.

        For a run abandoned where its stream can be neither read to its end nor read
        again: a read cut short (a cancellation ends httpx's body iterator) of a
        foreground run, or a request cut before its answer came. The thread's next
        turn must not start before the run is over; the server's listing of runs is
        all that tells: the run itself once it named itself (another run that a server
        which died left ``running`` does not hold the turn), else any of the thread's.
        Where there is no listing (before Letta 0.9), or it fails, the turn ends at
        once, with a warning.
        """
        route = self.client.active_runs_route(self.agent_id, self.conversation_id)
        if route is None:
            logger.warning(
                "this Letta server lists no foreground runs (before 0.9): the next turn of "
                "agent %s may start before its abandoned run is over",
                self.agent_id,
            )
            return
        deadline = self._clock() + seconds
        mine = self.progress.run_id
        pause = POLL_FIRST
        while True:
            reply = yield Ask(*route, LISTING_LIMIT)
            try:
                if isinstance(reply, LettaError):
                    raise reply
                opened, body = reply
                under_way = runs_under_way(opened, body, self.agent_id, self.conversation_id)
                if mine not in (None, *under_way) or not under_way:
                    return
            except LettaError as error:
                logger.warning(
                    "could not learn whether the abandoned Letta run of agent %s is over (%s): "
                    "the thread's next turn may start before it is",
                    self.agent_id,
                    type(error).__name__,
                )
                return
            if self._clock() + pause > deadline:
                logger.warning(
                    "the abandoned Letta run of agent %s is still under way after %.0f s: the "
                    "thread's next turn starts anyway",
                    self.agent_id,
                    seconds,
                )
                return
            yield Sleep(pause)
            pause = min(2 * pause, POLL_MOST)

    def run_to_cancel(self) -> str | None:
        """The run a consumer that stopped early cancels (``cancel_on_close``), if any.

        Logged as a warning, with what the server keeps: Letta stores a turn step by
        step, so a cancelled run keeps the steps that finished before the cancel and
        nothing of the one under way (0.16.8: nothing at all of a one-step turn, not
        even the user's message).
        """
        if not self._should_cancel():
            return None
        run_id = str(self.progress.run_id)
        logger.warning(
            "cancelling Letta run %s of agent %s (cancel_on_close): the server keeps only the "
            "steps that finished before the cancel, maybe not the user's message",
            run_id,
            self.agent_id,
        )
        return run_id

    def _should_cancel(self) -> bool:
        return (
            not self.state.done and self.client.cancel_on_close and self.progress.run_id is not None
        )

    def run(self) -> Generator[Action, Any, None]:
        """The call: send (or resume), read, resume after drops, until ``[DONE]``."""
        if self._request is not None:
            yield from self._send_message(self._request)
        else:
            yield from self._resume(None)
        fruitless = resumes = 0
        while True:
            before = self.progress.events_received
            interruption = yield from self._read()
            if interruption is None:
                return
            # Only new events count as progress: pings or replays do not.
            fruitless = 0 if self.progress.events_received > before else fruitless + 1
            resumable = self.state.resumable
            if (
                not (resumable or self._may_send_again(interruption))
                or fruitless > self.client.max_retries
                or resumes >= MAX_RESUMES
            ):
                raise interruption
            self._check_deadline(interruption)
            resumes += 1
            if self._on_resume is not None:
                self._on_resume(self.progress, interruption)
            self.state.restart()
            if resumable or self._request is None:
                yield from self._resume(interruption)
            else:  # cut before the run named itself: the server knows the request again
                yield from self._again(self._deliver(self._request), interruption)

    # -------------------------------------------------------------- reading

    def _read(self) -> Generator[Action, Any, LettaError | None]:
        """Read the open response to its end; the interruption if it broke first."""
        state = self.state
        while True:
            limit = self._read_limit()
            chunk = yield _READ if limit is None else Read(limit)
            if isinstance(chunk, bytes):
                if not chunk:  # the end of the body, before [DONE]
                    yield Hangup()
                    return state.interruption()
                events = state.feed(chunk)
                if events:
                    yield Deliver(events)
                if state.failure is not None:
                    yield Hangup()
                    raise state.failure
                if state.done:
                    yield Finish()
                    return None
                self._check_deadline()
                continue
            yield Hangup()
            if isinstance(chunk, httpx.DecodingError):
                raise state.undecodable(chunk)
            interruption = state.interruption(chunk)  # an httpx.TransportError
            if limit is not None and isinstance(chunk, httpx.ReadTimeout):
                # A read bounded by the deadline ran out: the deadline came, even if
                # the timer fired a little early (uvloop's may, by a fraction of a ms).
                raise self._deadline_error(interruption)
            self._check_deadline(interruption)  # a read cut short by the deadline
            return interruption

    # -------------------------------------------------------------- sending

    def _send_message(self, request: StreamRequest) -> Generator[Action, Any, None]:
        client = self.client
        yield Probe(client.version_matters(request, self.conversation_id))
        self._route = client.message_route(self.agent_id, self.conversation_id)
        key = (client.base_url, self.agent_id, self.conversation_id)
        if not (yield TakeTurn(key, self._remaining())):
            raise self._deadline_error(None, "waiting for the previous turn of this agent thread")
        deciding = client.background_undecided(request)
        if deciding:
            yield Lock()
            deciding = client.background_undecided(request)
            if not deciding:
                yield Unlock()
        yield from self._deliver(request, deciding)
        if deciding:
            yield Unlock()
        if self._held is not None:  # the thread holds every message: read the run that took them
            yield from self._read_again(self._held)

    def _left_to_send(self, request: StreamRequest) -> Generator[Action, Any, StreamRequest | None]:
        """``request`` without the messages the thread holds already; ``None``: it holds all.

        Asked before each attempt, once the thread's turn is this call's: a message sent
        by a run that was abandoned, or by another process, is stored by then.
        """
        route = self.client.stored_route(self.agent_id, self.conversation_id)
        if route is None or not recognisable(request):
            return request
        reply = yield Ask(*route, LISTING_LIMIT)
        if isinstance(reply, LettaError):
            raise reply
        opened, body = reply
        left, run_id = unsent(request, stored_otids(listed(opened, body)))
        if left is None:
            self._held = run_id or ""
        elif left is not request:
            logger.info(
                "%d message(s) of this call are in the Letta thread already: not sent again",
                len(request.messages) - len(left.messages),
            )
        return left

    def _read_again(self, run_id: str) -> Generator[Action, Any, None]:
        """Answer a call whose messages the thread holds with the run that took them."""
        if not RUN_ID.fullmatch(run_id):
            raise LettaInvalidRequestError(
                "every message of this call is in the Letta thread already (sent before), and "
                "the run that answered them cannot be read again: nothing is sent twice; "
                "append the next message to send",
                is_retryable=False,
            )
        self.state.progress.run_id = run_id
        self.state.progress.last_seq_id = 0
        logger.info("this call's messages are in the Letta thread already: reading run %s", run_id)
        yield from self._resume(None)

    def _deliver(
        self, request: StreamRequest, deciding: bool = False
    ) -> Generator[Action, Any, None]:
        """Send ``request`` under the retry policy, until a stream is open."""
        yield from self._retrying(
            lambda: self._attempt_message(request, deciding),
            self._may_send_again,
            "sending the message to Letta",
        )

    def _may_send_again(self, error: BaseException) -> bool:
        """Whether sending the same request again cannot store the turn twice.

        Either the server provably took nothing (:func:`safe_to_resend`), or the
        request's fate is unknown (cut after it was written, before the run named
        itself) and the server recognises the same otids again, answering with the
        run they started (:meth:`FlowClient.knows_resends`).
        """
        if safe_to_resend(error):
            return True
        remaining = self._remaining()
        return (
            self._resend_known
            and isinstance(error, UNKNOWN_FATE)
            and self.progress.run_id is None
            and self.progress.events_received == 0
            and (remaining is None or remaining > 0)
        )

    def _attempt_message(
        self, request: StreamRequest, deciding: bool
    ) -> Generator[Action, Any, None]:
        """One attempt of sending the message.

        The request is adjusted at most once per refusal that proves nothing was
        accepted (a 422 in the other dialect, a 503 without Redis).
        """
        client = self.client
        path, target = self._route
        left = yield from self._left_to_send(request)
        if left is None:
            return
        request = left
        adjusted: set[str] = set()
        while True:
            body = {**client.message_body(request), **target}
            self._resend_known = client.knows_resends(self.conversation_id, body)
            opened = yield from self._open(path, body, accepted_on_success=True)
            if opened.status_code < 300:
                if deciding and body.get("background"):
                    client.learn_background(works=True)
                return
            data = yield ReadBody()
            text = data.decode("utf-8", errors="replace")
            if not client.adjust_after_rejection(opened.status_code, text, body, adjusted):
                raise error_from_http(opened.status_code, opened.headers, data, opened.request)

    def _resume(self, interruption: LettaError | None) -> Generator[Action, Any, None]:
        run_id = self.progress.run_id or ""
        if not RUN_ID.fullmatch(run_id):
            raise LettaProtocolError(
                f"cannot resume: invalid run id {run_id[:80]!r}", progress=self.progress
            )
        path = f"/v1/runs/{urllib.parse.quote(run_id, safe='')}/stream"
        body = {"starting_after": self.progress.last_seq_id or 0, "include_pings": True}
        reading = self._retrying(
            lambda: self._attempt_resume(path, body), worth_resuming_again, "resuming"
        )
        if interruption is None:
            yield from reading
        else:
            yield from self._again(reading, interruption)

    @staticmethod
    def _again(
        attempt: Generator[Action, Any, None], interruption: LettaError
    ) -> Generator[Action, Any, None]:
        """Reopen a broken stream; if that fails, the break is the error, caused by the failure."""
        try:
            yield from attempt
        except LettaError as error:
            raise interruption from error

    def _attempt_resume(self, path: str, body: dict[str, Any]) -> Generator[Action, Any, None]:
        opened = yield from self._open(path, body, accepted_on_success=False)
        if opened.status_code >= 300:
            data = yield ReadBody()
            raise error_from_http(opened.status_code, opened.headers, data, opened.request)

    def _open(
        self, path: str, body: dict[str, Any], *, accepted_on_success: bool
    ) -> Generator[Action, Any, Opened]:
        """Send one request; a redirect or a non-stream success is a typed error."""
        self._check_deadline()
        self._in_flight = accepted_on_success
        reply = yield Send(path, body, self._read_limit())
        self._in_flight = False
        if isinstance(reply, LettaError):
            if reply.request_accepted:
                self._sent = True
            raise reply
        opened: Opened = reply
        if 300 <= opened.status_code < 400:
            yield Hangup()
            location = _without_credentials(opened.headers.get("location", ""))
            raise LettaAPIError(
                f"the Letta server answered HTTP {opened.status_code}, a redirect to "
                f"{location!r}, which is not followed (credentials never cross to another "
                "URL): set base_url to the address the server redirects to",
                status_code=opened.status_code,
                is_retryable=False,
            )
        if opened.status_code < 300:
            self._sent = self._sent or accepted_on_success
            if not is_event_stream(opened.headers):
                yield Hangup()
                content_type = opened.headers.get("content-type", "")
                raise LettaProtocolError(
                    "expected an event stream from the Letta server, got "
                    f"{content_type[:100] or 'no type'!r}",
                    status_code=opened.status_code,
                    request_accepted=True,
                )
        return opened

    def _retrying(
        self,
        attempt: Callable[[], Generator[Action, Any, None]],
        should_retry: Callable[[BaseException], bool],
        what: str,
    ) -> Generator[Action, Any, None]:
        """Run ``attempt`` under the retry policy; tenacity decides, the shell sleeps."""
        retrying = Retrying(
            **retry_policy(
                should_retry,
                max_retries=self.client.max_retries,
                timeout=self.client.retry_timeout,
                on_retry=self._on_retry,
                what=what,
                busy_timeout=self._remaining(),
            )
        )
        retrying.begin()
        retry_state = RetryCallState(retrying, fn=None, args=(), kwargs={})
        while True:
            do = retrying.iter(retry_state)
            if isinstance(do, DoAttempt):
                try:
                    yield from attempt()
                except LettaError:
                    retry_state.set_exception(sys.exc_info())  # type: ignore[arg-type]
                else:
                    retry_state.set_result(None)
            elif isinstance(do, DoSleep):
                error = retry_state.outcome.exception() if retry_state.outcome else None
                retry_state.prepare_for_next_attempt()  # forgets the outcome
                wait = float(do)
                remaining = self._remaining()
                if remaining is not None and wait >= remaining:
                    raise self._deadline_error(error if isinstance(error, LettaError) else None)
                yield Sleep(wait)
            else:
                return

    # -------------------------------------------------------------- time

    def _remaining(self) -> float | None:
        return None if self._deadline is None else self._deadline - self._clock()

    def _read_limit(self) -> float | None:
        """A bound for the next wait, where the deadline is nearer than the read timeout."""
        remaining = self._remaining()
        if remaining is None or remaining >= self.client.read_timeout:
            return None
        return max(remaining, 0.001)

    def _check_deadline(self, cause: LettaError | None = None) -> None:
        remaining = self._remaining()
        if remaining is not None and remaining <= 0:
            raise self._deadline_error(cause)

    def _deadline_error(self, cause: LettaError | None, doing: str = "") -> LettaTimeoutError:
        accepted = self._sent or (cause is not None and cause.request_accepted)
        what = (
            "the message may be stored: it is not sent again"
            if accepted
            else "nothing was accepted"
        )
        error = LettaTimeoutError(
            f"the Letta call took longer than total_timeout ({self._total} s) "
            + (f"{doing}; " if doing else f"after {self.progress.events_received} events; ")
            + what
            + (f" (last failure: {cause})" if cause is not None else ""),
            request_accepted=accepted,
            progress=self.progress,
            is_retryable=not accepted,
        )
        error.__cause__ = cause
        return error


def _without_credentials(url: str) -> str:
    """A URL for an error message: without ``user:password@`` and cut short."""
    parts = urllib.parse.urlsplit(url[:300])
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
