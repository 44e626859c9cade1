"""The entries behind a line's figure: each entry's signed effect, in the month range."""

from __future__ import annotations

from decimal import Decimal

from console.ledger import behind, effect_on


def entry(kind: str, period: str, **effect: str) -> dict:
    zero = {"allocated": "0.00", "committed": "0.00", "pending": "0.00", "spent": "0.00"}
    return {"id": f"{kind}-{period}", "kind": kind, "period": period, "effect": {**zero, **effect}}


ENTRIES = [
    entry("allocation", "2026-01", allocated="1000.00"),
    entry("commitment", "2026-01", pending="300.00"),
    entry("approval", "2026-01", pending="-300.00", committed="300.00"),
    entry("actual", "2026-02", committed="-100.00", spent="100.00"),
    entry("allocation", "2026-03", allocated="50.00"),
]


def test_each_figure_is_the_sum_of_the_entries_that_move_it():
    committed = behind(ENTRIES, "committed", "2026-01", "2026-02")
    assert [e["kind"] for e in committed] == ["approval", "actual"]
    assert sum(e["change"] for e in committed) == Decimal("200.00")
    # available = allocated - committed - pending - spent
    available = behind(ENTRIES, "available", "2026-01", "2026-02")
    assert sum(e["change"] for e in available) == Decimal("700.00")
    assert effect_on(ENTRIES[2], "available") == Decimal("0.00")  # an approval only moves pending to committed
    assert [e["kind"] for e in available] == ["allocation", "commitment"]


def test_the_range_bounds_the_entries():
    assert [e["period"] for e in behind(ENTRIES, "allocated", "2026-03", "2026-03")] == ["2026-03"]
    assert behind(ENTRIES, "spent", "2026-01", "2026-01") == []
