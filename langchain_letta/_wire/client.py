"""HTTP clients that stream one message to a Letta agent and yield typed events.

:class:`LettaClient` and :class:`AsyncLettaClient` share everything but their I/O:
settings and headers (:class:`_ClientCore`), and the per-stream state machine
that turns frames into events and errors (:class:`_StreamState`). Each network
read is decoded as one batch of frames (:class:`SSEFrameDecoder`), so a read that
holds many frames costs one split, not one pass per line.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Mapping
from types import TracebackType
from typing import Any, Generic, TypedDict, TypeVar

import httpx
from httpx_sse import ServerSentEvent
from pydantic import SecretStr
from pydantic_core import from_json
from tenacity import AsyncRetrying, RetryCallState, Retrying

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pydantic depends on typing_extensions, so it is always installed
    from typing_extensions import Unpack

from langchain_letta._wire.requests import (
    Dialect,
    DialectSetting,
    StreamRequest,
    build_body,
    dialect_after_rejection,
    dialect_for_version,
    supports_background,
)
from langchain_letta._wire.retry import (
    DEFAULT_RETRY_TIMEOUT,
    logger,
    retry_policy,
    safe_to_resend,
    worth_resuming_again,
)
from langchain_letta._wire.sse import FrameTooLargeError, SSEFrameDecoder
from langchain_letta.errors import (
    LettaConnectionError,
    LettaError,
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
    parse_event,
)

DEFAULT_BASE_URL = "http://localhost:8283"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 90.0
MIN_READ_TIMEOUT = 35.0
"""Letta pings every 20 s (30 s on some releases) while a run is silent; a read
timeout below this would cut healthy streams, so shorter ones are raised to it."""

_AGENT_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")
_ERROR_BODY_LIMIT = 256 * 1024
_DONE = "[DONE]"


def validate_agent_id(agent_id: str) -> str:
    """Check that ``agent_id`` can only ever name an agent, never another endpoint.

    Raises:
        ValueError: The id contains anything but letters, digits, ``-`` and ``_``
            (``../tools`` and the like).
    """
    # fullmatch: re.match with "$" also accepted a trailing newline ("agent-1\n").
    if not isinstance(agent_id, str) or not _AGENT_ID.fullmatch(agent_id):
        raise ValueError(
            f"invalid Letta agent id {agent_id!r}: expected letters, digits, '-' and '_' "
            "(such as 'agent-0b5c…')"
        )
    return agent_id


class ClientSettings(TypedDict, total=False):
    """Settings of :class:`LettaClient` and :class:`AsyncLettaClient`.

    Attributes:
        base_url: Server URL; else ``LETTA_BASE_URL``; else ``http://localhost:8283``.
        api_key: Sent as ``Authorization: Bearer`` (Letta Cloud, or a self-hosted
            server's password from 0.6.20 on); else ``LETTA_API_KEY``.
        password: A self-hosted server's password, sent as ``X-BARE-PASSWORD``.
        user_id: The acting user on a self-hosted server (``user_id`` header).
        timeout: Read timeout in seconds; raised to at least ``MIN_READ_TIMEOUT`` so
            that the server's keep-alive pings always arrive in time, while a dead
            connection is still noticed.
        connect_timeout: Connect timeout in seconds.
        dialect: Request dialect, or ``"auto"`` to ask ``/v1/health/`` once.
        headers: Extra headers for every request.
        max_retries: Retries of a request the server provably did not accept, and
            resume attempts in a row that bring nothing new.
        retry_timeout: No retry starts, and no wait ends, after this many seconds.
        background: Ask for a background (resumable) run; ``None`` does where the
            server supports it (0.11.5 onward), falling back to a foreground stream
            if the server refuses (503, no Redis).
        cancel_on_close: When the consumer stops early, also cancel the run on
            the server (otherwise it goes on and stays in the agent's memory).
    """

    base_url: str | None
    api_key: str | SecretStr | None
    password: str | SecretStr | None
    user_id: str | None
    timeout: float | None
    connect_timeout: float
    dialect: DialectSetting
    headers: Mapping[str, str] | None
    max_retries: int
    retry_timeout: float
    background: bool | None
    cancel_on_close: bool


class _ClientCore:
    """Settings and decisions shared by the sync and async clients; no I/O of its own."""

    def __init__(self, **settings: Unpack[ClientSettings]) -> None:
        base_url = settings.get("base_url")
        api_key = settings.get("api_key")
        password = settings.get("password")
        timeout = settings.get("timeout")
        connect_timeout = settings.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        dialect = settings.get("dialect", "auto")
        self.base_url = (base_url or os.environ.get("LETTA_BASE_URL") or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        key = api_key if api_key is not None else os.environ.get("LETTA_API_KEY")
        self._api_key = SecretStr(key) if isinstance(key, str) else key
        self._password = SecretStr(password) if isinstance(password, str) else password
        self._user_id = settings.get("user_id")
        read = DEFAULT_READ_TIMEOUT if timeout is None else max(float(timeout), MIN_READ_TIMEOUT)
        self.timeout = httpx.Timeout(read, connect=connect_timeout)
        self._dialect_setting = dialect
        self._dialect: Dialect | None = None if dialect == "auto" else dialect
        self._extra_headers = dict(settings.get("headers") or {})
        self.max_retries = settings.get("max_retries", 2)
        self.retry_timeout = settings.get("retry_timeout", DEFAULT_RETRY_TIMEOUT)
        self.background = settings.get("background")
        self.cancel_on_close = settings.get("cancel_on_close", False)
        self._version: str | None = None
        self._probed = False
        self._background_refused = False

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, dialect={self._dialect_setting!r})"
        )

    @property
    def _needs_probe(self) -> bool:
        return not self._probed and (self._dialect is None or self.background is None)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream, application/json", **self._extra_headers}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        if self._password is not None:
            headers["X-BARE-PASSWORD"] = f"password {self._password.get_secret_value()}"
        if self._user_id is not None:
            headers["user_id"] = self._user_id
        return headers

    def _stream_path(self, agent_id: str) -> str:
        quoted = urllib.parse.quote(validate_agent_id(agent_id), safe="")
        return f"/v1/agents/{quoted}/messages/stream"

    def _learn_from_health(self, response: httpx.Response | None) -> None:
        self._probed = True
        if response is not None and response.status_code == 200:
            try:  # from_json: a hostile depth is a ValueError, not a RecursionError
                payload = from_json(response.content)
            except ValueError:
                payload = None
            if isinstance(payload, dict) and isinstance(payload.get("version"), str):
                self._version = payload["version"]
        if self._dialect is None:
            self._dialect = dialect_for_version(self._version)

    def _body(self, request: StreamRequest) -> dict[str, Any]:
        """The request in this server's dialect, with background mode decided."""
        dialect = self._dialect or "current"
        background = request.background
        if background is None:
            background = self.background
        if background is None:
            background = supports_background(self._version)
        if self._background_refused:
            background = False
        return build_body(request.model_copy(update={"background": background}), dialect)

    def _adjust_after_rejection(
        self, status: int, body_text: str, sent: dict[str, Any], done: set[str]
    ) -> bool:
        """Change what is sent after a refusal that proves nothing was accepted.

        A 422 naming a message field means the other dialect (auto mode only); a
        503 about Redis means the server cannot run background mode. Each change
        is made at most once per request (``done`` records them).
        """
        if status == 422 and self._dialect_setting == "auto" and "dialect" not in done:
            sent_dialect: Dialect = (
                "seed" if "text" in sent["messages"][0] else self._dialect or "current"
            )
            other = dialect_after_rejection(body_text, sent_dialect)
            if other is not None:
                self._dialect = other
                done.add("dialect")
                return True
        if status == 503 and sent.get("background") and "redis" in body_text.lower():
            logger.warning("the Letta server cannot run background mode; streaming in foreground")
            self._background_refused = True
            done.add("background")
            return True
        return False

    def _resume_target(self, progress: StreamProgress) -> tuple[str, dict[str, Any]]:
        run_id = urllib.parse.quote(progress.run_id or "", safe="")
        body = {"starting_after": progress.last_seq_id or 0, "include_pings": True}
        return f"/v1/runs/{run_id}/stream", body

    def _cancel_target(self, agent_id: str, run_id: str) -> tuple[str, dict[str, Any]]:
        quoted = urllib.parse.quote(validate_agent_id(agent_id), safe="")
        return f"/v1/agents/{quoted}/messages/cancel", {"run_ids": [run_id]}


class _StreamState:
    """Turns the frames of one stream into events, errors and progress; no I/O.

    ``progress.last_seq_id`` is the resume cursor. In a background run every frame
    takes a sequence number, but ``stop_reason`` and ``usage_statistics`` frames do
    not show theirs: the cursor counts them, so that a resume never replays them.
    """

    __slots__ = ("decoder", "done", "failure", "frames", "progress", "status_code")

    def __init__(self, status_code: int | None = None) -> None:
        self.decoder = SSEFrameDecoder()
        self.progress = StreamProgress()
        self.done = False
        self.failure: LettaError | None = None
        self.frames = 0
        self.status_code = status_code

    @property
    def resumable(self) -> bool:
        """Whether the run can be read again from the cursor (a background run)."""
        return self.progress.run_id is not None and self.progress.last_seq_id is not None

    def restart(self) -> None:
        """Before reading a resumed stream: a frame cut by the drop is replayed whole."""
        self.decoder = SSEFrameDecoder()

    def feed(self, chunk: bytes) -> list[LettaEvent]:
        """Events completed by one network read, in order; never raises.

        A read can hold good frames and then a bad one (malformed, oversized,
        ``event: error``, ``cancelled``). Raising at once would lose the good ones,
        so the events before it are returned and the error is kept in ``failure``,
        for the caller to raise once it has delivered them.
        """
        oversized: LettaError | None = None
        try:
            frames = self.decoder.feed(chunk)
        except FrameTooLargeError as error:
            frames = error.frames
            oversized = LettaProtocolError(
                str(error), request_accepted=True, progress=self.progress
            )
        events: list[LettaEvent] = []
        for frame in frames:
            try:
                event = self._event(frame)
            except LettaError as error:
                self.failure = error
                return events
            if event is not None:
                events.append(event)
            elif self.done:
                return events
        self.failure = oversized
        return events

    def _event(self, frame: ServerSentEvent) -> LettaEvent | None:
        if frame.data == _DONE:
            self.done = True
            return None
        name = frame.event
        if name == "cancelled":
            raise LettaStreamCancelledError(
                f"the Letta run was cancelled: {frame.data}",
                body=frame.data,
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
                request_accepted=True,
                progress=self.progress,
            ) from None
        self.frames += 1
        progress = self.progress
        run_id = getattr(event, "run_id", None)
        if run_id:
            progress.run_id = run_id
        seq_id = getattr(event, "seq_id", None)
        if seq_id is not None:
            progress.last_seq_id = seq_id
        elif progress.last_seq_id is not None and not isinstance(event, Ping):
            progress.last_seq_id += 1
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

    def undecodable(self, error: httpx.DecodingError) -> LettaError:
        """The typed error for a body httpx cannot decode (a broken gzip stream, ...)."""
        return LettaProtocolError(
            f"the Letta stream could not be decoded after {self.progress.events_received} "
            f"events ({error})",
            request_accepted=True,
            progress=self.progress,
        )

    def interruption(self, error: httpx.TransportError | None = None) -> LettaError:
        """The typed error for a stream that stopped before ``[DONE]``."""
        if isinstance(error, httpx.TimeoutException):
            return LettaTimeoutError(
                f"no data from the Letta server for longer than the read timeout ({error!r})",
                request_accepted=True,
                progress=self.progress,
            )
        if error is not None:
            cause = f"the connection broke ({error!r})"
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


def _error_from_http(response: httpx.Response, body: bytes) -> LettaError:
    """The error for a response with status >= 400, reading an SSE body where there is one."""
    if _is_event_stream(response):
        # 0.11.x answers an upstream LLM failure with HTTP 500 and the error in SSE frames.
        state = _StreamState(status_code=response.status_code)
        state.feed(body + b"\n\n")
        # A body that is no valid stream proves nothing: its status decides (a 503 stays a
        # retryable refusal, where a protocol error would say the message was accepted).
        if state.failure is not None and not isinstance(state.failure, LettaProtocolError):
            return state.failure
    url = response.request.url.copy_with(userinfo=b"", query=None)  # never a credential
    return error_from_response(
        response.status_code,
        body.decode("utf-8", errors="replace"),
        headers=response.headers,
        url=f"{response.request.method} {url}",
    )


def _error_from_connect(error: httpx.TransportError) -> LettaError:
    """The error for a transport failure before any response arrived."""
    if isinstance(error, (httpx.ConnectTimeout, httpx.PoolTimeout)):
        return LettaTimeoutError(
            f"timed out connecting to the Letta server ({error!r})", is_retryable=True
        )
    if isinstance(error, httpx.ConnectError):
        return LettaConnectionError(f"cannot reach the Letta server ({error!r})")
    if isinstance(error, httpx.TimeoutException):
        return LettaTimeoutError(
            f"the Letta server did not answer within the read timeout ({error!r})",
            request_accepted=True,
        )
    # The request may have reached the server: the message may be stored already.
    return LettaConnectionError(
        f"the Letta server did not answer the request ({error!r})", request_accepted=True
    )


def _is_event_stream(response: httpx.Response) -> bool:
    """Whether the body is SSE; media types are case-insensitive (``Text/Event-Stream``)."""
    content_type: str = response.headers.get("content-type", "")
    return content_type.partition(";")[0].strip().lower() == "text/event-stream"


def _check_stream_response(response: httpx.Response) -> None:
    if not _is_event_stream(response):
        content_type = response.headers.get("content-type", "")
        raise LettaProtocolError(
            f"expected an event stream from the Letta server, got {content_type or 'no type'!r}",
            status_code=response.status_code,
            request_accepted=True,
        )


OnRetry = Callable[[RetryCallState], None]
OnResume = Callable[[StreamProgress, LettaError], None]
ClientT = TypeVar("ClientT", bound=_ClientCore)


class _StreamCore(Generic[ClientT]):
    """What the sync and async event streams share: their state and retry policies."""

    def __init__(
        self,
        client: ClientT,
        agent_id: str,
        request: StreamRequest | None,
        *,
        resume_from: StreamProgress | None = None,
        on_retry: OnRetry | None = None,
        on_resume: OnResume | None = None,
    ) -> None:
        self._client = client
        self._agent_id = agent_id
        self._request = request
        self._state = _StreamState()
        if resume_from is not None:
            self._state.progress.run_id = resume_from.run_id
            self._state.progress.last_seq_id = resume_from.last_seq_id or 0
        self._on_retry = on_retry
        self._on_resume = on_resume

    @property
    def progress(self) -> StreamProgress:
        """Run id, last seq_id, events received and stop reason so far."""
        return self._state.progress

    def _policy(self, *, resuming: bool) -> dict[str, Any]:
        return retry_policy(
            worth_resuming_again if resuming else safe_to_resend,
            max_retries=self._client.max_retries,
            timeout=self._client.retry_timeout,
            on_retry=self._on_retry,
            what="resuming the Letta stream" if resuming else "sending the message to Letta",
        )

    def _stalled_too_long(self, stalled: int) -> bool:
        return not self._state.resumable or stalled > self._client.max_retries


class EventStream(_StreamCore["LettaClient"]):
    """The events of one streamed request; iterate it, or close it to hang up early.

    The request is sent on first iteration, retried while the server provably has
    not accepted it, and, for a background run, resumed from the last ``seq_id``
    after a drop, so that every event arrives exactly once. ``progress`` tells how
    far the stream got (run id, cursor, stop reason), also after an error.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batches = self._iter_batches()

    def batches(self) -> Iterator[list[LettaEvent]]:
        """The events, one list per network read (pings removed, lists never empty)."""
        return self._batches

    def __iter__(self) -> Iterator[LettaEvent]:
        for batch in self._batches:
            yield from batch

    def close(self) -> None:
        """Hang up now; with ``cancel_on_close`` the background run is cancelled too."""
        self._batches.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _iter_batches(self) -> Generator[list[LettaEvent], None, None]:
        state = self._state
        response = self._post(self._request) if self._request is not None else self._resume(None)
        stalled = 0
        try:
            while True:
                frames_before = state.frames
                try:
                    for chunk in response.iter_bytes():
                        events = state.feed(chunk)
                        if events:
                            yield events
                        if state.failure is not None:
                            raise state.failure
                        if state.done:
                            return
                    interruption = state.interruption()
                except httpx.TransportError as error:
                    interruption = state.interruption(error)
                except httpx.DecodingError as error:
                    raise state.undecodable(error) from error
                response.close()
                stalled = 0 if state.frames > frames_before else stalled + 1
                if self._stalled_too_long(stalled):
                    raise interruption
                if self._on_resume is not None:
                    self._on_resume(state.progress, interruption)
                state.restart()
                response = self._resume(interruption)
        except GeneratorExit:
            if not state.done and self._client.cancel_on_close and state.progress.run_id:
                self._client.cancel(self._agent_id, state.progress.run_id)
            raise
        finally:
            response.close()

    def _post(self, request: StreamRequest) -> httpx.Response:
        policy = self._policy(resuming=False)
        for attempt in Retrying(**policy):
            with attempt:
                return self._send_post(request)
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    def _send_post(self, request: StreamRequest) -> httpx.Response:
        client = self._client
        path = client._stream_path(self._agent_id)
        adjusted: set[str] = set()
        for _ in range(3):  # at most a dialect switch and a background fallback
            client.probe()
            body = client._body(request)
            response = _send(client, path, body)
            if response.status_code < 400:
                return response
            data = _read_limited(response.iter_bytes())
            response.close()
            text = data.decode("utf-8", errors="replace")
            if not client._adjust_after_rejection(response.status_code, text, body, adjusted):
                raise _error_from_http(response, data)
        raise _error_from_http(response, data)

    def _resume(self, interruption: LettaError | None) -> httpx.Response:
        policy = self._policy(resuming=True)
        path, body = self._client._resume_target(self._state.progress)
        try:
            for attempt in Retrying(**policy):
                with attempt:
                    response = _send(self._client, path, body)
                    if response.status_code >= 400:
                        data = _read_limited(response.iter_bytes())
                        response.close()
                        raise _error_from_http(response, data)
                    return response
        except LettaError as error:
            if interruption is None:
                raise
            raise interruption from error
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover


def _send(client: LettaClient, path: str, body: dict[str, Any]) -> httpx.Response:
    http = client._http
    request = http.build_request("POST", path, json=body, headers=client._headers())
    try:
        response = http.send(request, stream=True)
    except httpx.TransportError as error:
        raise _error_from_connect(error) from error
    if response.status_code < 400:
        try:
            _check_stream_response(response)
        except LettaError:
            response.close()
            raise
    return response


class AsyncEventStream(_StreamCore["AsyncLettaClient"]):
    """Async twin of :class:`EventStream`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batches = self._iter_batches()

    def batches(self) -> AsyncIterator[list[LettaEvent]]:
        """The events, one list per network read (pings removed, lists never empty)."""
        return self._batches

    async def __aiter__(self) -> AsyncIterator[LettaEvent]:
        async for batch in self._batches:
            for event in batch:
                yield event

    async def aclose(self) -> None:
        """Hang up now; with ``cancel_on_close`` the background run is cancelled too."""
        await self._batches.aclose()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _iter_batches(self) -> AsyncGenerator[list[LettaEvent], None]:
        state = self._state
        response = await (
            self._post(self._request) if self._request is not None else self._resume(None)
        )
        stalled = 0
        try:
            while True:
                frames_before = state.frames
                try:
                    async for chunk in response.aiter_bytes():
                        events = state.feed(chunk)
                        if events:
                            yield events
                        if state.failure is not None:
                            raise state.failure
                        if state.done:
                            return
                    interruption = state.interruption()
                except httpx.TransportError as error:
                    interruption = state.interruption(error)
                except httpx.DecodingError as error:
                    raise state.undecodable(error) from error
                await response.aclose()
                stalled = 0 if state.frames > frames_before else stalled + 1
                if self._stalled_too_long(stalled):
                    raise interruption
                if self._on_resume is not None:
                    self._on_resume(state.progress, interruption)
                state.restart()
                response = await self._resume(interruption)
        except (GeneratorExit, asyncio.CancelledError):
            if not state.done and self._client.cancel_on_close and state.progress.run_id:
                await self._client.cancel(self._agent_id, state.progress.run_id)
            raise
        finally:
            await response.aclose()

    async def _post(self, request: StreamRequest) -> httpx.Response:
        policy = self._policy(resuming=False)
        async for attempt in AsyncRetrying(**policy):
            with attempt:
                return await self._send_post(request)
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    async def _send_post(self, request: StreamRequest) -> httpx.Response:
        client = self._client
        path = client._stream_path(self._agent_id)
        adjusted: set[str] = set()
        for _ in range(3):  # at most a dialect switch and a background fallback
            await client.probe()
            body = client._body(request)
            response = await _asend(client, path, body)
            if response.status_code < 400:
                return response
            data = await _aread_limited(response.aiter_bytes())
            await response.aclose()
            text = data.decode("utf-8", errors="replace")
            if not client._adjust_after_rejection(response.status_code, text, body, adjusted):
                raise _error_from_http(response, data)
        raise _error_from_http(response, data)

    async def _resume(self, interruption: LettaError | None) -> httpx.Response:
        policy = self._policy(resuming=True)
        path, body = self._client._resume_target(self._state.progress)
        try:
            async for attempt in AsyncRetrying(**policy):
                with attempt:
                    response = await _asend(self._client, path, body)
                    if response.status_code >= 400:
                        data = await _aread_limited(response.aiter_bytes())
                        await response.aclose()
                        raise _error_from_http(response, data)
                    return response
        except LettaError as error:
            if interruption is None:
                raise
            raise interruption from error
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover


async def _asend(client: AsyncLettaClient, path: str, body: dict[str, Any]) -> httpx.Response:
    http = client._http
    request = http.build_request("POST", path, json=body, headers=client._headers())
    try:
        response = await http.send(request, stream=True)
    except httpx.TransportError as error:
        raise _error_from_connect(error) from error
    if response.status_code < 400:
        try:
            _check_stream_response(response)
        except LettaError:
            await response.aclose()
            raise
    return response


def _read_limited(chunks: Iterator[bytes]) -> bytes:
    """The start of an error response's body.

    The status already says what happened; the body only adds detail. So a body
    that breaks off or cannot be decoded (broken gzip) keeps what came, rather
    than turning a typed refusal into a bare httpx error.
    """
    body = bytearray()
    try:
        for chunk in chunks:
            body += chunk
            if len(body) >= _ERROR_BODY_LIMIT:
                break
    except (httpx.TransportError, httpx.DecodingError):
        pass  # see the docstring: what came is enough
    return bytes(body)


async def _aread_limited(chunks: AsyncIterator[bytes]) -> bytes:
    """Async twin of :func:`_read_limited`."""
    body = bytearray()
    try:
        async for chunk in chunks:
            body += chunk
            if len(body) >= _ERROR_BODY_LIMIT:
                break
    except (httpx.TransportError, httpx.DecodingError):
        pass  # see _read_limited: what came is enough
    return bytes(body)


class LettaClient(_ClientCore):
    """Streams messages to Letta agents over one pooled set of HTTP connections.

    Takes the keyword settings of :class:`ClientSettings`, and ``http_client``, an
    ``httpx.Client`` to use instead of creating one.
    """

    def __init__(
        self, *, http_client: httpx.Client | None = None, **settings: Unpack[ClientSettings]
    ) -> None:
        super().__init__(**settings)
        self._http = http_client or httpx.Client(base_url=self.base_url, timeout=self.timeout)

    def probe(self) -> None:
        """Ask ``/v1/health/`` for the server's version, once, if a decision needs it."""
        if not self._needs_probe:
            return
        try:
            response: httpx.Response | None = self._http.get("/v1/health/", headers=self._headers())
        except httpx.HTTPError:
            response = None
        self._learn_from_health(response)

    def dialect(self) -> Dialect:
        """The request dialect of this server, probed once and cached."""
        self.probe()
        return self._dialect or "current"

    def stream(
        self,
        agent_id: str,
        request: StreamRequest,
        *,
        on_retry: OnRetry | None = None,
        on_resume: OnResume | None = None,
    ) -> EventStream:
        """Send ``request`` to ``agent_id`` and stream the typed events until ``[DONE]``.

        Raises (while iterating):
            LettaError: A typed subclass for every failure; see ``errors``.
        """
        validate_agent_id(agent_id)
        return EventStream(self, agent_id, request, on_retry=on_retry, on_resume=on_resume)

    def resume(
        self,
        agent_id: str,
        progress: StreamProgress,
        *,
        on_retry: OnRetry | None = None,
        on_resume: OnResume | None = None,
    ) -> EventStream:
        """Read a background run again after ``progress.last_seq_id`` (0: from the start).

        ``progress`` is typically ``error.progress`` of a stream that could not be
        resumed at the time. Nothing is sent to the agent: no turn is duplicated.
        """
        validate_agent_id(agent_id)
        if not progress.run_id:
            raise ValueError("resuming needs the run id of a background run")
        return EventStream(
            self, agent_id, None, resume_from=progress, on_retry=on_retry, on_resume=on_resume
        )

    def cancel(self, agent_id: str, run_id: str) -> None:
        """Ask the server to cancel ``run_id`` (needs Redis on the server); never raises."""
        path, body = self._cancel_target(agent_id, run_id)
        try:
            self._http.post(path, json=body, headers=self._headers(), timeout=5.0)
        except httpx.HTTPError as error:
            logger.warning("could not cancel Letta run %s: %s", run_id, error)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> LettaClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class AsyncLettaClient(_ClientCore):
    """Async twin of :class:`LettaClient` (same arguments, ``httpx.AsyncClient``)."""

    def __init__(
        self, *, http_client: httpx.AsyncClient | None = None, **settings: Unpack[ClientSettings]
    ) -> None:
        super().__init__(**settings)
        self._http = http_client or httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout)

    async def probe(self) -> None:
        """Ask ``/v1/health/`` for the server's version, once, if a decision needs it."""
        if not self._needs_probe:
            return
        try:
            response: httpx.Response | None = await self._http.get(
                "/v1/health/", headers=self._headers()
            )
        except httpx.HTTPError:
            response = None
        self._learn_from_health(response)

    async def dialect(self) -> Dialect:
        """The request dialect of this server, probed once and cached."""
        await self.probe()
        return self._dialect or "current"

    def stream(
        self,
        agent_id: str,
        request: StreamRequest,
        *,
        on_retry: OnRetry | None = None,
        on_resume: OnResume | None = None,
    ) -> AsyncEventStream:
        """Send ``request`` to ``agent_id`` and stream the typed events until ``[DONE]``."""
        validate_agent_id(agent_id)
        return AsyncEventStream(self, agent_id, request, on_retry=on_retry, on_resume=on_resume)

    def resume(
        self,
        agent_id: str,
        progress: StreamProgress,
        *,
        on_retry: OnRetry | None = None,
        on_resume: OnResume | None = None,
    ) -> AsyncEventStream:
        """Read a background run again after ``progress.last_seq_id`` (0: from the start)."""
        validate_agent_id(agent_id)
        if not progress.run_id:
            raise ValueError("resuming needs the run id of a background run")
        return AsyncEventStream(
            self, agent_id, None, resume_from=progress, on_retry=on_retry, on_resume=on_resume
        )

    async def cancel(self, agent_id: str, run_id: str) -> None:
        """Ask the server to cancel ``run_id`` (needs Redis on the server); never raises."""
        path, body = self._cancel_target(agent_id, run_id)
        try:
            await self._http.post(path, json=body, headers=self._headers(), timeout=5.0)
        except httpx.HTTPError as error:
            logger.warning("could not cancel Letta run %s: %s", run_id, error)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncLettaClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()
