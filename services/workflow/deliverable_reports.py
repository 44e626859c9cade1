"""Where the time went: deliverables done in a window, per supplier or per internal team and per
period (ISO week or month of their completion): how many, how many on time, the on-time rate, the
average lateness in business hours on the assignee's calendar (an on-time one counts 0), and the
rework rounds; and the timeline of deliverables due in a window with the budget's campaigns running
in it (`GET /v1/calendar`).

A deliverable is on time when its last delivery came by its due time (moved on by the time the
clock was paused) and its SLA never breached.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from sqlalchemy import func, select

from services.workflow import campaigns, suppliers
from services.workflow.container import Workflow
from services.workflow.deliverable_schemas import (
    AssigneeReport,
    AssigneeReportRow,
    CalendarEntry,
    CalendarTimeline,
)
from services.workflow.models import campaigns as campaigns_table
from services.workflow.models import deliverables, requests
from services.workflow.models import suppliers as suppliers_table
from shared.errors import Invalid
from shared.identity import Principal
from shared.uow import UnitOfWork

Period = Literal["week", "month"]
MAX_WINDOW = dt.timedelta(days=366)
MAX_ENTRIES = 2000


def period_of(at: dt.datetime, period: Period) -> str:
    if period == "week":
        year, week, _ = at.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{at.year}-{at.month:02d}"


def _window(start: dt.datetime, end: dt.datetime) -> None:
    if end <= start:
        raise Invalid.on("query.to", "must be after from")
    if end - start > MAX_WINDOW:
        raise Invalid.on("query.to", "the window is at most 366 days")


async def lateness_hours(uow: UnitOfWork, wf: Workflow, row: Mapping[Any, Any]) -> Decimal:
    """Business hours from the due time to the last delivery on the deliverable's calendar (0 if on time)."""
    if row["delivered_at"] is None or row["delivered_at"] <= row["due_at"]:
        return Decimal(0)
    cal = await wf.calendars.get(uow, row["calendar"])
    return Decimal(cal.between(row["due_at"], row["delivered_at"]).total_seconds()) / 3600


def on_time(row: Mapping[Any, Any]) -> bool:
    return not row["breached"] and row["delivered_at"] is not None and row["delivered_at"] <= row["due_at"]


async def report(
    uow: UnitOfWork,
    wf: Workflow,
    *,
    by: Literal["supplier", "team"],
    start: dt.datetime,
    end: dt.datetime,
    period: Period,
) -> AssigneeReport:
    """Deliverables done in [start, end), grouped per assignee (a supplier, or a team: its owner without one)."""
    _window(start, end)
    q = select(deliverables).where(
        deliverables.c.status == "done", deliverables.c.finished_at >= start, deliverables.c.finished_at < end
    )
    q = q.where(deliverables.c.supplier_id.is_not(None) if by == "supplier" else deliverables.c.supplier_id.is_(None))
    rows = (await uow.execute(q.order_by(deliverables.c.finished_at))).mappings().all()
    names: dict[str, str] = {}
    if by == "supplier":
        ids = sorted({r["supplier_id"] for r in rows})
        found = await uow.execute(
            select(suppliers_table.c.id, suppliers_table.c.name).where(suppliers_table.c.id.in_(ids))
        )
        names = {str(m["id"]): str(m["name"]) for m in found.mappings().all()}
    groups: dict[tuple[str, str], list[tuple[Mapping[Any, Any], Decimal]]] = {}
    for r in rows:
        key = r["supplier_id"] if by == "supplier" else (r["team"] or f"owner:{r['owner']}")
        groups.setdefault((key, period_of(r["finished_at"], period)), []).append((r, await lateness_hours(uow, wf, r)))
    out = [_row(key, names.get(key, key), p, items) for (key, p), items in sorted(groups.items())]
    return AssigneeReport(by=by, period=period, **{"from": start, "to": end}, rows=out)


def _row(key: str, name: str, period: str, items: list[tuple[Mapping[Any, Any], Decimal]]) -> AssigneeReportRow:
    done = len(items)
    punctual = sum(1 for r, _ in items if on_time(r))
    late_hours = sum((h for _, h in items), Decimal(0))
    q = Decimal("0.01")
    return AssigneeReportRow(
        assignee=key,
        name=name,
        period=period,
        completed=done,
        on_time=punctual,
        on_time_rate_pct=(Decimal(100 * punctual) / done).quantize(q, ROUND_HALF_UP),
        avg_lateness_business_hours=(late_hours / done).quantize(q, ROUND_HALF_UP),
        rework_rounds=sum(int(r["rework_rounds"]) for r, _ in items),
    )


async def timeline(uow: UnitOfWork, who: Principal, *, start: dt.datetime, end: dt.datetime) -> CalendarTimeline:
    """Deliverables due in [start, end) the caller may see (a supplier's its own, anyone else those it
    owns or whose request it sees: the requester, or scopes covering the request's data) and the budget's
    campaigns running in it (not for a supplier), in one timeline by time."""
    _window(start, end)
    q = (
        select(deliverables, requests.c.number, requests.c.requester, requests.c.data)
        .join(requests, requests.c.id == deliverables.c.request_id)
        .where(deliverables.c.due_at >= start, deliverables.c.due_at < end)
        .order_by(deliverables.c.due_at, deliverables.c.id)
    )
    ids = suppliers.supplier_ids(who)
    if ids is not None:
        q = q.where(deliverables.c.supplier_id.in_(sorted(ids)))
    rows = (await uow.execute(q)).mappings().all()
    if ids is None:
        rows = [r for r in rows if who.subject in (r["owner"], r["requester"]) or who.may_see(r["data"])]
    entries = [
        CalendarEntry(
            kind="deliverable",
            id=r["id"],
            title=r["name"],
            at=r["due_at"],
            status=r["status"],
            request_number=r["number"],
            assignee=r["supplier_id"] or r["team"] or r["owner"],
        )
        for r in rows
    ]
    entries += await campaigns.between(uow, who, start=start, end=end)
    entries.sort(key=lambda e: (e.at, e.kind, e.id))
    as_of = await uow.scalar(select(func.max(campaigns_table.c.as_of)))
    return CalendarTimeline(
        **{"from": start, "to": end},
        items=entries[:MAX_ENTRIES],
        truncated=len(entries) > MAX_ENTRIES,
        campaigns_as_of=as_of,
    )
