"""Drill-down: the ledger entries behind one figure of a line (allocated, committed, pending, spent or
available) over a month range, with their sum set beside the figure the API reports."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from console.formatting import decimal
from console.web import Page, signed_in

router = APIRouter()
FIGURES = ("allocated", "committed", "pending", "spent", "available")
# available = allocated - committed - pending - spent: each entry's effect on it, signed that way
AVAILABLE_SIGNS = {"allocated": 1, "committed": -1, "pending": -1, "spent": -1}
MAX_ENTRIES = 2000  # a line with more is listed in part (the page says so)


def effect_on(entry: dict[str, Any], figure: str) -> Decimal:
    """The signed change an entry makes to one figure of its line."""
    effect = entry.get("effect") or {}
    if figure == "available":
        return sum(((decimal(effect.get(k)) or Decimal(0)) * sign for k, sign in AVAILABLE_SIGNS.items()), Decimal(0))
    return decimal(effect.get(figure)) or Decimal(0)


def behind(entries: list[dict[str, Any]], figure: str, start: str, end: str) -> list[dict[str, Any]]:
    """The entries in [start, end] (months) that move `figure`, each with its signed effect on it."""
    out = []
    for entry in entries:
        if start <= str(entry.get("period", "")) <= end:
            change = effect_on(entry, figure)
            if change:
                out.append({**entry, "change": change})
    return out


@router.get("/lines/{line_id}/figures/{figure}")
async def figure_entries(
    line_id: str, figure: str, page: Page = Depends(signed_in), start: str | None = None, end: str | None = None
) -> Response:
    if figure not in FIGURES:
        figure = "available"
    detail, balance, entries = await asyncio.gather(
        page.api.get(f"/budget/v1/lines/{line_id}"),
        page.api.get(f"/budget/v1/lines/{line_id}/balance", **{"from": start or None, "to": end or None}),
        page.api.items(f"/budget/v1/lines/{line_id}/entries", limit=200, pages=MAX_ENTRIES // 200),
    )
    plan = await page.api.get(f"/budget/v1/plans/{detail['plan_id']}")
    rows = behind(entries, figure, balance["from"], balance["to"])
    total = sum((r["change"] for r in rows), Decimal(0))
    return page.render(
        "figure.html",
        line=detail,
        plan=plan,
        balance=balance,
        figure=figure,
        rows=rows,
        total=total,
        matches=total == (decimal(balance.get(figure)) or Decimal(0)),
        cut=len(entries) >= MAX_ENTRIES,
        figures=FIGURES,
    )
