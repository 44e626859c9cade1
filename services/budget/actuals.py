"""Actuals: money spent on a line, optionally against a committed commitment, which it consumes
(up to what is left of it; the commitment closes once fully consumed).

An actual is a fact, not a request: it is always posted, whatever the plan's overspend policy. One that
leaves its line with negative available money is marked `overspend` and publishes budget.line.overspent."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from services.budget import campaigns, commitments, events, fx
from services.budget.figures import refuses
from services.budget.lines import get_line
from services.budget.models import commitments as commitments_table
from services.budget.plans import Plan
from services.budget.postings import Leg, Money, Postings, Raced, Written, entry_event, entry_view, lock, postable
from shared.errors import Conflict, Invalid
from shared.identity import Principal
from shared.money import fmt
from shared.uow import UnitOfWork


def actual_data(leg: Leg, p: Plan, on: dt.date, m: Money, **extra: Any) -> events.BudgetActualPosted:
    """The data of budget.actual.posted: the entry, its day as an instant and the amount as given."""
    return events.BudgetActualPosted(
        **entry_event(leg, p).model_dump(),
        date=dt.datetime.combine(on, dt.time(), dt.UTC).isoformat(),
        original_amount=fmt(m.original_minor, m.original_currency),
        original_currency=m.original_currency,
        **extra,
    )


async def post_actual(
    uow: UnitOfWork,
    who: Principal,
    *,
    postings: Postings,
    line_id: str,
    period: str,
    amount: Decimal,
    currency: str,
    date: dt.date | None = None,
    commitment_id: str | None = None,
    external_ref: str | None = None,
    memo: str | None = None,
    vendor: str | None = None,
    campaign_id: str | None = None,
) -> dict[str, Any]:
    ln, p = await postings.target(uow, who, line_id, period=period)
    on = await postable(uow, p, period, date)
    m = await fx.in_plan_currency(uow, p, amount, currency, on)
    keys = [(ln, period)]
    c, c_line = await _against(uow, who, p, commitment_id)
    if c is not None and c_line is not None:
        keys.append((c_line, c.period))
        campaign_id = campaign_id or c.campaign_id  # an invoice funds what its order was for
    camp = await campaigns.referenced(uow, p, ln, campaign_id)
    await lock(uow, p, keys)
    leg = Leg(
        ln,
        period,
        "actual",
        m.minor,
        (0, 0, 0, m.minor),
        m,
        on,
        commitment_id=commitment_id,
        external_ref=external_ref,
        vendor=vendor,
        memo=memo,
        campaign_id=campaign_id,
    )
    legs = [leg]
    consume = 0
    if c is not None:
        c, consume = await _consume(uow, p, c, c_line, period, m, on, external_ref, legs)
    # A fact is never refused: the overspend it causes is reported, not prevented.
    written = await postings.write(uow, who, p, legs, check=False, watch=(ln, period))
    overspend = await _overspent(uow, p, leg, written, external_ref=external_ref, vendor=vendor)
    status = None
    if c is not None:
        consumed = c.consumed_minor + consume
        status = (await commitments.set_status(uow, c, _after(c, consumed), None, consumed_minor=consumed)).status
    data = actual_data(
        leg,
        p,
        on,
        m,
        commitment_id=commitment_id,
        external_ref=external_ref,
        vendor=vendor,
        campaign_id=campaign_id,
        campaign_code=camp.code if camp is not None else None,
    )
    await uow.publish(events.ACTUAL_POSTED, leg.id, data)
    return {
        **entry_view(written.entries[leg.id], p.currency, ln.code),
        "commitment_status": status,
        "consumed": fmt(consume, p.currency),
        "overspend": overspend,
    }


async def _against(uow: UnitOfWork, who: Principal, p: Plan, commitment_id: str | None) -> tuple[Any, Any]:
    """The commitment an actual consumes (of this plan) and its line, or (None, None)."""
    if commitment_id is None:
        return None, None
    c = (await uow.execute(select(commitments_table).where(commitments_table.c.id == commitment_id))).first()
    if c is None:
        raise Invalid.on("commitment_id", f"no commitment {commitment_id!r}", "not_found")
    if c.plan_id != p.id:
        raise Invalid.on("commitment_id", "belongs to another plan")
    return c, await get_line(uow, who, c.line_id, "commitment_id")


def _after(c: Any, consumed: int) -> str:
    """A commitment consumed in full is closed; in part it stays committed."""
    return "closed" if consumed >= c.amount_minor else "committed"


async def _overspent(
    uow: UnitOfWork, p: Plan, leg: Leg, written: Written, *, external_ref: str | None, vendor: str | None
) -> bool:
    """Whether the actual took its line below zero available over the plan's control period (publishing
    budget.line.overspent if so)."""
    _, before, after = written.in_control((leg.line.id, leg.period))
    if not refuses(before, after):
        return False
    cur = p.currency
    data = events.BudgetLineOverspent(
        entry_id=leg.id,
        plan_id=p.id,
        line_id=leg.line.id,
        line_code=leg.line.code,
        period=leg.period,
        amount=fmt(leg.amount, cur),
        available=fmt(after.available, cur),
        overspent_by=fmt(-after.available, cur),
        currency=cur,
        external_ref=external_ref,
        vendor=vendor,
        dimensions=leg.line.dimensions,
    )
    await uow.publish(events.OVERSPENT, leg.line.id, data)
    return True


async def _consume(
    uow: UnitOfWork,
    p: Plan,
    read: Any,
    c_line: Any,
    period: str,
    m: Money,
    on: dt.date,
    external_ref: str | None,
    legs: list[Leg],
) -> tuple[Any, int]:
    """The commitment, locked, and how much of the actual it takes (adding the consumption leg)."""
    c = await commitments.get_row(uow, read.id, lock=True)
    if (c.line_id, c.period) != (read.line_id, read.period):
        raise Raced(c.id)  # moved since the first read: its balances are not the ones locked
    if c.status != "committed":
        raise Conflict(f"Commitment {c.id} is {c.status}; actuals can only consume a committed commitment.")
    if c.period != period:
        await postable(uow, p, c.period, None)
    consume = min(m.minor, c.amount_minor - c.consumed_minor)
    if consume:
        legs.append(
            Leg(
                c_line,
                c.period,
                "consumption",
                consume,
                (0, -consume, 0, 0),
                m,
                on,
                commitment_id=c.id,
                external_ref=external_ref,
                campaign_id=c.campaign_id,
            )
        )
    return c, consume
