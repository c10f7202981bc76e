"""A minimal HTTP/1.1 server on 127.0.0.1 that answers every stream with one prepared SSE body.

The benchmarks measure the client's CPU, so the server runs in its own process
(``python bench/loopback_server.py --deltas N --shape frame``) and does no work
per request beyond the writes of a response encoded in advance.

Shapes of the chunked body:

* ``frame``: one SSE frame per HTTP chunk, as uvicorn writes a live Letta stream,
  sent with one ``sendall``: the body reaches the client back to back, faster
  than it reads ("saturated");
* ``64k``: HTTP chunks of 64 KiB, many frames per read, one ``sendall``;
* ``paced``: one frame per HTTP chunk, each sent on its own after a pause of
  ``--pace`` seconds (a live LLM's tokens; the pause is ``time.sleep``'s, so a
  little longer);
* ``scale``: one frame per HTTP chunk, one write at a time for the streams being
  served, in turn, ``--rate`` writes a second in all, spread evenly (one thread
  writes them all): many concurrent streams, each receiving a frame every
  ``streams / rate`` seconds.

With ``--stamp`` (always for ``scale``) each assistant text delta is the time it
was written, ``time.time()`` as 17 characters (``%017.6f``), so that a client
can tell how long a delta waited between arriving and reaching its consumer.

``GET /v1/health`` answers ``{"version": "0.16.8"}``; every other request gets the
stream. Every connection has ``TCP_NODELAY`` set, as asyncio (so uvicorn) sets it:
no write waits for the client's ACK of the one before. Prints the port on its
first line of stdout, then serves until killed.
"""

from __future__ import annotations

import argparse
import collections
import json
import socket
import threading
import time

RUN = "run-3e750598-3486-46c1-866b-68216cf5624c"
MESSAGE = "message-04dd397a-5211-4fce-aa8d-252fefea41b2"
STEP = "step-43097787-efa5-4af9-a671-5eb985d5681e"
WORDS = ("Hello", " from", " the", " fake", " model", ",")
DONE_FRAME = b"data: [DONE]\n\n"
STAMP = b"0000000000.000000"
"""Placeholder of a stamped delta's text, replaced by the time of its write (same width)."""
STAMP_WIDTH = len(STAMP)
TERMINATOR = b"0\r\n\r\n"


def _frame(payload: dict[str, object]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _base(message_type: str, otid: str) -> dict[str, object]:
    """The envelope of a 0.16.8 token-streaming delta (as in the captures)."""
    return {
        "id": MESSAGE,
        "date": "2026-11-27T09:45:46+00:00",
        "name": None,
        "message_type": message_type,
        "otid": otid,
        "sender_id": None,
        "step_id": STEP,
        "is_err": None,
        "seq_id": None,
        "run_id": RUN,
    }


def stream_frames(deltas: int, stamp: bool = False) -> list[bytes]:
    """A 0.16.8-shaped token stream: two reasoning deltas, ``deltas`` text deltas, the end.

    Args:
        deltas: Assistant text deltas (the count every figure is divided by).
        stamp: Whether each text delta is ``STAMP``, to be replaced when written.
    """
    reasoning = _base("reasoning_message", "04dd397a-5211-4fce-aa8d-252fefea4180")
    reasoning |= {"source": "non_reasoner_model", "signature": None}
    frames = [_frame(reasoning | {"reasoning": piece}) for piece in ("thinking", "...")]
    text = _base("assistant_message", "04dd397a-5211-4fce-aa8d-252fefea4181")
    words = [STAMP.decode()] if stamp else WORDS
    frames += [_frame(text | {"content": words[i % len(words)]}) for i in range(deltas)]
    frames.append(_frame({"message_type": "stop_reason", "stop_reason": "end_turn"}))
    usage = {
        "message_type": "usage_statistics",
        "completion_tokens": deltas,
        "prompt_tokens": 1655,
        "total_tokens": 1655 + deltas,
        "step_count": 1,
    }
    frames += [_frame(usage), DONE_FRAME]
    return frames


def chunked(pieces: list[bytes]) -> bytes:
    """``pieces`` as an HTTP/1.1 chunked body, one chunk each, with its terminator."""
    out = bytearray()
    for piece in pieces:
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return bytes(out + TERMINATOR)


HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def stream_response(deltas: int, shape: str, stamp: bool = False) -> list[bytes]:
    """The HTTP response of one stream, encoded once: the writes that send it to every caller.

    One write for the saturated shapes; for ``paced`` and ``scale``, the head with
    the first chunk, then one write per chunk.
    """
    frames = stream_frames(deltas, stamp)
    if shape == "64k":
        body = b"".join(frames)
        frames = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    if shape in ("frame", "64k"):
        return [HEAD + chunked(frames)]
    writes = [chunked([frame])[: -len(TERMINATOR)] for frame in frames]
    writes[0] = HEAD + writes[0]
    writes[-1] += TERMINATOR
    return writes


def stamped(data: bytes) -> bytes:
    """``data`` with its text delta's placeholder, if any, replaced by the time now."""
    return data.replace(STAMP, b"%017.6f" % time.time(), 1)


Playing = tuple[socket.socket, list[bytes], list[int], threading.Event]
"""A stream being played: its connection, its writes, the next one's position, done."""


class Ticker:
    """Writes the next chunk of each stream being played, in turn, ``rate`` writes a second.

    One thread does every write, ticking about every millisecond with the writes
    owed since the last tick (at most 10 ms' worth, so a late tick is not
    followed by a burst): a steady flow, spread over the streams.
    """

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._playing: collections.deque[Playing] = collections.deque()
        threading.Thread(target=self._run, daemon=True).start()

    def play(self, conn: socket.socket, writes: list[bytes]) -> None:
        """Send ``writes`` on ``conn``, one per turn; return when all are sent (or it failed)."""
        done = threading.Event()
        self._playing.append((conn, writes, [0], done))
        done.wait()

    def _run(self) -> None:
        owed = 0.0
        last = time.perf_counter()
        while True:
            time.sleep(0.001)
            now = time.perf_counter()
            owed = min(owed + (now - last) * self._rate, self._rate * 0.01)
            last = now
            while owed >= 1 and self._playing:
                owed -= 1
                entry = self._playing.popleft()
                conn, writes, position, done = entry
                try:
                    conn.sendall(stamped(writes[position[0]]))
                except OSError:
                    done.set()
                    continue
                position[0] += 1
                if position[0] == len(writes):
                    done.set()
                else:
                    self._playing.append(entry)
            if not self._playing:
                owed = 0.0


def _health() -> bytes:
    body = b'{"version":"0.16.8","status":"ok"}'
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    return head % len(body) + body


def _serve(
    conn: socket.socket,
    stream: list[bytes],
    health: bytes,
    pace: float,
    stamp: bool,
    ticker: Ticker | None,
) -> None:
    """Answer the requests of one keep-alive connection until the client closes it."""
    buffer = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in buffer:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buffer) < length:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            buffer = buffer[length:]
            if b"/health" in head.split(b"\r\n")[0]:
                conn.sendall(health)
                continue
            if ticker is not None:
                ticker.play(conn, stream)
                continue
            for position, data in enumerate(stream):
                if position:
                    time.sleep(pace)
                conn.sendall(stamped(data) if stamp else data)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--deltas", type=int, required=True)
    parser.add_argument("--shape", choices=("frame", "64k", "paced", "scale"), default="frame")
    parser.add_argument("--pace", type=float, default=0.0003, help="seconds between paced frames")
    parser.add_argument("--rate", type=float, default=5000, help="writes a second in all (scale)")
    parser.add_argument("--stamp", action="store_true", help="text deltas are their write time")
    args = parser.parse_args()
    stamp = args.stamp or args.shape == "scale"
    if stamp and args.shape not in ("paced", "scale"):
        parser.error("--stamp needs one write per frame: --shape paced or scale")
    threading.stack_size(512 * 1024)  # a thread per connection, a thousand of them at scale
    stream = stream_response(args.deltas, args.shape, stamp)
    health = _health()
    ticker = Ticker(args.rate) if args.shape == "scale" else None
    listener = socket.create_server(("127.0.0.1", 0), backlog=2048)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as uvicorn (asyncio) does
        serving = (conn, stream, health, args.pace, stamp, ticker)
        threading.Thread(target=_serve, args=serving, daemon=True).start()


if __name__ == "__main__":
    main()
