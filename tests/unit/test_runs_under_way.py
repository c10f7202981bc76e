"""Waiting out a run that cannot be read to its end: the server's listing of runs (no network).

A foreground run whose read a stop cut short (or a request stopped before its answer)
leaves nothing to read; its turn ends when the server no longer lists it under way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator
from typing import Any

import pytest

from langchain_letta import LettaClient, OutgoingMessage, StreamRequest
from langchain_letta._wire.actions import Ask, Opened, Send, Sleep, TakeTurn
from langchain_letta._wire.flow import DRAIN_TIMEOUT, POLL_MOST, StreamFlow
from langchain_letta._wire.routes import active_runs_route, runs_under_way
from langchain_letta.errors import LettaAPIError, LettaProtocolError, LettaTimeoutError

AGENT = "agent-5d1e0c2b-8a7f-4e3d-9c6b-0a1b2c3d4e5f"
CONVERSATION = "conv-0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
REQUEST = StreamRequest(messages=[OutgoingMessage(content="hi")])


def answer(payload: Any, status: int = 200) -> tuple[Opened, bytes]:
    return Opened(status, {"content-type": "application/json"}), json.dumps(payload).encode()


def run(status: str, **fields: Any) -> dict[str, Any]:
    return {"id": f"run-{status}", "status": status, "agent_id": AGENT, **fields}


# ------------------------------------------------------------------ where, and what it says


@pytest.mark.parametrize(
    ("version", "route"),
    [
        ("0.6.14", None),  # a foreground stream is no run before 0.9
        ("0.8.3", None),
        ("0.9.0", ("/v1/runs/active", {"agent_ids": AGENT})),
        ("0.11.7", ("/v1/runs/active", {"agent_ids": AGENT})),
        ("0.12.0", ("/v1/runs/", {"agent_id": AGENT, "active": "true", "limit": "100"})),
        ("0.16.8", ("/v1/runs/", {"agent_id": AGENT, "active": "true", "limit": "100"})),
        (None, ("/v1/runs/", {"agent_id": AGENT, "active": "true", "limit": "100"})),  # Cloud
    ],
)
def test_the_runs_under_way_are_asked_where_the_release_lists_them(
    version: str | None, route: tuple[str, dict[str, str]] | None
) -> None:
    assert active_runs_route(version, AGENT, None) == route


def test_a_conversations_runs_are_asked_for_by_conversation() -> None:
    path, query = active_runs_route("0.16.8", AGENT, CONVERSATION) or ("", {})
    assert (path, query["conversation_id"]) == ("/v1/runs/", CONVERSATION)


def test_only_the_threads_runs_under_way_count_whatever_the_server_filtered() -> None:
    listing = [
        run("running"),
        run("created"),
        run("completed"),
        run("failed"),
        run("cancelled"),
        {**run("running"), "id": "run-elsewhere", "agent_id": "agent-other"},
        {**run("running"), "id": "run-in-a-conversation", "conversation_id": CONVERSATION},
        {"id": "run-0.11", "status": "running", "metadata": {"agent_id": AGENT}},  # 0.11.x
        {"id": "run-0.11-other", "status": "running", "metadata": {"agent_id": "agent-other"}},
        "not a run",
    ]
    assert runs_under_way(*answer(listing), AGENT, None) == [
        "run-running",
        "run-created",
        "run-0.11",
    ]
    assert runs_under_way(*answer(listing), AGENT, CONVERSATION) == ["run-in-a-conversation"]


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (answer({"detail": "boom"}, 500), LettaAPIError),
        (answer({"runs": []}), LettaProtocolError),
        ((Opened(200, {}), b"<html>"), LettaProtocolError),
    ],
)
def test_a_listing_that_is_no_list_of_runs_is_a_typed_error(
    reply: tuple[Opened, bytes], error: type[Exception]
) -> None:
    with pytest.raises(error):
        runs_under_way(*reply, AGENT, None)


# ------------------------------------------------------------------ the flow's wait


def flow_under_way(
    version: str, total_timeout: float | None = None, first: bytes = b""
) -> tuple[StreamFlow, list[float]]:
    """A flow whose message the server took and whose stream was cut; and its clock."""
    now = [0.0]
    client = LettaClient(base_url="http://127.0.0.1:9", dialect="current")
    client.facts.learn_from_health(200, json.dumps({"version": version}).encode())
    flow = StreamFlow(client, AGENT, REQUEST, total_timeout=total_timeout, clock=lambda: now[0])
    actions = flow.run()
    action = next(actions)
    while not isinstance(action, Send):
        action = actions.send(isinstance(action, TakeTurn) or None)  # the turn is granted
    actions.send(Opened(200, {"content-type": "text/event-stream"}))
    if first:
        actions.send(first)  # what was read before the cut
    return flow, now


def bound(flow: StreamFlow) -> float:
    """What the shells pass: the bound of the wait after the stop (the flow's own rule)."""
    seconds = flow.after_stop()
    assert seconds is not None  # the run may go on: there is something to wait for
    return seconds


def carry_out(
    waiting: Generator[Ask | Sleep, Any, None], replies: list[Any], now: list[float]
) -> list[Ask | Sleep]:
    """Answer each question with the next reply; each sleep moves the clock on."""
    done: list[Ask | Sleep] = []
    reply: Any = None
    while True:
        try:
            action = waiting.send(reply)
        except StopIteration:
            return done
        done.append(action)
        if isinstance(action, Ask):
            reply = replies.pop(0)
        else:
            now[0] += action.seconds
            reply = None


def test_the_wait_asks_until_the_run_is_no_longer_listed_pausing_longer_each_time() -> None:
    flow, now = flow_under_way("0.16.8")
    busy = answer([run("running")])
    done = carry_out(flow.wait_out(bound(flow)), [busy] * 7 + [answer([run("completed")])], now)
    asks = [action for action in done if isinstance(action, Ask)]
    assert len(asks) == 8
    assert asks[0].path == "/v1/runs/"
    assert asks[0].query["agent_id"] == AGENT
    pauses = [action.seconds for action in done if isinstance(action, Sleep)]
    assert pauses == [0.1, 0.2, 0.4, 0.8, 1.6, POLL_MOST, POLL_MOST]


def test_once_the_run_named_itself_only_it_holds_the_turn() -> None:
    ping = b'data: {"message_type":"ping","id":"ping-1","run_id":"run-mine"}\n\n'
    flow, now = flow_under_way("0.16.8", first=ping)
    stale = {**run("running"), "id": "run-left-running"}
    mine = {**run("running"), "id": "run-mine"}
    done = carry_out(flow.wait_out(bound(flow)), [answer([stale, mine]), answer([stale])], now)
    assert [type(action) for action in done] == [Ask, Sleep, Ask]


def test_the_wait_ends_within_what_is_left_of_the_calls_time_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flow, now = flow_under_way("0.16.8", total_timeout=5.0)
    now[0] = 1.0  # 4 s of the call's 5 are left
    with caplog.at_level(logging.WARNING, logger="langchain_letta"):
        done = carry_out(flow.wait_out(bound(flow)), [answer([run("running")])] * 100, now)
    assert sum(action.seconds for action in done if isinstance(action, Sleep)) <= 4.0
    assert now[0] <= 5.0
    assert "still under way" in caplog.text


def test_a_wait_of_a_call_with_no_deadline_is_bounded_by_the_drain_time() -> None:
    flow, now = flow_under_way("0.16.8")
    done = carry_out(flow.wait_out(bound(flow)), [answer([run("running")])] * 1000, now)
    assert DRAIN_TIMEOUT - POLL_MOST <= now[0] <= DRAIN_TIMEOUT
    assert isinstance(done[-1], Ask)


@pytest.mark.parametrize(
    "reply",
    [
        LettaTimeoutError("no answer", is_retryable=True),
        answer({"detail": "Not Found"}, 404),
        answer({"not": "a list"}),
    ],
)
def test_a_failed_question_ends_the_wait_at_once_with_a_warning(
    reply: Any, caplog: pytest.LogCaptureFixture
) -> None:
    flow, now = flow_under_way("0.16.8")
    with caplog.at_level(logging.WARNING, logger="langchain_letta"):
        done = carry_out(flow.wait_out(bound(flow)), [reply], now)
    assert len(done) == 1
    assert "could not learn whether" in caplog.text


def test_nothing_is_asked_where_a_foreground_stream_is_no_run_and_a_warning_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flow, now = flow_under_way("0.6.14")
    with caplog.at_level(logging.WARNING, logger="langchain_letta"):
        assert carry_out(flow.wait_out(bound(flow)), [], now) == []
    assert "lists no foreground runs" in caplog.text


def test_nothing_is_waited_for_after_a_call_that_sent_nothing() -> None:
    client = LettaClient(base_url="http://127.0.0.1:9", dialect="current")
    flow = StreamFlow(client, AGENT, REQUEST)
    assert flow.after_stop() is None  # so the shells do not wait at all
