"""Reversals: a posting undone by its mirror image (the same legs with every delta negated), never by
changing the ledger. Allocations, transfers and actuals (with the consumption they made) reverse;
commitments are released or changed instead, and a reversal is not itself reversed."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from services.budget import commitments, events
from services.budget.lines import get_line
from services.budget.models import entries
from services.budget.plans import Plan, get_plan
from services.budget.postings import Leg, Money, Postings, entry, entry_event, entry_view, lock, postable
from shared.errors import Conflict
from shared.identity import Principal
from shared.money import fmt
from shared.uow import UnitOfWork

# Entry kinds a person may reverse; commitments are released instead.
REVERSIBLE = {"allocation", "transfer_out", "transfer_in", "actual", "consumption"}


def check_reversible(kinds: list[str], target_kind: str) -> None:
    """Refuse a group holding a reversal, or any entry that is not reversed (a commitment's)."""
    if "reversal" in kinds:
        raise Conflict("A reversal cannot itself be reversed; post a new entry instead.")
    if any(k not in REVERSIBLE for k in kinds):
        raise Conflict(f"A {target_kind} entry is not reversed; release or change the commitment instead.")


async def reverse(
    uow: UnitOfWork, who: Principal, *, postings: Postings, entry_id: str, memo: str | None = None
) -> dict[str, Any]:
    target = await entry(uow, entry_id)
    group = (
        await uow.execute(select(entries).where(entries.c.group_id == target.group_id).order_by(entries.c.seq))
    ).all()
    check_reversible([e.kind for e in group], target.kind)
    p = await get_plan(uow, target.plan_id)
    line_rows = {}
    for e in group:
        line_rows[e.line_id] = await get_line(uow, who, e.line_id, "path.entry_id")
    for per in sorted({e.period for e in group}):
        await postable(uow, p, per, None, "path.entry_id")
    await lock(uow, p, [(line_rows[e.line_id], e.period) for e in group])
    if await uow.scalar(select(entries.c.id).where(entries.c.reverses_group_id == target.group_id).limit(1)):
        raise Conflict(f"Entry {entry_id} has already been reversed.")
    legs: list[Leg] = []
    sources: list[Any] = []
    restore: dict[str, int] = {}
    for e in group:
        if e.kind == "consumption":
            c = await commitments.get_row(uow, e.commitment_id, lock=True)
            if c.status == "released":
                continue  # its open remainder was released; nothing to hand back
            restore[c.id] = restore.get(c.id, 0) + e.amount_minor
        legs.append(_mirror(e, line_rows[e.line_id], target.group_id, memo))
        sources.append(e)
    written = await postings.write(uow, who, p, legs, check=p.overspend_policy == "block")
    for cid, amount in restore.items():
        c = await commitments.get_row(uow, cid)
        await commitments.set_status(uow, c, "committed", None, consumed_minor=c.consumed_minor - amount)
    for e, leg in zip(sources, legs, strict=True):
        await _publish(uow, e, leg, p)
    return {
        "id": written.group_id,
        "reverses_group_id": target.group_id,
        "entries": [entry_view(written.entries[leg.id], p.currency, leg.line.code) for leg in legs],
    }


def _mirror(e: Any, line: Any, group_id: str, memo: str | None) -> Leg:
    m = Money(e.original_amount_minor, e.original_currency, e.amount_minor, e.fx_rate)
    return Leg(
        line,
        e.period,
        "reversal",
        e.amount_minor,
        (-e.d_allocated, -e.d_committed, -e.d_pending, -e.d_spent),
        m,
        e.entry_date,
        commitment_id=e.commitment_id,
        external_ref=e.external_ref,
        memo=memo,
        reverses_group_id=group_id,
    )


async def _publish(uow: UnitOfWork, e: Any, leg: Leg, p: Plan) -> None:
    """Consumers that sum allocations and actuals (KPI's spend) are corrected by the negative amount."""
    base = entry_event(leg, p).model_copy(update={"amount": fmt(-leg.amount, p.currency), "reverses_entry_id": e.id})
    if e.kind == "allocation":
        await uow.publish(events.ALLOCATION_POSTED, leg.id, base)
    elif e.kind == "actual":
        data = events.BudgetActualPosted(
            **base.model_dump(),
            date=dt.datetime.combine(e.entry_date, dt.time(), dt.UTC).isoformat(),
            original_amount=fmt(-e.original_amount_minor, e.original_currency),
            original_currency=e.original_currency,
            commitment_id=e.commitment_id,
            external_ref=e.external_ref,
            vendor=e.vendor,
        )
        await uow.publish(events.ACTUAL_POSTED, leg.id, data)
