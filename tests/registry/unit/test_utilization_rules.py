"""A tool's utilization figure from its latest snapshot and its contracts' seats, without a database."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace as Snap

import pytest

from services.registry.utilization import Usage

USAGE = Usage(window_days=30, underused_below=0.5)
DAY = dt.date(2027, 3, 1)


def snap(active: int, seats: int | None = None) -> Snap:
    return Snap(date=DAY, source="sso", active_users=active, seats_purchased=seats)


@pytest.mark.parametrize(
    ("snapshot", "contract_seats", "ratio", "underused", "shelfware"),
    [
        (snap(31, 50), None, 0.62, False, False),
        (snap(31, 50), 10, 0.62, False, False),  # the snapshot's seats win over the contracts'
        (snap(20), 40, 0.5, False, False),  # exactly at the threshold is not under it
        (snap(1, 3), None, 0.3333, True, False),  # four decimals
        (snap(0, 10), None, 0.0, True, True),
        (snap(5), None, None, False, False),  # no seats anywhere: no ratio
        (snap(5, 0), None, None, False, False),  # zero seats: no ratio either
        (None, 50, None, False, False),  # no snapshot in the window
    ],
)
def test_utilization_is_active_users_over_seats(snapshot, contract_seats, ratio, underused, shelfware):
    u = USAGE.figure("t1", snapshot, contract_seats)
    assert (u.utilization, u.underused, u.shelfware) == (ratio, underused, shelfware)
    assert u.as_of == (DAY if snapshot else None) and u.source == ("sso" if snapshot else None)


def test_underused_compares_exactly_not_through_a_rounded_float():
    # 49,999 of 100,000 rounds to 0.5 but is under half.
    u = USAGE.figure("t1", snap(49_999, 100_000), None)
    assert u.utilization == 0.5 and u.underused
