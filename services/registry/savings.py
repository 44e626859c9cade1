"""The savings report: what cancellations and seat reductions save per year, summed per period.

- a **cancellation** saves the annual cost of the term that does not renew: a term whose notice was
  given saves from the month after its end; a contract cancelled outright from the month it was;
- a renewal whose next term costs less saves the difference of annual costs from the month the new
  term starts: a **seat reduction** when it has fewer seats, a **renegotiation** otherwise.
Amounts are in the base currency (a missing FX rate is a 409, as in the cost reports). Each period's
sum is also given as a KPI measurement (`tool_savings`) the KPI service can take.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import select

from services.registry import stack_schemas
from services.registry.models import Contract, ContractTerm, FxRate, Tool
from services.registry.terms import annual_minor
from shared.errors import Conflict
from shared.money import convert, fmt
from shared.uow import UnitOfWork

Kind = Literal["cancellation", "seat_reduction", "renegotiation"]


def _month(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


async def report(uow: UnitOfWork, *, base: str, since: str | None, until: str | None) -> stack_schemas.SavingsReport:
    rates = {
        r.currency: Decimal(r.rate)
        for r in (await uow.scalars(select(FxRate).where(FxRate.base_currency == base))).all()
    }
    names = {r.id: r.name for r in await uow.execute(select(Tool.id, Tool.name))}
    contracts = {c.id: c for c in (await uow.scalars(select(Contract))).all()}
    terms: dict[str, list[Any]] = defaultdict(list)
    for t in (await uow.scalars(select(ContractTerm).order_by(ContractTerm.contract_id, ContractTerm.term))).all():
        terms[t.contract_id].append(t)
    found: list[tuple[Any, Kind, str, int, int | None, int | None, str]] = []
    for c in contracts.values():
        history = terms.get(c.id, [])
        for before, after in zip(history, history[1:], strict=False):
            cut = (
                annual_minor(before.cost_minor, before.billing_period),
                annual_minor(after.cost_minor, after.billing_period),
            )
            if before.currency == after.currency and cut[1] < cut[0]:
                fewer = before.seats is not None and after.seats is not None and after.seats < before.seats
                kind: Kind = "seat_reduction" if fewer else "renegotiation"
                found.append((c, kind, _month(after.start), cut[0] - cut[1], before.seats, after.seats, c.currency))
        yearly = annual_minor(c.cost_minor, c.billing_period)
        if c.status == "cancelled" and c.cancelled_at is not None:
            found.append((c, "cancellation", _month(c.cancelled_at.date()), yearly, c.seats, None, c.currency))
        elif c.notice_given_at is not None:
            found.append((c, "cancellation", _month(c.end + dt.timedelta(days=1)), yearly, c.seats, None, c.currency))
    missing = sorted({f[6] for f in found if f[6] != base and f[6] not in rates})
    if missing:
        raise Conflict(
            f"No exchange rate to {base} for {', '.join(missing)}: post one to /v1/fx-rates first.",
            missing_rates=missing,
        )
    priced = [
        (
            stack_schemas.Saving(
                contract_id=c.id,
                tool_id=c.tool_id,
                tool_name=names.get(c.tool_id, ""),
                kind=kind,
                period=period,
                annual_saving=fmt(value, base),
                seats_before=seats_before,
                seats_after=seats_after,
            ),
            value,
        )
        for c, kind, period, minor, seats_before, seats_after, cur in found
        if (since is None or period >= since) and (until is None or period <= until)
        for value in (convert(minor, cur, base, rates.get(cur, Decimal(1))),)
    ]
    priced.sort(key=lambda p: (p[0].period, p[0].tool_name, p[0].contract_id))
    return _summed(priced, base)


def _summed(priced: list[tuple[stack_schemas.Saving, int]], base: str) -> stack_schemas.SavingsReport:
    minor: dict[str, int] = defaultdict(int)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s, value in priced:
        minor[s.period] += value
        counts[s.period][0 if s.kind == "cancellation" else 1] += 1
    periods = [
        stack_schemas.SavingsPeriod(
            period=p, annual_saving=fmt(minor[p], base), cancellations=counts[p][0], reductions=counts[p][1]
        )
        for p in sorted(minor)
    ]
    measurements = [
        stack_schemas.KpiMeasurement(
            type="tool_savings",
            value=p.annual_saving,
            time=f"{p.period}-01T00:00:00+00:00",
            dimensions={"currency": base},
            source="registry",
            external_id=f"registry:savings:{p.period}",
        )
        for p in periods
    ]
    return stack_schemas.SavingsReport(
        currency=base,
        periods=periods,
        items=[s for s, _ in priced],
        total_annual_saving=fmt(sum(minor.values()), base),
        measurements=measurements,
    )
