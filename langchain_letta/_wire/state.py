"""The frames of one stream as typed events, errors and resume progress; no I/O.

:class:`StreamState` turns decoded frames into events, tracks the run id and the
resume cursor, refuses replayed or foreign frames, and turns error frames into typed
errors after delivering whatever good events came before them.
"""

from __future__ import annotations

import re

import httpx
from httpx_sse import ServerSentEvent

from langchain_letta._wire.sse import FrameTooLargeError, SSEFrameDecoder
from langchain_letta.errors import (
    LettaError,
    LettaProtocolError,
    LettaStreamCancelledError,
    LettaStreamInterruptedError,
    LettaTimeoutError,
    StreamProgress,
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

_DONE = "[DONE]"
_HIDDEN_SEQ = (StopReason, UsageStatistics)
"""Events that take a sequence number in a background run without showing it."""
MAX_AHEAD = 10_000
"""Most seq_ids remembered above a gap in a run's sequence: a gap that this many later
frames do not close is not going to, and the memory of the stream must stay bounded."""
_MAX_SEQ_ID = 2**53
"""Largest seq_id taken as a counter (the largest integer a JSON reader keeps exactly)."""
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")
"""What a run id must look like: it goes into a URL path on resume."""


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
                if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
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
