"""A tool's lifecycle moves, without a database."""

from __future__ import annotations

import pytest

from services.registry.lifecycle import TRANSITIONS, check_move
from shared.errors import Conflict

STATES = ("evaluating", "pilot", "active", "sunsetting", "retired")
ALLOWED = {
    ("evaluating", "pilot"),
    ("evaluating", "active"),
    ("evaluating", "retired"),
    ("pilot", "evaluating"),
    ("pilot", "active"),
    ("pilot", "retired"),
    ("active", "sunsetting"),
    ("sunsetting", "active"),
    ("sunsetting", "retired"),
}


@pytest.mark.parametrize("current", STATES)
@pytest.mark.parametrize("target", STATES)
def test_exactly_the_documented_moves_are_allowed(current, target):
    if (current, target) in ALLOWED:
        check_move(current, target)
    else:
        with pytest.raises(Conflict) as refused:
            check_move(current, target)
        assert refused.value.extra == {"current": current, "allowed": sorted(TRANSITIONS[current])}
        assert f"from {current} to {target}" in refused.value.detail


def test_retired_is_final_and_says_so():
    with pytest.raises(Conflict, match="none: retired is final"):
        check_move("retired", "active")
