"""Commitments: money promised on a line before it is spent. Under policy `block` a commitment that
does not fit is refused; under `require_approval` it waits as `pending_approval` (over the plan's
threshold or over what is available) until finance or a workflow approves or rejects it. Actuals
consume a committed commitment; releasing one hands its open remainder back.

Flows that lock a commitment lock its balance rows first, always in that order (`open_commitment`),
so they queue behind postings on the same rows instead of deadlocking with them.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Row

from services.budget import events, fx
from services.budget.lines import DIMENSIONS, ancestors, get_line
from services.budget.models import commitments
from services.budget.periods import control_scope
from services.budget.plans import Plan, get_plan
from services.budget.postings import Key, Leg, Money, Postings, Raced, lock, new_id, postable
from shared.contracts import EventSpec
from shared.db import utcnow
from shared.errors import Conflict, FieldError, Invalid, NotFound
from shared.identity import Principal
from shared.money import fmt
from shared.uow import UnitOfWork

OPEN_STATUSES = ("pending_approval", "committed")


def commitment_view(c: Any, plan: Plan, line: Any) -> dict[str, Any]:
    """A commitment as the API shows it (`schemas.CommitmentOut`)."""
    cur = plan.currency
    return {
        "id": c.id,
        "plan_id": c.plan_id,
        "line_id": c.line_id,
        "line_code": line.code,
        "period": c.period,
        "date": c.entry_date.isoformat(),
        "status": c.status,
        "amount": fmt(c.amount_minor, cur),
        "currency": cur,
        "consumed": fmt(c.consumed_minor, cur),
        "remaining": fmt(c.amount_minor - c.consumed_minor if c.status in OPEN_STATUSES else 0, cur),
        "original_amount": fmt(c.original_amount_minor, c.original_currency),
        "original_currency": c.original_currency,
        "fx_rate": c.fx_rate,
        "reason": c.reason,
        "external_ref": c.external_ref,
        "external_revision": c.external_revision,
        "vendor": c.vendor,
        "memo": c.memo,
        "requested_by": c.requested_by,
        "decided_by": c.decided_by,
        "version": c.version,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    }


def commitment_data(c: Any, p: Plan, ln: Any, spec: EventSpec[Any]) -> events.BudgetCommitmentRequested:
    """The data of a budget.commitment.* event; every subject but `requested` carries the status."""
    data = dict(
        commitment_id=c.id,
        plan_id=p.id,
        line_id=ln.id,
        line_code=ln.code,
        period=c.period,
        amount=fmt(c.amount_minor, p.currency),
        currency=p.currency,
        original_amount=fmt(c.original_amount_minor, c.original_currency),
        original_currency=c.original_currency,
        external_ref=c.external_ref,
        memo=c.memo,
        requested_by=c.requested_by,
        reason=c.reason,
        dimensions={d: (ln.dimensions or {}).get(d) for d in DIMENSIONS},
    )
    if spec is events.COMMITMENT_REQUESTED:
        return events.BudgetCommitmentRequested(**data)
    return events.BudgetCommitmentStatus(**data, status=c.status)


async def get_row(uow: UnitOfWork, commitment_id: str, *, lock: bool = False) -> Row[Any]:
    q = select(commitments).where(commitments.c.id == commitment_id)
    if lock:
        q = q.with_for_update()
    row = (await uow.execute(q)).first()
    if row is None:
        raise NotFound(f"No commitment {commitment_id}.")
    return row


async def get_commitment(uow: UnitOfWork, who: Principal, *, postings: Postings, commitment_id: str) -> dict[str, Any]:
    c = await get_row(uow, commitment_id)
    ln, p = await postings.target(uow, who, c.line_id)
    return commitment_view(c, p, ln)


async def create_commitment(
    uow: UnitOfWork,
    who: Principal,
    *,
    postings: Postings,
    line_id: str,
    period: str,
    amount: Decimal,
    currency: str,
    date: dt.date | None = None,
    external_ref: str | None = None,
    memo: str | None = None,
    vendor: str | None = None,
    external_revision: int | None = None,
) -> dict[str, Any]:
    async def post(cached: bool) -> dict[str, Any]:
        ln, p = await postings.target(uow, who, line_id, period=period, cached=cached)
        on = await postable(uow, p, period, date)
        m = await fx.in_plan_currency(uow, p, amount, currency, on)
        if external_ref is not None and await uow.scalar(
            select(commitments.c.id).where(commitments.c.external_ref == external_ref)
        ):
            raise Conflict(
                f"A commitment with external_ref {external_ref!r} already exists.",
                errors=[FieldError("external_ref", "already used by another commitment", "duplicate")],
            )
        reason = await _needs_approval(uow, p, ln, period, m.minor)
        values = _new_row(p, ln, period, on, m, reason, who, external_ref, external_revision, vendor, memo)
        c = SimpleNamespace(**values)
        leg = Leg(
            ln,
            period,
            "commitment",
            m.minor,
            (0, 0, m.minor, 0) if reason else (0, m.minor, 0, 0),
            m,
            on,
            commitment_id=c.id,
            external_ref=external_ref,
            vendor=vendor,
            memo=memo,
        )
        spec = events.COMMITMENT_REQUESTED if reason else events.COMMITMENT_COMMITTED
        event = postings.event(spec, c.id, commitment_data(c, p, ln, spec))
        await postings.write(
            uow,
            who,
            p,
            [leg],
            check=p.overspend_policy == "block",
            commitment=values,
            events=[event],
            watch=(ln, period),
            last=True,
        )
        return commitment_view(c, p, ln)

    return await postings.cached_first(uow, line_id, post)


async def _needs_approval(uow: UnitOfWork, p: Plan, ln: Any, period: str, minor: int) -> str | None:
    """Why a new commitment waits for approval (`threshold`, `over_available`), or None."""
    over_threshold = p.approval_threshold_minor is not None and minor > p.approval_threshold_minor
    if p.overspend_policy == "block":
        # Nothing here depends on the figures: the writer locks the balance rows as its last statement and
        # refuses with a 409 naming the shortfall when the commitment does not fit.
        return "threshold" if over_threshold else None
    # require_approval: whether it fits decides its status, so the figures are locked and read first
    # (every month of the plan's control period containing `period`, summed per line).
    _, months = control_scope(p, p.control_period, period)
    locked = await lock(uow, p, [(ln, period)])
    available = min(
        sum(
            locked[(a, m)].allocated - locked[(a, m)].committed - locked[(a, m)].pending - locked[(a, m)].spent
            for m in months
        )
        for a in ancestors(ln.path)
    )
    if minor > available:
        return "over_available"
    return "threshold" if over_threshold else None


def _new_row(
    p: Plan,
    ln: Any,
    period: str,
    on: dt.date,
    m: Money,
    reason: str | None,
    who: Principal,
    external_ref: str | None,
    external_revision: int | None,
    vendor: str | None,
    memo: str | None,
) -> dict[str, Any]:
    now = utcnow()
    return dict(
        id=new_id(),
        plan_id=p.id,
        line_id=ln.id,
        period=period,
        entry_date=on,
        status="pending_approval" if reason else "committed",
        amount_minor=m.minor,
        consumed_minor=0,
        original_amount_minor=m.original_minor,
        original_currency=m.original_currency,
        fx_rate=m.rate,
        reason=reason,
        external_ref=external_ref,
        external_revision=external_revision,
        vendor=vendor,
        memo=memo,
        requested_by=who.subject,
        decided_by=None,
        version=1,
        created_at=now,
        updated_at=now,
    )


async def open_commitment(
    uow: UnitOfWork, who: Principal | None, postings: Postings, commitment_id: str
) -> tuple[Row[Any], Any, Plan, dict[Key, Any]]:
    """Lock the commitment's balances, then the commitment itself (always in that order), and make
    sure it still sits where the balances were locked."""
    c = await get_row(uow, commitment_id)
    ln, p = await postings.target(uow, who, c.line_id)
    locked = await lock(uow, p, [(ln, c.period)])
    now = await get_row(uow, commitment_id, lock=True)
    if (now.line_id, now.period) != (c.line_id, c.period):
        raise Raced(commitment_id)
    return now, ln, p, locked


async def publish(uow: UnitOfWork, c: Any, p: Plan, ln: Any, spec: EventSpec[Any]) -> None:
    await uow.publish(spec, c.id, commitment_data(c, p, ln, spec))


async def approve(uow: UnitOfWork, who: Principal, *, postings: Postings, commitment_id: str) -> dict[str, Any]:
    c, ln, p, _ = await open_commitment(uow, who, postings, commitment_id)
    if c.status != "pending_approval":
        raise Conflict(f"Commitment {c.id} is {c.status}; only a pending_approval commitment can be approved.")
    await postable(uow, p, c.period, None)
    m = Money(c.original_amount_minor, c.original_currency, c.amount_minor, c.fx_rate)
    leg = Leg(
        ln,
        c.period,
        "approval",
        c.amount_minor,
        (0, c.amount_minor, -c.amount_minor, 0),
        m,
        c.entry_date,
        commitment_id=c.id,
        external_ref=c.external_ref,
    )
    await postings.write(uow, who, p, [leg], check=False)
    c = await set_status(uow, c, "committed", who)
    await publish(uow, c, p, ln, events.COMMITMENT_COMMITTED)
    return commitment_view(c, p, ln)


async def release(uow: UnitOfWork, who: Principal, *, postings: Postings, commitment_id: str) -> dict[str, Any]:
    c, ln, p, _ = await open_commitment(uow, who, postings, commitment_id)
    if c.status not in OPEN_STATUSES:
        raise Conflict(f"Commitment {c.id} is {c.status}; only an open commitment can be released.")
    await postable(uow, p, c.period, None)
    c = await release_locked(uow, who, postings, c, ln, p)
    return commitment_view(c, p, ln)


async def release_locked(uow: UnitOfWork, who: Principal, postings: Postings, c: Any, ln: Any, p: Plan) -> Any:
    """Hand an open commitment's remainder back (its rows are locked by `open_commitment`)."""
    remaining = c.amount_minor - c.consumed_minor
    deltas = (0, 0, -remaining, 0) if c.status == "pending_approval" else (0, -remaining, 0, 0)
    m = Money(c.original_amount_minor, c.original_currency, c.amount_minor, c.fx_rate)
    if remaining:
        leg = Leg(
            ln,
            c.period,
            "release",
            remaining,
            deltas,
            m,
            c.entry_date,
            commitment_id=c.id,
            external_ref=c.external_ref,
        )
        await postings.write(uow, who, p, [leg], check=False)
    c = await set_status(uow, c, "released", who)
    await publish(uow, c, p, ln, events.COMMITMENT_RELEASED)
    return c


async def set_status(uow: UnitOfWork, c: Any, status: str, who: Principal | None, **extra: Any) -> Row[Any]:
    values = dict(status=status, version=c.version + 1, updated_at=utcnow(), **extra)
    if who is not None and status in ("committed", "released"):
        values["decided_by"] = who.subject
    await uow.execute(update(commitments).where(commitments.c.id == c.id).values(**values))
    return await get_row(uow, c.id)


async def change_commitment(
    uow: UnitOfWork,
    who: Principal,
    *,
    postings: Postings,
    commitment: Row[Any],
    line: Any,
    period: str,
    amount: Decimal,
    currency: str,
    external_revision: int | None,
    vendor: str | None,
    memo: str | None,
) -> dict[str, Any]:
    """Move an open commitment to a new amount, line or period: release the old hold, hold the new one."""
    read, ln = commitment, line
    if ln.plan_id != read.plan_id:
        raise Invalid.on(
            "budget_line",
            f"line {ln.code!r} is in another plan than the order's commitment; "
            "an order cannot move between plans (cancel it and raise a new one)",
        )
    p = await get_plan(uow, ln.plan_id)
    old_ln = await get_line(uow, who, read.line_id)  # the line it leaves must be in scope, as the one it reaches
    if read.status not in OPEN_STATUSES:
        raise Conflict(f"Commitment {read.id} is {read.status}; it can no longer change.")
    on = await postable(uow, p, period, None)
    await postable(uow, p, read.period, None)
    m = await fx.in_plan_currency(uow, p, amount, currency, on)
    await lock(uow, p, [(old_ln, read.period), (ln, period)])
    c = await get_row(uow, read.id, lock=True)
    # Decided, moved or changed by a concurrent request since the first read: judge again under the lock.
    if (c.line_id, c.period, c.status) != (read.line_id, read.period, read.status):
        raise Raced(c.id)
    if external_revision is not None and c.external_revision is not None and external_revision <= c.external_revision:
        return commitment_view(c, p, await get_line(uow, None, c.line_id))  # a newer revision won
    if m.minor < c.consumed_minor:
        raise Invalid.on(
            "amount",
            f"is below the {fmt(c.consumed_minor, p.currency)} {p.currency} already invoiced against this order",
        )
    legs = _move_legs(c, old_ln, ln, period, m, on, vendor, memo)
    if legs:
        await postings.write(uow, who, p, legs, check=p.overspend_policy == "block", watch=(ln, period))
    moved = dict(line_id=ln.id, period=period, entry_date=on, external_revision=external_revision, vendor=vendor)
    await uow.execute(
        update(commitments)
        .where(commitments.c.id == c.id)
        .values(
            **moved,
            amount_minor=m.minor,
            original_amount_minor=m.original_minor,
            original_currency=m.original_currency,
            fx_rate=m.rate,
            memo=memo,
            version=c.version + 1,
            updated_at=utcnow(),
        )
    )
    c = await get_row(uow, c.id)
    await publish(uow, c, p, ln, events.COMMITMENT_CHANGED)
    return commitment_view(c, p, ln)


def _move_legs(
    c: Any, old_ln: Any, ln: Any, period: str, m: Money, on: dt.date, vendor: str | None, memo: str | None
) -> list[Leg]:
    """Release the open part where the commitment was, hold it again where it goes (pending or committed)."""
    bucket = 2 if c.status == "pending_approval" else 1
    old_open, new_open = c.amount_minor - c.consumed_minor, m.minor - c.consumed_minor
    legs = []
    for line_row, per, kind, value in ((old_ln, c.period, "release", -old_open), (ln, period, "commitment", new_open)):
        if value:
            d = [0, 0, 0, 0]
            d[bucket] = value
            legs.append(
                Leg(
                    line_row,
                    per,
                    kind,
                    abs(value),
                    (d[0], d[1], d[2], d[3]),
                    m,
                    on,
                    commitment_id=c.id,
                    external_ref=c.external_ref,
                    vendor=vendor,
                    memo=memo,
                )
            )
    return legs
