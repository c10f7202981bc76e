"""A minimal HTTP/1.1 server on 127.0.0.1 that answers every stream with one prepared SSE body.

The benchmarks measure the client's CPU, so the server runs in its own process
(``python bench/loopback_server.py --deltas N --shape frame``) and does no work
per request beyond one ``sendall`` of a response encoded in advance: the body
reaches the client back to back, faster than it reads ("saturated").

Three shapes of the chunked body:

* ``frame``: one SSE frame per HTTP chunk, as uvicorn writes a live Letta stream;
* ``64k``: HTTP chunks of 64 KiB, many frames per read;
* ``paced``: one frame per HTTP chunk, each sent on its own after a pause of
  ``--pace`` seconds (a live LLM's tokens; the pause is ``time.sleep``'s, so a
  little longer).

``GET /v1/health`` answers ``{"version": "0.16.8"}``; every other request gets the
stream. Prints the port on its first line of stdout, then serves until killed.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time

RUN = "run-3e750598-3486-46c1-866b-68216cf5624c"
MESSAGE = "message-04dd397a-5211-4fce-aa8d-252fefea41b2"
STEP = "step-43097787-efa5-4af9-a671-5eb985d5681e"
WORDS = ("Hello", " from", " the", " fake", " model", ",")
DONE_FRAME = b"data: [DONE]\n\n"


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


def stream_frames(deltas: int) -> list[bytes]:
    """A 0.16.8-shaped token stream: two reasoning deltas, ``deltas`` text deltas, the end.

    Args:
        deltas: Assistant text deltas (the count every figure is divided by).
    """
    reasoning = _base("reasoning_message", "04dd397a-5211-4fce-aa8d-252fefea4180")
    reasoning |= {"source": "non_reasoner_model", "signature": None}
    frames = [_frame(reasoning | {"reasoning": piece}) for piece in ("thinking", "...")]
    text = _base("assistant_message", "04dd397a-5211-4fce-aa8d-252fefea4181")
    frames += [_frame(text | {"content": WORDS[i % len(WORDS)]}) for i in range(deltas)]
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
    return bytes(out + b"0\r\n\r\n")


HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def stream_response(deltas: int, shape: str) -> list[bytes]:
    """The HTTP response of one stream, encoded once: the writes that send it to every caller.

    One write for the saturated shapes; for ``paced``, the head with the first
    chunk, then one write per chunk.
    """
    frames = stream_frames(deltas)
    if shape == "64k":
        body = b"".join(frames)
        frames = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    if shape != "paced":
        return [HEAD + chunked(frames)]
    writes = [chunked([frame])[: -len(b"0\r\n\r\n")] for frame in frames]
    writes[0] = HEAD + writes[0]
    writes[-1] += b"0\r\n\r\n"
    return writes


def _health() -> bytes:
    body = b'{"version":"0.16.8","status":"ok"}'
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    return head % len(body) + body


def _serve(conn: socket.socket, stream: list[bytes], health: bytes, pace: float) -> None:
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
            for position, data in enumerate(stream):
                if position:
                    time.sleep(pace)
                conn.sendall(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--deltas", type=int, required=True)
    parser.add_argument("--shape", choices=("frame", "64k", "paced"), default="frame")
    parser.add_argument("--pace", type=float, default=0.0003, help="seconds between paced frames")
    args = parser.parse_args()
    stream = stream_response(args.deltas, args.shape)
    health = _health()
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        serving = (conn, stream, health, args.pace)
        threading.Thread(target=_serve, args=serving, daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
