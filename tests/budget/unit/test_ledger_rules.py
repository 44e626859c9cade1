"""Line trees, postings and the CSV import's cell rules, without a database."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from services.budget import csv_import, events, reversals
from services.budget.lines import ancestors, merged_dimensions
from services.budget.plans import Plan
from services.budget.postings import Leg, Money, _posting
from shared.errors import Conflict, Invalid
from shared.identity import Principal

NOW = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
PLAN = Plan("p", "FY27", 2027, "EUR", "active", "block", None, 3, "dana", NOW, NOW)


def test_a_line_path_lists_its_ancestors_from_the_root():
    assert ancestors("/a/b/c/") == ["a", "b", "c"]
    assert ancestors("/a/") == ["a"]


def test_a_line_inherits_its_parents_dimensions_unless_it_sets_its_own():
    assert merged_dimensions({"region": "EMEA", "channel": "x"}, {"channel": "search", "owner": None}) == {
        "region": "EMEA",
        "channel": "search",
    }
    assert merged_dimensions(None, None) == {}


def _leg(line_path: str, line_id: str, deltas: tuple[int, int, int, int], period: str = "2027-03") -> Leg:
    line = SimpleNamespace(id=line_id, path=line_path, version=1, dimensions={})
    m = Money(10, "EUR", 10, "1")
    return Leg(line, period, "transfer_out", 10, deltas, m, dt.date(2027, 3, 1))


def test_a_posting_changes_each_ancestors_subtree_and_only_the_lines_own_figures():
    out = _leg("/root/a/", "a", (-10, 0, 0, 0))
    inn = _leg("/root/b/", "b", (10, 0, 0, 0))
    p = _posting(Principal("dana", frozenset({"admin"})), PLAN, [out, inn], True, None, None, [], None, True)
    assert p.keys == [("a", "2027-03"), ("b", "2027-03"), ("root", "2027-03")]
    assert p.subtree[("root", "2027-03")] == [0, 0, 0, 0]  # moved inside the root's subtree
    assert p.own.get(("root", "2027-03")) is None
    assert p.deltas() == [(-10, 0, 0, 0, -10, 0, 0, 0), (10, 0, 0, 0, 10, 0, 0, 0), (0, 0, 0, 0, 0, 0, 0, 0)]
    assert {r["group_id"] for r in p.rows} == {out.id} and p.guard == []  # a fresh plan needs no guard


def test_a_posting_built_from_the_cache_carries_its_guard():
    from dataclasses import replace

    leg = _leg("/a/", "a", (0, 5, 0, 0))
    p = _posting(Principal("dana"), replace(PLAN, guarded=True), [leg], True, None, None, [], None, True)
    assert p.guard == [dict(line_id="a", line_version=1, dimensions={}, plan_version=3, period="2027-03")]


def test_reversals_refuse_reversals_and_commitment_entries():
    reversals.check_reversible(["actual", "consumption"], "actual")
    with pytest.raises(Conflict, match="cannot itself be reversed"):
        reversals.check_reversible(["reversal"], "reversal")
    with pytest.raises(Conflict, match="release or change the commitment"):
        reversals.check_reversible(["commitment"], "commitment")


def test_the_import_takes_currencies_exactly_as_iso_writes_them():
    assert csv_import.check_currency("EUR") == "EUR"
    with pytest.raises(Invalid) as exc:
        csv_import.check_currency("eur")
    assert exc.value.errors[0].field == "currency" and 'did you mean "EUR"' in exc.value.errors[0].message
    with pytest.raises(Invalid):
        csv_import.check_currency("EURO")


def test_the_import_header_needs_a_code_and_known_columns():
    csv_import.check_header(["code", "name", "region"])
    with pytest.raises(Invalid) as exc:
        csv_import.check_header(["name", "colour"])
    messages = [e.message for e in exc.value.errors]
    assert any("missing column(s): code" in m for m in messages) and any("colour" in m for m in messages)


def test_event_models_refuse_a_field_they_do_not_name_and_keep_the_payload_shape():
    data = events.BudgetEntryPosted(
        entry_id="e",
        plan_id="p",
        line_id="l",
        line_code="L",
        period="2027-03",
        amount="10.00",
        currency="EUR",
        dimensions={"region": "EMEA"},
    )
    dumped = events.ALLOCATION_POSTED.dump(data)
    assert dumped["amount"] == "10.00" and dumped["dimensions"] == {"region": "EMEA"}
    with pytest.raises(TypeError, match="no field"):
        events.ALLOCATION_POSTED.dump({**dumped, "surprise": 1})
    with pytest.raises(TypeError):
        events.ALLOCATION_POSTED.dump({**dumped, "amount": "ten"})
