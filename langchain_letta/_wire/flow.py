"""One streamed call's logic without I/O: what to send, when to retry, resume or give up.

A message must never reach the agent twice, and every wait must end. Those rules
live here once, in :class:`StreamFlow`, a generator in the manner of httpx's auth
flows: it yields the next thing to do (an *action*: send a request, read the
response, sleep, deliver events to the consumer) and is sent back what happened.
:class:`~langchain_letta.LettaClient` and :class:`~langchain_letta.AsyncLettaClient`
each drive it with their own I/O and nothing else, so the sync and async clients
cannot drift apart and every fault test exercises the same decisions through both.

The per-frame work (:class:`StreamState`) is also free of I/O: it turns decoded
frames into typed events, tracks the run id and resume cursor, refuses replayed or
foreign frames, and turns error frames into typed errors, after delivering whatever
good events came before them.
"""

from __future__ import annotations

import re
import sys
import time
import urllib.parse
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import ServerSentEvent
from tenacity import DoAttempt, DoSleep, RetryCallState, Retrying

from langchain_letta._wire.requests import StreamRequest, with_stable_otids
from langchain_letta._wire.retry import logger, retry_policy, safe_to_resend, worth_resuming_again
from langchain_letta._wire.sse import FrameTooLargeError, SSEFrameDecoder
from langchain_letta._wire.turns import TurnKey
from langchain_letta.errors import (
    LettaAPIError,
    LettaConnectionError,
    LettaError,
    LettaInvalidRequestError,
    LettaProtocolError,
    LettaStreamCancelledError,
    LettaStreamInterruptedError,
    LettaTimeoutError,
    StreamProgress,
    error_from_response,
    error_from_stream,
)
from langchain_letta.events import (
    ErrorMessage,
    LettaEvent,
    Ping,
    StopReason,
    StreamErrorFrame,
    UnknownEvent,
    UsageStatistics,
    parse_event,
)

if TYPE_CHECKING:
    from langchain_letta._wire.client import ClientCore

ERROR_BODY_LIMIT = 256 * 1024
"""Most bytes read of an error body (or of a body read only to be discarded)."""
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
UNKNOWN_FATE = (LettaConnectionError, LettaTimeoutError, LettaStreamInterruptedError)
"""Failures after which a sent request may or may not have reached the server."""
_DONE = "[DONE]"
_HIDDEN_SEQ = (StopReason, UsageStatistics)
"""Events that take a sequence number in a background run without showing it."""
MAX_AHEAD = 10_000
"""Most seq_ids remembered above a gap in a run's sequence: a gap that this many later
frames do not close is not going to, and the memory of the stream must stay bounded."""
_MAX_SEQ_ID = 2**53
"""Largest seq_id taken as a counter (the largest integer a JSON reader keeps exactly)."""
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")

OnRetry = Callable[[RetryCallState], None]
OnResume = Callable[[StreamProgress, LettaError], None]


# ------------------------------------------------------------------ actions


@dataclass(frozen=True, slots=True)
class Probe:
    """Learn the server's version if a decision needs it; the reply is ``None``."""

    version_matters: bool


@dataclass(frozen=True, slots=True)
class Send:
    """POST ``body`` to ``path`` and open the response as a stream.

    The reply is an :class:`Opened`, or the typed error of a transport failure.
    ``read_timeout``, when set, bounds every read of this response: the call's
    deadline is nearer than the client's read timeout.
    """

    path: str
    body: dict[str, Any]
    read_timeout: float | None


@dataclass(frozen=True, slots=True)
class Opened:
    """The status line and headers of the response just opened.

    ``request`` names it for error messages: ``METHOD URL``, the URL as it was
    really sent (without userinfo or query, so never with a credential).
    """

    status_code: int
    headers: Mapping[str, str]
    request: str = ""


@dataclass(frozen=True, slots=True)
class Read:
    """Read the next bytes of the open response.

    The reply is the bytes (``b""`` at its end) or the ``httpx.TransportError``
    (or ``httpx.DecodingError``) that broke it. ``timeout``, when set, is shorter
    than the read timeout: the call's deadline is near, and the read must not
    outlast it.
    """

    timeout: float | None


@dataclass(frozen=True, slots=True)
class ReadBody:
    """Read the rest of the open response, at most ``limit`` bytes, and close it."""

    limit: int = ERROR_BODY_LIMIT


@dataclass(frozen=True, slots=True)
class Hangup:
    """Close the open response now (the connection is not reused)."""


@dataclass(frozen=True, slots=True)
class Finish:
    """The stream ended normally: read what is left, and let the connection be reused.

    At most ``limit`` bytes are read, and never while the consumer waits.
    """

    limit: int = 64 * 1024


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait before the next attempt."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand these events (one network read's worth) to the consumer."""

    events: list[LettaEvent]


@dataclass(frozen=True, slots=True)
class Lock:
    """Become the one request that finds out whether the server runs background mode."""


@dataclass(frozen=True, slots=True)
class Unlock:
    """The background decision is made: let the waiting requests go."""


@dataclass(frozen=True, slots=True)
class TakeTurn:
    """Wait in line for this agent thread's turn in this process, at most ``timeout`` s.

    The reply is ``True`` once the turn is the call's (it keeps it until it ends, however
    it ends), ``False`` if the time ran out first.
    """

    key: TurnKey
    timeout: float | None


Action = (
    Probe | Send | Read | ReadBody | Hangup | Finish | Sleep | Deliver | Lock | Unlock | TakeTurn
)


# ------------------------------------------------------------------ per-frame state


class StreamState:
    """Turns the frames of one stream into events, errors and progress; no I/O.

    ``progress.last_seq_id`` is the resume cursor: the highest seq_id up to which
    every frame was delivered (a new run counts from 0; Letta numbers from 1). In a
    background run every frame takes a sequence number, but ``stop_reason`` and
    ``usage_statistics`` frames do not show theirs: the cursor counts them (unless a
    gap is open), so that a resume never replays them. Letta may send a run's frames
    out of order (its Redis writer can add a later batch first), so each frame is
    delivered as it arrives, and the seq_ids delivered above a gap are kept in
    ``ahead`` until the gap closes: the cursor stays below the gap, so a resume asks
    for what is missing, and the frames it replays are skipped. A frame naming
    another run is a protocol error.
    """

    __slots__ = (
        "ahead",
        "decoder",
        "done",
        "failure",
        "frames",
        "progress",
        "status_code",
        "usage_seen",
    )

    def __init__(self, status_code: int | None = None) -> None:
        self.decoder = SSEFrameDecoder()
        self.progress = StreamProgress()
        self.done = False
        self.frames = 0
        self.status_code = status_code
        self.failure: LettaError | None = None
        self.usage_seen = False
        self.ahead: set[int] = set()
        """The seq_ids delivered above the cursor (never more than ``MAX_AHEAD``)."""

    @property
    def resumable(self) -> bool:
        """Whether the run can be read again from the cursor (a background run)."""
        return self.progress.run_id is not None and self.progress.last_seq_id is not None

    def restart(self) -> None:
        """Before reading a resumed stream: a frame cut by the drop is replayed whole."""
        self.decoder = SSEFrameDecoder()

    def feed(self, chunk: bytes) -> list[LettaEvent]:
        """The events completed by one network read.

        A bad frame (malformed, too large, an error or cancellation) ends the
        stream: the events read before it are returned, and its typed error is
        left in ``failure`` for the caller to raise after delivering them.
        """
        events: list[LettaEvent] = []
        oversized: LettaError | None = None
        try:
            frames = self.decoder.feed(chunk)
        except FrameTooLargeError as error:
            frames = error.frames  # completed before the oversized one: delivered first
            oversized = LettaProtocolError(
                str(error), progress=self.progress, request_accepted=True
            )
        try:
            for frame in frames:
                event = self._event(frame)
                if event is not None:
                    events.append(event)
                elif self.done:
                    return events
        except LettaError as error:
            self.failure = error
            return events
        self.failure = oversized
        return events

    def undecodable(self, error: httpx.DecodingError) -> LettaError:
        """The typed error for a body httpx cannot decode (a broken gzip stream, ...)."""
        return LettaProtocolError(
            f"the Letta stream could not be decoded after {self.progress.events_received} "
            f"events ({type(error).__name__})",
            request_accepted=True,
            progress=self.progress,
        )

    def _event(self, frame: ServerSentEvent) -> LettaEvent | None:
        if frame.data == _DONE:
            self.done = True
            return None
        name = frame.event
        if name == "cancelled":
            raise LettaStreamCancelledError(
                f"the Letta run was cancelled: {frame.data[:200]}",
                body=frame.data[:1000],
                request_accepted=True,
                progress=self.progress,
            )
        try:
            event = parse_event(frame.data)
        except ValueError as error:
            raise LettaProtocolError(
                f"malformed frame #{self.frames + 1} in the Letta stream "
                f"({error}): {frame.data[:200]!r}",
                body=frame.data[:1000],
                progress=self.progress,
                request_accepted=True,
            ) from None
        self.frames += 1
        progress = self.progress
        if not self._advance(event, progress):
            return None
        if isinstance(event, (ErrorMessage, StreamErrorFrame)):
            raise error_from_stream(
                event.error_type,
                event.message or "unknown error",
                event.detail,
                body=event.raw,
                progress=progress,
                status_code=self.status_code,
            )
        if name == "error":
            raise error_from_stream(
                None,
                frame.data[:500],
                None,
                body=event.raw,
                progress=progress,
                status_code=self.status_code,
            )
        if name != "message":
            # A named event this package does not know: keep it, with its name.
            event = UnknownEvent(message_type=f"event:{name}", data=frame.data)
        if isinstance(event, Ping):
            return None
        if isinstance(event, StopReason):
            progress.stop_reason = event.stop_reason
        progress.events_received += 1
        return event

    def _advance(self, event: LettaEvent, progress: StreamProgress) -> bool:
        """Move the run id and cursor on; ``False`` for a frame delivered before.

        Raises:
            LettaProtocolError: The frame names another run, or a run id that is
                not an id (it goes into a URL path on resume), or a seq_id that is
                not a counter, or the run's sequence has a gap that never closes.
        """
        run_id = getattr(event, "run_id", None)
        if run_id:
            if progress.run_id is None:
                if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
                    raise LettaProtocolError(
                        f"the Letta stream named an invalid run id {str(run_id)[:80]!r}",
                        progress=progress,
                        request_accepted=True,
                    )
                progress.run_id = run_id
            elif run_id != progress.run_id:
                raise LettaProtocolError(
                    f"the Letta stream of run {progress.run_id} switched to run "
                    f"{str(run_id)[:80]!r}: its events are not this call's",
                    progress=progress,
                    request_accepted=True,
                )
        if progress.last_seq_id is not None and isinstance(event, _HIDDEN_SEQ):
            # A background run has one of each; they show no seq_id, so a second one
            # can only be the server going back (a foreground stream is never replayed).
            if isinstance(event, StopReason) and progress.stop_reason is not None:
                return False
            if isinstance(event, UsageStatistics):
                if self.usage_seen:
                    return False
                self.usage_seen = True
        seq_id = getattr(event, "seq_id", None)
        if seq_id is not None:
            return self._take(self._checked(seq_id), progress)
        if progress.last_seq_id is not None and isinstance(event, _HIDDEN_SEQ) and not self.ahead:
            # Counted only with no gap open: behind a gap its number is unknown, and a
            # guess could take a late frame's number, dropping it as a replay; not
            # counting it only lets a resume send it again (then skipped, as above).
            progress.last_seq_id = max(progress.last_seq_id, 0) + 1
        return True

    def _checked(self, seq_id: object) -> int:
        """``seq_id`` if it is a counter; the wire model lets any JSON value through.

        A frame Letta does not declare a ``seq_id`` for (an unknown event, a
        ``stop_reason``) keeps whatever was sent, and a known one may carry ``-3``.

        Raises:
            LettaProtocolError: It is not an integer from 1 to 2**53 (Letta numbers a
                run's frames from 1; a 0 could only be dropped as a replay, silently).
        """
        if type(seq_id) is not int or not 1 <= seq_id <= _MAX_SEQ_ID:
            raise LettaProtocolError(
                f"frame #{self.frames} of the Letta stream has an invalid seq_id "
                f"{str(seq_id)[:80]!r}",
                progress=self.progress,
                request_accepted=True,
            )
        return seq_id

    def _take(self, seq_id: int, progress: StreamProgress) -> bool:
        """Record ``seq_id`` as delivered; ``False`` if it was delivered before.

        The cursor moves only onto the next seq_id, then past those already held in
        ``ahead``; any other new seq_id waits in ``ahead``, its frame delivered now.
        Each frame costs O(1) amortised; ``ahead`` holds at most ``MAX_AHEAD`` ids.

        Raises:
            LettaProtocolError: ``MAX_AHEAD`` seq_ids are held above a gap already.
        """
        ahead = self.ahead
        # A new run starts below Letta's first seq_id, 1; a resume at its cursor
        # (-1 asks the server for the whole run, as 0 does).
        cursor = max(progress.last_seq_id or 0, 0)
        if seq_id <= cursor or seq_id in ahead:
            return False  # replayed: never delivered twice
        if seq_id == cursor + 1:
            cursor = seq_id
            while cursor + 1 in ahead:  # the gap closed: move past what came early
                cursor += 1
                ahead.remove(cursor)
        elif len(ahead) >= MAX_AHEAD:
            raise LettaProtocolError(
                f"the sequence numbers of the Letta stream have a gap that never closes: "
                f"seq_id {cursor + 1} is still missing after {len(ahead)} later frames",
                progress=progress,
                request_accepted=True,
            )
        else:
            ahead.add(seq_id)
        progress.last_seq_id = cursor
        return True

    def interruption(self, error: httpx.TransportError | None = None) -> LettaError:
        """The typed error for a stream that stopped before ``[DONE]``."""
        if isinstance(error, httpx.TimeoutException):
            return LettaTimeoutError(
                "no data from the Letta server for longer than the read timeout "
                f"({type(error).__name__})",
                request_accepted=True,
                progress=self.progress,
            )
        if error is not None:
            cause = f"the connection broke ({type(error).__name__}: {error})"
        else:
            tail = self.decoder.tail()
            cause = "the server ended the response" + (
                f" inside a frame: {tail[:200]!r}" if tail else ""
            )
        return LettaStreamInterruptedError(
            f"the Letta stream stopped before [DONE] after {self.progress.events_received} "
            f"events: {cause}",
            request_accepted=True,
            progress=self.progress,
        )


def is_event_stream(headers: Mapping[str, str]) -> bool:
    """Whether a body is SSE; media types are case-insensitive (``Text/Event-Stream``)."""
    content_type = headers.get("content-type", "")
    return content_type.partition(";")[0].strip().lower() == "text/event-stream"


def error_from_http(
    status_code: int, headers: Mapping[str, str], body: bytes, url: str | None = None
) -> LettaError:
    """The error for a response with status >= 400, reading an SSE body where there is one.

    Args:
        status_code: The status.
        headers: The response headers.
        body: The start of the body.
        url: ``METHOD URL`` of the request, for the message (never with credentials:
            ``base_url`` cannot carry them).
    """
    if is_event_stream(headers):
        # 0.11.x answers an upstream LLM failure with HTTP 500 and the error in SSE frames.
        state = StreamState(status_code=status_code)
        state.feed(body + b"\n\n")
        # A body that is no valid stream proves nothing: its status decides (a 503 stays a
        # retryable refusal, where a protocol error would say the message was accepted).
        if state.failure is not None and not isinstance(state.failure, LettaProtocolError):
            return state.failure
    text = body.decode("utf-8", errors="replace")
    return error_from_response(status_code, text, headers=headers, url=url)


def error_from_transport(error: httpx.TransportError, tried: str | None = None) -> LettaError:
    """The error for a transport failure before any response arrived.

    The message names the failure's class, not its text: httpx and h11 quote
    header values in theirs, and a header may carry a credential. ``tried`` is
    the request's ``METHOD URL`` (no userinfo, no query: never a credential),
    named in the message so that a wrong ``base_url`` shows.
    """
    kind = type(error).__name__
    at = f"; tried {tried}" if tried else ""
    if isinstance(error, httpx.LocalProtocolError):
        return LettaInvalidRequestError(
            f"the request could not be sent: httpx refused it ({kind}); nothing was sent{at}",
            is_retryable=False,
        )
    if isinstance(error, (httpx.ConnectTimeout, httpx.PoolTimeout)):
        return LettaTimeoutError(
            f"timed out connecting to the Letta server ({kind}){at}", is_retryable=True
        )
    if isinstance(error, httpx.ConnectError):
        return LettaConnectionError(f"cannot reach the Letta server ({kind}: {error}){at}")
    if isinstance(error, httpx.TimeoutException):
        return LettaTimeoutError(
            f"the Letta server did not answer within the read timeout ({kind}){at}",
            request_accepted=True,
        )
    # The request may have reached the server: the message may be stored already.
    return LettaConnectionError(
        f"the Letta server did not answer the request ({kind}){at}", request_accepted=True
    )


# ------------------------------------------------------------------ the flow


class StreamFlow:
    """The decisions of one streamed call (send or resume), as a generator of actions.

    Args:
        core: The client's settings and server knowledge.
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
        core: ClientCore,
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
        self.core = core
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
        self._total = core.total_timeout if total_timeout is None else total_timeout
        self._deadline = None if self._total is None else clock() + self._total
        self._sent = False
        self._route: tuple[str, dict[str, Any]] = ("", {})
        self._resend_known = False

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
        if self.state.done or not self._sent:
            return None
        bound = CANCEL_WAIT if self._should_cancel() else DRAIN_TIMEOUT
        remaining = self._remaining()
        return bound if remaining is None else max(min(remaining, bound), 0.0)

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
            not self.state.done and self.core.cancel_on_close and self.progress.run_id is not None
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
                or fruitless > self.core.max_retries
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
            chunk = yield Read(limit)
            if isinstance(chunk, httpx.DecodingError):
                yield Hangup()
                raise state.undecodable(chunk)
            if isinstance(chunk, httpx.TransportError):
                yield Hangup()
                interruption = state.interruption(chunk)
                if limit is not None and isinstance(chunk, httpx.ReadTimeout):
                    # A read bounded by the deadline ran out: the deadline came, even if
                    # the timer fired a little early (uvloop's may, by a fraction of a ms).
                    raise self._deadline_error(interruption)
                self._check_deadline(interruption)  # a read cut short by the deadline
                return interruption
            if not chunk:
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

    # -------------------------------------------------------------- sending

    def _send_message(self, request: StreamRequest) -> Generator[Action, Any, None]:
        core = self.core
        yield Probe(core.version_matters(request, self.conversation_id))
        self._route = core.message_route(self.agent_id, self.conversation_id)
        key = (core.base_url, self.agent_id, self.conversation_id)
        if not (yield TakeTurn(key, self._remaining())):
            raise self._deadline_error(None, "waiting for the previous turn of this agent thread")
        deciding = core.background_undecided(request)
        if deciding:
            yield Lock()
            deciding = core.background_undecided(request)
            if not deciding:
                yield Unlock()
        yield from self._deliver(request, deciding)
        if deciding:
            yield Unlock()

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
        run they started (:meth:`ClientCore.knows_resends`).
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
        core = self.core
        path, target = self._route
        adjusted: set[str] = set()
        while True:
            body = {**core.message_body(request), **target}
            self._resend_known = core.knows_resends(self.conversation_id, body)
            opened = yield from self._open(path, body, accepted_on_success=True)
            if opened.status_code < 300:
                if deciding and body.get("background"):
                    core.learn_background(works=True)
                return
            data = yield ReadBody()
            text = data.decode("utf-8", errors="replace")
            if not core.adjust_after_rejection(opened.status_code, text, body, adjusted):
                raise error_from_http(opened.status_code, opened.headers, data, opened.request)

    def _resume(self, interruption: LettaError | None) -> Generator[Action, Any, None]:
        run_id = self.progress.run_id or ""
        if not _RUN_ID.fullmatch(run_id):
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
        reply = yield Send(path, body, self._read_limit())
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
                max_retries=self.core.max_retries,
                timeout=self.core.retry_timeout,
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
        if remaining is None or remaining >= self.core.read_timeout:
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
