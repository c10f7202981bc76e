"""A fake Letta server on 127.0.0.1 that replays recorded or scripted streams.

It is a plain ASGI app served by uvicorn on a real socket, so the client under
test goes through real HTTP: chunked bodies, connection pooling, disconnects.
Every request it receives is recorded, so a test can assert what was sent and
how many messages the server accepted.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class Reply:
    """One scripted response.

    Attributes:
        status: HTTP status; 0 never answers (the server hangs until the client leaves).
        body: The body, byte-exact.
        content_type: Its content type.
        headers: Extra response headers.
        split_frames: Send an SSE body one frame per write (as a live server
            does) instead of in one write.
    """

    status: int = 200
    body: bytes = b""
    content_type: str = SSE_CONTENT_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    split_frames: bool = True

    @classmethod
    def from_capture(cls, body_path: str | Path) -> Reply:
        """Replay a capture: ``NAME.sse|json|txt`` beside ``NAME.status.txt`` and headers.

        Args:
            body_path: Path of the capture's body file.
        """
        path = Path(body_path)
        stem = path.name.rsplit(".", 1)[0]
        status_file = path.with_name(f"{stem}.status.txt")
        status = int(status_file.read_text().strip()) if status_file.exists() else 200
        content_type = SSE_CONTENT_TYPE if path.suffix == ".sse" else JSON_CONTENT_TYPE
        headers: list[tuple[str, str]] = []
        headers_file = path.with_name(f"{stem}.headers.txt")
        if headers_file.exists():
            for line in headers_file.read_text().splitlines()[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-type":
                    content_type = value.strip()
                elif name == "retry-after":
                    headers.append((name, value.strip()))
        return cls(status, path.read_bytes(), content_type, tuple(headers))

    @classmethod
    def json(cls, status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
        """A JSON response, such as an HTTP error before any stream."""
        return cls(status, json.dumps(payload).encode(), JSON_CONTENT_TYPE, headers)

    @classmethod
    def events(cls, *payloads: Any, done: bool = True) -> Reply:
        """An SSE stream of ``data:`` frames from JSON payloads, ending with ``[DONE]``."""
        frames = [f"data: {json.dumps(payload)}\n\n" for payload in payloads]
        if done:
            frames.append("data: [DONE]\n\n")
        return cls(body="".join(frames).encode())


@dataclass(frozen=True)
class RecordedRequest:
    """A request the fake server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body) if self.body else None


ReplySource = Iterable[Reply] | Callable[[RecordedRequest], Reply]


@dataclass
class FakeLettaServer:
    """A Letta server that answers ``/messages/stream`` with scripted replies.

    Args:
        replies: Replies for successive stream requests, or a function choosing
            one per request.
        version: What ``GET /v1/health/`` reports (it decides the dialect a client
            in ``auto`` mode speaks); ``None`` makes the health route answer 404.

    Use it as a context manager; ``base_url`` is set once it is listening.
    """

    replies: ReplySource
    version: str | None = "0.16.8"
    received: list[RecordedRequest] = field(default_factory=list)
    base_url: str = ""
    _queue: list[Reply] = field(default_factory=list, repr=False)
    _server: Any = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not callable(self.replies):
            self._queue = list(self.replies)

    @property
    def stream_requests(self) -> list[RecordedRequest]:
        """The message requests received (health probes left out)."""
        return [request for request in self.received if request.method == "POST"]

    def __enter__(self) -> FakeLettaServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Listen on a free port of 127.0.0.1, in a background thread."""
        try:
            import uvicorn
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError(
                "langchain_letta.testing needs uvicorn: pip install 'langchain-letta[test]'"
            ) from error
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the fake Letta server failed to start")
            threading.Event().wait(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        """Stop listening and wait for the thread to end."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def _next_reply(self, request: RecordedRequest) -> Reply:
        if callable(self.replies):
            return self.replies(request)
        if not self._queue:
            return Reply.json(500, {"detail": "fake Letta server: no scripted reply left"})
        return self._queue.pop(0)

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            headers={key.decode(): value.decode() for key, value in scope["headers"]},
            body=bytes(body),
        )
        self.received.append(request)
        if request.method == "GET" and request.path.rstrip("/") == "/v1/health":
            if self.version is None:
                reply = Reply.json(404, {"detail": "Not Found"})
            else:
                reply = Reply.json(200, {"version": self.version, "status": "ok"})
        else:
            reply = self._next_reply(request)
        await _send_reply(reply, receive, send)


async def _send_reply(reply: Reply, receive: Receive, send: Send) -> None:
    if reply.status == 0:
        # Captured as "000": the real server never sent a status line. Hang until the client leaves.
        while (await receive())["type"] != "http.disconnect":
            pass
        return
    headers = [(b"content-type", reply.content_type.encode())]
    headers += [(name.encode(), value.encode()) for name, value in reply.headers]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    pieces = [reply.body]
    if reply.split_frames and reply.content_type.startswith("text/event-stream"):
        pieces = [piece + b"\n\n" for piece in reply.body.split(b"\n\n") if piece]
        if not reply.body.endswith(b"\n\n") and pieces:
            pieces[-1] = pieces[-1][:-2]  # keep a cut-off last frame cut off
    for piece in pieces:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b"", "more_body": False})
