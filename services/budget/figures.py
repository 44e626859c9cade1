"""A line's four running figures (allocated, committed, pending, spent) and the rules read from them:
what is available, the 80 % / 100 % consumption thresholds, a shortfall, pacing. Pure, no database."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from shared.money import fmt

BUCKETS = ("allocated", "committed", "pending", "spent")
THRESHOLDS = (80, 100)  # per cent of the allocation a line's consumption is watched at
PACING_TOLERANCE = Decimal("0.10")


@dataclass
class Figures:
    allocated: int = 0
    committed: int = 0
    pending: int = 0
    spent: int = 0

    @property
    def available(self) -> int:
        return self.allocated - self.committed - self.pending - self.spent

    @property
    def consumed(self) -> int:
        return self.committed + self.pending + self.spent

    @property
    def has_money(self) -> bool:
        return bool(self.allocated or self.committed or self.pending or self.spent)

    def add(self, other: Figures) -> None:
        self.allocated += other.allocated
        self.committed += other.committed
        self.pending += other.pending
        self.spent += other.spent

    def minus(self, deltas: tuple[int, ...] | list[int]) -> Figures:
        """The figures before a change of `deltas` (allocated, committed, pending, spent) made these."""
        return Figures(
            self.allocated - deltas[0], self.committed - deltas[1], self.pending - deltas[2], self.spent - deltas[3]
        )

    def view(self, currency: str) -> dict[str, str]:
        return {
            "allocated": fmt(self.allocated, currency),
            "committed": fmt(self.committed, currency),
            "pending": fmt(self.pending, currency),
            "spent": fmt(self.spent, currency),
            "available": fmt(self.available, currency),
            "currency": currency,
        }


def thresholds_crossed(before: Figures, after: Figures) -> list[int]:
    """The thresholds a change took the line's consumption past (the same rule as the PostgreSQL statement)."""
    if after.allocated <= 0:
        return []
    return [t for t in THRESHOLDS if before.consumed * 100 < t * after.allocated <= after.consumed * 100]


def refuses(before: Figures, after: Figures) -> bool:
    """A checked posting is refused when it leaves available money negative and lower than it was."""
    return after.available < 0 and after.available < before.available


def pacing(fig: Figures, elapsed: Decimal) -> dict[str, Any]:
    """Share of the period range elapsed against share of the budget spent (and consumed)."""
    if fig.allocated <= 0:
        return {"elapsed_share": str(elapsed), "spent_share": None, "consumed_share": None, "status": "no_budget"}
    spent = (Decimal(fig.spent) / Decimal(fig.allocated)).quantize(Decimal("0.0001"))
    consumed = (Decimal(fig.consumed) / Decimal(fig.allocated)).quantize(Decimal("0.0001"))
    status = (
        "overspending"
        if spent > elapsed + PACING_TOLERANCE
        else "underspending"
        if spent < elapsed - PACING_TOLERANCE
        else "on_track"
    )
    return {"elapsed_share": str(elapsed), "spent_share": str(spent), "consumed_share": str(consumed), "status": status}
