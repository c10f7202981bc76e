"""What the client of one HTTP/1.1 connection receives, sorted for h11 and for the body's reader.

httpx decodes a chunked body one HTTP chunk at a time, through h11's chunk reader, its
state machine and httpcore's generators: about 8 µs a chunk, and a live Letta server
writes one SSE frame per chunk. :class:`JoinedChunks` sits between the socket and h11
(see ``_wire/transport.py``) and follows the framing of every response on the
connection. The data of a chunked body is taken out of what h11 sees: the response's
reader takes it directly (:meth:`JoinedChunks.body_data`), one piece per network read
however many chunks it held, and h11 then gets the last chunk and the trailers, so it
still ends the response where the wire did and decides whether the connection is reused.
A reader that asks h11 for the body gets the same data, each read's chunks joined into
one chunk (:meth:`JoinedChunks.for_h11`). Heads, the last chunk, trailers and bodies
that are not chunked pass to h11 unchanged, so h11 still checks all of them.
Sans-I/O: fed bytes, it hands bytes out.

It only takes over what it understands exactly as h11 does: a response whose framing it
cannot follow (no ``Transfer-Encoding: chunked`` or ``Content-Length`` it can read, an
upgrade, a head too long) makes it pass every later byte of the connection to h11 as it
came. A malformed chunked body (a size line that is too long or not hex, a chunk not
followed by CRLF) is an error, raised once the bytes before it are handed out.
"""

from __future__ import annotations

import re
from collections import deque

MAX_SIZE_LINE = 4096
"""Longest chunk-size line (size and extensions): h11 allows 100 KiB, servers send a few bytes."""
MAX_HEAD = 64 * 1024
"""Longest response head followed; a longer one is passed through (h11 judges it)."""
MAX_TRAILERS = 64 * 1024
"""Longest trailer section after the last chunk."""

_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;.*)?[ \t]*")
"""h11's ``chunk_header`` (without its CRLF): at most 20 hex digits, extensions ignored."""
_BLANK_LINE = re.compile(rb"\n\r?\n")
_DIGITS = re.compile(rb"[0-9]+")

# States of the connection, as seen from the bytes it received.
_IDLE = 0  # no response expected (nothing sent since the last one ended)
_HEAD = 1  # reading a response head
_LENGTH = 2  # a Content-Length body: ``_left`` bytes to go
_SIZE = 3  # a chunked body, at a chunk-size line
_DATA = 4  # inside a chunk: ``_left`` bytes to go
_CRLF = 5  # after a chunk's data: its CRLF
_TRAILERS = 6  # after the last chunk: the trailer section, to its blank line
_PASS = 7  # framing not followed: every byte passes through, for good
_IN_BODY = frozenset((_SIZE, _DATA, _CRLF))
"""States inside a chunked body's data, where :meth:`JoinedChunks.body_data` waits for more."""


class ChunkedFramingError(ValueError):
    """A chunked body broke HTTP/1.1 framing; the connection cannot be used any more."""


class JoinedChunks:
    """The client side of one HTTP/1.1 connection: bytes sent, bytes received, sorted."""

    __slots__ = ("_buffer", "_error", "_left", "_method", "_queue", "_state")

    def __init__(self) -> None:
        self._state = _IDLE
        self._buffer = b""  # bytes received but not yet sorted: a head, a size line, a CRLF
        self._left = 0
        self._method = b""
        self._error: ChunkedFramingError | None = None
        # What was received and not yet handed out, in wire order: runs of bytes for h11
        # (False) and of body data (True). At most one network read's worth: the streams
        # read again only once it is empty.
        self._queue: deque[tuple[bool, list[bytes]]] = deque()

    @property
    def passing(self) -> bool:
        """Whether every byte now passes through as it came (framing no longer followed)."""
        return self._state == _PASS

    def sent(self, data: bytes) -> None:
        """Record bytes written to the connection: the first of a request names its method."""
        state = self._state
        if state == _IDLE and data:
            self._method = data.split(b" ", 1)[0]
            self._state = _HEAD
        elif state != _HEAD:
            # A request while this still reads a response (h11 saw it end where this
            # did not): follow the connection no further, h11 reads all of it.
            self._state = _PASS

    def received(self, data: bytes) -> None:
        """Sort ``data``, just read from the connection, for :meth:`for_h11` and :meth:`body_data`.

        A framing fault is kept and raised by those once the bytes before it are
        handed out; bytes received after it raise it at once.
        """
        if self._error is not None:
            raise self._error
        state = self._state
        if state == _SIZE and not self._buffer:
            # The usual read of a paced stream: one whole chunk, its data taken as it is.
            stop = data.find(b"\r\n", 0, MAX_SIZE_LINE + 2)
            matched = _SIZE_LINE.fullmatch(data, 0, stop) if stop > 0 else None
            if matched is not None:
                size = int(matched.group(1), 16)
                if size and len(data) == stop + size + 4 and data.endswith(b"\r\n"):
                    self._put(True, data[stop + 2 : -2])
                    return
        try:
            self._receive(data)
        except ChunkedFramingError as error:
            self._state = _PASS
            self._error = error

    def for_h11(self) -> bytes | None:
        """The next bytes to hand h11, body data as one chunk; ``None``: all handed, read on.

        Raises:
            ChunkedFramingError: The body broke its framing after what was handed out.
        """
        if not self._queue:
            if self._error is not None:
                raise self._error
            return None
        body, pieces = self._queue.popleft()
        joined = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        return b"%x\r\n%b\r\n" % (len(joined), joined) if body else joined

    def body_data(self) -> bytes | None:
        """The next data of the chunked body being received, for the response's reader.

        ``None``: nothing yet, read on. ``b""``: no more data here (the body's last
        chunk has arrived, or this response's body is not one this takes): what is
        left goes to h11, which ends the response or judges it cut short.

        Raises:
            ChunkedFramingError: The body broke its framing after the data handed out.
        """
        queue = self._queue
        if queue:
            if not queue[0][0]:
                return b""
            pieces = queue.popleft()[1]
            return pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if self._error is not None:
            raise self._error
        return None if self._state in _IN_BODY else b""

    def _put(self, body: bool, piece: bytes) -> None:
        if not piece:
            return
        queue = self._queue
        if queue and queue[-1][0] is body:
            queue[-1][1].append(piece)
        else:
            queue.append((body, [piece]))

    def _receive(self, data: bytes) -> None:
        """Sort ``data`` into the queue, in wire order."""
        if self._buffer and (self._state == _SIZE or self._state == _CRLF):
            data = self._buffer + data  # a size line or CRLF held back: at most 4 KiB
            self._buffer = b""
        position = 0
        end = len(data)
        while position < end:
            state = self._state
            if state == _DATA:
                stop = position + self._left
                if stop <= end:
                    self._put(True, data[position:stop])
                    self._left = 0
                    self._state = _CRLF
                    position = stop
                else:
                    self._put(True, data[position:] if position else data)
                    self._left -= end - position
                    break
            elif state == _SIZE:
                stop = data.find(b"\r\n", position, position + MAX_SIZE_LINE + 2)
                if stop < 0:
                    if end - position > MAX_SIZE_LINE + 1:
                        raise ChunkedFramingError("a chunk-size line is too long")
                    self._buffer = data[position:]
                    break
                matched = _SIZE_LINE.fullmatch(data, position, stop)
                if matched is None:
                    raise ChunkedFramingError("a chunk-size line is not a hex size")
                size = int(matched.group(1), 16)
                if size:
                    self._left = size
                    self._state = _DATA
                    position = stop + 2
                else:
                    # The last chunk: its line and the trailers pass as they came.
                    self._state = _TRAILERS
                    self._buffer = b""
                    self._put(False, data[position : stop + 2])
                    position = stop + 2
            elif state == _CRLF:
                if end - position < 2:
                    self._buffer = data[position:]
                    break
                if data[position : position + 2] != b"\r\n":
                    raise ChunkedFramingError("a chunk's data is not followed by CRLF")
                position += 2
                self._state = _SIZE
            elif state == _HEAD:
                position = self._head(data, position)
            elif state == _LENGTH:
                stop = min(end, position + self._left)
                self._put(False, data[position:stop])
                self._left -= stop - position
                position = stop
                if not self._left:
                    self._state = _IDLE
            elif state == _TRAILERS:
                position = self._trailers(data, position)
            else:  # _IDLE (bytes nobody asked for: h11 judges them) or _PASS
                self._state = _PASS
                self._put(False, data[position:] if position else data)
                break

    def _head(self, data: bytes, position: int) -> int:
        """Pass a response head to h11, ending it where h11 does: its first blank line."""
        start = len(self._buffer)
        self._buffer += data[position:]
        buffer = self._buffer
        if buffer[:1] == b"\n" or buffer[:2] == b"\r\n":
            # A blank line before any status line: h11 refuses it; follow nothing more.
            self._buffer = b""
            self._state = _PASS
            self._put(False, data[position:])
            return len(data)
        found = _BLANK_LINE.search(buffer, max(0, start - 2))
        if found is None:
            self._put(False, data[position:])
            if len(buffer) > MAX_HEAD:
                self._buffer = b""
                self._state = _PASS
            return len(data)
        taken = found.end() - start
        self._put(False, data[position : position + taken])
        head = buffer[: found.end()]
        self._buffer = b""
        self._state = self._framing(head)
        return position + taken

    def _framing(self, head: bytes) -> int:
        """What follows ``head``, decided as h11 decides it (``_PASS`` when in doubt).

        Its lines are split as h11 splits them: at each LF, a CR before it dropped.
        """
        lines = [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")][:-2]
        parts = lines[0].split(b" ", 2)
        if (
            len(parts) < 2
            or not parts[0].startswith(b"HTTP/1.")
            or len(parts[1]) != 3
            or not _DIGITS.fullmatch(parts[1])
        ):
            return _PASS
        status = int(parts[1])
        if status == 101:
            return _PASS  # an upgrade: the connection is no longer HTTP
        if status < 200:
            return _HEAD  # informational (100 Continue): the response's own head follows
        if (
            status in (204, 304)
            or self._method == b"HEAD"
            or (self._method == b"CONNECT" and status < 300)
        ):
            return _IDLE
        encodings: list[bytes] = []
        lengths: list[bytes] = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or line[:1] in (b" ", b"\t"):
                return _PASS  # folded or malformed: h11 judges it
            name = name.lower()
            if name == b"transfer-encoding":
                encodings += [item.strip(b" \t").lower() for item in value.split(b",")]
            elif name == b"content-length":
                lengths += [item.strip(b" \t") for item in value.split(b",")]
        if encodings:
            return _SIZE if encodings == [b"chunked"] else _PASS
        if lengths:
            if len(set(lengths)) != 1 or not _DIGITS.fullmatch(lengths[0]):
                return _PASS
            self._left = int(lengths[0])
            return _LENGTH if self._left else _IDLE
        return _PASS  # the body ends when the connection does

    def _trailers(self, data: bytes, position: int) -> int:
        """Pass the trailer section through as it came (h11 checks it) to its blank line."""
        start = len(self._buffer)
        self._buffer += data[position:]
        buffer = self._buffer
        if buffer[:1] == b"\n":
            stop = 1
        elif buffer[:2] == b"\r\n":
            stop = 2
        else:
            found = _BLANK_LINE.search(buffer, max(0, start - 2))
            if found is None:
                if len(buffer) > MAX_TRAILERS:
                    raise ChunkedFramingError("the trailer section is too long")
                self._put(False, data[position:])
                return len(data)
            stop = found.end()
        taken = stop - start
        self._put(False, data[position : position + taken])
        self._buffer = b""
        self._state = _IDLE
        return position + taken
