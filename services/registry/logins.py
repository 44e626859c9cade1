"""Usage from SSO or app-login exports (CSV: person, tool, last login), and seat right-sizing.

An import keeps each person's latest login per tool (re-imports are harmless), then records each
touched tool's utilization snapshot for today (`sso`: the people active in the utilization window),
so the renewal reminders and reports use it. Right-sizing compares the seats of a tool's active
contracts with the people active in the last 30 and 90 days, and prices the seats above what the
90 days need (plus a headroom) at the contracts' annual cost per seat, in the base currency.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections import Counter
from fractions import Fraction

from sqlalchemy import func, select

from services.registry import discovery, stack_schemas
from services.registry.costs import StackCosts
from services.registry.models import Contract, Tool, ToolLogin, UtilizationSnapshot
from services.registry.utilization import Usage, today
from shared.csvtext import read_csv
from shared.db import utcnow
from shared.errors import Errors, Invalid
from shared.identity import Principal, ensure_unscoped
from shared.money import fmt
from shared.uow import UnitOfWork

WHAT = "Tool usage"
COLUMNS = ("person", "tool", "last_login")
MAX_ROWS = 200_000


def parse(raw: bytes) -> list[tuple[str, str, dt.date]]:
    """(person, tool, day) of every row, or a 422 naming each bad row (`rows[i].<column>`)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid.on("body", f"the CSV is not UTF-8 text: {exc}") from exc
    header, records = read_csv(text)
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise Invalid.on("body", f"the CSV needs the columns {', '.join(COLUMNS)}; missing: {', '.join(missing)}")
    if not records or len(records) > MAX_ROWS:
        raise Invalid.on("body", f"an export holds 1 to {MAX_ROWS:,} rows")
    errors, out, last = Errors(), [], today()
    for n, rec in enumerate(records):
        person, tool, when = ((rec.get(c) or "").strip() for c in COLUMNS)
        if not person or len(person) > 200:
            errors.add(f"rows[{n}].person", "must be 1 to 200 characters")
        if not tool or len(tool) > 200:
            errors.add(f"rows[{n}].tool", "must be 1 to 200 characters")
        try:
            day = dt.date.fromisoformat(when[:10])
            if not dt.date(1900, 1, 1) <= day <= last:
                raise ValueError("not between 1900-01-01 and today")
        except ValueError as exc:
            errors.add(f"rows[{n}].last_login", f"{when!r} is not a past ISO 8601 date ({exc})")
            continue
        out.append((person, tool, day))
        if len(errors.items) >= 50:
            break
    errors.raise_if_any(f"{len(errors.items)} bad row(s) in the export, nothing was imported")
    return out


async def import_logins(
    uow: UnitOfWork, who: Principal, *, rows: list[tuple[str, str, dt.date]], usage: Usage
) -> stack_schemas.UsageImportResult:
    ensure_unscoped(who, WHAT)
    keys = await discovery.tool_keys(uow)
    by_name = {r.name.lower(): r.id for r in await uow.execute(select(Tool.id, Tool.name))}
    latest: dict[tuple[str, str], dt.date] = {}
    unknown: Counter[str] = Counter()
    for person, tool, day in rows:
        tool_id = by_name.get(tool.lower()) or keys.get(discovery.normalise(tool))
        if tool_id is None:
            unknown[tool] += 1
            continue
        key = (tool_id, person.lower())
        latest[key] = max(day, latest.get(key, day))
    touched = {tool_id for tool_id, _ in latest}
    stored = {}
    for tool_id in touched:
        for row in (await uow.scalars(select(ToolLogin).where(ToolLogin.tool_id == tool_id))).all():
            stored[(row.tool_id, row.person)] = row
    for key, day in latest.items():
        row = stored.get(key)
        if row is None:
            uow.add(ToolLogin(tool_id=key[0], person=key[1], last_login=day))
        elif day > row.last_login:
            row.last_login = day
    await uow.flush()
    await _snapshots(uow, touched, usage.window_days)
    return stack_schemas.UsageImportResult(
        rows=len(rows), tools=len(touched), people=len({p for _, p in latest}), unknown_tools=dict(unknown)
    )


async def _snapshots(uow: UnitOfWork, tool_ids: set[str], window_days: int) -> None:
    """Today's `sso` snapshot of each tool: the people active in the window (replacing today's)."""
    day = today()
    since = day - dt.timedelta(days=window_days)
    for tool_id in sorted(tool_ids):
        active = await uow.scalar(
            select(func.count()).where(ToolLogin.tool_id == tool_id, ToolLogin.last_login > since)
        )
        snap = await uow.scalar(
            select(UtilizationSnapshot).where(
                UtilizationSnapshot.tool_id == tool_id,
                UtilizationSnapshot.date == day,
                UtilizationSnapshot.source == "sso",
            )
        )
        if snap is None:
            snap = UtilizationSnapshot(id=str(uuid.uuid4()), tool_id=tool_id, date=day, source="sso")
            uow.add(snap)
        snap.active_users, snap.seats_purchased, snap.created_at = int(active or 0), None, utcnow()
    await uow.flush()


async def rightsizing(uow: UnitOfWork, *, costs: StackCosts, headroom: float) -> stack_schemas.Rightsizing:
    """Tools with seats and login data whose seats exceed what the last 90 days need, most saving first."""
    seats = {
        r.tool_id: int(r.seats)
        for r in await uow.execute(
            select(Contract.tool_id, func.sum(Contract.seats).label("seats"))
            .where(Contract.status == "active", Contract.seats.is_not(None))
            .group_by(Contract.tool_id)
        )
        if r.seats
    }
    day = today()
    counts: dict[str, dict[int, int]] = {}
    for window in (30, 90):
        since = day - dt.timedelta(days=window)
        query = (
            select(ToolLogin.tool_id, func.count().label("n"))
            .where(ToolLogin.last_login > since, ToolLogin.tool_id.in_(list(seats)))
            .group_by(ToolLogin.tool_id)
        )
        for r in await uow.execute(query):
            counts.setdefault(r.tool_id, {30: 0, 90: 0})[window] = int(r.n)
    known = set(
        (await uow.scalars(select(ToolLogin.tool_id).where(ToolLogin.tool_id.in_(list(seats))).distinct())).all()
    )
    annual = await costs.annual_by_tool(uow, known)
    names = {r.id: r.name for r in await uow.execute(select(Tool.id, Tool.name).where(Tool.id.in_(list(known))))}
    items, savings = [], {}
    for tool_id in known:
        c = counts.get(tool_id, {30: 0, 90: 0})
        recommended = math.ceil(c[90] * (1 + Fraction(str(headroom))))  # exact: 10 * 1.1 is 11, not 12
        if recommended >= seats[tool_id]:
            continue
        cost = annual.get(tool_id, 0)
        saving = savings[tool_id] = cost * (seats[tool_id] - recommended) // seats[tool_id]
        items.append(
            stack_schemas.RightsizingItem(
                tool_id=tool_id,
                name=names.get(tool_id, ""),
                seats=seats[tool_id],
                active_30=c[30],
                active_90=c[90],
                recommended_seats=recommended,
                annual_cost=fmt(cost, costs.base),
                annual_saving=fmt(saving, costs.base),
            )
        )
    items.sort(key=lambda i: (-savings[i.tool_id], i.name))
    total = sum(savings.values())
    return stack_schemas.Rightsizing(
        currency=costs.base, headroom=headroom, items=items, total_annual_saving=fmt(total, costs.base)
    )
