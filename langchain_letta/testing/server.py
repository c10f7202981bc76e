"""A fake Letta server on 127.0.0.1 that replays recorded or scripted streams, with faults.

It is a plain ASGI app served by uvicorn on a real socket, so the client under
test goes through real HTTP: chunked bodies, connection pooling, and drops that
are real broken connections. It speaks what a Letta server speaks about streams:
``GET /v1/health/``, ``POST /v1/agents/{id}/messages/stream`` (foreground, or a
background run numbered with ``seq_id`` as Redis does), conversations (``POST
/v1/conversations/?agent_id=…`` creates one, ``POST /v1/conversations/{id}/messages``
streams like the agent route; both only from 0.16.2, as on real servers; from 0.16.6
``default`` with ``agent_id`` in the body is the agent's own thread), ``POST
/v1/runs/{id}/stream`` (resume after a cursor) and ``POST
/v1/agents/{id}/messages/cancel``, and lists the runs it is answering (``GET /v1/runs/``,
``GET /v1/runs/active``). Every request is recorded, so a test can assert
what was sent and how many messages the server accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import threading
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from langchain_letta._wire import forget_server
from langchain_letta._wire.requests import (
    has_feature,
    supports_background,
    supports_conversations,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"
_RUN_ID = re.compile(rb'"run_id":\s*"(run-[^"]+)"')
_RESUME_PATH = re.compile(r"^/v1/runs/(?P<run>[^/]+)/stream/?$")
_CONVERSATION_MESSAGES = re.compile(r"^/v1/conversations/(?P<conversation>[^/]+)/messages/?$")
_THREAD_STATE = re.compile(r"^/v1/(?P<kind>agents|conversations|messages)/(?P<id>[^/]+)$")
_MESSAGE_PATH = re.compile(r"^/v1/(agents/[^/]+/messages/stream|conversations/[^/]+/messages)/?$")


@dataclass(frozen=True)
class Reply:
    """One scripted response, and the faults to inject into it.

    Attributes:
        status: HTTP status; 0 never answers (the server hangs until the client leaves).
        body: The body, byte-exact.
        content_type: Its content type.
        headers: Extra response headers (``retry-after``, ...).
        split_frames: Send an SSE body one frame per write (as a live server
            does) instead of in one write.
        drops: Break the connection after this many frames: the first number for
            the first connection, the next for the first resume, and so on.
        stall_after: Stop sending after this many frames and hold the connection
            open, silent, until the client gives up.
        cut_at_byte: Break the connection after this many bytes of the body, inside a
            frame or between two (a proxy cutting a stream anywhere): the first number
            for the first connection, the next for the first resume, and so on. A
            number past the body breaks it after the whole body, before its end.
    """

    status: int = 200
    body: bytes = b""
    content_type: str = SSE_CONTENT_TYPE
    headers: tuple[tuple[str, str], ...] = ()
    split_frames: bool = True
    drops: tuple[int, ...] = ()
    stall_after: int | None = None
    cut_at_byte: tuple[int, ...] = ()

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

    def with_faults(
        self,
        *,
        drops: Iterable[int] = (),
        stall_after: int | None = None,
        cut_at_byte: Iterable[int] = (),
    ) -> Reply:
        """This reply, broken: dropped after some frames or bytes, or stalled."""
        return dataclasses.replace(
            self, drops=tuple(drops), stall_after=stall_after, cut_at_byte=tuple(cut_at_byte)
        )

    def frames(self) -> list[bytes]:
        """The body's SSE frames, each with its blank line (a cut-off last one stays cut)."""
        pieces = [piece + b"\n\n" for piece in self.body.split(b"\n\n") if piece.strip()]
        if pieces and not self.body.endswith(b"\n\n"):
            pieces[-1] = pieces[-1][:-2]
        return pieces


@dataclass(frozen=True)
class RecordedRequest:
    """A request the fake server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int] | None = None
    """The client's address and port: one per TCP connection, to count connections."""
    query: dict[str, str] = field(default_factory=dict)
    """The query string's parameters (the last value of each)."""

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body) if self.body else None

    @property
    def thread(self) -> tuple[str | None, str | None]:
        """Where a message request went: ``(agent_id, None)`` or ``(None, conversation_id)``.

        An agent's own thread is named whichever route the message took
        (``/v1/agents/{id}/messages/stream``, or agent-direct mode).
        """
        parts = self.path.strip("/").split("/")
        if parts[1:2] == ["agents"] and len(parts) > 2:
            return parts[2], None
        if parts[1:3] == ["conversations", "default"]:
            body = self.json() if self.body.startswith(b"{") else {}
            return body.get("agent_id"), None
        return None, parts[2] if parts[1:2] == ["conversations"] and len(parts) > 2 else None


@dataclass
class BackgroundRun:
    """A run kept for resuming, numbered as Letta's Redis stream numbers it (from 1)."""

    run_id: str
    frames: list[bytes]
    drops: list[int]
    split_frames: bool = True
    cancelled: bool = False
    cuts: list[int] = field(default_factory=list)
    """Byte offsets to break successive connections at (``Reply.cut_at_byte``)."""


ReplySource = Iterable[Reply] | Callable[[RecordedRequest], Reply]


class _DropConnection(Exception):
    """Raised inside the app to make uvicorn break the connection mid-body."""


class _HideInjectedDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _DropConnection))


logging.getLogger("uvicorn.error").addFilter(_HideInjectedDrops())


@dataclass
class FakeLettaServer:
    """A Letta server that answers message streams with scripted replies.

    Args:
        replies: Replies for successive message requests, or a function choosing
            one per request.
        version: What ``GET /v1/health/`` reports (it decides the dialect, and
            whether background runs exist: 0.11.5 onward); ``None`` makes the
            health route answer 404.
        redis: Whether background mode works; without it a background request
            gets the real server's 503.
        resume_replies: Scripted answers to resume requests, used before the
            server's own background runs (to replay recorded resumes).
        history: What listing the messages returns (a recorded listing, to find
            the calls a thread waits for).
        stores: Add what it accepts to ``history``, newest first, as Letta lists it.
        in_context: The thread's in-context message ids (default: all of
            ``history``); leave a stored message out to play an abandoned run.

    Use it as a context manager; ``base_url`` is set once it is listening.
    """

    replies: ReplySource
    version: str | None = "0.16.8"
    redis: bool = True
    resume_replies: list[Reply] = field(default_factory=list)
    received: list[RecordedRequest] = field(default_factory=list)
    runs: dict[str, BackgroundRun] = field(default_factory=dict)
    accepted: list[RecordedRequest] = field(default_factory=list)
    """Message requests the server took into the agent's memory (answered with a stream)."""
    conversations: dict[str, str] = field(default_factory=dict)
    """The conversations created, each with its agent."""
    summaries: dict[str, str] = field(default_factory=dict)
    """The summary each conversation was created with."""
    history: list[Any] = field(default_factory=list)
    """What ``GET .../messages`` lists, for the agent and every conversation alike."""
    stores: bool = False
    """Keep the user and system messages it accepts in ``history`` (with their otids and
    runs), as a real server stores them."""
    in_context: list[str] | None = None
    """The in-context message ids of the agent and of every conversation (what their
    state lists as ``message_ids`` / ``in_context_message_ids``); ``None``: every
    message of ``history``, in order."""
    under_way: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    """The runs whose answer is being sent, each with its thread (``RecordedRequest.thread``):
    what ``GET /v1/runs/`` lists as running (a run here ends with its answer, also when the
    client leaves)."""
    base_url: str = ""
    _queue: list[Reply] = field(default_factory=list, repr=False)
    _tokens: dict[str, BackgroundRun | Reply] = field(default_factory=dict, repr=False)
    """The run each request token (its otids) started, as 0.16.7+ keeps them in Redis (or
    the reply that never answered it)."""
    _server: Any = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not callable(self.replies):
            self._queue = list(self.replies)

    @property
    def stream_requests(self) -> list[RecordedRequest]:
        """The message requests received, to agents and to conversations (nothing else)."""
        return [r for r in self.received if r.method == "POST" and _MESSAGE_PATH.match(r.path)]

    @property
    def resume_requests(self) -> list[RecordedRequest]:
        """The resume requests received (``POST /v1/runs/{id}/stream``)."""
        return [r for r in self.received if _RESUME_PATH.match(r.path)]

    @property
    def cancelled_runs(self) -> list[str]:
        """Runs a client asked to cancel."""
        return [run.run_id for run in self.runs.values() if run.cancelled]

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
                "langchain_letta.testing needs uvicorn: pip install 'langchain-letta[testing]'"
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
        forget_server(self.base_url)  # a new server, whatever an earlier one on this port did

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
            peer=tuple(scope["client"]) if scope.get("client") else None,
            query=dict(urllib.parse.parse_qsl(scope["query_string"].decode())),
        )
        self.received.append(request)
        path = request.path.rstrip("/")
        if request.method == "GET" and path == "/v1/health":
            if self.version is None:
                await _send(Reply.json(404, {"detail": "Not Found"}), receive, send)
            else:
                health = {"version": self.version, "status": "ok"}
                await _send(Reply.json(200, health), receive, send)
        elif request.method == "GET" and path.endswith("/messages"):
            await _send(Reply.json(200, self._listing(request)), receive, send)
        elif request.method == "GET" and (state := _THREAD_STATE.match(path)):
            await _send(self._thread_state(state["kind"], state["id"]), receive, send)
        elif request.method == "GET" and path in ("/v1/runs", "/v1/runs/active"):
            await _send(Reply.json(200, self._runs_under_way(request)), receive, send)
        elif resume := _RESUME_PATH.match(request.path):
            await self._resume(resume["run"], request, receive, send)
        elif request.path.startswith("/v1/conversations") and not supports_conversations(
            self.version
        ):
            await _send(Reply.json(404, {"detail": "Not Found"}), receive, send)
        elif request.method == "POST" and path == "/v1/conversations":
            await self._create_conversation(request, scope, receive, send)
        elif request.method == "GET" and path == "/v1/conversations":
            await _send(Reply.json(200, self._conversations_of(request)), receive, send)
        elif conversation := _CONVERSATION_MESSAGES.match(request.path):
            if conversation["conversation"] in self.conversations or self._agent_direct(request):
                await self._message(request, receive, send)
            else:
                detail = f"Conversation with id {conversation['conversation']} not found"
                await _send(Reply.json(404, {"detail": detail}), receive, send)
        elif path.endswith("/messages/cancel"):
            await self._cancel(request, receive, send)
        else:
            await self._message(request, receive, send)

    def _conversations_of(self, request: RecordedRequest) -> list[dict[str, Any]]:
        """``GET /v1/conversations/``: an agent's, oldest first, by ``summary_search``."""
        agent_id, search = request.query.get("agent_id"), request.query.get("summary_search")
        return [
            {"id": conversation, "agent_id": agent, "summary": self.summaries.get(conversation)}
            for conversation, agent in self.conversations.items()
            if agent_id in (None, agent)
            and (search is None or search in (self.summaries.get(conversation) or ""))
        ]

    def _runs_under_way(self, request: RecordedRequest) -> list[dict[str, Any]]:
        """The runs being answered, of the agent asked for (``agent_id``, or ``agent_ids``)."""
        asked = request.query.get("agent_id") or request.query.get("agent_ids")
        runs = []
        for run_id, (agent, conversation) in list(self.under_way.items()):
            agent = agent or self.conversations.get(conversation or "")
            if asked in (None, agent):
                runs.append(
                    {
                        "id": run_id,
                        "status": "running",
                        "agent_id": agent,
                        "conversation_id": conversation,
                    }
                )
        return runs

    def _agent_direct(self, request: RecordedRequest) -> bool:
        """A message to the agent's own thread in agent-direct mode (0.16.6+)."""
        if not request.path.startswith("/v1/conversations/default/"):
            return False
        body = request.json() if request.body.startswith(b"{") else {}
        return bool(has_feature(self.version, "agent_direct") and body.get("agent_id"))

    def _listing(self, request: RecordedRequest) -> Any:
        """``history``, from just after ``?after=`` (as the real listing pages), if given."""
        after = request.query.get("after")
        if after is None or not isinstance(self.history, list):
            return self.history
        ids = [item.get("id") if isinstance(item, dict) else None for item in self.history]
        return self.history[len(ids) - ids[::-1].index(after) :] if after in ids else []

    def _thread_state(self, kind: str, thread_id: str) -> Reply:
        """An agent's or a conversation's state (its in-context ids), or one message."""
        if not isinstance(self.history, list):
            return Reply.json(200, self.history)  # whatever a test made it
        messages = [item for item in self.history if isinstance(item, dict)]
        if kind == "messages":
            if has_feature(self.version, "message_by_id") is False:
                return Reply.json(404, {"detail": "Not Found"})
            found = [item for item in messages if item.get("id") == thread_id]
            if not found:
                return Reply.json(404, {"detail": f"Message with id {thread_id} not found."})
            return Reply.json(200, found)
        ids = self.in_context
        if ids is None:
            ids = list(dict.fromkeys(str(item.get("id")) for item in messages))
        if kind == "agents":
            return Reply.json(200, {"id": thread_id, "message_ids": ids})
        if not supports_conversations(self.version):
            return Reply.json(404, {"detail": "Not Found"})
        return Reply.json(200, {"id": thread_id, "in_context_message_ids": ids})

    async def _create_conversation(
        self, request: RecordedRequest, scope: Scope, receive: Receive, send: Send
    ) -> None:
        query = dict(
            pair.split("=", 1) for pair in scope["query_string"].decode().split("&") if "=" in pair
        )
        agent_id = query.get("agent_id")
        if not agent_id:
            detail = [{"type": "missing", "loc": ["query", "agent_id"], "msg": "Field required"}]
            await _send(Reply.json(422, {"detail": detail}), receive, send)
            return
        conversation_id = f"conv-{uuid.uuid4()}"
        self.conversations[conversation_id] = agent_id
        body = request.json() if request.body.startswith(b"{") else {}
        if isinstance(body.get("summary"), str):
            self.summaries[conversation_id] = body["summary"]
        await _send(Reply.json(200, {"id": conversation_id, "agent_id": agent_id}), receive, send)

    async def _message(self, request: RecordedRequest, receive: Receive, send: Send) -> None:
        payload = request.json() if request.body.startswith(b"{") else {}
        background = bool(payload.get("background")) and supports_background(self.version)
        if background and not self.redis:
            detail = (
                "INTERNAL_SERVER_ERROR: Background streaming requires Redis to be running. "
                "Please ensure Redis is properly configured."
            )
            await _send(Reply.json(503, {"detail": detail}), receive, send)
            return
        token = self._request_token(request, payload) if background else None
        known = self._tokens.get(token) if token is not None else None
        if isinstance(known, BackgroundRun):  # the same otids again: their run, from its start
            await self._stream_run(known, 0, receive, send)
            return
        if known is not None:  # a request that never got an answer: nor does it now
            await _send(known, receive, send)
            return
        reply = self._next_reply(request)
        if token is not None and reply.status == 0:
            self._tokens[token] = reply
        if 200 <= reply.status < 300:
            self.accepted.append(request)
        if not (background and reply.status == 200 and reply.content_type == SSE_CONTENT_TYPE):
            drop = reply.drops[0] if reply.drops else None
            cut = reply.cut_at_byte[0] if reply.cut_at_byte else None
            with self._answering(reply, request):
                await _send(reply, receive, send, drop_after=drop, cut_at_byte=cut)
            return
        run = self._start_run(reply)
        self._store(payload, run.run_id)
        if token is not None:
            self._tokens[token] = run
        with self._answering(reply, request, run.run_id):
            await self._stream_run(run, 0, receive, send, stall_after=reply.stall_after)

    @contextlib.contextmanager
    def _answering(
        self, reply: Reply, request: RecordedRequest, run_id: str | None = None
    ) -> Iterator[None]:
        """A stream's run is under way while its answer is sent (an error answer is no run)."""
        if not (200 <= reply.status < 300 and reply.content_type.startswith("text/event-stream")):
            yield
            return
        run_id = run_id or _run_id_of(reply)
        self.under_way[run_id] = request.thread
        try:
            yield
        finally:
            self.under_way.pop(run_id, None)

    def _store(self, payload: dict[str, Any], run_id: str) -> None:
        if not self.stores or not isinstance(self.history, list):
            return
        for message in payload.get("messages") or []:
            if isinstance(message, dict) and message.get("role") in ("user", "system"):
                stored = {
                    "message_type": f"{message['role']}_message",
                    "id": f"message-{uuid.uuid4()}",
                    "otid": message.get("otid"),
                    "run_id": run_id,
                    "content": message.get("content"),
                }
                self.history.insert(0, stored)

    def _request_token(self, request: RecordedRequest, payload: dict[str, Any]) -> str | None:
        """What 0.16.7+ knows a background request by again: its otids, on a locked route."""
        locked = request.thread[1] is not None or self._agent_direct(request)
        if not (locked and has_feature(self.version, "request_token")):
            return None
        otids = [m.get("otid") for m in payload.get("messages") or [] if isinstance(m, dict)]
        return "|".join(str(otid) for otid in otids if otid) or None

    def _start_run(self, reply: Reply) -> BackgroundRun:
        run_id = _run_id_of(reply)
        frames = [
            frame.replace(b'"seq_id":null', b'"seq_id":%d' % seq).replace(
                b'"run_id":null', b'"run_id":"%s"' % run_id.encode()
            )
            for seq, frame in enumerate(reply.frames(), start=1)
        ]
        run = BackgroundRun(
            run_id, frames, list(reply.drops), reply.split_frames, cuts=list(reply.cut_at_byte)
        )
        self.runs[run_id] = run
        return run

    async def _stream_run(
        self,
        run: BackgroundRun,
        starting_after: int,
        receive: Receive,
        send: Send,
        *,
        stall_after: int | None = None,
    ) -> None:
        if starting_after >= len(run.frames):
            await _hang(receive)  # as the real server does for a cursor past [DONE]
            return
        drop = run.drops.pop(0) if run.drops else None
        cut = run.cuts.pop(0) if run.cuts else None
        reply = Reply(
            body=b"".join(run.frames[max(starting_after, 0) :]),
            split_frames=run.split_frames,
            stall_after=stall_after,
        )
        await _send(reply, receive, send, drop_after=drop, cut_at_byte=cut)

    async def _resume(
        self, run_id: str, request: RecordedRequest, receive: Receive, send: Send
    ) -> None:
        run = self.runs.get(run_id)
        if self.resume_replies:
            await _send(self.resume_replies.pop(0), receive, send)
        elif not request.body:
            await _send(Reply.json(500, {"detail": "An unknown error occurred"}), receive, send)
        elif run is None:
            await _send(Reply.json(404, {"detail": "Run not found"}), receive, send)
        else:
            starting_after = int(request.json().get("starting_after") or 0)
            await self._stream_run(run, starting_after, receive, send)

    async def _cancel(self, request: RecordedRequest, receive: Receive, send: Send) -> None:
        run_ids = (request.json() or {}).get("run_ids") or []
        for run_id in run_ids:
            if run_id in self.runs:
                self.runs[run_id].cancelled = True
        await _send(Reply.json(200, {"run_ids": run_ids}), receive, send)


def _run_id_of(reply: Reply) -> str:
    """The run a reply names (a recorded one names its own), else a new one."""
    found = _RUN_ID.search(reply.body)
    return found.group(1).decode() if found else f"run-{uuid.uuid4()}"


async def _hang(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send(
    reply: Reply,
    receive: Receive,
    send: Send,
    *,
    drop_after: int | None = None,
    cut_at_byte: int | None = None,
) -> None:
    if reply.status == 0:
        await _hang(receive)  # captured as "000": the real server never sent a status line
        return
    headers = [(b"content-type", reply.content_type.encode())]
    headers += [(name.encode(), value.encode()) for name, value in reply.headers]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    streamed = reply.content_type.startswith("text/event-stream")
    pieces = reply.frames() if streamed and reply.split_frames else [reply.body]
    left = cut_at_byte  # bytes still to send before the cut
    for sent, piece in enumerate(pieces):
        if drop_after is not None and sent >= drop_after:
            raise _DropConnection
        if reply.stall_after is not None and sent >= reply.stall_after:
            await _hang(receive)
            return
        if left is not None and len(piece) >= left:
            if left:  # the piece up to the cut, then the connection breaks
                await send({"type": "http.response.body", "body": piece[:left], "more_body": True})
                await asyncio.sleep(0)
            raise _DropConnection
        if left is not None:
            left -= len(piece)
        await send({"type": "http.response.body", "body": piece, "more_body": True})
        await asyncio.sleep(0)
    if left is not None:
        raise _DropConnection  # the whole body went out, its end never does
    await send({"type": "http.response.body", "body": b"", "more_body": False})
