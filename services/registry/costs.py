"""Money across the stack, in the base currency: FX rates, what each tool costs a year, overlapping
capabilities and their combined cost, and the cost by category or team.

A needed rate that is missing is a 409 listing `missing_rates`, never a silently wrong total;
converted costs adding up to MAX_MINOR or more are a 409 listing the currencies to check.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import select

from services.registry import stack_schemas
from services.registry.models import Contract, FxRate, Tool
from services.registry.terms import annual_minor
from shared.db import utcnow
from shared.errors import Conflict, Invalid
from shared.identity import Principal, ensure_unscoped
from shared.money import MAX_MINOR, convert, fmt
from shared.uow import UnitOfWork

WHAT = "An exchange rate of the registry"  # rates reach every report: a scoped principal may not change them


@dataclass(frozen=True)
class StackCosts:
    """Reports in `base` (the registry's base currency)."""

    base: str

    async def set_rate(
        self, uow: UnitOfWork, who: Principal, *, body: stack_schemas.FxRateIn
    ) -> stack_schemas.FxRateOut:
        ensure_unscoped(who, WHAT)
        if body.currency == self.base:
            raise Invalid.on("currency", f"{self.base} is the base currency; its rate is 1 by definition")
        row = await uow.get(FxRate, (self.base, body.currency))
        if row is None:
            row = FxRate(base_currency=self.base, currency=body.currency)
            uow.add(row)
        row.rate, row.updated_at = str(body.rate), utcnow()
        await uow.flush()
        return _rate(row)

    async def rates(self, uow: UnitOfWork) -> stack_schemas.FxRates:
        query = select(FxRate).where(FxRate.base_currency == self.base).order_by(FxRate.currency)
        return stack_schemas.FxRates(
            base_currency=self.base, items=[_rate(r) for r in (await uow.scalars(query)).all()]
        )

    async def annual_by_tool(self, uow: UnitOfWork, tool_ids: set[str]) -> dict[str, int]:
        """Each tool's annual cost of its active contracts, in base-currency minor units."""
        rates = {
            r.currency: Decimal(r.rate)
            for r in (await uow.scalars(select(FxRate).where(FxRate.base_currency == self.base))).all()
        }
        query = select(Contract.tool_id, Contract.currency, Contract.cost_minor, Contract.billing_period)
        contracts = [
            c for c in (await uow.execute(query.where(Contract.status == "active"))).all() if c.tool_id in tool_ids
        ]
        missing = sorted({c.currency for c in contracts if c.currency != self.base and c.currency not in rates})
        if missing:
            raise Conflict(
                f"No exchange rate to {self.base} for {', '.join(missing)}: post one to /v1/fx-rates "
                f"(units of {self.base} per unit) before asking for totals.",
                missing_rates=missing,
            )
        out: dict[str, int] = defaultdict(int)
        for c in contracts:
            yearly = annual_minor(c.cost_minor, c.billing_period)
            out[c.tool_id] += convert(yearly, c.currency, self.base, rates.get(c.currency, Decimal(1)))
        # Costs are >= 0, so every sum a report shows (per tool, capability, group) is at most the total.
        if sum(out.values()) >= MAX_MINOR:
            used = sorted({c.currency for c in contracts if c.currency != self.base})
            raise Conflict(
                f"The annual cost converted to {self.base} adds up to {fmt(MAX_MINOR, self.base)} or more, more "
                f"than a total may be: check the exchange rates to {self.base} ({', '.join(used) or 'none used'}) "
                "and the contracts' costs.",
                currencies=used,
            )
        return out

    async def overlaps(self, uow: UnitOfWork) -> stack_schemas.Overlaps:
        """Capabilities that two or more active tools share, with those tools' combined annual cost,
        most expensive first."""
        query = select(Tool.id, Tool.name, Tool.capabilities).where(Tool.lifecycle == "active").order_by(Tool.name)
        by_cap: dict[str, list[Any]] = defaultdict(list)
        for t in (await uow.execute(query)).all():
            for cap in t.capabilities:
                by_cap[cap].append(t)
        shared = {cap: ts for cap, ts in by_cap.items() if len(ts) > 1}
        costs = await self.annual_by_tool(uow, {t.id for ts in shared.values() for t in ts})
        totals = {cap: sum(costs.get(t.id, 0) for t in ts) for cap, ts in shared.items()}
        items = [
            stack_schemas.Overlap(
                capability=cap,
                tools=[t.id for t in shared[cap]],
                tool_names=[t.name for t in shared[cap]],
                annual_cost=fmt(totals[cap], self.base),
                currency=self.base,
            )
            for cap in sorted(shared, key=lambda cap: (-totals[cap], cap))
        ]
        return stack_schemas.Overlaps(currency=self.base, items=items)

    async def by_group(self, uow: UnitOfWork, *, group_by: Literal["category", "team"]) -> stack_schemas.Costs:
        """Annualized cost of the live stack (tools not retired, active contracts) by category or team."""
        query = select(Tool.id, Tool.category, Tool.owner_team).where(Tool.lifecycle != "retired")
        tools = (await uow.execute(query)).all()
        costs = await self.annual_by_tool(uow, {t.id for t in tools})
        minor: dict[str | None, int] = defaultdict(int)
        count: dict[str | None, int] = defaultdict(int)
        for t in tools:
            key = t.category if group_by == "category" else t.owner_team
            minor[key] += costs.get(t.id, 0)
            count[key] += 1
        ordered = sorted(minor, key=lambda g: (-minor[g], g or ""))
        return stack_schemas.Costs(
            group_by=group_by,
            currency=self.base,
            items=[
                stack_schemas.CostGroup(group=g, annual_cost=fmt(minor[g], self.base), tools=count[g]) for g in ordered
            ],
            total=fmt(sum(costs.values()), self.base),
        )


def _rate(r: FxRate) -> stack_schemas.FxRateOut:
    return stack_schemas.FxRateOut(
        base_currency=r.base_currency, currency=r.currency, rate=r.rate, updated_at=r.updated_at
    )
