"""The savings report: what cancellations and seat reductions save per year, summed per period.

- a **cancellation** saves the annual cost of the term that does not renew: a term whose notice was
  given saves from the month after its end; a contract cancelled outright from the month it was;
- a renewal whose next term costs less saves the difference of annual costs from the month the new
  term starts: a **seat reduction** when it has fewer seats, a **renegotiation** otherwise.
Amounts are in the base currency (a missing FX rate is a 409, as in the cost reports).

Each saving is also published when it happens (`registry.saving.recorded`, `publish_*` below, called
by the contract changes that make one; a renewal after a notice publishes the notice's saving back,
negative) and the KPI service records it as a `stack_savings` measurement in the contract's
currency; the report's `measurements` are those same measurements (same source and
external_id: posting them again is a duplicate, never a double count).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import select

from services.registry import events, stack_schemas
from services.registry.models import Contract, ContractTerm, FxRate, Tool
from services.registry.terms import annual_minor
from shared.errors import Conflict
from shared.money import convert, fmt, from_minor
from shared.uow import UnitOfWork

Kind = Literal["cancellation", "seat_reduction", "renegotiation"]
Published = Literal["cancellation", "seat_reduction", "renegotiation", "cancellation_withdrawn"]
MEASUREMENT: Literal["stack_savings"] = "stack_savings"  # the KPI service's measurement type (and metric) of a saving


@dataclass(frozen=True)
class Terms:
    """What a saving compares: a term's annual cost, currency and seats."""

    annual_minor: int
    currency: str
    seats: int | None

    @classmethod
    def of(cls, c: Contract | ContractTerm) -> Terms:
        return cls(annual_minor(c.cost_minor, c.billing_period), c.currency, c.seats)


def _month(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def saving_id(contract_id: str, term: int, kind: str) -> str:
    return f"{contract_id}:{term}:{kind}"


async def publish_cancellation(uow: UnitOfWork, c: Contract, tool: Tool, *, effective_on: dt.date) -> None:
    """The current term does not renew: it saves its annual cost from `effective_on`."""
    await _publish(uow, c, tool, "cancellation", c.term, effective_on, Terms.of(c), seats=(c.seats, None))


async def publish_withdrawn(uow: UnitOfWork, c: Contract, tool: Tool, *, term: int, before: Terms) -> None:
    """Term `term` (`before`), whose notice was given, renewed after all into the term `c` now has: its
    cancellation's saving, negative, from the month it would have started."""
    day = c.start
    await _publish(uow, c, tool, "cancellation_withdrawn", term, day, before, seats=(before.seats, None), sign=-1)


async def publish_cut(uow: UnitOfWork, c: Contract, tool: Tool, before: Terms) -> None:
    """The term `c` just started costs less per year than `before` (same currency): the difference."""
    after = Terms.of(c)
    if after.currency != before.currency or after.annual_minor >= before.annual_minor:
        return
    fewer = before.seats is not None and after.seats is not None and after.seats < before.seats
    kind: Kind = "seat_reduction" if fewer else "renegotiation"
    cut = Terms(before.annual_minor - after.annual_minor, after.currency, after.seats)
    await _publish(uow, c, tool, kind, c.term, c.start, cut, seats=(before.seats, after.seats))


async def _publish(
    uow: UnitOfWork,
    c: Contract,
    tool: Tool,
    kind: Published,
    term: int,
    effective_on: dt.date,
    saved: Terms,
    *,
    seats: tuple[int | None, int | None],
    sign: int = 1,
) -> None:
    data = events.RegistrySavingRecorded(
        saving_id=saving_id(c.id, term, kind),
        contract_id=c.id,
        tool_id=tool.id,
        tool_name=tool.name,
        term=term,
        kind=kind,
        effective_on=effective_on,
        period=_month(effective_on),
        annual_saving=from_minor(sign * saved.annual_minor, saved.currency),
        currency=saved.currency,
        seats_before=seats[0],
        seats_after=seats[1],
    )
    await uow.publish(events.SAVING_RECORDED, c.id, data)


@dataclass(frozen=True)
class Found:
    c: Contract
    kind: Kind
    term: int
    effective_on: dt.date
    minor: int
    seats_before: int | None
    seats_after: int | None
    currency: str


def _found(c: Contract, history: list[Any]) -> list[Found]:
    """The savings one contract's terms and status show (the ones `publish_*` published as they happened)."""
    out = []
    for before, after in zip(history, history[1:], strict=False):
        cut = (Terms.of(before), Terms.of(after))
        if cut[0].currency == cut[1].currency and cut[1].annual_minor < cut[0].annual_minor:
            fewer = cut[0].seats is not None and cut[1].seats is not None and cut[1].seats < cut[0].seats
            kind: Kind = "seat_reduction" if fewer else "renegotiation"
            minor = cut[0].annual_minor - cut[1].annual_minor
            out.append(Found(c, kind, after.term, after.start, minor, before.seats, after.seats, after.currency))
    yearly = annual_minor(c.cost_minor, c.billing_period)
    if c.notice_given_at is not None:  # notice first: the term runs out (a later outright cancel saves no more)
        out.append(Found(c, "cancellation", c.term, c.end + dt.timedelta(days=1), yearly, c.seats, None, c.currency))
    elif c.status == "cancelled" and c.cancelled_at is not None:
        out.append(Found(c, "cancellation", c.term, c.cancelled_at.date(), yearly, c.seats, None, c.currency))
    return out


async def report(uow: UnitOfWork, *, base: str, since: str | None, until: str | None) -> stack_schemas.SavingsReport:
    rates = {
        r.currency: Decimal(r.rate)
        for r in (await uow.scalars(select(FxRate).where(FxRate.base_currency == base))).all()
    }
    names = {r.id: r.name for r in await uow.execute(select(Tool.id, Tool.name))}
    terms: dict[str, list[Any]] = defaultdict(list)
    for t in (await uow.scalars(select(ContractTerm).order_by(ContractTerm.contract_id, ContractTerm.term))).all():
        terms[t.contract_id].append(t)
    found = [
        f
        for c in (await uow.scalars(select(Contract))).all()
        for f in _found(c, terms.get(c.id, []))
        if (since is None or _month(f.effective_on) >= since) and (until is None or _month(f.effective_on) <= until)
    ]
    missing = sorted({f.currency for f in found if f.currency != base and f.currency not in rates})
    if missing:
        raise Conflict(
            f"No exchange rate to {base} for {', '.join(missing)}: post one to /v1/fx-rates first.",
            missing_rates=missing,
        )
    priced = [
        (
            f,
            stack_schemas.Saving(
                contract_id=f.c.id,
                tool_id=f.c.tool_id,
                tool_name=names.get(f.c.tool_id, ""),
                kind=f.kind,
                period=_month(f.effective_on),
                annual_saving=fmt(value, base),
                seats_before=f.seats_before,
                seats_after=f.seats_after,
            ),
            value,
        )
        for f in found
        for value in (convert(f.minor, f.currency, base, rates.get(f.currency, Decimal(1))),)
    ]
    priced.sort(key=lambda p: (p[1].period, p[1].tool_name, p[1].contract_id))
    return _summed(priced, base)


def _summed(priced: list[tuple[Found, stack_schemas.Saving, int]], base: str) -> stack_schemas.SavingsReport:
    minor: dict[str, int] = defaultdict(int)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for _, s, value in priced:
        minor[s.period] += value
        counts[s.period][0 if s.kind == "cancellation" else 1] += 1
    periods = [
        stack_schemas.SavingsPeriod(
            period=p, annual_saving=fmt(minor[p], base), cancellations=counts[p][0], reductions=counts[p][1]
        )
        for p in sorted(minor)
    ]
    measurements = [  # what the KPI service recorded from `registry.saving.recorded` (services/kpi/handlers.py)
        stack_schemas.KpiMeasurement(
            type=MEASUREMENT,
            value=fmt(f.minor, f.currency),
            time=f"{f.effective_on.isoformat()}T00:00:00+00:00",
            dimensions={"currency": f.currency, "kind": f.kind},
            source="registry",
            external_id=saving_id(f.c.id, f.term, f.kind),
        )
        for f, _, _ in priced
    ]
    return stack_schemas.SavingsReport(
        currency=base,
        periods=periods,
        items=[s for _, s, _ in priced],
        total_annual_saving=fmt(sum(minor.values()), base),
        measurements=measurements,
    )
