"""StreamState's resume cursor: frames out of seq_id order, replays, gaps that never close.

A background run's frames may arrive out of seq_id order on one connection (Letta's
Redis writer can add a later batch first). Each frame must reach the consumer once,
as it arrives; the cursor (``progress.last_seq_id``, sent as ``starting_after`` on
resume) must stay at the highest seq_id below which everything was delivered, so that
a resume asks for what is missing and its replay delivers nothing twice.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from langchain_letta._wire import state as flow
from langchain_letta._wire.state import MAX_AHEAD, StreamState
from langchain_letta.errors import LettaProtocolError

RUN = "run-5e1f0a2b"
STOP = b'data: {"message_type":"stop_reason","stop_reason":"end_turn"}\n\n'
USAGE = b'data: {"message_type":"usage_statistics","total_tokens":7,"step_count":1}\n\n'
DONE = b"data: [DONE]\n\n"


def frame(seq_id: Any, message_type: str = "assistant_message", **fields: Any) -> bytes:
    """One SSE frame of the run; an assistant delta that names its seq_id by default."""
    payload = {"message_type": message_type, "run_id": RUN, "seq_id": seq_id, **fields}
    if message_type == "assistant_message":
        payload.setdefault("content", f"<{seq_id}>")
    return b"data: %s\n\n" % json.dumps(payload).encode()


def frames(*seq_ids: int) -> bytes:
    return b"".join(frame(seq_id) for seq_id in seq_ids)


def fresh() -> StreamState:
    """The state of a new call: nothing read yet."""
    return StreamState()


def resumed(cursor: int) -> StreamState:
    """The state of a call that reads a run again, as ``StreamFlow`` sets it up."""
    state = StreamState()
    state.progress.run_id = RUN
    state.progress.last_seq_id = cursor
    return state


def labels(state: StreamState, chunk: bytes) -> list[int | str]:
    """What one read delivers: each event's seq_id, or its type where it shows none."""
    events = state.feed(chunk)
    return [getattr(e, "seq_id", None) or e.message_type for e in events]


def cursors(state: StreamState, *seq_ids: int) -> list[int | None]:
    """Feed one frame at a time; the cursor after each (the frame must be delivered)."""
    after: list[int | None] = []
    for seq_id in seq_ids:
        assert labels(state, frame(seq_id)) == [seq_id]
        after.append(state.progress.last_seq_id)
    return after


# ------------------------------------------------------------------ in order


def test_frames_in_order_move_the_cursor_one_by_one() -> None:
    state = fresh()
    assert state.progress.last_seq_id is None
    assert cursors(state, 1, 2, 3) == [1, 2, 3]
    assert state.ahead == set()
    assert state.progress.run_id == RUN


def test_a_frame_at_or_below_the_cursor_is_a_replay_and_skipped() -> None:
    state = fresh()
    assert labels(state, frames(1, 2, 3)) == [1, 2, 3]
    assert labels(state, frames(2, 3, 1)) == []
    assert state.progress.last_seq_id == 3
    assert state.progress.events_received == 3


# ------------------------------------------------------------------ out of order


def test_a_frame_out_of_order_is_delivered_at_once_and_the_cursor_waits_for_the_gap() -> None:
    state = fresh()
    assert cursors(state, 1, 2, 4, 6) == [1, 2, 2, 2]
    assert state.ahead == {4, 6}
    assert cursors(state, 3) == [4]  # 3 closes the first gap; 5 is still missing
    assert state.ahead == {6}
    assert cursors(state, 5) == [6]
    assert state.ahead == set()


def test_the_order_of_issue_17_delivers_every_frame_once_in_arrival_order() -> None:
    """61, then 79-85 (added to Redis first), then 62-78, then the rest."""
    order = [*range(1, 62), *range(79, 86), *range(62, 79), *range(86, 101)]
    state = fresh()
    delivered: list[int | str] = []
    seen: list[int | None] = []
    for seq_id in order:
        delivered += labels(state, frame(seq_id))
        seen.append(state.progress.last_seq_id)
    assert delivered == order
    assert seen[60:68] == [61] * 8  # 61, then 79-85: the cursor waits below the gap
    assert seen[68] == 62
    assert seen[84] == 85  # 78 closes the gap: the cursor moves past 79-85 at once
    assert seen[-1] == 100
    assert state.ahead == set()


def test_a_duplicate_of_a_frame_held_above_the_gap_is_skipped() -> None:
    state = fresh()
    assert labels(state, frames(1, 3, 4, 3, 4)) == [1, 3, 4]
    assert state.progress.last_seq_id == 1
    assert state.ahead == {3, 4}


def test_a_resume_after_a_drop_inside_a_gap_delivers_only_what_was_missing() -> None:
    """The cursor, sent as ``starting_after``, is below the gap; the replay is deduplicated."""
    state = fresh()
    assert labels(state, frames(1, 2, 5, 6)) == [1, 2, 5, 6]
    assert state.progress.last_seq_id == 2  # the resume asks for everything after 2
    state.restart()
    # the server sends everything after 2, in its own (also shuffled) order
    assert labels(state, frames(5, 3, 6, 4, 7) + STOP + USAGE + DONE) == [
        3,
        4,
        7,
        "stop_reason",
        "usage_statistics",
    ]
    assert state.done
    assert state.progress.last_seq_id == 9  # 7, then stop_reason and usage_statistics
    assert state.ahead == set()


def test_a_new_run_whose_first_frame_is_not_seq_1_keeps_the_cursor_at_0() -> None:
    """Letta numbers a run from 1 (its first ping): 2 first means 1 is still to come."""
    state = fresh()
    assert cursors(state, 2) == [0]
    assert state.resumable  # a resume after 0 reads the whole run again
    assert cursors(state, 1) == [2]


# ------------------------------------------------------------------ resumed calls


def test_a_resumed_call_starts_at_its_cursor() -> None:
    state = resumed(5)
    assert labels(state, frames(3, 5)) == []  # delivered by the call that failed
    assert cursors(state, 7, 6, 8) == [5, 7, 8]


@pytest.mark.parametrize("cursor", [0, -1])
def test_a_resume_from_the_start_counts_from_0(cursor: int) -> None:
    """-1 asks Letta for the whole run, as 0 does: frame 1 comes next either way."""
    state = resumed(cursor)
    assert cursors(state, 1, 3) == [1, 1]
    assert cursors(state, 2) == [3]


def test_a_resumed_call_holds_frames_above_its_cursor_until_the_gap_closes() -> None:
    state = resumed(40)
    assert cursors(state, 43, 42) == [40, 40]
    assert state.ahead == {42, 43}
    assert cursors(state, 41) == [43]


# ------------------------------------------------------------------ stop_reason, usage


def test_stop_reason_and_usage_take_a_seq_number_each_when_no_gap_is_open() -> None:
    state = fresh()
    assert labels(state, frames(1, 2) + STOP + USAGE) == [
        1,
        2,
        "stop_reason",
        "usage_statistics",
    ]
    assert state.progress.last_seq_id == 4


def test_stop_reason_and_usage_after_a_resume_are_counted_from_its_cursor() -> None:
    """A resume after 3 of a run of ping, message, stop_reason, usage: usage alone comes."""
    state = resumed(3)
    assert labels(state, USAGE + DONE) == ["usage_statistics"]
    assert state.progress.last_seq_id == 4


def test_stop_reason_and_usage_behind_an_open_gap_are_delivered_but_not_counted() -> None:
    state = fresh()
    assert labels(state, frames(1, 3) + STOP + USAGE) == [
        1,
        3,
        "stop_reason",
        "usage_statistics",
    ]
    assert state.progress.last_seq_id == 1
    assert state.ahead == {3}
    assert labels(state, frames(2)) == [2]
    assert state.progress.last_seq_id == 3  # not 5: where they sat is unknown
    # a resume after 3 replays them: skipped, one of each was delivered
    state.restart()
    assert labels(state, STOP + USAGE + DONE) == []
    assert state.done


def test_a_late_frame_after_stop_reason_behind_a_gap_is_not_taken_for_a_replay() -> None:
    """Had stop_reason been given the number after the highest seen (4), 4 would be lost."""
    state = fresh()
    assert labels(state, frames(1, 3) + STOP + frames(4, 2)) == [1, 3, "stop_reason", 4, 2]
    assert state.progress.last_seq_id == 4
    assert state.ahead == set()


def test_a_replayed_stop_reason_with_no_gap_open_is_skipped_and_not_counted() -> None:
    state = fresh()
    assert labels(state, frames(1) + STOP + USAGE) == [1, "stop_reason", "usage_statistics"]
    assert labels(state, STOP + USAGE) == []
    assert state.progress.last_seq_id == 3


# ------------------------------------------------------------------ the bound


def test_a_gap_that_never_closes_is_a_protocol_error_once_the_bound_is_full() -> None:
    state = fresh()
    held = range(2, MAX_AHEAD + 2)  # 1 never comes
    assert labels(state, frames(*held)) == list(held)
    assert state.failure is None
    assert len(state.ahead) == MAX_AHEAD == 10_000
    events = state.feed(frames(MAX_AHEAD + 2, MAX_AHEAD + 3))
    assert events == []  # the frame over the bound is not delivered, nor what follows
    error = state.failure
    assert isinstance(error, LettaProtocolError)
    assert error.request_accepted
    assert error.progress is state.progress
    assert error.progress.last_seq_id == 0  # a later resume still asks for seq 1 on
    assert "gap that never closes" in str(error)
    assert "seq_id 1 is still missing" in str(error)
    assert len(state.ahead) == MAX_AHEAD  # memory stays bounded


def test_the_bound_counts_only_the_frames_held_above_a_gap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(flow, "MAX_AHEAD", 3)
    state = fresh()
    assert labels(state, frames(*range(1, 50))) == list(range(1, 50))  # in order: none held
    assert labels(state, frames(51, 52, 53, 50)) == [51, 52, 53, 50]  # 3 held, then closed
    assert labels(state, frames(55, 56, 57)) == [55, 56, 57]  # 3 held again
    assert state.failure is None
    assert labels(state, frames(58)) == []
    assert isinstance(state.failure, LettaProtocolError)
    assert state.progress.last_seq_id == 53


def test_closing_a_gap_with_the_bound_full_moves_the_cursor_past_all_it_held() -> None:
    state = fresh()
    assert len(labels(state, frames(*range(MAX_AHEAD + 1, 1, -1)))) == MAX_AHEAD  # reversed
    assert state.progress.last_seq_id == 0
    assert labels(state, frames(1)) == [1]
    assert state.progress.last_seq_id == MAX_AHEAD + 1
    assert state.ahead == set()


# ------------------------------------------------------------------ invalid seq_ids


@pytest.mark.parametrize(
    ("message_type", "seq_id"),
    [
        ("assistant_message", -3),
        ("assistant_message", 0),
        ("assistant_message", 2**53 + 1),
        ("ping", 10**30),
        ("stop_reason", "7"),  # no declared seq_id: the raw JSON value stays
        ("usage_statistics", 7.5),
        ("some_future_event", True),
        ("some_future_event", [3]),
        ("some_future_event", {"n": 3}),
    ],
)
def test_a_seq_id_that_is_not_a_counter_is_a_protocol_error(
    message_type: str, seq_id: object
) -> None:
    state = fresh()
    extra = {"stop_reason": "end_turn"} if message_type == "stop_reason" else {}
    events = state.feed(frames(1) + frame(seq_id, message_type, **extra) + frames(2))
    assert [e.seq_id for e in events] == [1]  # type: ignore[union-attr]
    error = state.failure
    assert isinstance(error, LettaProtocolError)
    assert error.request_accepted
    assert error.progress is state.progress
    assert "invalid seq_id" in str(error)
    assert state.progress.last_seq_id == 1


def test_the_largest_seq_id_taken_is_2_to_the_53() -> None:
    state = resumed(2**53 - 1)
    assert cursors(state, 2**53) == [2**53]
    assert state.failure is None
