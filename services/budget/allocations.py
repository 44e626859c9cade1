"""Allocations (money given to a line for a period) and transfers (money moved between two lines of
one plan). A transfer is checked whatever the plan's overspend policy: money that is not there
cannot be moved. A draft plan takes allocations (the budget being built, recorded and locked when the
plan is activated) and nothing else."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from services.budget import events, fx
from services.budget.lines import get_line
from services.budget.postings import Leg, Postings, entry_event, entry_view, postable
from shared.errors import Invalid
from shared.identity import Principal
from shared.money import fmt
from shared.uow import UnitOfWork


async def allocate(
    uow: UnitOfWork,
    who: Principal,
    *,
    postings: Postings,
    line_id: str,
    period: str,
    amount: Decimal,
    currency: str,
    date: dt.date | None = None,
    memo: str | None = None,
    external_ref: str | None = None,
) -> dict[str, Any]:
    async def post(cached: bool) -> dict[str, Any]:
        ln, p = await postings.target(uow, who, line_id, period=period, cached=cached)
        on = await postable(uow, p, period, date, draft=True)  # a draft's allocations are its budget to be
        m = await fx.in_plan_currency(uow, p, amount, currency, on)
        leg = Leg(ln, period, "allocation", m.minor, (m.minor, 0, 0, 0), m, on, memo=memo, external_ref=external_ref)
        event = postings.event(events.ALLOCATION_POSTED, leg.id, entry_event(leg, p))
        written = await postings.write(uow, who, p, [leg], check=False, events=[event], last=True)
        return entry_view(written.entries[leg.id], p.currency, ln.code)

    return await postings.cached_first(uow, line_id, post)


async def transfer(
    uow: UnitOfWork,
    who: Principal,
    *,
    postings: Postings,
    from_line_id: str,
    to_line_id: str,
    period: str,
    amount: Decimal,
    currency: str,
    date: dt.date | None = None,
    memo: str | None = None,
) -> dict[str, Any]:
    if from_line_id == to_line_id:
        raise Invalid.on("to_line_id", "must differ from from_line_id")
    src, p = await postings.target(uow, who, from_line_id, "from_line_id", period=period)
    dst = await get_line(uow, who, to_line_id, "to_line_id")
    if dst.plan_id != src.plan_id:
        raise Invalid.on("to_line_id", "belongs to another plan; transfers stay inside one plan", "cross_plan")
    on = await postable(uow, p, period, date)
    m = await fx.in_plan_currency(uow, p, amount, currency, on)
    out = Leg(src, period, "transfer_out", m.minor, (-m.minor, 0, 0, 0), m, on, memo=memo)
    inn = Leg(dst, period, "transfer_in", m.minor, (m.minor, 0, 0, 0), m, on, memo=memo)
    group = out.id
    data = events.BudgetTransferPosted(
        **entry_event(inn, p).model_dump(),
        transfer_id=group,
        from_entry_id=out.id,
        from_line_id=src.id,
        from_line_code=src.code,
        to_line_id=dst.id,
        to_line_code=dst.code,
        from_dimensions=src.dimensions,
    )
    event = postings.event(events.TRANSFER_POSTED, inn.id, data)
    # Money that is not there cannot be moved, whatever the overspend policy.
    written = await postings.write(uow, who, p, [out, inn], check=True, group_id=group, events=[event])
    return {
        "id": group,
        "plan_id": p.id,
        "period": period,
        "amount": fmt(m.minor, p.currency),
        "currency": p.currency,
        "from_line_id": src.id,
        "to_line_id": dst.id,
        "entries": [entry_view(written.entries[leg.id], p.currency, leg.line.code) for leg in (out, inn)],
    }
