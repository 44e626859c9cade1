"""Domain logic of the registry service: the martech stack as a catalogue. No HTTP, no framework.

Every function takes the caller's session, so a request (or a whole catalogue import)
is one transaction: tools, their audit history, contracts, the renewal timers and the
outbox events commit together or not at all.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import networkx as nx
from sqlalchemy import Table, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.registry import cursors, events, schemas
from services.registry.lifecycle import check_move
from services.registry.models import (
    Category,
    Contract,
    ContractTerm,
    FxRate,
    Integration,
    Tool,
    ToolHistory,
    UtilizationSnapshot,
)
from services.registry.settings import Settings
from services.registry.terms import annual_minor, check_term, commit_minor, next_term, notice_deadline
from shared import timers
from shared.db import utcnow
from shared.errors import Conflict, Errors, Invalid, NotFound, PreconditionFailed
from shared.events import new_event
from shared.money import MAX_MINOR, convert, fmt
from shared.outbox import Outbox
from shared.pagination import decode_cursor, page_of

RENEWAL_TIMER = "renewal_due"
NAMES_PER_QUERY = 500  # names per `IN (...)` when checking which are taken (well under SQLite's 999 variables)
# The tool fields the audit history compares.
TRACKED = (
    "name",
    "vendor",
    "category",
    "capabilities",
    "owner",
    "business_owner",
    "lifecycle",
    "time_class",
    "personal_data",
    "sso",
    "url",
    "notes",
)


def today() -> dt.date:
    return utcnow().date()


class Stack:
    """The registry's domain: built once per app with its outbox, timers table and settings."""

    def __init__(self, outbox: Outbox, timers_table: Table, settings: Settings):
        self.outbox = outbox
        self.timers = timers_table
        self.settings = settings

    # --- tools ------------------------------------------------------------------------------------

    async def categories(self, s: AsyncSession) -> list[dict[str, str]]:
        rows = (await s.scalars(select(Category).order_by(Category.key))).all()
        return [{"key": c.key, "name": c.name, "description": c.description} for c in rows]

    async def _check_category(self, s: AsyncSession, key: str, errors: Errors, field: str = "category") -> None:
        if await s.get(Category, key) is None:
            keys = ", ".join(c["key"] for c in await self.categories(s))
            errors.add(field, f"{key!r} is not a category; choose one of {keys}", "unknown_category")

    async def _check_name_free(self, s: AsyncSession, name: str, tool_id: str | None = None) -> None:
        other = await s.scalar(select(Tool.id).where(Tool.name == name))
        if other is not None and other != tool_id:
            raise Conflict(f"A tool named {name!r} already exists ({other}).", tool_id=other)

    async def create_tool(self, s: AsyncSession, body: schemas.ToolIn, actor: str) -> dict[str, Any]:
        return (await self.create_tools(s, [body], actor))[0]

    async def create_tools(
        self,
        s: AsyncSession,
        bodies: list[schemas.ToolIn],
        actor: str,
        located: Callable[[int], contextlib.AbstractContextManager[Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Create tools with the same checks, history rows and events as one by one, but in a handful of
        statements whatever their number (a catalogue import creates up to 5,000). `located(i)` wraps the
        refusal of bodies[i] (the catalogue names the document); names must differ among the bodies."""
        if not bodies:
            return []
        where = located or (lambda _index: contextlib.nullcontext())
        keys = set((await s.scalars(select(Category.key))).all())
        for index, body in enumerate(bodies):
            if body.category not in keys:
                with where(index):
                    errors = Errors()
                    await self._check_category(s, body.category, errors)
                    errors.raise_if_any()
        taken: dict[str, str] = {}
        names = [b.name for b in bodies]
        for start in range(0, len(names), NAMES_PER_QUERY):
            chunk = names[start : start + NAMES_PER_QUERY]
            rows = await s.execute(select(Tool.name, Tool.id).where(Tool.name.in_(chunk)))
            taken.update((name, tool_id) for name, tool_id in rows)
        for index, body in enumerate(bodies):
            if body.name in taken:
                with where(index):
                    other = taken[body.name]
                    raise Conflict(f"A tool named {body.name!r} already exists ({other}).", tool_id=other)
        now = utcnow()
        tools = []
        for body in bodies:
            owner = body.owner or schemas.Owner()
            tools.append(
                Tool(
                    id=str(uuid.uuid4()),
                    name=body.name,
                    vendor=body.vendor,
                    category=body.category,
                    capabilities=body.capabilities,
                    owner_team=owner.team,
                    owner_person=owner.person,
                    business_owner=body.business_owner,
                    lifecycle=body.lifecycle,
                    time_class=body.time_class,
                    personal_data=body.personal_data,
                    sso=body.sso,
                    url=body.url,
                    notes=body.notes,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
            )
        s.add_all(tools)
        await _flush_unique_name(s, names[0] if len(names) == 1 else None)
        views = [tool_view(t) for t in tools]
        # The history rows in one statement too (as ORM objects each would be an INSERT ... RETURNING).
        await s.execute(
            insert(ToolHistory.__table__),
            [
                {
                    "tool_id": t.id,
                    "version": t.version,
                    "action": "created",
                    "actor": actor,
                    "at": now,
                    "changes": _jsonable({f: {"from": None, "to": v[f]} for f in TRACKED}),
                    "reason": None,
                }
                for t, v in zip(tools, views, strict=True)
            ],
        )
        rows = [
            self.outbox.row(
                new_event(events.TOOL_CREATED.subject, self.outbox.source, t.id, events.TOOL_CREATED.dump(v)), now
            )
            for t, v in zip(tools, views, strict=True)
        ]
        await s.execute(insert(self.outbox.table), rows)  # one statement; the seq keeps their order
        self.outbox.wake_after_commit(s)
        return views

    async def get_tool(self, s: AsyncSession, tool_id: str) -> Tool:
        tool = await s.get(Tool, tool_id)
        if tool is None:
            raise NotFound(f"No tool with id {tool_id!r}.")
        return tool

    async def update_tool(
        self, s: AsyncSession, tool_id: str, patch: schemas.ToolPatch, expected_version: int, actor: str
    ) -> dict[str, Any]:
        tool = await self._locked_tool(s, tool_id, expected_version)
        changes = patch.model_dump(exclude_unset=True)
        errors = Errors()
        if "category" in changes:
            await self._check_category(s, changes["category"], errors)
        errors.raise_if_any()
        if "name" in changes:
            await self._check_name_free(s, changes["name"], tool.id)
        before = tool_view(tool)
        for key, value in changes.items():
            if key == "owner":
                owner = value or {}
                tool.owner_team, tool.owner_person = owner.get("team"), owner.get("person")
            else:
                setattr(tool, key, value)
        diff = _diff(before, tool_view(tool))
        if not diff:
            return before
        tool.version += 1
        tool.updated_at = utcnow()
        await _flush_unique_name(s, tool.name)
        view = tool_view(tool)
        await self._record(s, tool, "updated", actor, diff)
        await self.outbox.add(s, events.TOOL_UPDATED.subject, tool.id, view)
        return view

    async def change_lifecycle(
        self, s: AsyncSession, tool_id: str, body: schemas.LifecycleIn, expected_version: int | None, actor: str
    ) -> dict[str, Any]:
        tool = await self._locked_tool(s, tool_id, expected_version)
        check_move(tool.lifecycle, body.lifecycle)
        before = tool.lifecycle
        tool.lifecycle = body.lifecycle
        tool.version += 1
        tool.updated_at = utcnow()
        await s.flush()
        view = tool_view(tool)
        await self._record(
            s, tool, "lifecycle_changed", actor, {"lifecycle": {"from": before, "to": body.lifecycle}}, body.reason
        )
        await self.outbox.add(
            s,
            events.TOOL_LIFECYCLE_CHANGED.subject,
            tool.id,
            {**view, "previous_lifecycle": before, "reason": body.reason},
        )
        return view

    async def _locked_tool(self, s: AsyncSession, tool_id: str, expected_version: int | None) -> Tool:
        query = select(Tool).where(Tool.id == tool_id)
        if s.bind.dialect.name != "sqlite":
            query = query.with_for_update()
        tool = await s.scalar(query)
        if tool is None:
            raise NotFound(f"No tool with id {tool_id!r}.")
        if expected_version is not None and tool.version != expected_version:
            raise PreconditionFailed(
                f"The tool is at version {tool.version}, not {expected_version}: reload it and apply your "
                "change again.",
                current_version=tool.version,
            )
        return tool

    async def _record(
        self,
        s: AsyncSession,
        tool: Tool,
        action: str,
        actor: str,
        changes: dict[str, Any],
        reason: str | None = None,
    ) -> None:
        s.add(
            ToolHistory(
                tool_id=tool.id,
                version=tool.version,
                action=action,
                actor=actor,
                at=utcnow(),
                changes=_jsonable(changes),
                reason=reason,
            )
        )

    async def list_tools(
        self,
        s: AsyncSession,
        *,
        limit: int,
        cursor: str | None,
        category: str | None = None,
        lifecycle: str | None = None,
        team: str | None = None,
        capability: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        query = select(Tool).order_by(Tool.name, Tool.id)
        if category:
            query = query.where(Tool.category == category)
        if lifecycle:
            query = query.where(Tool.lifecycle == lifecycle)
        if team:
            query = query.where(Tool.owner_team == team)
        key = decode_cursor(cursor, cursors.text, cursors.text)
        if key:
            name, last_id = key
            query = query.where((Tool.name > name) | ((Tool.name == name) & (Tool.id > last_id)))
        if capability:
            # Capabilities live in a JSON list; filter in Python so both backends agree.
            rows = [t for t in (await s.scalars(query)).all() if capability.lower() in t.capabilities][: limit + 1]
        else:
            rows = list((await s.scalars(query.limit(limit + 1))).all())
        page, next_cursor = page_of(rows, limit, lambda t: (t.name, t.id))
        return [tool_view(t) for t in page], next_cursor

    async def history(
        self, s: AsyncSession, tool_id: str, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        await self.get_tool(s, tool_id)
        query = select(ToolHistory).where(ToolHistory.tool_id == tool_id).order_by(ToolHistory.seq)
        key = decode_cursor(cursor, int)  # a JSON integer in BIGINT range, or a 422
        if key:
            query = query.where(ToolHistory.seq > key[0])
        rows = list((await s.scalars(query.limit(limit + 1))).all())
        page, next_cursor = page_of(rows, limit, lambda h: (h.seq,))
        return [
            {
                "seq": h.seq,
                "version": h.version,
                "action": h.action,
                "actor": h.actor,
                "at": h.at,
                "changes": h.changes,
                "reason": h.reason,
            }
            for h in page
        ], next_cursor

    # --- contracts --------------------------------------------------------------------------------

    async def create_contract(self, s: AsyncSession, body: schemas.ContractIn) -> dict[str, Any]:
        errors = Errors()
        tool = await s.get(Tool, body.tool_id)
        if tool is None:
            errors.add("tool_id", f"no tool with id {body.tool_id!r}", "unknown_tool")
        elif tool.lifecycle == "retired":
            errors.add("tool_id", f"{tool.name} is retired; a retired tool takes no new contracts", "retired_tool")
        cost_minor = check_term(
            errors,
            start=body.start,
            end=body.end,
            billing_period=body.billing_period,
            cost=body.cost,
            currency=body.currency,
            notice_days=body.notice_days,
        )
        errors.raise_if_any()
        assert tool is not None and cost_minor is not None
        now = utcnow()
        contract = Contract(
            id=str(uuid.uuid4()),
            tool_id=tool.id,
            term=1,
            start=body.start,
            end=body.end,
            billing_period=body.billing_period,
            cost_minor=cost_minor,
            currency=body.currency,
            seats=body.seats,
            auto_renew=body.auto_renew,
            notice_days=body.notice_days,
            budget_line_code=body.budget_line_code,
            external_ref=body.external_ref,
            status="active",
            version=1,
            created_at=now,
            updated_at=now,
        )
        s.add(contract)
        await s.flush()
        await self._start_term(s, contract, tool, events.CONTRACT_CREATED.subject)
        return contract_view(contract, tool)

    async def _start_term(self, s: AsyncSession, c: Contract, tool: Tool, event: str) -> None:
        """Record the term, schedule its renewal reminder and publish the event budget commits from."""
        s.add(
            ContractTerm(
                contract_id=c.id,
                term=c.term,
                start=c.start,
                end=c.end,
                billing_period=c.billing_period,
                cost_minor=c.cost_minor,
                currency=c.currency,
                commit_minor=commit_minor(c.cost_minor, c.billing_period, c.start, c.end),
                seats=c.seats,
                outcome="current",
                created_at=utcnow(),
            )
        )
        await timers.schedule(s, self.timers, RENEWAL_TIMER, c.id, self.renewal_due_at(c), {"term": c.term})
        await self.outbox.add(s, event, c.id, contract_event(c, tool))

    def renewal_due_at(self, c: Contract) -> dt.datetime:
        """When `registry.renewal.due` fires for this term: lead days before the notice deadline, at the
        configured time of day; a moment already past means as soon as possible."""
        day = notice_deadline(c.end, c.notice_days) - dt.timedelta(days=self.settings.renewal_lead_days)
        due = dt.datetime.combine(day, self.settings.renewal_fire_time, tzinfo=dt.UTC)
        return max(due, utcnow())

    async def _contract_for_change(self, s: AsyncSession, contract_id: str) -> tuple[Contract, Tool]:
        query = select(Contract).where(Contract.id == contract_id)
        if s.bind.dialect.name != "sqlite":
            query = query.with_for_update()
        c = await s.scalar(query)
        if c is None:
            raise NotFound(f"No contract with id {contract_id!r}.")
        if c.status != "active":
            raise Conflict(f"The contract is {c.status}; only an active contract can be renewed or cancelled.")
        tool = await s.get(Tool, c.tool_id)
        assert tool is not None
        return c, tool

    async def renew_contract(
        self, s: AsyncSession, contract_id: str, body: schemas.RenewIn, expected_version: int | None
    ) -> dict[str, Any]:
        c, tool = await self._contract_for_change(s, contract_id)
        _check_version(c.version, expected_version, "contract")
        start, end = next_term(c.start, c.end, new_start=body.start, new_end=body.end)
        currency = body.currency or c.currency
        cost = body.cost if body.cost is not None else Decimal(fmt(c.cost_minor, c.currency))
        billing_period = body.billing_period or c.billing_period
        notice_days = body.notice_days if body.notice_days is not None else c.notice_days
        errors = Errors()
        if start <= c.end:
            errors.add(
                "start",
                f"the next term must start after the current one ends ({c.end.isoformat()})",
                "overlapping_term",
            )
        # The carried-over dates are checked like given ones: a term ending near MAX_DATE has no next term.
        cost_minor = check_term(
            errors,
            start=start,
            end=end,
            billing_period=billing_period,
            cost=cost,
            currency=currency,
            notice_days=notice_days,
        )
        errors.raise_if_any()
        assert cost_minor is not None
        await self._close_term(s, c, "renewed")
        c.term += 1
        c.start, c.end, c.cost_minor, c.currency = start, end, cost_minor, currency
        for name in ("billing_period", "seats", "auto_renew", "notice_days", "budget_line_code"):
            value = getattr(body, name)
            if value is not None:
                setattr(c, name, value)
        c.version += 1
        c.updated_at = utcnow()
        await s.flush()
        await self._start_term(s, c, tool, events.CONTRACT_RENEWED.subject)
        return contract_view(c, tool)

    async def cancel_contract(
        self, s: AsyncSession, contract_id: str, body: schemas.CancelIn, expected_version: int | None
    ) -> dict[str, Any]:
        c, tool = await self._contract_for_change(s, contract_id)
        _check_version(c.version, expected_version, "contract")
        await self._close_term(s, c, "cancelled")
        c.status = "cancelled"
        c.cancelled_at = c.updated_at = utcnow()
        c.version += 1
        await s.flush()
        await self.outbox.add(
            s, events.CONTRACT_CANCELLED.subject, c.id, {**contract_event(c, tool), "reason": body.reason}
        )
        return contract_view(c, tool)

    async def _close_term(self, s: AsyncSession, c: Contract, outcome: str) -> None:
        await timers.cancel(s, self.timers, c.id, [RENEWAL_TIMER])
        term = await s.get(ContractTerm, (c.id, c.term))
        if term is not None:
            term.outcome = outcome

    async def get_contract(self, s: AsyncSession, contract_id: str) -> dict[str, Any]:
        c = await s.get(Contract, contract_id)
        if c is None:
            raise NotFound(f"No contract with id {contract_id!r}.")
        tool = await s.get(Tool, c.tool_id)
        terms = (
            await s.scalars(select(ContractTerm).where(ContractTerm.contract_id == c.id).order_by(ContractTerm.term))
        ).all()
        pending = await s.scalar(
            select(self.timers.c.due_at).where(
                self.timers.c.subject_id == c.id, self.timers.c.kind == RENEWAL_TIMER, self.timers.c.status == "pending"
            )
        )
        return {
            **contract_view(c, tool),
            "renewal_due_at": pending,
            "terms": [
                {
                    "term": t.term,
                    "start": t.start,
                    "end": t.end,
                    "billing_period": t.billing_period,
                    "cost": fmt(t.cost_minor, t.currency),
                    "currency": t.currency,
                    "commit_amount": fmt(t.commit_minor, t.currency),
                    "seats": t.seats,
                    "outcome": t.outcome,
                }
                for t in terms
            ],
        }

    async def list_contracts(
        self,
        s: AsyncSession,
        *,
        limit: int,
        cursor: str | None,
        tool_id: str | None = None,
        status: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        query = select(Contract, Tool).join(Tool, Tool.id == Contract.tool_id).order_by(Contract.end, Contract.id)
        if tool_id:
            query = query.where(Contract.tool_id == tool_id)
        if status:
            query = query.where(Contract.status == status)
        key = decode_cursor(cursor, cursors.day, cursors.text)
        if key:
            end_day, last_id = key
            query = query.where((Contract.end > end_day) | ((Contract.end == end_day) & (Contract.id > last_id)))
        rows = list((await s.execute(query.limit(limit + 1))).all())
        page, next_cursor = page_of(rows, limit, lambda r: (r[0].end.isoformat(), r[0].id))
        return [contract_view(c, t) for c, t in page], next_cursor

    async def fire_renewal_due(self, s: AsyncSession, timer: Any) -> None:
        """Timer handler: publish `registry.renewal.due` for the term the timer was set for."""
        c = await s.get(Contract, timer.subject_id)
        if c is None or c.status != "active" or c.term != timer.payload.get("term"):
            return  # the term moved on or ended; renew/cancel cancel the timer, this is a backstop
        tool = await s.get(Tool, c.tool_id)
        assert tool is not None
        usage = (await self.utilization(s, [tool.id])).get(tool.id, {})
        await self.outbox.add(
            s,
            events.RENEWAL_DUE.subject,
            c.id,
            {
                "contract_id": c.id,
                "tool_id": tool.id,
                "tool_name": tool.name,
                "term": c.term,
                "start": c.start.isoformat(),
                "end": c.end.isoformat(),
                "notice_days": c.notice_days,
                "notice_deadline": notice_deadline(c.end, c.notice_days).isoformat(),
                "auto_renew": c.auto_renew,
                "annual_cost": fmt(annual_minor(c.cost_minor, c.billing_period), c.currency),
                "currency": c.currency,
                "owner": {"team": tool.owner_team, "person": tool.owner_person},
                "utilization": usage.get("utilization"),
                "seats": c.seats,
                "budget_line_code": c.budget_line_code,
            },
        )

    async def renewals(self, s: AsyncSession, within_days: int) -> list[dict[str, Any]]:
        first, last = today(), today() + dt.timedelta(days=within_days)
        # notice deadline = end - notice_days <= end, so `end >= first` is a safe pre-filter in SQL.
        rows = (
            await s.execute(
                select(Contract.__table__, Tool.name.label("tool_name"), Tool.owner_team, Tool.owner_person)
                .join(Tool, Tool.id == Contract.tool_id)
                .where(Contract.status == "active", Contract.end >= first)
            )
        ).all()
        due = [c for c in rows if first <= notice_deadline(c.end, c.notice_days) <= last]
        usage = await self.utilization(s, {c.tool_id for c in due})
        items = []
        for c in sorted(due, key=lambda r: (notice_deadline(r.end, r.notice_days), r.tool_name)):
            u = usage.get(c.tool_id, {})
            items.append(
                {
                    "contract_id": c.id,
                    "tool_id": c.tool_id,
                    "tool_name": c.tool_name,
                    "term": c.term,
                    "end": c.end,
                    "notice_days": c.notice_days,
                    "notice_deadline": notice_deadline(c.end, c.notice_days),
                    "days_left": (notice_deadline(c.end, c.notice_days) - first).days,
                    "auto_renew": c.auto_renew,
                    "annual_cost": fmt(annual_minor(c.cost_minor, c.billing_period), c.currency),
                    "currency": c.currency,
                    "seats": c.seats,
                    "owner": {"team": c.owner_team, "person": c.owner_person},
                    "utilization": u.get("utilization"),
                    "active_users": u.get("active_users"),
                    "underused": u.get("underused", False),
                    "shelfware": u.get("shelfware", False),
                }
            )
        return items

    # --- utilization ------------------------------------------------------------------------------

    async def record_utilization(self, s: AsyncSession, body: schemas.UtilizationIn) -> dict[str, Any]:
        tool = await s.get(Tool, body.tool_id)
        if tool is None:
            raise Invalid.on("tool_id", f"no tool with id {body.tool_id!r}", "unknown_tool")
        if body.date > today():
            raise Invalid.on("date", "a usage snapshot cannot be dated in the future")
        snap = await s.scalar(
            select(UtilizationSnapshot).where(
                UtilizationSnapshot.tool_id == tool.id,
                UtilizationSnapshot.date == body.date,
                UtilizationSnapshot.source == body.source,
            )
        )
        if snap is None:  # one snapshot per tool, day and source: a re-export replaces it
            snap = UtilizationSnapshot(id=str(uuid.uuid4()), tool_id=tool.id, date=body.date, source=body.source)
            s.add(snap)
        snap.seats_purchased, snap.active_users, snap.created_at = body.seats_purchased, body.active_users, utcnow()
        await s.flush()
        return {
            "id": snap.id,
            "tool_id": tool.id,
            "date": snap.date,
            "seats_purchased": snap.seats_purchased,
            "active_users": snap.active_users,
            "source": snap.source,
            "utilization": (await self.utilization(s, [tool.id]))[tool.id],
        }

    async def utilization(self, s: AsyncSession, tool_ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """Per tool: the latest snapshot of the window (active users in the 30 days it reports), its
        seats (or, when it gives none, the seats of the tool's active contracts) and their ratio."""
        ids = None if tool_ids is None else list(tool_ids)
        since = today() - dt.timedelta(days=self.settings.utilization_window_days)
        snaps_q = select(UtilizationSnapshot).where(UtilizationSnapshot.date > since)
        seats_q = (
            select(Contract.tool_id, func.sum(Contract.seats))
            .where(Contract.status == "active")
            .group_by(Contract.tool_id)
        )
        tools_q = select(Tool.id)
        if ids is not None:
            snaps_q = snaps_q.where(UtilizationSnapshot.tool_id.in_(ids))
            seats_q = seats_q.where(Contract.tool_id.in_(ids))
            tools_q = tools_q.where(Tool.id.in_(ids))
        latest: dict[str, UtilizationSnapshot] = {}
        for snap in await s.scalars(snaps_q.order_by(UtilizationSnapshot.date, UtilizationSnapshot.created_at)):
            latest[snap.tool_id] = snap
        contract_seats = {tid: total for tid, total in (await s.execute(seats_q)).all()}
        out: dict[str, dict[str, Any]] = {}
        for tid in (await s.scalars(tools_q)).all():
            snap = latest.get(tid)
            seats = snap.seats_purchased if snap and snap.seats_purchased is not None else contract_seats.get(tid)
            seats = int(seats) if seats is not None else None
            active = snap.active_users if snap else None
            ratio = None
            if active is not None and seats:
                ratio = round(active / seats, 4)
            out[tid] = {
                "tool_id": tid,
                "as_of": snap.date if snap else None,
                "source": snap.source if snap else None,
                "active_users": active,
                "seats": seats,
                "utilization": ratio,
                "underused": ratio is not None
                and Fraction(active, seats) < Fraction(str(self.settings.underused_below)),
                "shelfware": active == 0,
            }
        return out

    # --- integrations and the graph ---------------------------------------------------------------

    async def create_integration(self, s: AsyncSession, body: schemas.IntegrationIn) -> dict[str, Any]:
        errors = Errors()
        for field in ("from_tool_id", "to_tool_id"):
            if await s.get(Tool, getattr(body, field)) is None:
                errors.add(field, f"no tool with id {getattr(body, field)!r}", "unknown_tool")
        if body.from_tool_id == body.to_tool_id:
            errors.add("to_tool_id", "an integration connects two different tools, not a tool to itself", "self_loop")
        errors.raise_if_any()
        edge = Integration(
            id=str(uuid.uuid4()),
            from_tool_id=body.from_tool_id,
            to_tool_id=body.to_tool_id,
            data_objects=body.data_objects,
            direction=body.direction,
            method=body.method,
            owner=body.owner,
            status=body.status,
            notes=body.notes,
            created_at=utcnow(),
        )
        s.add(edge)
        await s.flush()
        return integration_view(edge)

    async def list_integrations(
        self,
        s: AsyncSession,
        *,
        limit: int,
        cursor: str | None,
        tool_id: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        query = select(Integration).order_by(Integration.id)
        if tool_id:
            query = query.where((Integration.from_tool_id == tool_id) | (Integration.to_tool_id == tool_id))
        key = decode_cursor(cursor, cursors.text)
        if key:
            query = query.where(Integration.id > key[0])
        rows = list((await s.scalars(query.limit(limit + 1))).all())
        page, next_cursor = page_of(rows, limit, lambda e: (e.id,))
        return [integration_view(e) for e in page], next_cursor

    async def graph(self, s: AsyncSession) -> dict[str, Any]:
        # Reports read plain rows (Core), not ORM objects: several times faster on thousands of rows.
        tools = (await s.execute(select(Tool.__table__).where(Tool.lifecycle != "retired").order_by(Tool.name))).all()
        live = {t.id for t in tools}
        edges = [
            e
            for e in (
                await s.execute(select(Integration.__table__).order_by(Integration.created_at, Integration.id))
            ).all()
            if e.from_tool_id in live and e.to_tool_id in live and e.status != "retired"
        ]
        return {
            "nodes": [
                {
                    "id": t.id,
                    "name": t.name,
                    "category": t.category,
                    "lifecycle": t.lifecycle,
                    "owner": {"team": t.owner_team, "person": t.owner_person},
                }
                for t in tools
            ],
            "edges": [integration_view(e) for e in edges],
        }

    async def analysis(self, s: AsyncSession) -> dict[str, Any]:
        """Orphans (no owning team or person), islands (no integration) and single points of failure
        (articulation points of the undirected graph of active integrations between active tools)."""
        g = await self.graph(s)
        nodes = g["nodes"]
        orphans = [n["id"] for n in nodes if not n["owner"]["team"] and not n["owner"]["person"]]
        touched = {e["from_tool_id"] for e in g["edges"]} | {e["to_tool_id"] for e in g["edges"]}
        islands = [n["id"] for n in nodes if n["id"] not in touched]
        active = {n["id"] for n in nodes if n["lifecycle"] == "active"}
        spofs = single_points_of_failure(
            active, [(e["from_tool_id"], e["to_tool_id"]) for e in g["edges"] if e["status"] == "active"]
        )
        by_name = {n["id"]: n["name"] for n in nodes}
        return {
            "orphans": orphans,
            "islands": islands,
            "single_points_of_failure": sorted(spofs, key=lambda i: (by_name[i], i)),
        }

    # --- money across the stack -------------------------------------------------------------------

    async def set_fx_rate(self, s: AsyncSession, body: schemas.FxRateIn) -> dict[str, Any]:
        base = self.settings.base_currency
        if body.currency == base:
            raise Invalid.on("currency", f"{base} is the base currency; its rate is 1 by definition")
        row = await s.get(FxRate, (base, body.currency))
        if row is None:
            row = FxRate(base_currency=base, currency=body.currency)
            s.add(row)
        row.rate, row.updated_at = str(body.rate), utcnow()
        await s.flush()
        return {"base_currency": base, "currency": row.currency, "rate": row.rate, "updated_at": row.updated_at}

    async def fx_rates(self, s: AsyncSession) -> list[dict[str, Any]]:
        rows = (
            await s.scalars(
                select(FxRate).where(FxRate.base_currency == self.settings.base_currency).order_by(FxRate.currency)
            )
        ).all()
        return [
            {"base_currency": r.base_currency, "currency": r.currency, "rate": r.rate, "updated_at": r.updated_at}
            for r in rows
        ]

    async def _annual_cost_by_tool(self, s: AsyncSession, tool_ids: set[str]) -> dict[str, int]:
        """Each tool's annual cost of its active contracts, in base-currency minor units."""
        base = self.settings.base_currency
        rates = {
            r.currency: Decimal(r.rate)
            for r in (await s.scalars(select(FxRate).where(FxRate.base_currency == base))).all()
        }
        contracts = (
            await s.execute(
                select(Contract.tool_id, Contract.currency, Contract.cost_minor, Contract.billing_period).where(
                    Contract.status == "active"
                )
            )
        ).all()
        missing = sorted(
            {c.currency for c in contracts if c.tool_id in tool_ids and c.currency != base and c.currency not in rates}
        )
        if missing:
            raise Conflict(
                f"No exchange rate to {base} for {', '.join(missing)}: post one to /v1/fx-rates "
                f"(units of {base} per unit) before asking for totals.",
                missing_rates=missing,
            )
        out: dict[str, int] = defaultdict(int)
        for c in contracts:
            if c.tool_id in tool_ids:
                out[c.tool_id] += convert(
                    annual_minor(c.cost_minor, c.billing_period), c.currency, base, rates.get(c.currency, Decimal(1))
                )
        # Costs are >= 0, so every sum a report shows (per tool, capability, group) is at most the total.
        if sum(out.values()) >= MAX_MINOR:
            used = sorted({c.currency for c in contracts if c.tool_id in tool_ids and c.currency != base})
            raise Conflict(
                f"The annual cost converted to {base} adds up to {fmt(MAX_MINOR, base)} or more, more than a "
                f"total may be: check the exchange rates to {base} ({', '.join(used) or 'none used'}) and the "
                "contracts' costs.",
                currencies=used,
            )
        return out

    async def overlaps(self, s: AsyncSession) -> dict[str, Any]:
        """Capabilities that two or more active tools share, with those tools' combined annual cost."""
        tools = (await s.execute(select(Tool.__table__).where(Tool.lifecycle == "active").order_by(Tool.name))).all()
        by_cap: dict[str, list[Any]] = defaultdict(list)
        for t in tools:
            for cap in t.capabilities:
                by_cap[cap].append(t)
        shared = {cap: ts for cap, ts in by_cap.items() if len(ts) > 1}
        costs = await self._annual_cost_by_tool(s, {t.id for ts in shared.values() for t in ts})
        base = self.settings.base_currency
        items = [
            {
                "capability": cap,
                "tools": [t.id for t in ts],
                "tool_names": [t.name for t in ts],
                "annual_cost": fmt(sum(costs.get(t.id, 0) for t in ts), base),
                "currency": base,
                "_sort": sum(costs.get(t.id, 0) for t in ts),
            }
            for cap, ts in shared.items()
        ]
        items.sort(key=lambda i: (-i["_sort"], i["capability"]))
        for i in items:
            del i["_sort"]
        return {"currency": base, "items": items}

    async def costs(self, s: AsyncSession, group_by: str) -> dict[str, Any]:
        """Annualized cost of the live stack (tools not retired, active contracts) by category or team."""
        tools = (await s.execute(select(Tool.__table__).where(Tool.lifecycle != "retired"))).all()
        costs = await self._annual_cost_by_tool(s, {t.id for t in tools})
        groups: dict[str | None, dict[str, Any]] = {}
        for t in tools:
            key = t.category if group_by == "category" else t.owner_team
            g = groups.setdefault(key, {"group": key, "minor": 0, "tools": 0})
            g["minor"] += costs.get(t.id, 0)
            g["tools"] += 1
        base = self.settings.base_currency
        ordered = sorted(groups.values(), key=lambda g: (-g["minor"], g["group"] or ""))
        return {
            "group_by": group_by,
            "currency": base,
            "items": [
                {"group": g["group"], "annual_cost": fmt(g["minor"], base), "tools": g["tools"]} for g in ordered
            ],
            "total": fmt(sum(costs.values()), base),
        }


def single_points_of_failure(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> set[str]:
    """Nodes whose removal splits a connected part of the data flow: the articulation points of the
    undirected graph (direction does not matter: a broken tool stops the flow either way)."""
    keep = set(nodes)
    flow = nx.Graph()
    flow.add_nodes_from(keep)
    flow.add_edges_from((a, b) for a, b in edges if a in keep and b in keep and a != b)
    return set(nx.articulation_points(flow))


# --- views ----------------------------------------------------------------------------------------


def tool_view(t: Tool) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "vendor": t.vendor,
        "category": t.category,
        "capabilities": list(t.capabilities),
        "owner": {"team": t.owner_team, "person": t.owner_person},
        "business_owner": t.business_owner,
        "lifecycle": t.lifecycle,
        "status": t.lifecycle,
        "time_class": t.time_class,
        "personal_data": t.personal_data,
        "sso": t.sso,
        "url": t.url,
        "notes": t.notes,
        "version": t.version,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
    }


def contract_view(c: Contract, tool: Tool | None) -> dict[str, Any]:
    return {
        "id": c.id,
        "tool_id": c.tool_id,
        "tool_name": tool.name if tool else "",
        "term": c.term,
        "start": c.start,
        "end": c.end,
        "billing_period": c.billing_period,
        "cost": fmt(c.cost_minor, c.currency),
        "currency": c.currency,
        "annual_cost": fmt(annual_minor(c.cost_minor, c.billing_period), c.currency),
        "commit_amount": fmt(commit_minor(c.cost_minor, c.billing_period, c.start, c.end), c.currency),
        "seats": c.seats,
        "auto_renew": c.auto_renew,
        "notice_days": c.notice_days,
        "notice_deadline": notice_deadline(c.end, c.notice_days),
        "budget_line_code": c.budget_line_code,
        "external_ref": c.external_ref,
        "status": c.status,
        "version": c.version,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    }


def contract_event(c: Contract, tool: Tool) -> dict[str, Any]:
    """The data of registry.contract.created|renewed|cancelled, as docs/events.md lists it."""
    return {
        "contract_id": c.id,
        "tool_id": tool.id,
        "tool_name": tool.name,
        "term": c.term,
        "start": c.start.isoformat(),
        "end": c.end.isoformat(),
        "billing_period": c.billing_period,
        "cost": fmt(c.cost_minor, c.currency),
        "currency": c.currency,
        "annual_cost": fmt(annual_minor(c.cost_minor, c.billing_period), c.currency),
        "commit_amount": fmt(commit_minor(c.cost_minor, c.billing_period, c.start, c.end), c.currency),
        "budget_line_code": c.budget_line_code,
        "fiscal_year": c.start.year,
        "period": f"{c.start.year:04d}-{c.start.month:02d}",
        "seats": c.seats,
        "auto_renew": c.auto_renew,
        "notice_days": c.notice_days,
        "external_ref": f"contract:{c.id}:{c.term}",
    }


def integration_view(e: Integration) -> dict[str, Any]:
    return {
        "id": e.id,
        "from_tool_id": e.from_tool_id,
        "to_tool_id": e.to_tool_id,
        "data_objects": list(e.data_objects),
        "direction": e.direction,
        "method": e.method,
        "owner": e.owner,
        "status": e.status,
        "notes": e.notes,
        "created_at": e.created_at,
    }


def mermaid(graph: dict[str, Any]) -> str:
    """The integration graph as a Mermaid flowchart (dotted arrows for edges that are not active)."""
    ids = {n["id"]: f"t{i}" for i, n in enumerate(graph["nodes"])}
    lines = ["flowchart LR"]
    for n in graph["nodes"]:
        lines.append(f'    {ids[n["id"]]}["{_mermaid_text(n["name"])}"]')
    for e in graph["edges"]:
        arrow = (
            ("<-.->" if e["direction"] == "two_way" else "-.->")
            if e["status"] != "active"
            else ("<-->" if e["direction"] == "two_way" else "-->")
        )
        label = ", ".join(e["data_objects"]) or e["method"]
        lines.append(f'    {ids[e["from_tool_id"]]} {arrow}|"{_mermaid_text(label)}"| {ids[e["to_tool_id"]]}')
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("|", "#124;").replace("\n", " ")


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {f: {"from": before[f], "to": after[f]} for f in TRACKED if before[f] != after[f]}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


async def _flush_unique_name(s: AsyncSession, name: str | None) -> None:
    """Flush; a concurrent writer that took the same name first is a 409, not a 500."""
    try:
        await s.flush()
    except IntegrityError as exc:
        what = f"A tool named {name!r} already exists." if name else "One of the tools' names was taken meanwhile."
        raise Conflict(what) from exc


def _check_version(current: int, expected: int | None, what: str) -> None:
    if expected is not None and current != expected:
        raise PreconditionFailed(
            f"The {what} is at version {current}, not {expected}: reload it and try again.", current_version=current
        )
