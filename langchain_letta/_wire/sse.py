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


class FrameTooLargeError(ValueError):
    """A frame grew past the decoder's limit without ending."""


class SSEFrameDecoder:
    """Turns the bytes of an SSE response into frames, keeping only the unfinished tail.

    Args:
        max_frame_bytes: Largest frame accepted, in characters of decoded text.
    """

    __slots__ = ("_buffer", "_decoder", "_max_frame", "_skip_lf")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._skip_lf = False
        self._max_frame = max_frame_bytes

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Decode one network read and return every frame it completed, in order."""
        text = self._decoder.decode(chunk)
        if self._skip_lf and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split across two reads
        if "\r" in text:
            # A CR that ends this read already ends its line; an LF opening the next
            # read then belongs to it and is dropped.
            self._skip_lf = text.endswith("\r")
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        elif text:
            self._skip_lf = False
        if self._buffer:
            text = self._buffer + text
        blocks = text.split("\n\n")
        self._buffer = blocks.pop()
        self._check_size(self._buffer)
        frames: list[ServerSentEvent] = []
        for block in blocks:
            if block.startswith("data: ") and "\n" not in block:
                self._check_size(block)
                frames.append(ServerSentEvent(data=block[6:]))
            elif block:
                self._check_size(block)
                frame = parse_block(block)
                if frame is not None:
                    frames.append(frame)
        return frames

    def _check_size(self, text: str) -> None:
        if len(text) > self._max_frame:
            self._buffer = ""
            raise FrameTooLargeError(
                f"an SSE frame exceeded {self._max_frame} characters ({len(text)} so far)"
            )

    def tail(self) -> str:
        """Text received after the last complete frame (a frame cut off by the end of stream)."""
        rest = self._buffer + self._decoder.decode(b"", final=True)
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
