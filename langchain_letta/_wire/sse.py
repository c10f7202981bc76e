"""Server-sent-event framing, done a whole network read at a time.

httpx-sse decodes line by line; a Letta stream is thousands of one-line
``data:`` frames, so this decoder instead splits each network read on the blank
line that ends a frame and only falls back to the line-by-line SSE rules for the
rare frame that has more than one line (``event: error``, comments, ``id:``).
Frames are returned as httpx-sse's :class:`~httpx_sse.ServerSentEvent`.
"""

from __future__ import annotations

import codecs

from httpx_sse import ServerSentEvent

DEFAULT_MAX_FRAME_BYTES = 8 * 1024 * 1024
"""A frame larger than this is refused: a server bug should not exhaust memory."""

_PIECE = 4096
"""Reads of an unfinished frame are merged into pieces of at least this many characters."""


class FrameTooLargeError(ValueError):
    """A frame grew past the decoder's limit.

    Attributes:
        frames: The frames the same read completed before the oversized one, so
            that refusing it loses nothing that came before.
    """

    def __init__(self, message: str, frames: list[ServerSentEvent]) -> None:
        super().__init__(message)
        self.frames = frames


class SSEFrameDecoder:
    """Turns the bytes of an SSE response into frames, keeping only the unfinished tail.

    The unfinished frame is kept as a list of pieces and joined only once a read
    ends it, so a frame arriving in many small reads costs time linear in its size
    (re-joining it on every read would be quadratic, and a hostile frame that never
    ends would cost far more before the size limit refused it). Small reads are
    first gathered in ``_recent`` and merged into one piece once they reach
    ``_PIECE`` characters: kept one by one, a drip of tiny reads would hold many
    times its size in string headers.

    Args:
        max_frame_bytes: Largest frame accepted, in characters of decoded text.
    """

    __slots__ = (
        "_carry",
        "_decoder",
        "_max_frame",
        "_pending",
        "_pending_size",
        "_recent",
        "_recent_size",
        "_skip_lf",
    )

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._carry = False  # whether the decoder holds the start of a character
        self._pending: list[str] = []  # pieces of _PIECE characters or more
        self._recent: list[str] = []  # the reads after them, fewer characters than that
        self._pending_size = 0  # characters in both
        self._recent_size = 0
        self._skip_lf = False
        self._max_frame = max_frame_bytes

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode one network read and return every frame it completed, in order."""
        if self._carry or (chunk and chunk[-1] > 0x7F):  # a character may be cut here
            text = self._decoder.decode(chunk)
            self._carry = bool(self._decoder.getstate()[0])
        else:  # nothing held, nothing cut: as the incremental decoder would, one call less
            text = chunk.decode("utf-8", "replace")
        if self._skip_lf and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split across two reads
        if "\r" in text:
            # A CR that ends this read already ends its line; an LF opening the next
            # read then belongs to it and is dropped.
            self._skip_lf = text.endswith("\r")
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        elif text:
            self._skip_lf = False
        frames: list[ServerSentEvent] = []
        # No frame can be over the limit if all the text held and read is not.
        checked = self._pending_size + len(text) > self._max_frame
        if not self._pending_size:
            blocks = text.split("\n\n")  # one pass; no copy when no frame ends
        elif "\n\n" in text or (text.startswith("\n") and self._ends_with_lf()):
            blocks = "".join([*self._pending, *self._recent, text]).split("\n\n")
            self._reset()
        else:
            blocks = [text]
        if len(blocks) == 1:
            # No frame ended: only this read's text was looked at; it joins the tail.
            if checked:
                self._check_size(self._pending_size + len(text), frames)
            if text:
                self._keep(text)
            return frames
        rest = blocks.pop()
        if rest:
            self._keep(rest)
        for block in blocks:
            if checked:
                self._check_size(len(block), frames)
            if block.startswith("data: ") and "\n" not in block:
                frames.append(ServerSentEvent(data=block[6:]))
            elif block:
                frame = parse_block(block)
                if frame is not None:
                    frames.append(frame)
        if checked:
            self._check_size(len(rest), frames)
        return frames

    def _ends_with_lf(self) -> bool:
        """Whether the unfinished frame ends with a line feed (a blank line may follow)."""
        last = self._recent or self._pending
        return bool(last) and last[-1].endswith("\n")

    def _keep(self, text: str) -> None:
        """Add text to the unfinished frame; each character is copied once more at most."""
        self._recent.append(text)
        self._recent_size += len(text)
        self._pending_size += len(text)
        if self._recent_size >= _PIECE:
            self._pending.append("".join(self._recent))
            self._recent = []
            self._recent_size = 0

    def _reset(self) -> None:
        self._pending = []
        self._recent = []
        self._pending_size = self._recent_size = 0

    def _check_size(self, size: int, frames: list[ServerSentEvent]) -> None:
        if size > self._max_frame:
            self._reset()
            raise FrameTooLargeError(
                f"an SSE frame exceeded {self._max_frame} characters ({size} so far)", frames
            )

    def tail(self) -> str:
        """Text received after the last complete frame (a frame cut off by the end of stream)."""
        rest = "".join([*self._pending, *self._recent]) + self._decoder.decode(b"", final=True)
        return rest.strip("\n")


def parse_block(block: str) -> ServerSentEvent | None:
    """Parse one frame by the SSE line rules; ``None`` for a frame of comments only."""
    event = ""
    data: list[str] = []
    event_id = ""
    retry: int | None = None
    for line in block.split("\n"):
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field == "id":
            event_id = value
        elif field == "retry" and value.isdigit():
            retry = int(value)
    if not data and not event:
        return None
    return ServerSentEvent(event=event, data="\n".join(data), id=event_id, retry=retry)
