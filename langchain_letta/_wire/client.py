"""HTTP clients that stream one message to a Letta agent and yield typed events.

:class:`LettaClient` and :class:`AsyncLettaClient` share everything but their I/O:
settings, headers and what the client has learnt of the server (:class:`ClientCore`),
and the decisions of each call (:class:`~langchain_letta._wire.flow.StreamFlow`,
which they drive with their own I/O). Each read of a body is decoded as one batch of
frames, so a read that holds many frames costs one split, not one pass per line. The
HTTP clients themselves are the ecosystem's (:mod:`~langchain_letta._wire.http`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import threading
import time
import urllib.parse
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Iterator,
    Mapping,
)
from types import TracebackType
from typing import Any, NamedTuple, TypedDict

import aiohttp
import httpx
from pydantic import SecretStr
from pydantic_core import from_json
from tenacity import AsyncRetrying, Retrying

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pydantic depends on typing_extensions, so it is always installed
    from typing_extensions import Unpack

from langchain_letta._strict import check_names
from langchain_letta._wire import turns
from langchain_letta._wire.flow import (
    DRAIN_LIMIT,
    ERROR_BODY_LIMIT,
    UNKNOWN_FATE,
    Deliver,
    Finish,
    Hangup,
    Lock,
    OnResume,
    OnRetry,
    Opened,
    Probe,
    Read,
    ReadBody,
    Send,
    Sleep,
    StreamFlow,
    TakeTurn,
    Unlock,
    error_from_http,
    error_from_transport,
)
from langchain_letta._wire.http import (
    ASYNC_TRANSPORT_ERRORS,
    AsyncClients,
    precise,
    read_within,
    sync_client,
)
from langchain_letta._wire.requests import (
    FEATURES_SINCE,
    Dialect,
    DialectSetting,
    StreamRequest,
    build_body,
    check_fields,
    dialect_after_rejection,
    dialect_for_version,
    has_feature,
    supports_background,
    supports_conversations,
    unsupported,
    uses_versioned_fields,
)
from langchain_letta._wire.retry import DEFAULT_RETRY_TIMEOUT, logger, retry_policy
from langchain_letta.errors import (
    LettaError,
    LettaProtocolError,
    LettaUnsupportedFeatureError,
    StreamProgress,
)
from langchain_letta.events import LettaEvent, ToolCall, waiting_in

DEFAULT_BASE_URL = "http://localhost:8283"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 90.0
MIN_READ_TIMEOUT = 35.0
"""Letta pings every 20 s (30 s on some releases) while a run is silent; a read
timeout below this would cut healthy streams, so shorter ones are raised to it."""
DEFAULT_TOTAL_TIMEOUT = 900.0
"""Seconds one call may take in all (retries, waits, the stream and its resumes):
a long multi-step run fits; a server trickling bytes or pings forever does not."""
PROBE_TIMEOUT = 5.0
"""The health probe is small: it gets this long, connect and read alike."""
_PROBE_BODY_LIMIT = 64 * 1024
PROBE_AGAIN_AFTER = 30.0
"""Seconds after a health probe that got no answer before another may be sent."""
PENDING_LOOKBACK = 50
"""Messages listed after the thread's second-to-last in-context one, to find its last
(servers before 0.16.4 cannot be asked for one message by id): only messages of runs
that never reached the context can lie between them."""
_LISTING_LIMIT = 4 * 1024 * 1024

_AGENT_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")
_HEADER_SAFE = re.compile(r"[\x20-\x7e\x80-\xff]*")

_BACKGROUND_SUPPORT: dict[str, bool] = {}
"""What this process learnt of each server (by base URL): whether it runs background
mode. A server without Redis refuses it with a 503; that is found out once, by one
request, rather than by every new client and every concurrent call."""


def forget_server(base_url: str) -> None:
    """Forget what this process learnt of the server at ``base_url``.

    For a server that changed (restarted with Redis, or a test server reusing a
    port); ``langchain_letta.testing`` calls it for every fake server it starts. The
    turns its threads wait for are dropped too: a new server has no runs.
    """
    _BACKGROUND_SUPPORT.pop(base_url.rstrip("/"), None)
    turns.forget(base_url.rstrip("/"))


def validate_agent_id(agent_id: str) -> str:
    """Check that ``agent_id`` can only ever name an agent, never another endpoint.

    Raises:
        ValueError: The id contains anything but letters, digits, ``-`` and ``_``
            (``../tools`` and the like).
    """
    return _validate_id(agent_id, "agent", "agent-0b5c…")


def validate_conversation_id(conversation_id: str) -> str:
    """Check that ``conversation_id`` can only ever name a conversation (as for agents).

    Raises:
        ValueError: The id contains anything but letters, digits, ``-`` and ``_``.
    """
    return _validate_id(conversation_id, "conversation", "conv-0b5c…")


def _validate_id(value: str, what: str, example: str) -> str:
    # fullmatch: re.match with "$" also accepted a trailing newline ("agent-1\n").
    if not isinstance(value, str) or not _AGENT_ID.fullmatch(value):
        raise ValueError(
            f"invalid Letta {what} id {value!r}: expected letters, digits, '-' and '_' "
            f"(such as {example!r})"
        )
    return value


def validate_base_url(base_url: str) -> str:
    """Check a server URL before it is kept anywhere (a field, a repr, a log).

    Raises:
        ValueError: The URL carries credentials (``user:password@``): they would
            show in reprs and logs, and httpx would send them as Basic auth in
            place of the API key. The message never repeats them.
    """
    parts = urllib.parse.urlsplit(base_url)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError(
            "base_url must not carry credentials ('user:password@host'): pass api_key= "
            "(or password= for a self-hosted server's password) instead"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"base_url must be an http(s) URL such as 'http://localhost:8283', "
            f"not {base_url[:100]!r}"
        )
    return base_url


def check_credential(name: str, value: str | SecretStr | None) -> SecretStr | None:
    """A credential as a ``SecretStr``, checked to fit an HTTP header.

    Surrounding whitespace (a key read from a file ends with a newline) is dropped;
    anything else that cannot go into a header is refused here, naming the setting
    but never the value, instead of failing later in httpx with the value quoted.
    """
    if value is None:
        return None
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    text = text.strip()
    if not _HEADER_SAFE.fullmatch(text):
        raise ValueError(
            f"the Letta {name} contains characters that cannot be sent in an HTTP header "
            "(a control character, or one outside Latin-1); check how it was read"
        )
    return SecretStr(text)


def _header_value(name: str, value: str) -> str:
    """A header value checked like a credential: any header may carry one."""
    checked = check_credential(name, value)
    return "" if checked is None else checked.get_secret_value()


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
        total_timeout: Seconds one call may take in all, retries and resumes
            included (``None``: no limit); ``DEFAULT_TOTAL_TIMEOUT`` by default.
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
    total_timeout: float | None
    dialect: DialectSetting
    headers: Mapping[str, str] | None
    max_retries: int
    retry_timeout: float
    background: bool | None
    cancel_on_close: bool


CLIENT_ARGUMENTS = frozenset({*ClientSettings.__annotations__, "http_client"})
"""What :class:`LettaClient` and :class:`AsyncLettaClient` take: the settings, ``http_client``."""


class Exchange(NamedTuple):
    """One JSON request a sans-I/O lookup needs made: the shells send it, sync or async."""

    method: str
    path: str
    query: Mapping[str, str]
    limit: int


def _json_answer(opened: Opened, body: bytes, what: str) -> Any:
    """The JSON of a successful answer; a failure's typed error, or a protocol error."""
    if opened.status_code >= 300:
        raise error_from_http(opened.status_code, opened.headers, body, opened.request)
    try:
        return from_json(body)
    except ValueError:
        raise LettaProtocolError(
            f"the Letta server sent {what} that is not JSON: {body[:200]!r}",
            status_code=opened.status_code,
        ) from None


def _worth_repeating(error: BaseException) -> bool:
    return isinstance(error, LettaError) and (error.is_retryable or isinstance(error, UNKNOWN_FATE))


def _in_context_ids(opened: Opened, body: bytes) -> list[str]:
    """The in-context message ids of an agent's or a conversation's state."""
    state = _json_answer(opened, body, "a thread's state")
    found: Any = ...
    if isinstance(state, dict):  # a conversation names them so, an agent so
        found = state.get("in_context_message_ids", state.get("message_ids", ...))
    if found is None:
        return []  # a thread with no message yet
    if not isinstance(found, list) or not all(isinstance(i, str) for i in found):
        raise LettaProtocolError(
            "the Letta server's state of the thread lists no in-context message ids: "
            f"{body[:200]!r}",
            status_code=opened.status_code,
        )
    return found


def _listed(opened: Opened, body: bytes) -> list[Any]:
    """The messages of a listing (or of one message, which Letta answers as a list)."""
    messages = _json_answer(opened, body, "messages")
    if not isinstance(messages, list):
        raise LettaProtocolError(
            f"the Letta server listed messages as something else than a list: {body[:200]!r}",
            status_code=opened.status_code,
        )
    return messages


class ClientCore:
    """Settings, headers and knowledge of the server, shared by both clients; no I/O."""

    def __init__(self, **settings: Unpack[ClientSettings]) -> None:
        """Take the settings of :class:`ClientSettings`.

        Raises:
            TypeError: A setting the client does not take (the closest one named).
            ValueError: An invalid ``base_url``, or a credential or header that
                cannot be sent.
        """
        check_names(settings, CLIENT_ARGUMENTS, type(self).__name__)
        base_url = settings.get("base_url") or os.environ.get("LETTA_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = validate_base_url(base_url).rstrip("/")
        key = settings.get("api_key")
        if key is None:
            key = os.environ.get("LETTA_API_KEY")
        self._api_key = check_credential("api_key", key)
        self._password = check_credential("password", settings.get("password"))
        user_id = settings.get("user_id")
        self._user_id = None if user_id is None else _header_value("user_id", user_id)
        timeout = settings.get("timeout")
        self.read_timeout = (
            DEFAULT_READ_TIMEOUT if timeout is None else max(float(timeout), MIN_READ_TIMEOUT)
        )
        self.connect_timeout = settings.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        self.total_timeout = settings.get("total_timeout", DEFAULT_TOTAL_TIMEOUT)
        self.timeout = httpx.Timeout(self.read_timeout, connect=self.connect_timeout)
        dialect = settings.get("dialect", "auto")
        self._dialect_setting = dialect
        self._dialect: Dialect | None = None if dialect == "auto" else dialect
        self._extra_headers = {
            name: _header_value(f"header {name!r}", value)
            for name, value in (settings.get("headers") or {}).items()
        }
        self.max_retries = settings.get("max_retries", 2)
        self.retry_timeout = settings.get("retry_timeout", DEFAULT_RETRY_TIMEOUT)
        self.background = settings.get("background")
        self.cancel_on_close = settings.get("cancel_on_close", False)
        self._version: str | None = None
        self._probe_due: float | None = 0.0
        """When a health probe may be sent (monotonic seconds); ``None``: answered."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, dialect={self._dialect_setting!r})"
        )

    @property
    def server_version(self) -> str | None:
        """The release the server reported, once probed (``None``: unknown)."""
        return self._version

    def needs_probe(self, version_matters: bool = False) -> bool:
        """Whether a decision still needs the server's version.

        The dialect and background mode depend on it, and ``version_matters`` for
        a request that addresses a conversation or sets a field only some
        releases have.
        """
        wanted = self._dialect is None or self.background is None or version_matters
        due = self._probe_due
        return wanted and due is not None and time.monotonic() >= due

    @staticmethod
    def version_matters(request: StreamRequest | None, conversation_id: str | None) -> bool:
        """Whether this call can go ahead only on some releases (see ``FEATURES_SINCE``)."""
        return conversation_id is not None or (
            request is not None and uses_versioned_fields(request)
        )

    def headers(self) -> dict[str, str]:
        """The headers of every request (credentials included: never log them)."""
        headers = {"Accept": "text/event-stream, application/json", **self._extra_headers}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        if self._password is not None:
            headers["X-BARE-PASSWORD"] = f"password {self._password.get_secret_value()}"
        if self._user_id is not None:
            headers["user_id"] = self._user_id
        return headers

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this server (a given client needs no base URL)."""
        return self.base_url + path

    def message_route(
        self, agent_id: str, conversation_id: str | None
    ) -> tuple[str, dict[str, Any]]:
        """Where a message goes, and what its body says of the target there.

        A conversation uses ``/v1/conversations/{id}/messages`` (0.16.2+), which
        streams by default for any client and holds the server's lock on the
        conversation while a run goes on (a second turn is refused with a busy 409).
        The agent's own thread uses the same route in *agent-direct mode* where the
        server has it (``default`` with ``agent_id`` in the body, 0.16.6+), which
        takes the same lock per agent, so turns of the thread never overlap across
        processes either; before, ``/v1/agents/{id}/messages/stream``, which every
        release from 0.6 serves alike and which locks nothing (the replacement 0.16.2
        names, ``POST /v1/agents/{id}/messages`` with ``streaming: true``, streams
        only for clients that present themselves as Letta's own SDK).

        Raises:
            LettaUnsupportedFeatureError: A conversation on a server older than 0.16.2.
        """
        if conversation_id is None:
            validate_agent_id(agent_id)
            if has_feature(self._version, "agent_direct"):
                return "/v1/conversations/default/messages", {"agent_id": agent_id}
            return f"/v1/agents/{urllib.parse.quote(agent_id, safe='')}/messages/stream", {}
        self._require_conversations()
        quoted = urllib.parse.quote(validate_conversation_id(conversation_id), safe="")
        return f"/v1/conversations/{quoted}/messages", {}

    def knows_resends(self, conversation_id: str | None, body: dict[str, Any]) -> bool:
        """Whether the server recognises ``body`` sent again and answers with its run.

        Letta 0.16.7+ keeps, for three hours, which background run the otids of a
        request started, where the route holds a lock (a conversation, or the agent
        in agent-direct mode): the same request again gets that run's stream, not a
        new run. So a request whose fate is unknown (cut after it was written) can be
        sent again instead of being lost.
        """
        return bool(
            body.get("background")
            and has_feature(self._version, "request_token")
            and (conversation_id is not None or body.get("agent_id"))
        )

    def _require_conversations(self) -> None:
        if not supports_conversations(self._version):
            raise LettaUnsupportedFeatureError(
                "conversation_id",
                self._version,
                FEATURES_SINCE["conversation_id"],
                why="an older server has no conversations (without one, the agent's own "
                "thread is used)",
            )

    def conversation_target(
        self, agent_id: str, fields: Mapping[str, Any]
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        """Path, query and body of ``POST /v1/conversations/`` (create one for the agent)."""
        self._require_conversations()
        body = {name: value for name, value in fields.items() if value is not None}
        return "/v1/conversations/", {"agent_id": validate_agent_id(agent_id)}, body

    def repeatable(self, what: str) -> dict[str, Any]:
        """Tenacity's arguments for a request that may be made twice without harm.

        A read, or creating a conversation (at worst an empty one is left behind, while
        giving up would lose the turn): retried after any failure that may pass, even
        where the request may have reached the server.
        """
        return retry_policy(
            _worth_repeating,
            max_retries=self.max_retries,
            timeout=self.retry_timeout,
            on_retry=None,
            what=what,
        )

    def created_conversation(self, opened: Opened, body: bytes) -> str:
        """The id of the conversation the server created; a typed error for anything else."""
        status_code = opened.status_code
        if status_code >= 300:
            raise error_from_http(status_code, opened.headers, body, opened.request)
        try:
            created = from_json(body)
        except ValueError:
            created = None
        conversation_id = created.get("id") if isinstance(created, dict) else None
        if not isinstance(conversation_id, str):
            raise LettaProtocolError(
                f"the Letta server created a conversation without an id: {body[:200]!r}",
                status_code=status_code,
                request_accepted=True,
            )
        return validate_conversation_id(conversation_id)

    def pending_lookup(
        self, agent_id: str, conversation_id: str | None
    ) -> Generator[Exchange, tuple[Opened, bytes], list[ToolCall]]:
        """The calls a thread waits to have answered, as the server sees them now.

        The server refuses an answer unless the *last in-context* message of the
        thread is an approval request (``letta/agents/helpers.py``), so that is what
        is asked: the thread's in-context ids (the agent's ``message_ids``, or the
        conversation's ``in_context_message_ids``), then that last message. A
        request stored by a run that never made it into the context (an abandoned
        or failed run) waits for nothing and is not listed.

        Yields the exchanges to make (the shells do the I/O) and returns the calls.
        """
        if has_feature(self._version, "approvals") is False:
            raise unsupported("approvals", self._version)
        if conversation_id is None:
            state = f"/v1/agents/{validate_agent_id(agent_id)}"
        else:
            self._require_conversations()
            state = f"/v1/conversations/{validate_conversation_id(conversation_id)}"
        ids = _in_context_ids(*(yield Exchange("GET", state, {}, _LISTING_LIMIT)))
        if len(ids) < 2:  # the system message alone: nothing was asked yet
            return []
        last = ids[-1]
        if has_feature(self._version, "message_by_id") is not False:
            path, query = f"/v1/messages/{urllib.parse.quote(last, safe='')}", {}
        else:  # the listing of the thread, from just after the one before it
            listing = state + "/messages"
            query = {"after": ids[-2], "order": "asc", "limit": str(PENDING_LOOKBACK)}
            path = listing
        messages = _listed(*(yield Exchange("GET", path, query, _LISTING_LIMIT)))
        return waiting_in(messages, last)

    def learn_from_health(self, status_code: int | None, body: bytes) -> None:
        """Record the server's version from ``GET /v1/health/`` (or that it gave none).

        A probe that got no answer (a network failure, a 5xx) decides nothing for
        good: this call goes on as for an unknown release (no background run), and a
        call ``PROBE_AGAIN_AFTER`` seconds later asks again.
        """
        if status_code is None or status_code >= 500:
            self._probe_due = time.monotonic() + PROBE_AGAIN_AFTER
            return
        self._probe_due = None
        if status_code == 200:
            try:  # from_json: a hostile depth is a ValueError, not a RecursionError
                payload = from_json(body)
            except ValueError:
                payload = None
            version = payload.get("version") if isinstance(payload, dict) else None
            if isinstance(version, str):
                self._version = version[:64]
        if self._dialect is None:
            self._dialect = dialect_for_version(self._version)

    def background_undecided(self, request: StreamRequest) -> bool:
        """Whether this request would be the one to find out if background mode works."""
        return self._wants_background(request) and self.base_url not in _BACKGROUND_SUPPORT

    def learn_background(self, *, works: bool) -> None:
        """Remember, for this process, whether the server runs background mode."""
        if not works and _BACKGROUND_SUPPORT.get(self.base_url) is not False:
            logger.info(
                "the Letta server at %s cannot run background mode (no Redis): streaming in "
                "foreground, which cannot be resumed after a drop",
                self.base_url,
            )
        _BACKGROUND_SUPPORT[self.base_url] = works

    def _wants_background(self, request: StreamRequest) -> bool:
        background = request.background
        if background is None:
            background = self.background
        if background is None:
            background = supports_background(self._version)
        return background

    def message_body(self, request: StreamRequest) -> dict[str, Any]:
        """The request in this server's dialect, with background mode decided.

        Raises:
            LettaUnsupportedFeatureError: ``request`` sets a field this server's
                release lacks (it would ignore it); raised before anything is sent.
        """
        dialect = self._dialect or "current"
        check_fields(request, self._version, dialect)
        background = self._wants_background(request) and _BACKGROUND_SUPPORT.get(
            self.base_url, True
        )
        return build_body(request.model_copy(update={"background": background}), dialect)

    def adjust_after_rejection(
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
            self.learn_background(works=False)
            done.add("background")
            return True
        return False

    def flow(
        self,
        agent_id: str,
        request: StreamRequest | None,
        conversation_id: str | None,
        resume_from: StreamProgress | None,
        total_timeout: float | None,
        hooks: Mapping[str, Any],
    ) -> StreamFlow:
        """The decisions of one call on this client, its ids checked before anything is sent."""
        validate_agent_id(agent_id)
        if conversation_id is not None:
            validate_conversation_id(conversation_id)
        return StreamFlow(
            self,
            agent_id,
            request,
            conversation_id=conversation_id,
            resume_from=resume_from,
            total_timeout=total_timeout,
            **hooks,
        )

    def cancel_target(self, agent_id: str, run_id: str) -> tuple[str, dict[str, Any]]:
        """Path and body of the request that cancels ``run_id``."""
        quoted = urllib.parse.quote(validate_agent_id(agent_id), safe="")
        return f"/v1/agents/{quoted}/messages/cancel", {"run_ids": [run_id]}


def _opened(response: httpx.Response) -> Opened:
    """The response's status and headers, with ``METHOD URL`` of its request as sent."""
    return Opened(response.status_code, response.headers, _tried(response.request))


def _tried(request: httpx.Request) -> str:
    """``METHOD URL`` of ``request``, for messages: no userinfo, no query, so never a credential."""
    url = request.url.copy_with(userinfo=b"", query=None)
    return f"{request.method} {url}"


def _resumable(progress: StreamProgress) -> StreamProgress:
    if not progress.run_id:
        raise ValueError("resuming needs the run id of a background run")
    return progress


# ------------------------------------------------------------------ the sync shell


class EventStream:
    """The events of one streamed request; iterate it, or close it to hang up early.

    The request is sent on first iteration, retried while the server provably has
    not accepted it, and, for a background run, resumed from the last ``seq_id``
    after a drop, so that every event arrives exactly once. ``progress`` tells how
    far the stream got (run id, cursor, stop reason), also after an error.
    """

    def __init__(self, client: LettaClient, flow: StreamFlow) -> None:
        self._client = client
        self._flow = flow
        self._batches = self._drive()

    @property
    def progress(self) -> StreamProgress:
        """Run id, last seq_id, events received and stop reason so far."""
        return self._flow.progress

    def batches(self) -> Iterator[list[LettaEvent]]:
        """The events, one list per network read (pings removed, lists never empty)."""
        return self._batches

    def __iter__(self) -> Iterator[LettaEvent]:
        # A loop that stops early drops this iterator: hang up then, not at close().
        try:
            for batch in self._batches:
                yield from batch
        finally:
            self.close()

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

    def _drive(self) -> Generator[list[LettaEvent], None, None]:
        """Carry out the flow's actions with blocking I/O; nothing is decided here."""
        client, flow = self._client, self._flow
        actions = flow.run()
        response: httpx.Response | None = None
        chunks: Iterator[bytes] = iter(())
        holding = False
        turn: turns.Turn | None = None
        reply: Any = None
        try:
            while True:
                try:
                    action = actions.send(reply)
                except StopIteration:
                    return
                reply = None
                if type(action) is Read:
                    # A read near the deadline keeps the read timeout it was sent with
                    # (httpx sets it per request), so it may end up to one read timeout late.
                    try:
                        reply = next(chunks, b"")
                    except (httpx.TransportError, httpx.DecodingError) as error:
                        reply = error
                elif type(action) is Deliver:
                    yield action.events
                elif type(action) is Send:
                    response, reply = client._open(action)
                    chunks = response.iter_bytes() if response is not None else iter(())
                elif type(action) is ReadBody:
                    reply = _read_limited(chunks, action.limit)
                    response, chunks = _closed(response)
                elif type(action) is Hangup:
                    response, chunks = _closed(response)
                elif type(action) is Finish:
                    if response is not None:
                        _finish_in_background(response, chunks, action.limit)
                    response, chunks = None, iter(())
                elif type(action) is Probe:
                    client.probe(action.version_matters)
                elif type(action) is Sleep:
                    time.sleep(action.seconds)
                elif type(action) is Lock:
                    client._deciding.acquire()
                    holding = True
                elif type(action) is Unlock:
                    client._deciding.release()
                    holding = False
                elif type(action) is TakeTurn:
                    turn = turns.acquire(action.key, action.timeout)
                    reply = turn is not None
        except (GeneratorExit, KeyboardInterrupt):
            if (run_id := flow.run_to_cancel()) is not None:
                client.cancel(flow.agent_id, run_id)
            if response is not None and turn is not None and (drain := flow.after_stop()):
                # The run goes on (or is being cancelled): its turn ends when its stream
                # does, read elsewhere.
                _finish_in_background(
                    response, chunks, DRAIN_LIMIT, drain, turn.hand_over().release
                )
                response = turn = None
            raise
        finally:
            _closed(response)
            if holding:
                client._deciding.release()
            if turn is not None:
                turn.release()


def _closed(response: httpx.Response | None) -> tuple[None, Iterator[bytes]]:
    if response is not None:
        response.close()
    return None, iter(())


def _read_limited(chunks: Iterator[bytes], limit: int, until: float | None = None) -> bytes:
    body = bytearray()
    try:
        for chunk in chunks:
            body += chunk
            if len(body) >= limit or (until is not None and time.monotonic() > until):
                break
    except (httpx.TransportError, httpx.DecodingError):
        pass  # what arrived is the body: the status already says what happened
    return bytes(body[:limit])


def _finish_in_background(
    response: httpx.Response,
    chunks: Iterator[bytes],
    limit: int,
    seconds: float = PROBE_TIMEOUT,
    then: Callable[[], None] | None = None,
) -> None:
    """Read the rest of a body (at most ``limit`` bytes, ``seconds``) on a daemon thread.

    After ``[DONE]`` a normal server ends the body at once and the connection returns
    to the pool; a server that holds it open delays nobody and loses the connection.
    After a consumer stopped early, the rest is the run going on; ``then`` (the end of
    its turn) is called once it is over, or its bounds are reached.
    """

    def finish() -> None:
        # Best effort: the events are delivered; a client closed meanwhile, or any other
        # failure here, only means the connection is not reused.
        try:
            with contextlib.suppress(Exception):
                _read_limited(chunks, limit, time.monotonic() + seconds)
        finally:
            with contextlib.suppress(Exception):
                response.close()
            if then is not None:
                then()

    threading.Thread(target=finish, name="letta-finish", daemon=True).start()


class LettaClient(ClientCore):
    """Streams messages to Letta agents over one pooled set of HTTP connections.

    Takes the keyword settings of :class:`ClientSettings`, and ``http_client``, an
    ``httpx.Client`` to use as it is instead of creating one on httpx's own transport
    (its owner closes it; redirects are never followed, whatever its setting, so that
    no credential reaches another host).
    """

    def __init__(
        self, *, http_client: httpx.Client | None = None, **settings: Unpack[ClientSettings]
    ) -> None:
        super().__init__(**settings)
        self._given = http_client is not None
        self._http = http_client or sync_client(self.timeout)
        self._deciding = threading.Lock()
        self._probing = threading.Lock()

    def probe(self, version_matters: bool = False) -> None:
        """Ask ``/v1/health/`` for the server's version, once, if a decision needs it.

        The answer is bounded in size and time; a server that gives none is
        treated as one whose release is unknown. Calls that start together wait
        for one probe rather than each sending its own.
        """
        if self.needs_probe(version_matters):
            with self._probing:
                self._probe(version_matters)

    def _probe(self, version_matters: bool) -> None:
        if not self.needs_probe(version_matters):
            return  # another call probed meanwhile
        status: int | None = None
        body = b""
        request = self._http.build_request(
            "GET", self.url("/v1/health/"), headers=self.headers(), timeout=PROBE_TIMEOUT
        )
        try:
            response = self._http.send(request, stream=True, follow_redirects=False)
            try:
                status, body = (
                    response.status_code,
                    _read_limited(response.iter_bytes(), _PROBE_BODY_LIMIT),
                )
            finally:
                response.close()
        except httpx.HTTPError as error:
            logger.debug("the Letta health probe failed: %s", type(error).__name__)
        self.learn_from_health(status, body)

    def dialect(self) -> Dialect:
        """The request dialect of this server, probed once and cached."""
        self.probe()
        return self._dialect or "current"

    def stream(
        self,
        agent_id: str,
        request: StreamRequest,
        *,
        conversation_id: str | None = None,
        total_timeout: float | None = None,
        on_retry: OnRetry | None = None,
        on_resume: OnResume | None = None,
    ) -> EventStream:
        """Send ``request`` to ``agent_id`` and stream the typed events until ``[DONE]``.

        Args:
            agent_id: The agent.
            request: What to send.
            conversation_id: Send into this conversation of the agent (Letta
                0.16.2+) instead of the agent's own thread.
            total_timeout: Seconds this call may take in all (retries, stream and
                resumes); the client's ``total_timeout`` if ``None``.
            on_retry: Called before each retry of a request the server did not accept.
            on_resume: Called before each resume of a dropped background run.

        Raises (while iterating):
            LettaError: A typed subclass for every failure; see ``errors``.
        """
        hooks = {"on_retry": on_retry, "on_resume": on_resume}
        flow = self.flow(agent_id, request, conversation_id, None, total_timeout, hooks)
        return EventStream(self, flow)

    def resume(
        self,
        agent_id: str,
        progress: StreamProgress,
        *,
        total_timeout: float | None = None,
        on_retry: OnRetry | None = None,
        on_resume: OnResume | None = None,
    ) -> EventStream:
        """Read a background run again after ``progress.last_seq_id`` (0: from the start).

        ``progress`` is typically ``error.progress`` of a stream that could not be
        resumed at the time. Nothing is sent to the agent: no turn is duplicated.
        """
        hooks = {"on_retry": on_retry, "on_resume": on_resume}
        flow = self.flow(agent_id, None, None, _resumable(progress), total_timeout, hooks)
        return EventStream(self, flow)

    def create_conversation(self, agent_id: str, **fields: Any) -> str:
        """Start a new conversation of ``agent_id`` (Letta 0.16.2+) and return its id.

        A conversation is one thread of the agent: its own context window, the
        agent's shared memory; several conversations of one agent can run at once.

        Args:
            agent_id: The agent.
            **fields: Optional fields of Letta's ``CreateConversation`` (``summary``,
                ``isolated_block_labels``, ``model``, ``model_settings``).

        Raises:
            LettaUnsupportedFeatureError: The server is older than 0.16.2 (nothing sent).
            LettaError: The typed error of the server's answer.
        """
        self.probe(version_matters=True)
        path, query, body = self.conversation_target(agent_id, fields)

        def create() -> str:
            return self.created_conversation(*self._exchange("POST", path, query, body))

        return Retrying(**self.repeatable("creating a conversation"))(create)

    def pending_approval(self, agent_id: str, conversation_id: str | None = None) -> list[ToolCall]:
        """The calls the agent's thread (or ``conversation_id``) waits to have answered.

        Asked of the server's live state (the thread's last in-context message), so
        a thread left waiting can be answered without the history that asked (Letta
        0.13+): approve or deny a server tool, or give a client tool's result, by
        the calls' ids. A request of an abandoned run that never reached the
        context is not listed: the server would refuse an answer to it.

        Raises:
            LettaUnsupportedFeatureError: The server has no approvals (nothing sent).
            LettaError: The typed error of the server's answer.
        """
        self.probe(version_matters=True)

        def look() -> list[ToolCall]:
            lookup = self.pending_lookup(agent_id, conversation_id)
            try:
                ask = next(lookup)
                while True:
                    answer = self._exchange(ask.method, ask.path, ask.query, None, ask.limit)
                    ask = lookup.send(answer)
            except StopIteration as done:
                calls: list[ToolCall] = done.value
                return calls

        return Retrying(**self.repeatable("reading what the thread waits for"))(look)

    def _exchange(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        body: Any,
        limit: int = ERROR_BODY_LIMIT,
    ) -> tuple[Opened, bytes]:
        """One JSON request that is not a stream; at most ``limit`` bytes of its answer."""
        request = self._http.build_request(
            method, self.url(path), params=query, json=body, headers=self.headers()
        )
        try:
            response = self._http.send(request, stream=True, follow_redirects=False)
            try:
                data = _read_limited(response.iter_bytes(), limit)
            finally:
                response.close()
        except httpx.TransportError as error:
            raise error_from_transport(error, _tried(request)) from None
        return _opened(response), data

    def cancel(self, agent_id: str, run_id: str) -> None:
        """Ask the server to cancel ``run_id`` (needs Redis on the server); never raises."""
        path, body = self.cancel_target(agent_id, run_id)
        try:
            self._http.post(
                self.url(path),
                json=body,
                headers=self.headers(),
                timeout=5.0,
                follow_redirects=False,
            )
        except httpx.HTTPError as error:
            logger.warning("could not cancel Letta run %s: %s", run_id, type(error).__name__)

    def close(self) -> None:
        """Close the connection pool, unless it came from the caller."""
        if not self._given:
            self._http.close()

    def __enter__(self) -> LettaClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _open(self, send: Send) -> tuple[httpx.Response | None, Opened | LettaError]:
        timeout: Any = httpx.USE_CLIENT_DEFAULT
        if send.read_timeout is not None:
            timeout = httpx.Timeout(send.read_timeout, connect=self.connect_timeout)
        request = self._http.build_request(
            "POST", self.url(send.path), json=send.body, headers=self.headers(), timeout=timeout
        )
        try:
            response = self._http.send(request, stream=True, follow_redirects=False)
        except httpx.TransportError as error:
            return None, error_from_transport(error, _tried(request))
        return response, _opened(response)


# ------------------------------------------------------------------ the async shell


class AsyncEventStream:
    """Async twin of :class:`EventStream`."""

    def __init__(self, client: AsyncLettaClient, flow: StreamFlow) -> None:
        self._client = client
        self._flow = flow
        self._batches = self._drive()

    @property
    def progress(self) -> StreamProgress:
        """Run id, last seq_id, events received and stop reason so far."""
        return self._flow.progress

    def batches(self) -> AsyncIterator[list[LettaEvent]]:
        """The events, one list per network read (pings removed, lists never empty)."""
        return self._batches

    async def __aiter__(self) -> AsyncIterator[LettaEvent]:
        # A loop that stops early drops this iterator, which the event loop then
        # finalises: hang up there, as the sync stream does, not at aclose().
        try:
            async for batch in self._batches:
                for event in batch:
                    yield event
        finally:
            await self.aclose()

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

    async def _drive(self) -> AsyncGenerator[list[LettaEvent], None]:
        """Carry out the flow's actions with async I/O; nothing is decided here."""
        client, flow = self._client, self._flow
        actions = flow.run()
        response: httpx.Response | None = None
        chunks: AsyncIterator[bytes] = _no_chunks()
        holding = False
        turn: turns.Turn | None = None
        reply: Any = None
        try:
            while True:
                try:
                    action = actions.send(reply)
                except StopIteration:
                    return
                reply = None
                if type(action) is Read:
                    # Every read is bounded here too: aiohttp stops its own read timer
                    # when its parser fails a connection without failing the body.
                    bound = client.read_timeout if action.timeout is None else action.timeout
                    try:
                        reply = await read_within(chunks, bound)
                    except ASYNC_TRANSPORT_ERRORS as error:
                        reply = precise(error)
                    except httpx.DecodingError as error:
                        reply = error
                    except asyncio.TimeoutError:
                        reply = httpx.ReadTimeout("no data within the read's time")
                elif type(action) is Deliver:
                    yield action.events
                elif type(action) is Send:
                    response, reply = await client._open(action)
                    chunks = response.aiter_bytes() if response is not None else _no_chunks()
                elif type(action) is ReadBody:
                    reply = await _aread_limited(chunks, action.limit)
                    response, chunks = await _aclosed(response)
                elif type(action) is Hangup:
                    response, chunks = await _aclosed(response)
                elif type(action) is Finish:
                    if response is not None:
                        client._finish_later(response, chunks, action.limit)
                    response, chunks = None, _no_chunks()
                elif type(action) is Probe:
                    await client.probe(action.version_matters)
                elif type(action) is Sleep:
                    await asyncio.sleep(action.seconds)
                elif type(action) is Lock:
                    await client._deciding.acquire()
                    holding = True
                elif type(action) is Unlock:
                    client._deciding.release()
                    holding = False
                elif type(action) is TakeTurn:
                    turn = await turns.aacquire(action.key, action.timeout)
                    reply = turn is not None
        except (GeneratorExit, asyncio.CancelledError, KeyboardInterrupt):
            if (run_id := flow.run_to_cancel()) is not None:
                await client.cancel(flow.agent_id, run_id)
            if response is not None and turn is not None and (drain := flow.after_stop()):
                # The run goes on (or is being cancelled): its turn ends when its stream
                # does, read elsewhere.
                then = turn.hand_over().release
                client._finish_later(response, chunks, DRAIN_LIMIT, drain, then)
                response = turn = None
            raise
        finally:
            await _aclosed(response)
            if holding:
                client._deciding.release()
            if turn is not None:
                turn.release()


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover - makes this an empty async generator


async def _aclosed(response: httpx.Response | None) -> tuple[None, AsyncIterator[bytes]]:
    if response is not None:
        await response.aclose()
    return None, _no_chunks()


async def _aread_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    body = bytearray()
    try:
        async for chunk in chunks:
            body += chunk
            if len(body) >= limit:
                break
    except (*ASYNC_TRANSPORT_ERRORS, httpx.DecodingError):
        pass  # what arrived is the body: the status already says what happened
    return bytes(body[:limit])


class AsyncLettaClient(ClientCore):
    """Async twin of :class:`LettaClient` (same arguments, ``httpx.AsyncClient``).

    Without ``http_client``, requests on asyncio (uvloop included) go through aiohttp
    and elsewhere through httpx's own transport (see :mod:`~langchain_letta._wire.http`);
    the waits and locks of a call are asyncio's, so a call runs on an asyncio loop.
    """

    def __init__(
        self, *, http_client: httpx.AsyncClient | None = None, **settings: Unpack[ClientSettings]
    ) -> None:
        super().__init__(**settings)
        self._http = AsyncClients(http_client, self.timeout)
        self._deciding = asyncio.Lock()
        self._probing = asyncio.Lock()
        self._finishing: dict[asyncio.Task[None], httpx.Response] = {}

    async def probe(self, version_matters: bool = False) -> None:
        """Ask ``/v1/health/`` for the server's version, once, if a decision needs it."""
        if self.needs_probe(version_matters):
            async with self._probing:
                await self._probe(version_matters)

    async def _probe(self, version_matters: bool) -> None:
        if not self.needs_probe(version_matters):
            return  # another call probed meanwhile
        status: int | None = None
        body = b""
        http = self._http.for_request()
        request = http.build_request(
            "GET", self.url("/v1/health/"), headers=self.headers(), timeout=PROBE_TIMEOUT
        )

        async def ask() -> tuple[int, bytes]:
            response = await http.send(request, stream=True, follow_redirects=False)
            try:
                return response.status_code, await _aread_limited(
                    response.aiter_bytes(), _PROBE_BODY_LIMIT
                )
            finally:
                await response.aclose()

        try:
            status, body = await asyncio.wait_for(ask(), PROBE_TIMEOUT)
        except (httpx.HTTPError, aiohttp.ClientError, asyncio.TimeoutError) as error:
            logger.debug("the Letta health probe failed: %s", type(error).__name__)
        self.learn_from_health(status, body)

    async def dialect(self) -> Dialect:
        """The request dialect of this server, probed once and cached."""
        await self.probe()
        return self._dialect or "current"

    def stream(
        self,
        agent_id: str,
        request: StreamRequest,
        *,
        conversation_id: str | None = None,
        total_timeout: float | None = None,
        on_retry: OnRetry | None = None,
        on_resume: OnResume | None = None,
    ) -> AsyncEventStream:
        """Send ``request`` to ``agent_id`` and stream the typed events until ``[DONE]``."""
        hooks = {"on_retry": on_retry, "on_resume": on_resume}
        flow = self.flow(agent_id, request, conversation_id, None, total_timeout, hooks)
        return AsyncEventStream(self, flow)

    def resume(
        self,
        agent_id: str,
        progress: StreamProgress,
        *,
        total_timeout: float | None = None,
        on_retry: OnRetry | None = None,
        on_resume: OnResume | None = None,
    ) -> AsyncEventStream:
        """Read a background run again after ``progress.last_seq_id`` (0: from the start)."""
        hooks = {"on_retry": on_retry, "on_resume": on_resume}
        flow = self.flow(agent_id, None, None, _resumable(progress), total_timeout, hooks)
        return AsyncEventStream(self, flow)

    async def create_conversation(self, agent_id: str, **fields: Any) -> str:
        """Start a new conversation of ``agent_id`` (Letta 0.16.2+) and return its id."""
        await self.probe(version_matters=True)
        path, query, body = self.conversation_target(agent_id, fields)

        async def create() -> str:
            return self.created_conversation(*await self._exchange("POST", path, query, body))

        return await AsyncRetrying(**self.repeatable("creating a conversation"))(create)

    async def pending_approval(
        self, agent_id: str, conversation_id: str | None = None
    ) -> list[ToolCall]:
        """Async :meth:`LettaClient.pending_approval`."""
        await self.probe(version_matters=True)

        async def look() -> list[ToolCall]:
            lookup = self.pending_lookup(agent_id, conversation_id)
            try:
                ask = next(lookup)
                while True:
                    answer = await self._exchange(ask.method, ask.path, ask.query, None, ask.limit)
                    ask = lookup.send(answer)
            except StopIteration as done:
                calls: list[ToolCall] = done.value
                return calls

        return await AsyncRetrying(**self.repeatable("reading what the thread waits for"))(look)

    async def _exchange(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        body: Any,
        limit: int = ERROR_BODY_LIMIT,
    ) -> tuple[Opened, bytes]:
        """Async :meth:`LettaClient._exchange`."""
        http = self._http.for_request()
        request = http.build_request(
            method, self.url(path), params=query, json=body, headers=self.headers()
        )
        try:
            response = await http.send(request, stream=True, follow_redirects=False)
            try:
                data = await _aread_limited(response.aiter_bytes(), limit)
            finally:
                await response.aclose()
        except ASYNC_TRANSPORT_ERRORS as error:
            raise error_from_transport(precise(error), _tried(request)) from None
        return _opened(response), data

    async def cancel(self, agent_id: str, run_id: str) -> None:
        """Ask the server to cancel ``run_id`` (needs Redis on the server); never raises."""
        path, body = self.cancel_target(agent_id, run_id)
        try:
            await self._http.for_request().post(
                self.url(path),
                json=body,
                headers=self.headers(),
                timeout=5.0,
                follow_redirects=False,
            )
        except (httpx.HTTPError, aiohttp.ClientError) as error:
            logger.warning("could not cancel Letta run %s: %s", run_id, type(error).__name__)

    async def aclose(self) -> None:
        """Close the connection pools made here (and give up on endings still being read)."""
        finishing, self._finishing = self._finishing, {}
        for task, response in finishing.items():
            task.cancel()  # one not started yet would never close its response: close it here
            with contextlib.suppress(*ASYNC_TRANSPORT_ERRORS):
                await response.aclose()
        await self._http.aclose()

    async def __aenter__(self) -> AsyncLettaClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def _open(self, send: Send) -> tuple[httpx.Response | None, Opened | LettaError]:
        timeout: Any = httpx.USE_CLIENT_DEFAULT
        if send.read_timeout is not None:
            timeout = httpx.Timeout(send.read_timeout, connect=self.connect_timeout)
        http = self._http.for_request()
        request = http.build_request(
            "POST", self.url(send.path), json=send.body, headers=self.headers(), timeout=timeout
        )
        try:
            response = await http.send(request, stream=True, follow_redirects=False)
        except ASYNC_TRANSPORT_ERRORS as error:
            return None, error_from_transport(precise(error), _tried(request))
        return response, _opened(response)

    def _finish_later(
        self,
        response: httpx.Response,
        chunks: AsyncIterator[bytes],
        limit: int,
        seconds: float = PROBE_TIMEOUT,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Async :func:`_finish_in_background`, in a task of its own.

        The consumer is never held up, and the connection returns to the pool.
        ``then`` is called when the task is done, even if it was cancelled before it ran.
        """

        async def finish() -> None:
            # Best effort, as for the sync client.
            try:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(_aread_limited(chunks, limit), seconds)
            finally:
                with contextlib.suppress(Exception):
                    await response.aclose()

        task = asyncio.get_running_loop().create_task(finish())
        self._finishing[task] = response
        task.add_done_callback(lambda done: self._finishing.pop(done, None))
        if then is not None:  # also when the task is cancelled before it ran
            task.add_done_callback(lambda _: then())
