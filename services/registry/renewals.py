"""Renewals: one durable reminder per contract term, and the calendar of notice deadlines.

Each term schedules a timer (the shared `timers` table) that publishes `registry.renewal.due`
`lead_days` before the notice deadline, at `fire_time` UTC, or at once when that moment has
passed. It fires in the transaction that marks it fired: once per term, across restarts and
replicas. Renewing or cancelling cancels the old term's reminder.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, select

from services.registry import events, schemas
from services.registry.models import Contract, Tool
from services.registry.terms import annual_minor, notice_deadline
from services.registry.utilization import Usage, today
from shared import timers
from shared.db import utcnow
from shared.money import fmt, from_minor
from shared.uow import UnitOfWork

RENEWAL_TIMER = "renewal_due"
AUTO_RENEW_TIMER = "auto_renewal"  # the day after the notice deadline of an auto-renewing term (reviews.py)


@dataclass(frozen=True)
class RenewalClock:
    """When a term's reminder fires, and its timer row."""

    timers: Table
    lead_days: int
    fire_time: dt.time

    def due_at(self, end: dt.date, notice_days: int) -> dt.datetime:
        """Lead days before the notice deadline, at the configured time of day; a moment already past
        means as soon as possible."""
        day = notice_deadline(end, notice_days) - dt.timedelta(days=self.lead_days)
        return max(dt.datetime.combine(day, self.fire_time, tzinfo=dt.UTC), utcnow())

    async def schedule(self, uow: UnitOfWork, c: Contract) -> None:
        due = self.due_at(c.end, c.notice_days)
        await timers.schedule(uow.session, self.timers, RENEWAL_TIMER, c.id, due, {"term": c.term})
        if c.auto_renew:
            # Once the notice deadline has passed without notice, the term renews; a deadline that had
            # passed when the term was recorded (a contract catalogued late) does not renew it here.
            binding = notice_deadline(c.end, c.notice_days) + dt.timedelta(days=1)
            at = dt.datetime.combine(binding, dt.time(0), tzinfo=dt.UTC)
            if at > utcnow():
                await timers.schedule(uow.session, self.timers, AUTO_RENEW_TIMER, c.id, at, {"term": c.term})

    async def cancel(self, uow: UnitOfWork, contract_id: str) -> None:
        await timers.cancel(uow.session, self.timers, contract_id, [RENEWAL_TIMER, AUTO_RENEW_TIMER])

    async def pending(self, uow: UnitOfWork, contract_id: str) -> dt.datetime | None:
        t = self.timers.c
        due: dt.datetime | None = await uow.scalar(
            select(t.due_at).where(t.subject_id == contract_id, t.kind == RENEWAL_TIMER, t.status == "pending")
        )
        return due


async def publish_due(uow: UnitOfWork, timer: Any, *, usage: Usage) -> None:
    """The timer's handler: `registry.renewal.due` for the term it was set for, if still current."""
    c = await uow.get(Contract, timer.subject_id)
    if c is None or c.status != "active" or c.term != timer.payload.get("term"):
        return  # the term moved on or ended; renew/cancel cancel the timer, this is a backstop
    tool = await uow.get(Tool, c.tool_id)
    assert tool is not None
    used = (await usage.of_tools(uow, [tool.id])).get(tool.id)
    due = events.RegistryRenewalDue(
        contract_id=c.id,
        tool_id=tool.id,
        tool_name=tool.name,
        term=c.term,
        start=c.start,
        end=c.end,
        notice_days=c.notice_days,
        notice_deadline=notice_deadline(c.end, c.notice_days),
        auto_renew=c.auto_renew,
        annual_cost=from_minor(annual_minor(c.cost_minor, c.billing_period), c.currency),
        currency=c.currency,
        owner=events.RegistryOwner(team=tool.owner_team, person=tool.owner_person),
        utilization=used.utilization if used else None,
        seats=c.seats,
        budget_line_code=c.budget_line_code,
    )
    await uow.publish(events.RENEWAL_DUE, c.id, due)


async def calendar(uow: UnitOfWork, *, within_days: int, usage: Usage) -> schemas.Renewals:
    """Active contracts whose notice deadline falls in the next `within_days`, soonest first."""
    first = today()
    last = first + dt.timedelta(days=within_days)
    # notice deadline = end - notice_days <= end, so `end >= first` is a safe pre-filter in SQL.
    rows = (
        await uow.execute(
            select(
                Contract.id,
                Contract.tool_id,
                Contract.term,
                Contract.end,
                Contract.notice_days,
                Contract.auto_renew,
                Contract.cost_minor,
                Contract.billing_period,
                Contract.currency,
                Contract.seats,
                Tool.name.label("tool_name"),
                Tool.owner_team,
                Tool.owner_person,
            )
            .join(Tool, Tool.id == Contract.tool_id)
            .where(Contract.status == "active", Contract.end >= first)
        )
    ).all()
    due = [(notice_deadline(c.end, c.notice_days), c) for c in rows]
    due = [(deadline, c) for deadline, c in due if first <= deadline <= last]
    used = await usage.of_tools(uow, {c.tool_id for _, c in due})
    items = []
    for deadline, c in sorted(due, key=lambda d: (d[0], d[1].tool_name)):
        u = used.get(c.tool_id)
        items.append(
            schemas.RenewalItem(
                contract_id=c.id,
                tool_id=c.tool_id,
                tool_name=c.tool_name,
                term=c.term,
                end=c.end,
                notice_days=c.notice_days,
                notice_deadline=deadline,
                days_left=(deadline - first).days,
                auto_renew=c.auto_renew,
                annual_cost=fmt(annual_minor(c.cost_minor, c.billing_period), c.currency),
                currency=c.currency,
                seats=c.seats,
                owner=schemas.OwnerOut(team=c.owner_team, person=c.owner_person),
                utilization=u.utilization if u else None,
                active_users=u.active_users if u else None,
                underused=u.underused if u else False,
                shelfware=u.shelfware if u else False,
            )
        )
    return schemas.Renewals(within_days=within_days, items=items)
