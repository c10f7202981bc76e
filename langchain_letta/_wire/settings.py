"""What a client is configured with, checked before anything is kept or sent."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import TypedDict

from pydantic import SecretStr

from langchain_letta._wire.requests import DialectSetting

DEFAULT_BASE_URL = "http://localhost:8283"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 90.0
MIN_READ_TIMEOUT = 35.0
"""Letta pings a silent run's stream every 20 s (30 s on some releases); a read timeout
below this would cut healthy streams, so shorter ones are raised to it."""
DEFAULT_TOTAL_TIMEOUT = 900.0
"""Seconds one call may take in all (retries, waits, the stream and its resumes):
a long multi-step run fits; a server trickling bytes or pings forever does not."""

_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")
_HEADER_SAFE = re.compile(r"[\x20-\x7e\x80-\xff]*")


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


def read_timeout(timeout: float | None) -> float:
    """The read timeout for the ``timeout`` setting, never below ``MIN_READ_TIMEOUT``."""
    return DEFAULT_READ_TIMEOUT if timeout is None else max(float(timeout), MIN_READ_TIMEOUT)


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
    # fullmatch: with re.match and "$", a trailing newline ("agent-1\n") would pass.
    if not isinstance(value, str) or not _ID.fullmatch(value):
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


def header_value(name: str, value: str) -> str:
    """A header value checked like a credential: any header may carry one."""
    checked = check_credential(name, value)
    return "" if checked is None else checked.get_secret_value()
