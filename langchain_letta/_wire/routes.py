"""Where each request goes on a given release, and how its JSON answer is read; no I/O."""

from __future__ import annotations

import urllib.parse
from collections.abc import Generator, Mapping
from typing import Any, NamedTuple

from pydantic_core import from_json

from langchain_letta._wire.actions import Opened
from langchain_letta._wire.failures import error_from_http
from langchain_letta._wire.requests import (
    FEATURES_SINCE,
    has_feature,
    supports_conversations,
    unsupported,
)
from langchain_letta._wire.settings import validate_agent_id, validate_conversation_id
from langchain_letta._wire.stored import STORED_LOOKBACK
from langchain_letta.errors import LettaProtocolError, LettaUnsupportedFeatureError
from langchain_letta.events import ToolCall, waiting_in

THREAD_SEARCH_LIMIT = 50
"""Conversations read of a search by a LangGraph thread's summary: one, or the few two
workers made at once."""
PENDING_LOOKBACK = 50
"""Messages listed after the thread's second-to-last in-context one, to find its last
(servers before 0.16.4 cannot be asked for one message by id): only messages of runs
that never reached the context can lie between them."""
LISTING_LIMIT = 4 * 1024 * 1024
"""Most bytes read of a thread's state or of a listing of its messages (or runs)."""
RUNS_LOOKED_AT = 100
"""Most runs under way listed at once (the server's own default)."""
RUNNING = frozenset({"created", "running"})
"""The statuses of a run under way (the others: ``completed``, ``failed``, ``cancelled``)."""


class Exchange(NamedTuple):
    """One JSON request a sans-I/O lookup needs made: the shells send it, sync or async."""

    method: str
    path: str
    query: Mapping[str, str]
    limit: int


def message_route(
    version: str | None, agent_id: str, conversation_id: str | None
) -> tuple[str, dict[str, Any]]:
    """Where a message goes, and what its body says of the target there.

    A conversation uses ``/v1/conversations/{id}/messages`` (0.16.2+), which
    streams by default for any client and holds the server's lock on the
    conversation while a run goes on (a second turn is refused with a busy 409).
    The agent's own thread uses the same route in *agent-direct mode* where the
    server has it (``default`` with ``agent_id`` in the body, 0.16.6+), which takes
    the same lock per agent, so turns of the thread never overlap across processes
    either; on older releases ``/v1/agents/{id}/messages/stream``, which every release
    from 0.6 serves alike and which locks nothing (its replacement from 0.16.2,
    ``POST /v1/agents/{id}/messages`` with ``streaming: true``, streams only for
    clients that present themselves as Letta's own SDK).

    Raises:
        LettaUnsupportedFeatureError: A conversation on a server older than 0.16.2.
    """
    if conversation_id is None:
        validate_agent_id(agent_id)
        if has_feature(version, "agent_direct"):
            return "/v1/conversations/default/messages", {"agent_id": agent_id}
        return f"/v1/agents/{urllib.parse.quote(agent_id, safe='')}/messages/stream", {}
    require_conversations(version)
    quoted = urllib.parse.quote(validate_conversation_id(conversation_id), safe="")
    return f"/v1/conversations/{quoted}/messages", {}


def stored_route(agent_id: str, conversation_id: str | None) -> tuple[str, dict[str, str]]:
    """Where the recent messages of a thread are listed, newest first.

    The agent's route lists every conversation's messages on 0.16.8; otids derived per
    thread cannot match another thread's, so the mix does no harm.
    """
    query = {"limit": str(STORED_LOOKBACK), "order": "desc"}
    if conversation_id is None:
        return (
            f"/v1/agents/{urllib.parse.quote(validate_agent_id(agent_id), safe='')}/messages",
            query,
        )
    quoted = urllib.parse.quote(validate_conversation_id(conversation_id), safe="")
    return f"/v1/conversations/{quoted}/messages", query


def active_runs_route(
    version: str | None, agent_id: str, conversation_id: str | None
) -> tuple[str, dict[str, str]] | None:
    """Where the agent's runs still under way are listed; ``None``: nowhere.

    A run that can be neither read to its end nor read again (a foreground run whose
    read was cut) is waited out so, before the thread's next turn. Servers from 0.9
    record every run; 0.12 on filter the listing by agent and status, older ones have
    ``/v1/runs/active``. Before 0.9 a foreground stream is no run at all.
    """
    agent = validate_agent_id(agent_id)
    if has_feature(version, "run_tracking") is False:
        return None
    if has_feature(version, "run_filters") is False:
        return "/v1/runs/active", {"agent_ids": agent}
    query = {"agent_id": agent, "active": "true", "limit": str(RUNS_LOOKED_AT)}
    if conversation_id is not None:
        query["conversation_id"] = validate_conversation_id(conversation_id)
    return "/v1/runs/", query


def runs_under_way(
    opened: Opened, body: bytes, agent_id: str, conversation_id: str | None
) -> list[str]:
    """The ids of the thread's runs that a listing of runs shows still going on.

    Checked here whatever the server filtered: a run is the thread's when its agent
    (a field from 0.12, in ``metadata`` before) and its conversation (none for the
    agent's own thread) are the thread's, and under way while ``created`` or ``running``.
    """
    runs = _json_answer(opened, body, "runs")
    if not isinstance(runs, list):
        raise LettaProtocolError(
            f"the Letta server listed runs as something else than a list: {body[:200]!r}",
            status_code=opened.status_code,
        )
    found = []
    for run in runs:
        if not isinstance(run, dict):
            continue
        metadata = run.get("metadata")
        agent = run.get("agent_id") or (
            metadata.get("agent_id") if isinstance(metadata, dict) else None
        )
        if (
            run.get("status") in RUNNING
            and agent in (None, agent_id)
            and run.get("conversation_id") == conversation_id
        ):
            found.append(str(run.get("id")))
    return found


def knows_resends(version: str | None, conversation_id: str | None, body: dict[str, Any]) -> bool:
    """Whether the server recognises ``body`` sent again and answers with its run.

    Letta 0.16.7+ keeps, for three hours, which background run the otids of a
    request started, where the route holds a lock (a conversation, or the agent in
    agent-direct mode): the same request again gets that run's stream, not a new
    run. So a request whose fate is unknown (cut after it was written) can be sent
    again instead of being lost.
    """
    return bool(
        body.get("background")
        and has_feature(version, "request_token")
        and (conversation_id is not None or body.get("agent_id"))
    )


def require_conversations(version: str | None) -> None:
    """Refuse a conversation on a release without them, before anything is sent.

    Raises:
        LettaUnsupportedFeatureError: The server is older than 0.16.2.
    """
    if not supports_conversations(version):
        raise LettaUnsupportedFeatureError(
            "conversation_id",
            version,
            FEATURES_SINCE["conversation_id"],
            why="an older server has no conversations (without one, the agent's own "
            "thread is used)",
        )


def conversation_target(
    version: str | None, agent_id: str, fields: Mapping[str, Any]
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """Path, query and body of ``POST /v1/conversations/`` (create one for the agent)."""
    require_conversations(version)
    body = {name: value for name, value in fields.items() if value is not None}
    return "/v1/conversations/", {"agent_id": validate_agent_id(agent_id)}, body


def cancel_target(agent_id: str, run_id: str) -> tuple[str, dict[str, Any]]:
    """Path and body of the request that cancels ``run_id``."""
    quoted = urllib.parse.quote(validate_agent_id(agent_id), safe="")
    return f"/v1/agents/{quoted}/messages/cancel", {"run_ids": [run_id]}


def created_conversation(opened: Opened, body: bytes) -> str:
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


def thread_summary(thread_id: str) -> str:
    """The summary that names a LangGraph thread's conversation, for any worker to find it."""
    return f"LangGraph thread {thread_id}"


def thread_lookup(
    version: str | None, agent_id: str, thread_id: str
) -> Generator[Exchange, tuple[Opened, bytes], str | None]:
    """The oldest conversation of ``agent_id`` named for LangGraph thread ``thread_id``, if any.

    Another worker (another process, a restart) finds the thread's conversation so, even
    before the thread's state holds an answer naming it; two workers that both created
    one settle on the oldest. Servers before 0.16.4 cannot search: ``None``.
    """
    if not has_feature(version, "summary_search"):
        return None
    summary = thread_summary(thread_id)
    query = {
        "agent_id": validate_agent_id(agent_id),
        "summary_search": summary,
        "order": "asc",
        "limit": str(THREAD_SEARCH_LIMIT),
    }
    for conversation in listed(
        *(yield Exchange("GET", "/v1/conversations/", query, LISTING_LIMIT))
    ):
        if (
            isinstance(conversation, dict)
            and conversation.get("summary") == summary
            and conversation.get("agent_id") == agent_id
            and isinstance(conversation.get("id"), str)
        ):
            return validate_conversation_id(conversation["id"])
    return None


def pending_lookup(
    version: str | None, agent_id: str, conversation_id: str | None
) -> Generator[Exchange, tuple[Opened, bytes], list[ToolCall]]:
    """The calls a thread waits to have answered, as the server sees them now.

    The server refuses an answer unless the *last in-context* message of the
    thread is an approval request (``letta/agents/helpers.py``), so that is what is
    asked: the thread's in-context ids (the agent's ``message_ids``, or the
    conversation's ``in_context_message_ids``), then that last message. A request
    stored by a run that never made it into the context (an abandoned or failed
    run) waits for nothing and is not listed.

    Yields the exchanges to make (the shells do the I/O) and returns the calls.
    """
    if has_feature(version, "approvals") is False:
        raise unsupported("approvals", version)
    if conversation_id is None:
        state = f"/v1/agents/{validate_agent_id(agent_id)}"
    else:
        require_conversations(version)
        state = f"/v1/conversations/{validate_conversation_id(conversation_id)}"
    ids = _in_context_ids(*(yield Exchange("GET", state, {}, LISTING_LIMIT)))
    if len(ids) < 2:  # the system message alone: nothing was asked yet
        return []
    last = ids[-1]
    if has_feature(version, "message_by_id") is not False:
        path, query = f"/v1/messages/{urllib.parse.quote(last, safe='')}", {}
    else:  # the listing of the thread, from just after the one before it
        path = state + "/messages"
        query = {"after": ids[-2], "order": "asc", "limit": str(PENDING_LOOKBACK)}
    messages = listed(*(yield Exchange("GET", path, query, LISTING_LIMIT)))
    return waiting_in(messages, last)


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


def listed(opened: Opened, body: bytes) -> list[Any]:
    """The messages of a listing (or of one message, which Letta answers as a list)."""
    messages = _json_answer(opened, body, "messages")
    if not isinstance(messages, list):
        raise LettaProtocolError(
            f"the Letta server listed messages as something else than a list: {body[:200]!r}",
            status_code=opened.status_code,
        )
    return messages
