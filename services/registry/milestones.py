"""Renewal milestones: a term's notice deadline announced 120, 90, 60 and 30 days ahead (configurable
per service and per contract), each once.

Each milestone is a durable timer (the shared `timers` table, kind `renewal_milestone`, the contract
as subject, `{term, days}` as payload) fired in the transaction that marks it fired, so it publishes
`registry.renewal.milestone` once across restarts and replicas (PostgreSQL's SKIP LOCKED splits the
due timers between replicas). A milestone whose moment has passed when it is set is not fired late:
a contract catalogued 20 days before its deadline does not announce the 120-day mark. Renewing or
cancelling cancels the old term's pending milestones; changing the days re-plans the pending ones
and never fires one that already fired for the term.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Table, select

from services.registry import events, schemas
from services.registry.models import Contract, Tool
from services.registry.terms import annual_minor, notice_deadline
from services.registry.utilization import Usage
from shared import timers
from shared.db import utcnow
from shared.errors import Conflict, NotFound
from shared.identity import Principal, ensure_unscoped
from shared.money import from_minor
from shared.uow import UnitOfWork

MILESTONE_TIMER = "renewal_milestone"
WHAT = "A tool contract"


@dataclass(frozen=True)
class MilestonePlan:
    """The service's default milestones, the review's milestone, and when in the day they fire."""

    timers: Table
    default_days: tuple[int, ...]
    review_days: int
    fire_time: dt.time

    def days_of(self, c: Contract) -> list[int]:
        return sorted(set(c.milestone_days if c.milestone_days is not None else self.default_days), reverse=True)

    def moment(self, c: Contract, days: int) -> dt.datetime:
        day = notice_deadline(c.end, c.notice_days) - dt.timedelta(days=days)
        return dt.datetime.combine(day, self.fire_time, tzinfo=dt.UTC)

    async def _timers(self, uow: UnitOfWork, contract_id: str) -> list[Any]:
        t = self.timers.c
        query = select(self.timers).where(t.subject_id == contract_id, t.kind == MILESTONE_TIMER)
        return list((await uow.execute(query)).all())

    async def schedule(self, uow: UnitOfWork, c: Contract) -> None:
        """Set the current term's milestones that are still ahead and have not fired for it."""
        now = utcnow()
        fired = {r.payload.get("days") for r in await self._timers(uow, c.id) if _of_term(r, c.term, "fired")}
        for days in self.days_of(c):
            due = self.moment(c, days)
            if due >= now and days not in fired:
                await timers.schedule(
                    uow.session, self.timers, MILESTONE_TIMER, c.id, due, {"term": c.term, "days": days}
                )

    async def cancel(self, uow: UnitOfWork, contract_id: str) -> None:
        await timers.cancel(uow.session, self.timers, contract_id, [MILESTONE_TIMER])

    async def get(self, uow: UnitOfWork, *, contract_id: str) -> schemas.Milestones:
        c = await uow.get(Contract, contract_id)
        if c is None:
            raise NotFound(f"No contract with id {contract_id!r}.")
        return await self._view(uow, c)

    async def put(
        self, uow: UnitOfWork, who: Principal, *, contract_id: str, body: schemas.MilestonesIn
    ) -> schemas.Milestones:
        """Set the contract's own milestones (or back to the default) and re-plan the pending ones."""
        ensure_unscoped(who, WHAT)
        query = select(Contract).where(Contract.id == contract_id)
        if uow.dialect != "sqlite":
            query = query.with_for_update()
        c: Contract | None = await uow.scalar(query)
        if c is None:
            raise NotFound(f"No contract with id {contract_id!r}.")
        if c.status != "active":
            raise Conflict(f"The contract is {c.status}; only an active contract has milestones ahead.")
        c.milestone_days = None if body.days is None else sorted(set(body.days), reverse=True)
        await self.cancel(uow, c.id)
        await uow.flush()
        await self.schedule(uow, c)
        await uow.audit("contract", c.id, action="contract.milestones_set", after={"days": c.milestone_days})
        return await self._view(uow, c)

    async def _view(self, uow: UnitOfWork, c: Contract) -> schemas.Milestones:
        rows = [r for r in await self._timers(uow, c.id) if r.payload.get("term") == c.term]
        fired = {r.payload["days"]: r for r in rows if r.status == "fired"}
        pending = {r.payload["days"]: r for r in rows if r.status == "pending"}
        days = sorted(set(self.days_of(c)) | set(fired), reverse=True)
        items = []
        for d in days:
            row = fired.get(d) or pending.get(d)
            status: Literal["pending", "fired", "passed"] = (
                "fired" if d in fired else "pending" if d in pending else "passed"
            )
            items.append(
                schemas.MilestoneOut(
                    days=d,
                    on=notice_deadline(c.end, c.notice_days) - dt.timedelta(days=d),
                    due_at=row.due_at if row is not None else None,
                    status=status,
                    fired_at=row.fired_at if row is not None and d in fired else None,
                    opens_review=d == self.review_days,
                )
            )
        return schemas.Milestones(
            contract_id=c.id,
            term=c.term,
            notice_deadline=notice_deadline(c.end, c.notice_days),
            days=self.days_of(c),
            default=c.milestone_days is None,
            items=items,
        )

    async def publish(self, uow: UnitOfWork, timer: Any, *, usage: Usage) -> None:
        """The timer's handler: `registry.renewal.milestone` if the term is still current and the
        milestone still planned (renew, cancel and a change of days cancel the timer: this is a backstop)."""
        c = await uow.get(Contract, timer.subject_id)
        days = timer.payload.get("days")
        if c is None or c.status != "active" or c.term != timer.payload.get("term") or days not in self.days_of(c):
            return
        tool = await uow.get(Tool, c.tool_id)
        assert tool is not None
        used = (await usage.of_tools(uow, [tool.id])).get(tool.id)
        deadline = notice_deadline(c.end, c.notice_days)
        data = events.RegistryRenewalMilestone(
            contract_id=c.id,
            tool_id=tool.id,
            tool_name=tool.name,
            term=c.term,
            days_before=days,
            milestone_on=deadline - dt.timedelta(days=days),
            notice_deadline=deadline,
            end=c.end,
            auto_renew=c.auto_renew,
            annual_cost=from_minor(annual_minor(c.cost_minor, c.billing_period), c.currency),
            currency=c.currency,
            owner=events.RegistryOwner(team=tool.owner_team, person=tool.owner_person),
            utilization=used.utilization if used else None,
            opens_review=days == self.review_days,
        )
        await uow.publish(events.RENEWAL_MILESTONE, c.id, data)


def _of_term(row: Any, term: int, status: str) -> bool:
    return bool(row.payload.get("term") == term and row.status == status)
