"""The half of a client that does no I/O: settings, headers, server facts, routes.

:class:`BaseClient` is what the sync and async clients share; it is the
:class:`~langchain_letta._wire.flow.FlowClient` their flows decide for. The shells
(:mod:`.sync_client`, :mod:`.async_client`) add the I/O and nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping
from typing import Any, Unpack

import httpx

from langchain_letta._strict import check_names
from langchain_letta._wire import routes
from langchain_letta._wire.actions import Opened
from langchain_letta._wire.failures import UNKNOWN_FATE
from langchain_letta._wire.flow import StreamFlow
from langchain_letta._wire.requests import (
    Dialect,
    StreamRequest,
    build_body,
    check_fields,
    uses_versioned_fields,
)
from langchain_letta._wire.retry import DEFAULT_RETRY_TIMEOUT, retry_policy
from langchain_letta._wire.server import ServerFacts
from langchain_letta._wire.settings import (
    CLIENT_ARGUMENTS,
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TOTAL_TIMEOUT,
    ClientSettings,
    check_credential,
    header_value,
    read_timeout,
    validate_agent_id,
    validate_base_url,
    validate_conversation_id,
)
from langchain_letta.errors import LettaError, StreamProgress
from langchain_letta.events import ToolCall

PROBE_TIMEOUT = 5.0
"""The health probe is small: it gets this long, connect and read alike."""
PROBE_BODY_LIMIT = 64 * 1024
"""Most bytes read of the health probe's answer."""


class BaseClient:
    """Settings, headers and what the client learnt of its server; no I/O."""

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
        self._user_id = None if user_id is None else header_value("user_id", user_id)
        self.read_timeout = read_timeout(settings.get("timeout"))
        self.connect_timeout = settings.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        self.total_timeout = settings.get("total_timeout", DEFAULT_TOTAL_TIMEOUT)
        self.timeout = httpx.Timeout(self.read_timeout, connect=self.connect_timeout)
        self._extra_headers = {
            name: header_value(f"header {name!r}", value)
            for name, value in (settings.get("headers") or {}).items()
        }
        self.max_retries = settings.get("max_retries", 2)
        self.retry_timeout = settings.get("retry_timeout", DEFAULT_RETRY_TIMEOUT)
        self.background = settings.get("background")
        self.cancel_on_close = settings.get("cancel_on_close", False)
        self.facts = ServerFacts(self.base_url, settings.get("dialect", "auto"), self.background)

    def __repr__(self) -> str:
        dialect = self.facts.dialect_setting
        return f"{type(self).__name__}(base_url={self.base_url!r}, dialect={dialect!r})"

    @property
    def server_version(self) -> str | None:
        """The release the server reported, once probed (``None``: unknown)."""
        return self.facts.version

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

    # -------------------------------------------------------------- for the flow

    def message_route(
        self, agent_id: str, conversation_id: str | None
    ) -> tuple[str, dict[str, Any]]:
        """Where a message goes on this server (see :func:`.routes.message_route`)."""
        return routes.message_route(self.facts.version, agent_id, conversation_id)

    def stored_route(
        self, agent_id: str, conversation_id: str | None
    ) -> tuple[str, dict[str, str]] | None:
        """Where to find the messages a thread holds by their otids; ``None``: nowhere.

        Only the current dialect sends otids (servers before 0.6.17 store none).
        """
        if (self.facts.dialect or "current") != "current":
            return None
        return routes.stored_route(agent_id, conversation_id)

    def active_runs_route(
        self, agent_id: str, conversation_id: str | None
    ) -> tuple[str, dict[str, str]] | None:
        """Where the agent's runs under way are listed (:func:`.routes.active_runs_route`)."""
        return routes.active_runs_route(self.facts.version, agent_id, conversation_id)

    def knows_resends(self, conversation_id: str | None, body: dict[str, Any]) -> bool:
        """Whether this server answers ``body`` sent again with the run it started."""
        return routes.knows_resends(self.facts.version, conversation_id, body)

    def message_body(self, request: StreamRequest) -> dict[str, Any]:
        """The request in this server's dialect, with background mode decided.

        Raises:
            LettaUnsupportedFeatureError: ``request`` sets a field this server's
                release lacks (it would ignore it); raised before anything is sent.
        """
        facts = self.facts
        dialect: Dialect = facts.dialect or "current"
        check_fields(request, facts.version, dialect)
        background = facts.background_now(request.background)
        return build_body(request.model_copy(update={"background": background}), dialect)

    def background_undecided(self, request: StreamRequest) -> bool:
        """Whether this request would be the one to find out if background mode works."""
        return self.facts.background_undecided(request.background)

    def learn_background(self, *, works: bool) -> None:
        """Remember whether the server runs background mode."""
        self.facts.learn_background(works=works)

    def adjust_after_rejection(
        self, status: int, body_text: str, sent: dict[str, Any], done: set[str]
    ) -> bool:
        """Change what is sent after a refusal that proves nothing was accepted."""
        return self.facts.adjust_after_rejection(status, body_text, sent, done)

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

    # -------------------------------------------------------------- for the other requests

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

    created_conversation = staticmethod(routes.created_conversation)
    cancel_target = staticmethod(routes.cancel_target)

    def conversation_target(
        self, agent_id: str, fields: Mapping[str, Any]
    ) -> tuple[str, dict[str, str], dict[str, Any]]:
        """Path, query and body of ``POST /v1/conversations/`` (create one for the agent)."""
        return routes.conversation_target(self.facts.version, agent_id, fields)

    def thread_lookup(
        self, agent_id: str, thread_id: str
    ) -> Generator[routes.Exchange, tuple[Opened, bytes], str | None]:
        """The exchanges that find a LangGraph thread's conversation (see ``routes``)."""
        return routes.thread_lookup(self.facts.version, agent_id, thread_id)

    def pending_lookup(
        self, agent_id: str, conversation_id: str | None
    ) -> Generator[routes.Exchange, tuple[Opened, bytes], list[ToolCall]]:
        """The exchanges that find the calls a thread waits for (:func:`.routes.pending_lookup`)."""
        return routes.pending_lookup(self.facts.version, agent_id, conversation_id)


def opened(response: httpx.Response) -> Opened:
    """The response's status and headers, with ``METHOD URL`` of its request as sent."""
    return Opened(response.status_code, response.headers, tried(response.request))


def tried(request: httpx.Request) -> str:
    """``METHOD URL`` of ``request``, for messages: no userinfo, no query, so never a credential."""
    url = request.url.copy_with(userinfo=b"", query=None)
    return f"{request.method} {url}"


def resumable(progress: StreamProgress) -> StreamProgress:
    """``progress`` if a run can be read again from it.

    Raises:
        ValueError: It names no run (only a background run can be resumed).
    """
    if not progress.run_id:
        raise ValueError("resuming needs the run id of a background run")
    return progress


def _worth_repeating(error: BaseException) -> bool:
    return isinstance(error, LettaError) and (error.is_retryable or isinstance(error, UNKNOWN_FATE))
