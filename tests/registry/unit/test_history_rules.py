"""The audit history's pure parts: which fields changed, and how values are stored."""

from __future__ import annotations

import datetime as dt

from services.registry.history import TRACKED, diff, jsonable


def tool(**changes):
    base = {f: None for f in TRACKED} | {
        "name": "Acme",
        "capabilities": ["crm"],
        "owner": {"team": "mops", "person": None},
    }
    return base | changes


def test_only_tracked_fields_that_changed_are_recorded():
    before = tool()
    after = tool(notes="main", owner={"team": "sales", "person": None}) | {"version": 9, "updated_at": "later"}
    assert diff(before, after) == {
        "owner": {"from": {"team": "mops", "person": None}, "to": {"team": "sales", "person": None}},
        "notes": {"from": None, "to": "main"},
    }
    assert diff(before, tool()) == {}


def test_values_are_stored_as_json_dates_included():
    assert jsonable({"a": (dt.date(2027, 1, 2), [dt.datetime(2027, 1, 2, 3, tzinfo=dt.UTC)])}) == {
        "a": ["2027-01-02", ["2027-01-02T03:00:00+00:00"]]
    }
