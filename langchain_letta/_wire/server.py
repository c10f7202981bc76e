"""What a client has learnt of its server: release, dialect, background mode.

Each client owns its :class:`ServerFacts`. One fact is kept for the whole process,
by base URL: whether the server runs background mode. A server without Redis refuses
it with a 503, and that is found out by one request, not again by every new client
(each ``ChatLetta`` model has its own) and every concurrent call. The turn queues
(:mod:`.turns`) are process-wide too; :func:`forget_server` drops both.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic_core import from_json

from langchain_letta._wire import turns
from langchain_letta._wire.requests import (
    Dialect,
    DialectSetting,
    dialect_after_rejection,
    dialect_for_version,
    supports_background,
)
from langchain_letta._wire.retry import logger

PROBE_AGAIN_AFTER = 30.0
"""Seconds after a health probe that got no answer before another may be sent."""

_BACKGROUND_WORKS: dict[str, bool] = {}
"""Whether each server (by base URL) runs background mode, as this process found out."""


def forget_server(base_url: str) -> None:
    """Forget what this process keeps of the server at ``base_url``.

    For a server that changed (restarted with Redis, or a test server reusing a
    port); ``langchain_letta.testing`` calls it for every fake server it starts.
    The turns its threads wait for are dropped too: a new server has no runs.
    """
    _BACKGROUND_WORKS.pop(base_url.rstrip("/"), None)
    turns.forget(base_url.rstrip("/"))


class ServerFacts:
    """The server's release and what follows from it, as one client knows them; no I/O.

    Args:
        base_url: The server, for log messages.
        dialect: The ``dialect`` setting: a fixed dialect, or ``"auto"`` to follow
            the release (or a refusal naming the other dialect's fields).
        background: The ``background`` setting (``None``: where the release has it).
    """

    def __init__(self, base_url: str, dialect: DialectSetting, background: bool | None) -> None:
        self.base_url = base_url
        self.dialect_setting = dialect
        self.dialect: Dialect | None = None if dialect == "auto" else dialect
        self.background = background
        self.version: str | None = None
        self._probe_due: float | None = 0.0
        """When a health probe may be sent (monotonic seconds); ``None``: answered."""

    @property
    def background_works(self) -> bool | None:
        """Whether the server runs background mode (``None``: not tried yet)."""
        return _BACKGROUND_WORKS.get(self.base_url)

    def needs_probe(self, version_matters: bool = False) -> bool:
        """Whether a decision still needs the server's version.

        The dialect and background mode depend on it, and ``version_matters`` for
        a request that addresses a conversation or sets a field only some
        releases have.
        """
        wanted = self.dialect is None or self.background is None or version_matters
        due = self._probe_due
        return wanted and due is not None and time.monotonic() >= due

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
                payload: Any = from_json(body)
            except ValueError:
                payload = None
            version = payload.get("version") if isinstance(payload, dict) else None
            if isinstance(version, str):
                self.version = version[:64]
        if self.dialect is None:
            self.dialect = dialect_for_version(self.version)

    def wants_background(self, asked: bool | None) -> bool:
        """Whether a request asks for background mode: by itself, the setting, or the release."""
        if asked is None:
            asked = self.background
        if asked is None:
            asked = supports_background(self.version)
        return asked

    def background_undecided(self, asked: bool | None) -> bool:
        """Whether a request asking so would be the one to find out if background mode works."""
        return self.wants_background(asked) and self.background_works is None

    def background_now(self, asked: bool | None) -> bool:
        """Whether a request asking so goes in background mode (not where it failed)."""
        return self.wants_background(asked) and self.background_works is not False

    def learn_background(self, *, works: bool) -> None:
        """Remember whether the server runs background mode."""
        if not works and self.background_works is not False:
            logger.info(
                "the Letta server at %s cannot run background mode (no Redis): streaming in "
                "foreground, which cannot be resumed after a drop",
                self.base_url,
            )
        _BACKGROUND_WORKS[self.base_url] = works

    def adjust_after_rejection(
        self, status: int, body_text: str, sent: dict[str, Any], done: set[str]
    ) -> bool:
        """Change what is sent after a refusal that proves nothing was accepted.

        A 422 naming a message field means the other dialect (auto mode only); a
        503 about Redis means the server cannot run background mode. Each change
        is made at most once per request (``done`` records them).
        """
        if status == 422 and self.dialect_setting == "auto" and "dialect" not in done:
            sent_dialect: Dialect = (
                "seed" if "text" in sent["messages"][0] else self.dialect or "current"
            )
            other = dialect_after_rejection(body_text, sent_dialect)
            if other is not None:
                self.dialect = other
                done.add("dialect")
                return True
        if status == 503 and sent.get("background") and "redis" in body_text.lower():
            self.learn_background(works=False)
            done.add("background")
            return True
        return False
