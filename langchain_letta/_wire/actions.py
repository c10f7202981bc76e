"""The actions :class:`~langchain_letta._wire.flow.StreamFlow` asks a shell to carry out.

Each is a plain value: the flow yields one, the shell does the I/O it names and sends
back what happened (the reply each action documents), and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_letta._wire.turns import TurnKey
from langchain_letta.events import LettaEvent

ERROR_BODY_LIMIT = 256 * 1024
"""Most bytes read of an error body (or of a body read only to be discarded)."""


@dataclass(frozen=True, slots=True)
class Probe:
    """Learn the server's version if a decision needs it; the reply is ``None``."""

    version_matters: bool


@dataclass(frozen=True, slots=True)
class Send:
    """POST ``body`` to ``path`` and open the response as a stream.

    The reply is an :class:`Opened`, or the typed error of a transport failure.
    ``read_timeout``, when set, bounds every read of this response: the call's
    deadline is nearer than the client's read timeout.
    """

    path: str
    body: dict[str, Any]
    read_timeout: float | None


@dataclass(frozen=True, slots=True)
class Opened:
    """The status line and headers of the response just opened.

    ``request`` names it for error messages: ``METHOD URL``, the URL as it was
    really sent (without userinfo or query, so never with a credential).
    """

    status_code: int
    headers: Mapping[str, str]
    request: str = ""


@dataclass(frozen=True, slots=True)
class Read:
    """Read the next bytes of the open response.

    The reply is the bytes (``b""`` at its end) or the ``httpx.TransportError``
    (or ``httpx.DecodingError``) that broke it. ``timeout``, when set, is shorter
    than the read timeout: the call's deadline is near, and the read must not
    outlast it.
    """

    timeout: float | None


@dataclass(frozen=True, slots=True)
class ReadBody:
    """Read the rest of the open response, at most ``limit`` bytes, and close it."""

    limit: int = ERROR_BODY_LIMIT


@dataclass(frozen=True, slots=True)
class Hangup:
    """Close the open response now (the connection is not reused)."""


@dataclass(frozen=True, slots=True)
class Finish:
    """The stream ended normally: read what is left, and let the connection be reused.

    At most ``limit`` bytes are read for at most ``seconds``, never while the consumer
    waits: a server that holds the body open only loses the connection.
    """

    limit: int = 64 * 1024
    seconds: float = 5.0


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait before the next attempt."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand these events (one network read's worth) to the consumer."""

    events: list[LettaEvent]


@dataclass(frozen=True, slots=True)
class Ask:
    """Make one JSON ``GET`` and reply with ``(Opened, body)``, or the typed error."""

    path: str
    query: Mapping[str, str]
    limit: int


@dataclass(frozen=True, slots=True)
class Lock:
    """Become the one request that finds out whether the server runs background mode."""


@dataclass(frozen=True, slots=True)
class Unlock:
    """The background decision is made: let the waiting requests go."""


@dataclass(frozen=True, slots=True)
class TakeTurn:
    """Wait in line for this agent thread's turn in this process, at most ``timeout`` s.

    The reply is ``True`` once the turn is the call's (it keeps it until it ends, however
    it ends), ``False`` if the time ran out first.
    """

    key: TurnKey
    timeout: float | None


Action = (
    Probe
    | Send
    | Read
    | ReadBody
    | Hangup
    | Finish
    | Sleep
    | Deliver
    | Ask
    | Lock
    | Unlock
    | TakeTurn
)
