"""Recognising the messages a thread holds already, by their otids (no network)."""

from __future__ import annotations

from typing import Any

from langchain_letta._wire.requests import (
    ApprovalDecision,
    OutgoingApproval,
    OutgoingMessage,
    StreamRequest,
    with_stable_otids,
)
from langchain_letta._wire.stored import recognisable, stored_otids, unsent

AGENT = "agent-5d1e0c2b-8a7f-4e3d-9c6b-0a1b2c3d4e5f"


def sent(*messages: OutgoingMessage | OutgoingApproval) -> StreamRequest:
    return with_stable_otids(StreamRequest(messages=list(messages)), AGENT, None)


def listing(request: StreamRequest, run_id: str) -> list[dict[str, Any]]:
    """How Letta lists the user messages of ``request`` once a run took them."""
    return [
        {"message_type": "user_message", "id": f"message-{n}", "otid": m.otid, "run_id": run_id}
        for n, m in enumerate(request.messages)
        if isinstance(m, OutgoingMessage)
    ]


def test_the_otids_of_user_and_system_messages_are_read_with_their_runs() -> None:
    found = stored_otids(
        [
            {"message_type": "user_message", "otid": "o1", "run_id": "run-1"},
            {"message_type": "system_message", "otid": "o2"},
            {"message_type": "assistant_message", "otid": "o3", "run_id": "run-1"},
            {"message_type": "user_message", "otid": None},
            {"message_type": "user_message", "otid": 7},
            "not a message",
        ]
    )
    assert found == {"o1": "run-1", "o2": None}


def test_a_message_the_thread_holds_is_left_out_and_the_rest_goes() -> None:
    first = sent(OutgoingMessage(content="one", source_id="lc-1"))
    both = sent(
        OutgoingMessage(content="one", source_id="lc-1"),
        OutgoingMessage(content="two", source_id="lc-2"),
    )
    left, run_id = unsent(both, stored_otids(listing(first, "run-1")))
    assert left is not None
    assert [m.content for m in left.messages if isinstance(m, OutgoingMessage)] == ["two"]
    assert run_id == "run-1"


def test_a_request_the_thread_holds_whole_is_the_run_that_took_it() -> None:
    first = sent(OutgoingMessage(content="one", source_id="lc-1"))
    assert unsent(first, stored_otids(listing(first, "run-1"))) == (None, "run-1")


def test_messages_without_an_id_and_answers_always_go() -> None:
    answer = OutgoingApproval(approvals=[ApprovalDecision(tool_call_id="c1", approve=True)])
    request = sent(answer, OutgoingMessage(content="no id"))
    everything = {m.otid: "run-1" for m in request.messages}  # even if the otids matched
    assert unsent(request, everything) == (request, None)
    assert not recognisable(request)
    assert recognisable(sent(OutgoingMessage(content="one", source_id="lc-1")))


def test_the_same_message_to_another_thread_is_not_recognised() -> None:
    message = OutgoingMessage(content="one", source_id="lc-1")
    elsewhere = with_stable_otids(StreamRequest(messages=[message]), AGENT, "conv-1")
    here = sent(message)
    assert unsent(here, stored_otids(listing(elsewhere, "run-9"))) == (here, None)
