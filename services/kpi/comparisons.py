"""Comparisons: a value beside the same metric's value in an earlier period, with the change.

The change is absolute (in the metric's unit) and relative (a fraction of the earlier value's
magnitude, as `percent` values are: 0.25 is +25 %). Relative change is undefined (null) when the
earlier value is zero or undefined, never a division by zero or an infinity.
"""

from __future__ import annotations

import decimal
from decimal import Decimal

from services.kpi.values import fmt


def change(current: Decimal | None, base: Decimal | None, unit: str) -> dict[str, str | None]:
    """`value` (the earlier one), `change` (current - earlier) and `percent_change` (change / |earlier|)."""
    with decimal.localcontext(prec=40):
        diff = None if current is None or base is None else current - base
        pct = None if diff is None or base is None or base == 0 else diff / abs(base)
    return {"value": fmt(base, unit), "change": fmt(diff, unit), "percent_change": fmt(pct, "percent")}
