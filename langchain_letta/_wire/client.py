"""HTTP clients that stream one message to a Letta agent and yield typed events.

:class:`LettaClient` and :class:`AsyncLettaClient` share everything but their I/O:
settings and headers (:class:`_ClientCore`), and the per-stream state machine
that turns frames into events and errors (:class:`_StreamState`). Each network
read is decoded as one batch of frames (:class:`SSEFrameDecoder`), so a read that
holds many frames costs one split, not one pass per line.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Mapping
from types import TracebackType
from typing import Any

import httpx
from httpx_sse import ServerSentEvent
from pydantic import SecretStr

from langchain_letta._wire.requests import (
    Dialect,
    DialectSetting,
    StreamRequest,
    build_body,
    dialect_after_rejection,
    dialect_for_version,
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

_AGENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
_ERROR_BODY_LIMIT = 256 * 1024
_DONE = "[DONE]"


def validate_agent_id(agent_id: str) -> str:
    """Check that ``agent_id`` can only ever name an agent, never another endpoint.

    Raises:
        ValueError: The id contains anything but letters, digits, ``-`` and ``_``
            (``../tools`` and the like).
    """
    if not isinstance(agent_id, str) or not _AGENT_ID.match(agent_id):
        raise ValueError(
            f"invalid Letta agent id {agent_id!r}: expected letters, digits, '-' and '_' "
            "(such as 'agent-0b5c…')"
        )
    return agent_id


class _ClientCore:
    """Settings shared by the sync and async clients; holds no connection itself."""

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | SecretStr | None,
        password: str | SecretStr | None,
        user_id: str | None,
        timeout: float | None,
        connect_timeout: float,
        dialect: DialectSetting,
        headers: Mapping[str, str] | None,
    ) -> None:
        self.base_url = (base_url or os.environ.get("LETTA_BASE_URL") or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        key = api_key if api_key is not None else os.environ.get("LETTA_API_KEY")
        self._api_key = SecretStr(key) if isinstance(key, str) else key
        self._password = SecretStr(password) if isinstance(password, str) else password
        self._user_id = user_id
        read = DEFAULT_READ_TIMEOUT if timeout is None else max(float(timeout), MIN_READ_TIMEOUT)
        self.timeout = httpx.Timeout(read, connect=connect_timeout)
        self._dialect_setting = dialect
        self._dialect: Dialect | None = None if dialect == "auto" else dialect
        self._extra_headers = dict(headers or {})

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, dialect={self._dialect_setting!r})"
        )

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

    def _dialect_from_health(self, response: httpx.Response | None) -> Dialect:
        version = None
        if response is not None and response.status_code == 200:
            try:
                payload = response.json()
            except ValueError:
                payload = None
            if isinstance(payload, dict) and isinstance(payload.get("version"), str):
                version = payload["version"]
        self._dialect = dialect_for_version(version)
        return self._dialect

    def _retry_dialect(self, response: httpx.Response, body_text: str, sent: Dialect) -> bool:
        """After a 422, switch dialect if the server named a message field (auto mode only)."""
        if self._dialect_setting != "auto" or response.status_code != 422:
            return False
        other = dialect_after_rejection(body_text, sent)
        if other is None:
            return False
        self._dialect = other
        return True


class _StreamState:
    """Turns the frames of one stream into events, errors and progress; no I/O."""

    __slots__ = ("decoder", "done", "progress", "status_code")

    def __init__(self, status_code: int | None = None) -> None:
        self.decoder = SSEFrameDecoder()
        self.progress = StreamProgress()
        self.done = False
        self.status_code = status_code

    def feed(self, chunk: bytes) -> list[LettaEvent]:
        """Events completed by one network read; raises the stream's typed errors."""
        try:
            frames = self.decoder.feed(chunk)
        except FrameTooLargeError as error:
            raise LettaProtocolError(str(error), progress=self.progress) from None
        events: list[LettaEvent] = []
        for frame in frames:
            event = self._event(frame)
            if event is not None:
                events.append(event)
            elif self.done:
                break
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
                f"malformed frame #{self.progress.events_received + 1} in the Letta stream "
                f"({error}): {frame.data[:200]!r}",
                body=frame.data[:1000],
                progress=self.progress,
            ) from None
        if isinstance(event, (ErrorMessage, StreamErrorFrame)):
            raise error_from_stream(
                event.error_type,
                event.message or "unknown error",
                event.detail,
                body=event.raw,
                progress=self.progress,
                status_code=self.status_code,
            )
        if name == "error":
            raise error_from_stream(
                None,
                frame.data[:500],
                None,
                body=event.raw,
                progress=self.progress,
                status_code=self.status_code,
            )
        if name != "message":
            # A named event this package does not know: keep it, with its name.
            event = UnknownEvent(message_type=f"event:{name}", data=frame.data)
        progress = self.progress
        run_id = getattr(event, "run_id", None)
        if run_id:
            progress.run_id = run_id
        seq_id = getattr(event, "seq_id", None)
        if seq_id is not None:
            progress.last_seq_id = seq_id
        if isinstance(event, Ping):
            return None
        if isinstance(event, StopReason):
            progress.stop_reason = event.stop_reason
        progress.events_received += 1
        return event

    def finish(self) -> None:
        """Called at end of body: a stream without ``[DONE]`` is an interruption."""
        if self.done:
            return
        tail = self.decoder.tail()
        cut = f"; it ended inside a frame: {tail[:200]!r}" if tail else ""
        raise LettaStreamInterruptedError(
            f"the Letta stream ended before [DONE] after {self.progress.events_received} "
            f"events{cut}",
            request_accepted=True,
            progress=self.progress,
        )

    def interrupted(self, error: httpx.TransportError) -> LettaError:
        """The typed error for a transport failure after the response started."""
        if isinstance(error, httpx.TimeoutException):
            return LettaTimeoutError(
                f"no data from the Letta server for longer than the read timeout ({error!r})",
                request_accepted=True,
                progress=self.progress,
            )
        return LettaStreamInterruptedError(
            f"the connection to the Letta server broke mid-stream ({error!r})",
            request_accepted=True,
            progress=self.progress,
        )


def _error_from_http(response: httpx.Response, body: bytes) -> LettaError:
    """The error for a response with status >= 400, reading an SSE body where there is one."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        # 0.11.x answers an upstream LLM failure with HTTP 500 and the error in SSE frames.
        state = _StreamState(status_code=response.status_code)
        try:
            state.feed(body + b"\n\n")
        except LettaError as error:
            return error
    return error_from_response(
        response.status_code, body.decode("utf-8", errors="replace"), headers=response.headers
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


def _check_stream_response(response: httpx.Response) -> None:
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        raise LettaProtocolError(
            f"expected an event stream from the Letta server, got {content_type or 'no type'!r}",
            status_code=response.status_code,
            request_accepted=True,
        )


class EventStream:
    """The events of one streamed request; iterate it, or close it to hang up early.

    The request is sent on first iteration. ``progress`` tells how far the stream
    got (run id, last ``seq_id``, stop reason), also after an error.
    """

    def __init__(self, client: LettaClient, agent_id: str, request: StreamRequest) -> None:
        self._client = client
        self._agent_id = agent_id
        self._request = request
        self._state = _StreamState()
        self._batches = self._iter_batches()

    @property
    def progress(self) -> StreamProgress:
        """Run id, last seq_id, events received and stop reason so far."""
        return self._state.progress

    def batches(self) -> Iterator[list[LettaEvent]]:
        """The events, one list per network read (pings removed, lists never empty)."""
        return self._batches

    def __iter__(self) -> Iterator[LettaEvent]:
        for batch in self._batches:
            yield from batch

    def close(self) -> None:
        """Close the HTTP response now (the stream stops; the run may go on on the server)."""
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
        client = self._client
        path = client._stream_path(self._agent_id)
        may_switch_dialect = True
        while True:
            dialect = client.dialect()
            body = build_body(self._request, dialect)
            try:
                with client._http.stream(
                    "POST", path, json=body, headers=client._headers()
                ) as response:
                    if response.status_code >= 400:
                        data = _read_limited(response.iter_bytes())
                        if may_switch_dialect and client._retry_dialect(
                            response, data.decode(errors="replace"), dialect
                        ):
                            may_switch_dialect = False
                            continue
                        raise _error_from_http(response, data)
                    _check_stream_response(response)
                    state = self._state
                    try:
                        for chunk in response.iter_bytes():
                            events = state.feed(chunk)
                            if events:
                                yield events
                            if state.done:
                                return
                    except httpx.TransportError as error:
                        raise state.interrupted(error) from error
                    state.finish()
                    return
            except httpx.TransportError as error:
                raise _error_from_connect(error) from error


class AsyncEventStream:
    """Async twin of :class:`EventStream`."""

    def __init__(self, client: AsyncLettaClient, agent_id: str, request: StreamRequest) -> None:
        self._client = client
        self._agent_id = agent_id
        self._request = request
        self._state = _StreamState()
        self._batches = self._iter_batches()

    @property
    def progress(self) -> StreamProgress:
        """Run id, last seq_id, events received and stop reason so far."""
        return self._state.progress

    def batches(self) -> AsyncIterator[list[LettaEvent]]:
        """The events, one list per network read (pings removed, lists never empty)."""
        return self._batches

    async def __aiter__(self) -> AsyncIterator[LettaEvent]:
        async for batch in self._batches:
            for event in batch:
                yield event

    async def aclose(self) -> None:
        """Close the HTTP response now (the stream stops; the run may go on on the server)."""
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
        client = self._client
        path = client._stream_path(self._agent_id)
        may_switch_dialect = True
        while True:
            dialect = await client.dialect()
            body = build_body(self._request, dialect)
            try:
                async with client._http.stream(
                    "POST", path, json=body, headers=client._headers()
                ) as response:
                    if response.status_code >= 400:
                        data = await _aread_limited(response.aiter_bytes())
                        if may_switch_dialect and client._retry_dialect(
                            response, data.decode(errors="replace"), dialect
                        ):
                            may_switch_dialect = False
                            continue
                        raise _error_from_http(response, data)
                    _check_stream_response(response)
                    state = self._state
                    try:
                        async for chunk in response.aiter_bytes():
                            events = state.feed(chunk)
                            if events:
                                yield events
                            if state.done:
                                return
                    except httpx.TransportError as error:
                        raise state.interrupted(error) from error
                    state.finish()
                    return
            except httpx.TransportError as error:
                raise _error_from_connect(error) from error


def _read_limited(chunks: Iterator[bytes]) -> bytes:
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) >= _ERROR_BODY_LIMIT:
            break
    return bytes(body)


async def _aread_limited(chunks: AsyncIterator[bytes]) -> bytes:
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) >= _ERROR_BODY_LIMIT:
            break
    return bytes(body)


class LettaClient(_ClientCore):
    """Streams messages to Letta agents over one pooled HTTP connection set.

    Args:
        base_url: Server URL; else ``LETTA_BASE_URL``; else ``http://localhost:8283``.
        api_key: Sent as ``Authorization: Bearer`` (Letta Cloud, or a self-hosted
            server's password from 0.6.20 on); else ``LETTA_API_KEY``.
        password: A self-hosted server's password, sent as ``X-BARE-PASSWORD``.
        user_id: The acting user on a self-hosted server (``user_id`` header).
        timeout: Read timeout in seconds; raised to at least ``MIN_READ_TIMEOUT`` so
            that the server's keep-alive pings always arrive in time.
        connect_timeout: Connect timeout in seconds.
        dialect: Request dialect, or ``"auto"`` to ask ``/v1/health/`` once.
        headers: Extra headers for every request.
        http_client: An ``httpx.Client`` to use instead of creating one.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | SecretStr | None = None,
        password: str | SecretStr | None = None,
        user_id: str | None = None,
        timeout: float | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        dialect: DialectSetting = "auto",
        headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            api_key=api_key,
            password=password,
            user_id=user_id,
            timeout=timeout,
            connect_timeout=connect_timeout,
            dialect=dialect,
            headers=headers,
        )
        self._http = http_client or httpx.Client(base_url=self.base_url, timeout=self.timeout)

    def dialect(self) -> Dialect:
        """The request dialect of this server, probed once and cached."""
        if self._dialect is None:
            try:
                response: httpx.Response | None = self._http.get(
                    "/v1/health/", headers=self._headers()
                )
            except httpx.HTTPError:
                response = None
            self._dialect = self._dialect_from_health(response)
        return self._dialect

    def stream(self, agent_id: str, request: StreamRequest) -> EventStream:
        """Send ``request`` to ``agent_id`` and stream the typed events until ``[DONE]``.

        Raises (while iterating):
            LettaError: A typed subclass for every failure; see ``errors``.
        """
        validate_agent_id(agent_id)
        return EventStream(self, agent_id, request)

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
        self,
        *,
        base_url: str | None = None,
        api_key: str | SecretStr | None = None,
        password: str | SecretStr | None = None,
        user_id: str | None = None,
        timeout: float | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        dialect: DialectSetting = "auto",
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url,
            api_key=api_key,
            password=password,
            user_id=user_id,
            timeout=timeout,
            connect_timeout=connect_timeout,
            dialect=dialect,
            headers=headers,
        )
        self._http = http_client or httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout)

    async def dialect(self) -> Dialect:
        """The request dialect of this server, probed once and cached."""
        if self._dialect is None:
            try:
                response: httpx.Response | None = await self._http.get(
                    "/v1/health/", headers=self._headers()
                )
            except httpx.HTTPError:
                response = None
            self._dialect = self._dialect_from_health(response)
        return self._dialect

    def stream(self, agent_id: str, request: StreamRequest) -> AsyncEventStream:
        """Send ``request`` to ``agent_id`` and stream the typed events until ``[DONE]``."""
        validate_agent_id(agent_id)
        return AsyncEventStream(self, agent_id, request)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncLettaClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()
