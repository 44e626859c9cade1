"""The deliverable state machine as a property: no sequence of actions reaches a status outside
the machine, leaves a finished deliverable, runs the clock while waiting on the requester, or
counts a rework round for anything but a send-back that applied."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.workflow.deliverable_states import (
    ACTIONS,
    FINISHED,
    MOVES,
    STATUSES,
    IllegalMove,
    State,
    part,
    step,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(ACTIONS), max_size=40))
def test_no_sequence_reaches_an_invalid_state_or_double_counts_a_rework_round(actions):
    state, applied_send_backs, finished_at = State(), 0, None
    for i, action in enumerate(actions):
        before = state
        try:
            state = step(state, action)
        except IllegalMove:
            assert before.status not in MOVES[action][0]  # refused only when the action does not apply
            assert state == before  # a refusal changes nothing
            continue
        assert before.status in MOVES[action][0] and state.status == MOVES[action][1]
        assert finished_at is None  # nothing applies once done or cancelled
        applied_send_backs += action == "send_back"
        if state.finished:
            finished_at = i
        assert state.status in STATUSES
        assert state.rework_rounds == applied_send_backs  # one round per applied send-back, never more
        assert state.clock_runs == (state.status in ("open", "accepted", "in_progress"))
        assert state.waiting == (state.status in ("delivered", "in_review"))
        assert not (state.waiting and state.clock_runs)  # paused while the delivery waits on the requester
        if action == "review":
            assert before.status == "delivered" and state.status == "in_review"  # a review starts only once


@given(st.sampled_from(STATUSES))
def test_finished_states_absorb_every_action(status):
    state = State(status)
    for action in ACTIONS:
        if status in FINISHED:
            with pytest.raises(IllegalMove):
                step(state, action)


def test_each_part_has_its_actions():
    assert {a for a in ACTIONS if part(a) == "assignee"} == {"accept", "start", "deliver"}
    assert {a for a in ACTIONS if part(a) == "requester"} == {"review", "approve", "send_back", "cancel"}
    assert step(step(State("delivered"), "send_back"), "deliver") == State("delivered", 1)
    reviewing = step(State("delivered", 2), "review")
    assert reviewing == State("in_review", 2) and not reviewing.clock_runs
    assert step(reviewing, "send_back") == State("in_progress", 3)
    assert step(reviewing, "approve") == State("done", 2)
    assert step(reviewing, "cancel") == State("cancelled", 2)
    for action in ("review", "deliver", "accept", "start"):
        with pytest.raises(IllegalMove):
            step(reviewing, action)


def test_every_status_is_reachable_from_open():
    seen, frontier = {"open"}, [State()]
    while frontier:
        state = frontier.pop()
        for action in ACTIONS:
            try:
                after = step(state, action)
            except IllegalMove:
                continue
            if after.status not in seen:
                seen.add(after.status)
                frontier.append(after)
    assert seen == set(STATUSES)
