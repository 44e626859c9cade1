"""Seat utilization: usage snapshots from SSO/SCIM exports (or a person), and each tool's figure.

A tool's utilization uses its latest snapshot of the window: `active_users` (people active in the
30 days the export reports) over its seats (the snapshot's `seats_purchased`, or, when it gives
none, the seats of the tool's active contracts).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

from sqlalchemy import func, select

from services.registry import schemas
from services.registry.models import Contract, Tool, UtilizationSnapshot
from shared.db import utcnow
from shared.errors import Invalid
from shared.identity import Principal, ensure_unscoped
from shared.uow import UnitOfWork

WHAT = "Tool usage"  # what a scoped principal may not change


def today() -> dt.date:
    return utcnow().date()


@dataclass(frozen=True)
class Usage:
    """How far back a snapshot counts, and below which share of seats a tool is underused."""

    window_days: int
    underused_below: float

    def figure(self, tool_id: str, snap: UtilizationSnapshot | None, contract_seats: int | None) -> schemas.Utilization:
        """The utilization of one tool from its latest snapshot and its contracts' seats: pure."""
        seats = snap.seats_purchased if snap and snap.seats_purchased is not None else contract_seats
        active = snap.active_users if snap else None
        ratio = round(active / seats, 4) if active is not None and seats else None
        return schemas.Utilization(
            tool_id=tool_id,
            as_of=snap.date if snap else None,
            source=snap.source if snap else None,  # type: ignore[arg-type]  # the column holds only Source values
            active_users=active,
            seats=seats,
            utilization=ratio,
            underused=ratio is not None
            and active is not None
            and seats is not None
            and Fraction(active, seats) < Fraction(str(self.underused_below)),
            shelfware=active == 0,
        )

    async def of_tools(self, uow: UnitOfWork, tool_ids: Iterable[str] | None = None) -> dict[str, schemas.Utilization]:
        """Each tool's utilization (of these tools, or of every tool)."""
        ids = None if tool_ids is None else list(tool_ids)
        since = today() - dt.timedelta(days=self.window_days)
        snaps_q = select(UtilizationSnapshot).where(UtilizationSnapshot.date > since)
        seats_q = (
            select(Contract.tool_id, func.sum(Contract.seats).label("seats"))
            .where(Contract.status == "active")
            .group_by(Contract.tool_id)
        )
        tools_q = select(Tool.id)
        if ids is not None:
            snaps_q = snaps_q.where(UtilizationSnapshot.tool_id.in_(ids))
            seats_q = seats_q.where(Contract.tool_id.in_(ids))
            tools_q = tools_q.where(Tool.id.in_(ids))
        latest: dict[str, UtilizationSnapshot] = {}
        for snap in await uow.scalars(snaps_q.order_by(UtilizationSnapshot.date, UtilizationSnapshot.created_at)):
            latest[snap.tool_id] = snap
        contract_seats = {r.tool_id: None if r.seats is None else int(r.seats) for r in await uow.execute(seats_q)}
        return {tid: self.figure(tid, latest.get(tid), contract_seats.get(tid)) for tid in (await uow.scalars(tools_q))}

    async def listing(
        self, uow: UnitOfWork, *, tool_id: str | None = None, flag: str | None = None
    ) -> schemas.Utilizations:
        """Utilization of one tool or all, optionally only the underused or shelfware ones, lowest first."""
        rows = await self.of_tools(uow, [tool_id] if tool_id else None)
        items = [u for u in rows.values() if flag is None or getattr(u, flag)]
        items.sort(key=lambda u: (u.utilization is None, u.utilization or 0, u.tool_id))
        return schemas.Utilizations(items=items)

    async def record(self, uow: UnitOfWork, who: Principal, *, body: schemas.UtilizationIn) -> schemas.SnapshotOut:
        """Record a snapshot; a second one for the same tool, day and source replaces the first."""
        ensure_unscoped(who, WHAT)
        tool = await uow.get(Tool, body.tool_id)
        if tool is None:
            raise Invalid.on("tool_id", f"no tool with id {body.tool_id!r}", "unknown_tool")
        if body.date > today():
            raise Invalid.on("date", "a usage snapshot cannot be dated in the future")
        snap = await uow.scalar(
            select(UtilizationSnapshot).where(
                UtilizationSnapshot.tool_id == tool.id,
                UtilizationSnapshot.date == body.date,
                UtilizationSnapshot.source == body.source,
            )
        )
        if snap is None:  # one snapshot per tool, day and source: a re-export replaces it
            snap = UtilizationSnapshot(id=str(uuid.uuid4()), tool_id=tool.id, date=body.date, source=body.source)
            uow.add(snap)
        snap.seats_purchased, snap.active_users, snap.created_at = body.seats_purchased, body.active_users, utcnow()
        await uow.flush()
        return schemas.SnapshotOut(
            id=snap.id,
            tool_id=tool.id,
            date=snap.date,
            seats_purchased=snap.seats_purchased,
            active_users=snap.active_users,
            source=body.source,
            utilization=(await self.of_tools(uow, [tool.id]))[tool.id],
        )
