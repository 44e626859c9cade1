"""Domain logic of the budget service: no HTTP, no framework.

Every change of money is a posting: one or more append-only ledger entries
(`entries`) whose signed deltas on the four buckets (allocated, committed,
pending, spent) are applied, in the same transaction, to the running balances
(`balances`) of the line and of all its ancestors. The invariant "no line's
available money goes negative under policy block" is checked on those balance
rows while they are locked. On PostgreSQL a posting is one statement (see
services.budget.posting) that inserts its entries, commitment row and outbox
events, locks the balance rows in (line id, period) order, updates them, refuses
a shortfall and adds threshold events, so concurrent postings queue on the rows
they share, never deadlock, and hold the locks only for that statement and the
commit; flows that must read figures or lock a commitment first take the same
ordered locks early (`_lock`). On SQLite the BEGIN IMMEDIATE of shared.db already
serializes writers.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from sqlalchemy import JSON, and_, bindparam, func, insert, literal, select, tuple_, type_coerce, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from services.budget import posting
from services.budget.models import (
    balances,
    closed_periods,
    commitments,
    entries,
    erp_invoices,
    fx_rates,
    lines,
    plans,
)
from shared.csvtext import read_csv
from shared.db import SINGLE_ACTION, has_run_anything, utcnow
from shared.errors import Conflict, DomainError, Errors, FieldError, Forbidden, Invalid, NotFound, PreconditionFailed
from shared.events import new_event
from shared.identity import Principal, ensure_unscoped
from shared.money import EXPONENTS, MAX_MINOR, check_rate, convert, exponent, fmt, parse_decimal, to_minor
from shared.outbox import Outbox
from shared.pagination import decode_cursor, page_of

DIMENSIONS = ("region", "channel", "campaign", "cost_center", "owner")
# A line's limits, here so that the JSON API (schemas.LineIn) and the CSV import check the same.
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
CODE_MAX, NAME_MAX, MAX_TAGS, MAX_DEPTH = 100, 200, 50, 40  # depth: the path column holds 2000 characters of ids
DIMENSION_MAX = {"region": 100, "channel": 100, "campaign": 200, "cost_center": 100, "owner": 200}
# FX rates (quote per base) are kept as text; beyond these bounds a rate is a typo.
PERIOD_RE = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])", re.ASCII)  # fullmatch: no trailing newline
BUCKETS = ("allocated", "committed", "pending", "spent")
OPEN_STATUSES = ("pending_approval", "committed")
THRESHOLDS = (80, 100)
# Entry kinds a person may reverse; commitments are released instead.
REVERSIBLE = {"allocation", "transfer_out", "transfer_in", "actual", "consumption"}


# ---------------------------------------------------------------- hot-path statements, built once

# The line, its plan and whether a period of the plan is closed: one round trip per posting.
_LINE_AND_PLAN = (
    select(
        lines,
        *[c.label(f"p_{c.name}") for c in plans.c],
        select(closed_periods.c.period)
        .where(closed_periods.c.plan_id == lines.c.plan_id, closed_periods.c.period == bindparam("period"))
        .exists()
        .label("period_closed"),
    )
    .join(plans, plans.c.id == lines.c.plan_id)
    .where(lines.c.id == bindparam("line_id"))
)
# Lock in one fixed order (line id, period) so concurrent postings queue instead of deadlocking.
_LOCK_BALANCES = (
    select(balances)
    .where(
        balances.c.line_id.in_(bindparam("ids", expanding=True)),
        balances.c.period.in_(bindparam("periods", expanding=True)),
    )
    .order_by(balances.c.line_id, balances.c.period)
    .with_for_update()
)
_b = balances.c
_ADD_TO_BALANCES = (
    update(balances)
    .where(_b.line_id == bindparam("k_line"), _b.period == bindparam("k_period"))
    .values(
        allocated=_b.allocated + bindparam("da"),
        committed=_b.committed + bindparam("dc"),
        pending=_b.pending + bindparam("dp"),
        spent=_b.spent + bindparam("ds"),
        own_allocated=_b.own_allocated + bindparam("oa"),
        own_committed=_b.own_committed + bindparam("oc"),
        own_pending=_b.own_pending + bindparam("op"),
        own_spent=_b.own_spent + bindparam("os"),
    )
    .execution_options(synchronize_session=False)
)
_INSERT_ENTRIES = insert(entries)
_INSERT_COMMITMENT = insert(commitments)
_SELECT_BALANCES = select(_b.line_id, _b.period, _b.allocated, _b.committed, _b.pending, _b.spent).where(
    tuple_(_b.line_id, _b.period).in_(bindparam("keys", expanding=True))
)


def _dimension(name: str) -> Any:
    """A line dimension as text in SQL: json_extract on SQLite, ->> on PostgreSQL."""
    if name not in DIMENSIONS:
        raise Invalid.on("query.group_by", f"must be one of {', '.join(DIMENSIONS)}")
    return type_coerce(lines.c.dimensions, JSON)[name].as_string()


async def _core(s: AsyncSession, statement: Any, params: Any = None) -> Any:
    """Execute a Core statement on the session's connection, skipping the ORM layer (hot path)."""
    conn = await s.connection()
    return await conn.execute(statement, params)


# ---------------------------------------------------------------- small helpers


def new_id() -> str:
    return str(uuid.uuid4())


def periods_of(fiscal_year: int) -> list[str]:
    """A plan's periods: the twelve months of its fiscal year."""
    return [f"{fiscal_year}-{m:02d}" for m in range(1, 13)]


def check_period(plan: Row, period: str, field_name: str = "period") -> str:
    if not isinstance(period, str) or not PERIOD_RE.fullmatch(period):
        raise Invalid.on(field_name, f"{period!r} is not a period; use YYYY-MM such as {plan.fiscal_year}-03")
    if int(period[:4]) != plan.fiscal_year:
        raise Invalid.on(field_name, f"{period} is outside plan {plan.name!r} (fiscal year {plan.fiscal_year})")
    return period


def period_range(plan: Row, start: str | None, end: str | None) -> tuple[str, str]:
    start = check_period(plan, start, "query.from") if start else f"{plan.fiscal_year}-01"
    end = check_period(plan, end, "query.to") if end else f"{plan.fiscal_year}-12"
    if start > end:
        raise Invalid.on("query.from", f"{start} is after to={end}")
    return start, end


def period_bounds(period: str) -> tuple[dt.date, dt.date]:
    year, month = int(period[:4]), int(period[5:7])
    first = dt.date(year, month, 1)
    nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
    return first, nxt - dt.timedelta(days=1)


def ancestors(path: str) -> list[str]:
    """Line ids from the root down to the line itself."""
    return [p for p in path.split("/") if p]


def merged_dimensions(parent: dict[str, Any] | None, own: dict[str, Any] | None) -> dict[str, Any]:
    """A line inherits its parent's dimensions unless it sets its own."""
    out = {k: v for k, v in (parent or {}).items() if v is not None}
    out.update({k: v for k, v in (own or {}).items() if v is not None})
    return out


@dataclass
class Money:
    """An amount as given and as it counts in the plan currency."""

    original_minor: int
    original_currency: str
    minor: int  # plan currency
    rate: str


@dataclass
class Leg:
    """One ledger entry of a posting: a line, a period and the change to each bucket."""

    line: Row
    period: str
    kind: str
    amount: int
    deltas: tuple[int, int, int, int]  # allocated, committed, pending, spent
    money: Money
    entry_date: dt.date
    commitment_id: str | None = None
    external_ref: str | None = None
    vendor: str | None = None
    memo: str | None = None
    reverses_group_id: str | None = None
    id: str = field(default_factory=new_id)


class Raced(Conflict):
    """A commitment moved (line, period) or was decided between this request's first read and its lock.
    Nothing was written; the same request, run again, sees the new state (the ERP ingest does so)."""

    def __init__(self, commitment_id: str):
        super().__init__(f"Commitment {commitment_id} changed while this request ran; nothing was written, retry it.")


@dataclass
class Figures:
    allocated: int = 0
    committed: int = 0
    pending: int = 0
    spent: int = 0

    @property
    def available(self) -> int:
        return self.allocated - self.committed - self.pending - self.spent

    @property
    def consumed(self) -> int:
        return self.committed + self.pending + self.spent

    def add(self, other: Figures) -> None:
        self.allocated += other.allocated
        self.committed += other.committed
        self.pending += other.pending
        self.spent += other.spent

    def view(self, currency: str) -> dict[str, str]:
        return {
            "allocated": fmt(self.allocated, currency),
            "committed": fmt(self.committed, currency),
            "pending": fmt(self.pending, currency),
            "spent": fmt(self.spent, currency),
            "available": fmt(self.available, currency),
            "currency": currency,
        }


# ---------------------------------------------------------------- views (also event payloads)


def plan_view(p: Row) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "fiscal_year": p.fiscal_year,
        "currency": p.currency,
        "status": p.status,
        "overspend_policy": p.overspend_policy,
        "approval_threshold": None
        if p.approval_threshold_minor is None
        else fmt(p.approval_threshold_minor, p.currency),
        "periods": periods_of(p.fiscal_year),
        "version": p.version,
        "created_by": p.created_by,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


def line_view(ln: Row, parent_code: str | None) -> dict[str, Any]:
    return {
        "id": ln.id,
        "plan_id": ln.plan_id,
        "code": ln.code,
        "name": ln.name,
        "parent_id": ln.parent_id,
        "parent_code": parent_code,
        "depth": ln.depth,
        "dimensions": ln.dimensions,
        "tags": ln.tags,
        "version": ln.version,
        "created_at": ln.created_at,
    }


def commitment_view(c: Row, plan: Row, line: Row) -> dict[str, Any]:
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


def entry_view(e: Any, currency: str, line_code: str | None = None) -> dict[str, Any]:
    return {
        "id": e.id,
        "group_id": e.group_id,
        "plan_id": e.plan_id,
        "line_id": e.line_id,
        "line_code": line_code,
        "period": e.period,
        "date": e.entry_date.isoformat(),
        "kind": e.kind,
        "amount": fmt(e.amount_minor, currency),
        "currency": currency,
        "original_amount": fmt(e.original_amount_minor, e.original_currency),
        "original_currency": e.original_currency,
        "fx_rate": e.fx_rate,
        "effect": {b: fmt(getattr(e, f"d_{b}"), currency) for b in BUCKETS},
        "commitment_id": e.commitment_id,
        "reverses_group_id": e.reverses_group_id,
        "external_ref": e.external_ref,
        "vendor": e.vendor,
        "memo": e.memo,
        "author": e.author,
        "created_at": e.created_at,
    }


# ---------------------------------------------------------------- the ledger


class _Stale(Exception):
    """The cached line or plan a posting was built from changed; nothing was written."""


_LINE_CACHE_SIZE = 10_000


class Ledger:
    """The budget domain. Every method runs inside the caller's transaction `s`."""

    def __init__(self, outbox: Outbox, *, group_commit: int = 2):
        self.outbox = outbox
        # Concurrent single-action postings written together, `group_commit` statements in flight at
        # once (PostgreSQL; see posting.Batcher); 0: each posting is its own statement.
        self._batcher = posting.Batcher(parallel=group_commit) if group_commit > 0 else None
        # line id -> (line row, plan) of lines in active plans, PostgreSQL only; see _line_and_plan.
        self._lines: dict[str, tuple[Row, Any]] = {}

    # ------------------------------------------------------------ plans

    async def create_plan(
        self,
        s: AsyncSession,
        who: Principal,
        *,
        name: str,
        fiscal_year: int,
        currency: str,
        overspend_policy: str,
        approval_threshold: Decimal | None,
    ) -> dict[str, Any]:
        ensure_unscoped(who, "Creating a plan")
        threshold = None
        if approval_threshold is not None:
            if approval_threshold < 0:
                raise Invalid.on("approval_threshold", "must not be negative")
            threshold = to_minor(approval_threshold, currency, "approval_threshold")
        now = utcnow()
        values = dict(
            id=new_id(),
            name=name,
            fiscal_year=fiscal_year,
            currency=currency,
            status="draft",
            overspend_policy=overspend_policy,
            approval_threshold_minor=threshold,
            version=1,
            created_by=who.subject,
            created_at=now,
            updated_at=now,
        )
        await s.execute(insert(plans).values(**values))
        return plan_view(await self.plan(s, values["id"]))

    async def plan(self, s: AsyncSession, plan_id: str, *, lock: bool = False) -> Row:
        q = select(plans).where(plans.c.id == plan_id)
        if lock:
            q = q.with_for_update()
        row = (await s.execute(q)).first()
        if row is None:
            raise NotFound(f"No plan {plan_id}.")
        return row

    async def list_plans(
        self,
        s: AsyncSession,
        *,
        limit: int,
        cursor: str | None,
        status: str | None,
        fiscal_year: int | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        q = select(plans).order_by(plans.c.id).limit(limit + 1)
        after = decode_cursor(cursor)
        if after:
            q = q.where(plans.c.id > str(after[0]))
        if status:
            q = q.where(plans.c.status == status)
        if fiscal_year:
            q = q.where(plans.c.fiscal_year == fiscal_year)
        rows, nxt = page_of((await s.execute(q)).all(), limit, lambda r: (r.id,))
        return [plan_view(r) for r in rows], nxt

    async def update_plan(
        self,
        s: AsyncSession,
        who: Principal,
        plan_id: str,
        expected_version: int,
        changes: dict[str, Any],
    ) -> dict[str, Any]:
        ensure_unscoped(who, "Changing a plan")
        p = await self.plan(s, plan_id, lock=True)
        if p.version != expected_version:
            raise PreconditionFailed(
                f"Plan {plan_id} is at version {p.version}, not {expected_version}; fetch it again and retry.",
                current_version=p.version,
            )
        if p.status == "closed":
            raise Conflict(f"Plan {p.name!r} is closed and can no longer be changed.")
        values: dict[str, Any] = {}
        if "name" in changes:
            values["name"] = changes["name"]
        if "overspend_policy" in changes:
            values["overspend_policy"] = changes["overspend_policy"]
        if "approval_threshold" in changes:
            t = changes["approval_threshold"]
            if t is not None and t < 0:
                raise Invalid.on("approval_threshold", "must not be negative")
            values["approval_threshold_minor"] = None if t is None else to_minor(t, p.currency, "approval_threshold")
        values.update(version=p.version + 1, updated_at=utcnow())
        await s.execute(update(plans).where(plans.c.id == plan_id).values(**values))
        return plan_view(await self.plan(s, plan_id))

    async def activate_plan(self, s: AsyncSession, who: Principal, plan_id: str) -> dict[str, Any]:
        ensure_unscoped(who, "Activating a plan")
        p = await self.plan(s, plan_id, lock=True)
        if p.status != "draft":
            raise Conflict(f"Plan {p.name!r} is {p.status}; only a draft plan can be activated.")
        await s.execute(
            update(plans)
            .where(plans.c.id == plan_id)
            .values(status="active", version=p.version + 1, updated_at=utcnow())
        )
        await self.outbox.add(
            s,
            "budget.plan.activated",
            plan_id,
            {"plan_id": plan_id, "name": p.name, "fiscal_year": p.fiscal_year, "currency": p.currency},
        )
        return plan_view(await self.plan(s, plan_id))

    async def close_plan(self, s: AsyncSession, who: Principal, plan_id: str) -> dict[str, Any]:
        ensure_unscoped(who, "Closing a plan")
        p = await self.plan(s, plan_id, lock=True)
        if p.status != "active":
            raise Conflict(f"Plan {p.name!r} is {p.status}; only an active plan can be closed.")
        await s.execute(
            update(plans)
            .where(plans.c.id == plan_id)
            .values(status="closed", version=p.version + 1, updated_at=utcnow())
        )
        return plan_view(await self.plan(s, plan_id))

    async def close_period(self, s: AsyncSession, who: Principal, plan_id: str, period: str) -> dict[str, Any]:
        ensure_unscoped(who, "Closing a month")
        p = await self.plan(s, plan_id, lock=True)
        check_period(p, period, "path.period")
        row = (
            await s.execute(
                select(closed_periods).where(closed_periods.c.plan_id == plan_id, closed_periods.c.period == period)
            )
        ).first()
        if row is None:
            values = dict(plan_id=plan_id, period=period, closed_by=who.subject, closed_at=utcnow())
            await s.execute(insert(closed_periods).values(**values))
        else:
            values = dict(row._mapping)
        return {**values, "status": "closed"}

    async def list_closed_periods(self, s: AsyncSession, plan_id: str) -> list[str]:
        return list(
            (
                await s.execute(
                    select(closed_periods.c.period)
                    .where(closed_periods.c.plan_id == plan_id)
                    .order_by(closed_periods.c.period)
                )
            ).scalars()
        )

    # ------------------------------------------------------------ lines

    async def create_line(
        self,
        s: AsyncSession,
        who: Principal,
        plan_id: str,
        *,
        code: str,
        name: str,
        parent_code: str | None = None,
        parent_id: str | None = None,
        dimensions: dict[str, Any] | None = None,
        tags: Sequence[str] = (),
    ) -> dict[str, Any]:
        p = await self.plan(s, plan_id)
        if p.status == "closed":
            raise Conflict(f"Plan {p.name!r} is closed; no new lines.")
        return await self._create_line(
            s,
            who,
            p,
            code=code,
            name=name,
            parent_code=parent_code,
            parent_id=parent_id,
            dimensions=dimensions,
            tags=tags,
        )

    async def _create_line(
        self,
        s: AsyncSession,
        who: Principal,
        p: Row,
        *,
        code: str,
        name: str,
        parent_code: str | None,
        parent_id: str | None,
        dimensions: dict[str, Any] | None,
        tags: Sequence[str],
    ) -> dict[str, Any]:
        parent = None
        if parent_code is not None or parent_id is not None:
            q = select(lines).where(lines.c.plan_id == p.id)
            q = q.where(lines.c.code == parent_code) if parent_code is not None else q.where(lines.c.id == parent_id)
            parent = (await s.execute(q)).first()
            if parent is None:
                fname, val = ("parent_code", parent_code) if parent_code is not None else ("parent_id", parent_id)
                raise Invalid.on(fname, f"no line {val!r} in plan {p.name!r}")
        exists = await s.scalar(select(lines.c.id).where(lines.c.plan_id == p.id, lines.c.code == code))
        if exists:
            raise Conflict(
                f"Plan {p.name!r} already has a line with code {code!r}.",
                errors=[FieldError("code", "already used in this plan", "duplicate")],
            )
        if parent is not None and not who.may_see(parent.dimensions):
            raise Forbidden(
                f"Your scopes ({', '.join(sorted(who.scopes))}) do not cover the parent line "
                f"{parent.code!r}; a line under it would add to its subtree."
            )
        dims = merged_dimensions(parent.dimensions if parent else None, dimensions)
        if not who.may_see(dims):
            raise Forbidden(
                f"Your scopes ({', '.join(sorted(who.scopes))}) do not cover a line with dimensions {dims}."
            )
        if parent is not None and parent.depth + 1 >= MAX_DEPTH:
            raise Invalid.on(
                "parent_code" if parent_code is not None else "parent_id",
                f"a line may sit at most {MAX_DEPTH} levels deep",
            )
        line_id = new_id()
        path = (parent.path if parent else "/") + line_id + "/"
        values = dict(
            id=line_id,
            plan_id=p.id,
            code=code,
            name=name,
            parent_id=parent.id if parent else None,
            path=path,
            depth=path.count("/") - 2,
            dimensions=dims,
            tags=list(tags),
            version=1,
            created_at=utcnow(),
        )
        await s.execute(insert(lines).values(**values))
        await s.execute(
            insert(balances),
            [
                dict(
                    line_id=line_id,
                    period=per,
                    plan_id=p.id,
                    allocated=0,
                    committed=0,
                    pending=0,
                    spent=0,
                    own_allocated=0,
                    own_committed=0,
                    own_pending=0,
                    own_spent=0,
                )
                for per in periods_of(p.fiscal_year)
            ],
        )
        pcode = parent.code if parent else None
        await self.outbox.add(
            s,
            "budget.line.created",
            line_id,
            {"plan_id": p.id, "line_id": line_id, "code": code, "name": name, "parent_code": pcode, "dimensions": dims},
        )
        row = (await s.execute(select(lines).where(lines.c.id == line_id))).first()
        return line_view(row, pcode)

    async def line(self, s: AsyncSession, who: Principal | None, line_id: str, field_name: str = "line_id") -> Row:
        row = (await s.execute(select(lines).where(lines.c.id == line_id))).first()
        if row is None:
            if field_name.startswith("path"):
                raise NotFound(f"No budget line {line_id}.")
            raise Invalid.on(field_name, f"no budget line {line_id!r}", "not_found")
        if who is not None and not who.may_see(row.dimensions):
            raise Forbidden(f"Your scopes ({', '.join(sorted(who.scopes))}) do not cover line {row.code!r}.")
        return row

    async def line_detail(self, s: AsyncSession, who: Principal, line_id: str) -> dict[str, Any]:
        ln = await self.line(s, who, line_id, "path.line_id")
        p = await self.plan(s, ln.plan_id)
        pcode = await s.scalar(select(lines.c.code).where(lines.c.id == ln.parent_id)) if ln.parent_id else None
        return {**line_view(ln, pcode), "balance": await self._balance(s, who, p, ln, *period_range(p, None, None))}

    async def line_balance(
        self,
        s: AsyncSession,
        who: Principal,
        line_id: str,
        start: str | None,
        end: str | None,
    ) -> dict[str, Any]:
        ln = await self.line(s, who, line_id, "path.line_id")
        p = await self.plan(s, ln.plan_id)
        start, end = period_range(p, start, end)
        return {
            "line_id": ln.id,
            "line_code": ln.code,
            "from": start,
            "to": end,
            **await self._balance(s, who, p, ln, start, end),
        }

    async def _balance(self, s: AsyncSession, who: Principal, p: Row, ln: Row, start: str, end: str) -> dict:
        if not who.scopes:
            # The running subtree totals: one indexed read, whatever the size of the ledger.
            b = balances.c
            row = (
                await s.execute(
                    select(
                        func.coalesce(func.sum(b.allocated), 0),
                        func.coalesce(func.sum(b.committed), 0),
                        func.coalesce(func.sum(b.pending), 0),
                        func.coalesce(func.sum(b.spent), 0),
                    ).where(b.line_id == ln.id, b.period >= start, b.period <= end)
                )
            ).one()
            return Figures(*map(int, row)).view(p.currency)
        # A scoped caller sees only the part of the subtree it may see.
        tree = await self._figures(s, who, p, start, end, under=ln.path)
        return tree["subtree"].get(ln.id, Figures()).view(p.currency)

    async def _figures(
        self,
        s: AsyncSession,
        who: Principal,
        p: Row,
        start: str,
        end: str,
        under: str | None = None,
    ) -> dict[str, Any]:
        """Own and subtree figures of every line the caller may see, from the running balances."""
        lq = select(
            lines.c.id,
            lines.c.code,
            lines.c.name,
            lines.c.parent_id,
            lines.c.path,
            lines.c.depth,
            lines.c.dimensions,
            lines.c.tags,
            lines.c.version,
        ).where(lines.c.plan_id == p.id)
        if under:
            lq = lq.where(lines.c.path.startswith(under, autoescape=True))
        all_lines = [r for r in (await s.execute(lq)).all()]
        visible = {r.id: r for r in all_lines if who.may_see(r.dimensions)}
        b = balances.c
        bq = select(
            b.line_id,
            func.sum(b.own_allocated),
            func.sum(b.own_committed),
            func.sum(b.own_pending),
            func.sum(b.own_spent),
        ).where(b.plan_id == p.id, b.period >= start, b.period <= end)
        bq = bq.group_by(b.line_id)
        own: dict[str, Figures] = {}
        for row in (await s.execute(bq)).all():
            if row[0] in visible:
                own[row[0]] = Figures(*(int(v or 0) for v in row[1:]))
        subtree: dict[str, Figures] = {lid: Figures() for lid in visible}
        for lid, fig in own.items():
            for anc in ancestors(visible[lid].path):
                if anc in subtree:
                    subtree[anc].add(fig)
        return {"lines": visible, "own": own, "subtree": subtree, "all_codes": {r.id: r.code for r in all_lines}}

    async def tree(
        self, s: AsyncSession, who: Principal, plan_id: str, start: str | None, end: str | None
    ) -> dict[str, Any]:
        p = await self.plan(s, plan_id)
        start, end = period_range(p, start, end)
        f = await self._figures(s, who, p, start, end)
        visible, codes = f["lines"], f["all_codes"]
        nodes: dict[str, dict[str, Any]] = {}
        for lid, r in sorted(visible.items(), key=lambda kv: (kv[1].depth, kv[1].code)):
            nodes[lid] = {
                "id": lid,
                "code": r.code,
                "name": r.name,
                "parent_id": r.parent_id,
                "parent_code": codes.get(r.parent_id) if r.parent_id else None,
                "depth": r.depth,
                "dimensions": r.dimensions,
                "tags": r.tags,
                "version": r.version,
                "balance": f["subtree"][lid].view(p.currency),
                "children": [],
            }
        roots = []
        for node in nodes.values():
            parent = node["parent_id"]
            (nodes[parent]["children"] if parent in nodes else roots).append(node)
        return {"plan_id": p.id, "currency": p.currency, "from": start, "to": end, "items": roots}

    async def summary(
        self,
        s: AsyncSession,
        who: Principal,
        plan_id: str,
        group_by: str | None,
        start: str | None,
        end: str | None,
        today: dt.date | None = None,
    ) -> dict[str, Any]:
        p = await self.plan(s, plan_id)
        start, end = period_range(p, start, end)
        # From the running balances: summed per line over the range in the database (at most 12 months,
        # so inside BIGINT), then per dimension value here, where integers do not overflow (SQLite's
        # sum() over a thousand lines could). Scopes become WHERE clauses.
        b = balances.c
        per_line = (
            select(
                b.line_id,
                func.sum(b.own_allocated).label("a"),
                func.sum(b.own_committed).label("c"),
                func.sum(b.own_pending).label("p"),
                func.sum(b.own_spent).label("s"),
            )
            .where(b.plan_id == p.id, b.period >= start, b.period <= end)
            .group_by(b.line_id)
            .subquery()
        )
        key = _dimension(group_by) if group_by else literal(None)
        q = select(key.label("k"), per_line.c.a, per_line.c.c, per_line.c.p, per_line.c.s).select_from(
            per_line.join(lines, lines.c.id == per_line.c.line_id)
        )
        for dim in sorted({sc.partition(":")[0] for sc in who.scopes if ":" in sc}):
            q = q.where(_dimension(dim).in_(sorted(who.scope_values(dim) or ())))
        by_key: dict[Any, Figures] = defaultdict(Figures)
        for row in (await s.execute(q)).all():
            by_key[row.k].add(Figures(*(int(v or 0) for v in row[1:])))
        groups: dict[Any, Figures] = {}
        total = Figures()
        for k, fig in by_key.items():
            if fig.allocated or fig.committed or fig.pending or fig.spent:  # a group appears once it has money
                groups[k] = fig
                total.add(fig)
        elapsed = _elapsed_share(start, end, today or utcnow().date())
        items = [
            {"group": {group_by: k} if group_by else {}, **fig.view(p.currency), "pacing": _pacing(fig, elapsed)}
            for k, fig in sorted(groups.items(), key=lambda kv: (kv[0] is None, str(kv[0])))
        ]
        return {
            "plan_id": p.id,
            "currency": p.currency,
            "from": start,
            "to": end,
            "group_by": group_by,
            "groups": items,
            "total": {**total.view(p.currency), "pacing": _pacing(total, elapsed)},
        }

    async def line_entries(
        self,
        s: AsyncSession,
        who: Principal,
        line_id: str,
        *,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        ln = await self.line(s, who, line_id, "path.line_id")
        p = await self.plan(s, ln.plan_id)
        q = select(entries).where(entries.c.line_id == ln.id).order_by(entries.c.seq).limit(limit + 1)
        after = decode_cursor(cursor, int)
        if after:
            q = q.where(entries.c.seq > after[0])
        rows, nxt = page_of((await s.execute(q)).all(), limit, lambda r: (r.seq,))
        return [entry_view(r, p.currency, ln.code) for r in rows], nxt

    # ------------------------------------------------------------ FX

    async def post_rate(
        self, s: AsyncSession, who: Principal, base: str, quote: str, date: dt.date, rate: Decimal
    ) -> dict[str, Any]:
        ensure_unscoped(who, "An FX rate")
        if base == quote:
            raise Invalid.on("quote", "must differ from base")
        if rate <= 0:
            raise Invalid.on("rate", "must be greater than zero")
        try:
            check_rate(rate)
        except ValueError as exc:
            raise Invalid.on("rate", str(exc)) from exc
        key = and_(fx_rates.c.base == base, fx_rates.c.quote == quote, fx_rates.c.rate_date == date)
        values = dict(rate=str(rate), created_by=who.subject, created_at=utcnow())
        if await s.scalar(select(func.count()).select_from(fx_rates).where(key)):
            await s.execute(update(fx_rates).where(key).values(**values))
        else:
            await s.execute(insert(fx_rates).values(base=base, quote=quote, rate_date=date, **values))
        return {"base": base, "quote": quote, "date": date.isoformat(), "rate": str(rate), "created_by": who.subject}

    async def list_rates(
        self, s: AsyncSession, *, base: str | None, quote: str | None, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        c = fx_rates.c
        q = select(fx_rates).order_by(c.base, c.quote, c.rate_date).limit(limit + 1)
        if base:
            q = q.where(c.base == base)
        if quote:
            q = q.where(c.quote == quote)
        after = decode_cursor(cursor, str, str, dt.date.fromisoformat)
        if after:
            q = q.where(tuple_(c.base, c.quote, c.rate_date) > tuple(after))
        rows, nxt = page_of((await s.execute(q)).all(), limit, lambda r: (r.base, r.quote, r.rate_date.isoformat()))
        return [
            {
                "base": r.base,
                "quote": r.quote,
                "date": r.rate_date.isoformat(),
                "rate": r.rate,
                "created_by": r.created_by,
            }
            for r in rows
        ], nxt

    async def rate(self, s: AsyncSession, base: str, quote: str, on: dt.date) -> Decimal:
        """The latest rate on or before `on` (quote per base); the inverse pair serves too."""
        c = fx_rates.c
        for b, q, invert in ((base, quote, False), (quote, base, True)):
            r = await s.scalar(
                select(c.rate).where(c.base == b, c.quote == q, c.rate_date <= on).order_by(c.rate_date.desc()).limit(1)
            )
            if r is not None:
                return Decimal(1) / Decimal(r) if invert else Decimal(r)
        raise Invalid(
            f"No FX rate {base}/{quote} on or before {on.isoformat()}; post one to /v1/fx-rates first.",
            errors=[FieldError("currency", f"no FX rate {base}/{quote} on or before {on.isoformat()}", "no_fx_rate")],
        )

    async def money(
        self, s: AsyncSession, p: Row, amount: Decimal, currency: str, on: dt.date, field_name: str = "amount"
    ) -> Money:
        if amount <= 0:
            raise Invalid.on(field_name, "must be greater than zero", "not_positive")
        exponent(currency)
        original = to_minor(amount, currency, field_name)
        if currency == p.currency:
            return Money(original, currency, original, "1")
        r = await self.rate(s, currency, p.currency, on)
        minor = convert(original, currency, p.currency, r)
        if minor <= 0:
            raise Invalid.on(field_name, f"{amount} {currency} is less than one minor unit of {p.currency}")
        if minor >= MAX_MINOR:
            raise Invalid.on(
                field_name, f"{amount} {currency} is {fmt(minor, p.currency)} {p.currency}, more than one amount may be"
            )
        return Money(original, currency, minor, str(r))

    # ------------------------------------------------------------ posting machinery

    async def _postable(
        self, s: AsyncSession, p: Row, period: str, date: dt.date | None, field_name: str = "period"
    ) -> dt.date:
        """Plan active, period inside it and open, date inside the period; returns the entry date."""
        if p.status != "active":
            what = "a draft; activate it before posting" if p.status == "draft" else "closed"
            raise Conflict(f"Plan {p.name!r} is {what}.")
        check_period(p, period, field_name)
        first, last = period_bounds(period)
        if date is None:
            date = first
        elif not first <= date <= last:
            raise Invalid.on("date", f"{date.isoformat()} is not in period {period}")
        if getattr(p, "checked_period", None) == period:
            closed = p.checked_period_closed  # looked up together with the line
        else:
            closed = bool(
                await s.scalar(
                    select(closed_periods.c.period).where(
                        closed_periods.c.plan_id == p.id, closed_periods.c.period == period
                    )
                )
            )
        if closed:
            raise Conflict(
                f"Period {period} of plan {p.name!r} is closed; no new entries can be dated in it.", period=period
            )
        return date

    async def _lock(self, s: AsyncSession, keys: Iterable[tuple[Row, str]]) -> dict[tuple[str, str], Row]:
        """Lock the balance rows of each (line, period) and of the line's ancestors, in one fixed order."""
        ids: set[str] = set()
        pers: set[str] = set()
        for ln, per in keys:
            ids.update(ancestors(ln.path))
            pers.add(per)
        rows = (await _core(s, _LOCK_BALANCES, {"ids": sorted(ids), "periods": sorted(pers)})).all()
        return {(r.line_id, r.period): r for r in rows}

    async def _write(
        self,
        s: AsyncSession,
        who: Principal,
        p: Row,
        legs: list[Leg],
        *,
        check: bool,
        group_id: str | None = None,
        commitment: dict[str, Any] | None = None,
        events: Sequence[tuple[str, str, dict[str, Any]]] = (),
        guard: Sequence[tuple[Row, Any, str]] = (),
        watch: tuple[Row, str] | None = None,
        last: bool = False,
    ) -> tuple[str, dict[tuple[str, str], tuple[Figures, Figures]]]:
        """Append the legs' entries (plus a new commitment row and outbox events, if given) and apply them to
        the running balances of each line and its ancestors; refuse if available would go negative.

        `watch` (a line and period) publishes budget.line.threshold_crossed when the posting takes that line's
        consumption past 80 % or 100 % of its allocation. `last`: the caller writes nothing after this, so on
        PostgreSQL, in a session whose owner runs a single action (shared.db.SINGLE_ACTION) and that has
        executed nothing yet, the posting commits by itself.

        The balance rows are locked by the update itself, in (line id, period) order, as the last statement
        before COMMIT (callers that must read figures first lock them earlier with `_lock`). Returns the group
        id and, per touched (line, period), its subtree figures before and after.
        """
        sub: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        own: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for leg in legs:
            o = own[(leg.line.id, leg.period)]
            for i, d in enumerate(leg.deltas):
                o[i] += d
            for anc in ancestors(leg.line.path):
                acc = sub[(anc, leg.period)]
                for i, d in enumerate(leg.deltas):
                    acc[i] += d
        group_id = group_id or legs[0].id
        now = utcnow()
        rows = [
            dict(
                id=leg.id,
                group_id=group_id,
                plan_id=p.id,
                line_id=leg.line.id,
                period=leg.period,
                entry_date=leg.entry_date,
                kind=leg.kind,
                amount_minor=leg.amount,
                original_amount_minor=leg.money.original_minor,
                original_currency=leg.money.original_currency,
                fx_rate=leg.money.rate,
                d_allocated=leg.deltas[0],
                d_committed=leg.deltas[1],
                d_pending=leg.deltas[2],
                d_spent=leg.deltas[3],
                commitment_id=leg.commitment_id,
                reverses_group_id=leg.reverses_group_id,
                external_ref=leg.external_ref,
                vendor=leg.vendor,
                memo=leg.memo,
                author=who.subject,
                created_at=now,
            )
            for leg in legs
        ]
        outbox = [
            self.outbox.row(new_event(subject, self.outbox.source, sid, data), now) for subject, sid, data in events
        ]
        keys = sorted(sub)
        deltas = [(*sub[k], *own.get(k, (0, 0, 0, 0))) for k in keys]
        pg = s.bind.dialect.name == "postgresql"
        if pg:
            result = await self._post_pg(
                s, p, rows, commitment, outbox, guard, keys, deltas, watch, now, check=check, last=last
            )
            if outbox:
                self.outbox.wake_after_commit(s)
        else:
            conn = await s.connection()
            # SQLite: BEGIN IMMEDIATE already serializes writers; the same writes, one statement each.
            await conn.execute(_INSERT_ENTRIES, rows)
            if commitment:
                await conn.execute(_INSERT_COMMITMENT, commitment)
            if outbox:
                await conn.execute(insert(self.outbox.table), outbox)
                self.outbox.wake_after_commit(s)
            await conn.execute(
                _ADD_TO_BALANCES,
                [
                    dict(k_line=k[0], k_period=k[1], **dict(zip(posting.DELTA_COLS, d, strict=True)))
                    for k, d in zip(keys, deltas, strict=True)
                ],
            )
            result = (await conn.execute(_SELECT_BALANCES, {"keys": keys})).all()
        after_of = {(r[0], r[1]): Figures(*r[2:6]) for r in result}
        if len(after_of) != len(keys):
            raise RuntimeError(f"balance rows missing for {sorted(set(keys) - set(after_of))}")
        changes: dict[tuple[str, str], tuple[Figures, Figures]] = {}
        shortfalls = []
        for key in keys:
            d, after = sub[key], after_of[key]
            before = Figures(after.allocated - d[0], after.committed - d[1], after.pending - d[2], after.spent - d[3])
            changes[key] = (before, after)
            if check and after.available < 0 and after.available < before.available:
                shortfalls.append(
                    {
                        "line_id": key[0],
                        "line_code": None,
                        "period": key[1],
                        "available": after.available,
                        "d_available": after.available - before.available,
                    }
                )
        if shortfalls:  # SQLite; PostgreSQL refuses inside the statement
            # Raising rolls the whole transaction back: the entries, the commitment row, the events and the
            # balance updates above are never committed.
            raise await self._shortfall(s, p, shortfalls)
        if watch is not None and not pg:
            await self._thresholds(s, p, watch[0], watch[1], changes)
        # Kept on the session (not on self: one Ledger serves concurrent requests) for the answer's views.
        s.info.setdefault("budget_written", {}).update({r["id"]: SimpleNamespace(**r) for r in rows})
        return group_id, changes

    async def _post_pg(
        self,
        s: AsyncSession,
        p: Row,
        rows: list[dict[str, Any]],
        commitment: dict[str, Any] | None,
        outbox: list[dict[str, Any]],
        guard: Sequence[tuple[Row, Any, str]],
        keys: list[tuple[str, str]],
        deltas: list[tuple[int, ...]],
        watch: tuple[Row, str] | None,
        now: dt.datetime,
        *,
        check: bool,
        last: bool,
    ) -> list[Any]:
        """The posting as one PostgreSQL statement (services.budget.posting)."""
        params = {
            "entries": rows,
            "commitments": [commitment] if commitment else [],
            "events": outbox,
            "guard": [
                dict(
                    line_id=ln.id,
                    line_version=ln.version,
                    dimensions=ln.dimensions,
                    plan_version=pl.version,
                    period=per,
                )
                for ln, pl, per in guard
            ],
            "deltas": [
                dict(line_id=k[0], period=k[1], **dict(zip(posting.DELTA_COLS, d, strict=True)))
                for k, d in zip(keys, deltas, strict=True)
            ],
            "watch": []
            if watch is None
            else [
                {
                    "line_id": watch[0].id,
                    "period": watch[1],
                    "tpl": new_event(
                        "budget.line.threshold_crossed",
                        self.outbox.source,
                        watch[0].id,
                        {
                            "line_id": watch[0].id,
                            "line_code": watch[0].code,
                            "period": watch[1],
                            "currency": p.currency,
                        },
                    ).body(),
                }
            ],
            "thresholds": list(THRESHOLDS),
            "now": now,
            "scale": exponent(p.currency),
            "check": check,
        }
        s.info["budget_statements"] = s.info.get("budget_statements", 0) + 1
        try:
            alone = last and s.info.get(SINGLE_ACTION, False)
            if alone and self._batcher is not None and not has_run_anything(s) and self._batcher.takes(params):
                result = await self._batcher.post(s.bind, params, s.connection)
            else:
                result = await posting.run(await s.connection(), params, may_commit_alone=alone)
        except Exception as exc:
            found = posting.shortfalls(exc)
            if found is None:
                raise
            raise await self._shortfall(s, p, found) from None
        if not result and guard:
            raise _Stale()  # nothing was written
        return result

    async def _shortfall(self, s: AsyncSession, p: Row, found: list[dict[str, Any]]) -> Conflict:
        """The 409 for a posting that would leave available money negative: names the worst shortfall."""
        worst = max(found, key=lambda f: (-f["available"], f["line_id"], f["period"]))
        short, before = -worst["available"], worst["available"] - worst["d_available"]
        code = worst["line_code"]
        if code is None:
            code = await s.scalar(select(lines.c.code).where(lines.c.id == worst["line_id"]))
        cur = p.currency
        return Conflict(
            f"Line {code!r} has {fmt(max(before, 0), cur)} {cur} available in {worst['period']}; "
            f"short by {fmt(short, cur)} {cur}.",
            shortfall=fmt(short, cur),
            currency=cur,
            line_id=worst["line_id"],
            line_code=code,
            period=worst["period"],
        )

    async def _thresholds(
        self, s: AsyncSession, p: Row, ln: Row, period: str, changes: dict[tuple[str, str], tuple[Figures, Figures]]
    ) -> None:
        """SQLite: publish budget.line.threshold_crossed when consumption passes 80 % or 100 % of the allocation
        (on PostgreSQL the posting statement does this, by the same rule)."""
        before, after = changes.get((ln.id, period), (None, None))
        if before is None or after.allocated <= 0:
            return
        for t in THRESHOLDS:
            if before.consumed * 100 < t * after.allocated <= after.consumed * 100:
                await self.outbox.add(
                    s,
                    "budget.line.threshold_crossed",
                    ln.id,
                    {
                        "line_id": ln.id,
                        "line_code": ln.code,
                        "period": period,
                        "threshold": t,
                        "allocated": fmt(after.allocated, p.currency),
                        "consumed": fmt(after.consumed, p.currency),
                        "currency": p.currency,
                    },
                )

    async def _line_and_plan(
        self,
        s: AsyncSession,
        who: Principal | None,
        line_id: str,
        field_name: str = "line_id",
        period: str | None = None,
        cached: bool = False,
    ) -> tuple[Row, Any]:
        """The line, its plan and whether `period` is closed, in one round trip (the hot path of every posting).

        With `cached` (PostgreSQL postings through `_cached_first`) a line and active plan read before may be
        used without the round trip; it is then marked `guarded`, `_write` checks in its statement that they
        are still current and the period open, and anything refused on cached figures is decided again fresh.
        """
        if cached and line_id in self._lines:
            row, plan = self._lines[line_id]
            if who is None or who.may_see(row.dimensions):
                return row, SimpleNamespace(
                    **vars(plan), checked_period=period, checked_period_closed=False, guarded=True
                )
        row = (await _core(s, _LINE_AND_PLAN, {"line_id": line_id, "period": period or ""})).first()
        if row is None:
            if field_name.startswith("path"):
                raise NotFound(f"No budget line {line_id}.")
            raise Invalid.on(field_name, f"no budget line {line_id!r}", "not_found")
        plan_values = {c.name: getattr(row, f"p_{c.name}") for c in plans.c}
        if plan_values["status"] == "active" and s.get_bind().dialect.name == "postgresql":
            if len(self._lines) >= _LINE_CACHE_SIZE:
                self._lines.clear()
            self._lines[line_id] = (row, SimpleNamespace(**plan_values))
        if who is not None and not who.may_see(row.dimensions):
            raise Forbidden(f"Your scopes ({', '.join(sorted(who.scopes))}) do not cover line {row.code!r}.")
        plan = SimpleNamespace(
            **plan_values, checked_period=period, checked_period_closed=bool(row.period_closed), guarded=False
        )
        return row, plan

    async def _cached_first(self, s: AsyncSession, line_id: str, post: Any) -> Any:
        """Run `post(cached)` on the cached line and plan first (PostgreSQL), again on a fresh read if they were
        stale or if it refused before anything was written (so every refusal is decided on current rows)."""
        if line_id in self._lines:
            ran = s.info.get("budget_statements", 0)
            try:
                return await post(True)
            except _Stale:
                pass  # the statement found the cached rows outdated and wrote nothing
            except DomainError:
                if s.info.get("budget_statements", 0) != ran:
                    raise  # refused by the statement itself, whose guard had passed: decided on current rows
            self._lines.pop(line_id, None)
        return await post(False)

    def _entry_event(self, leg: Leg, p: Row) -> dict[str, Any]:
        return {
            "entry_id": leg.id,
            "plan_id": p.id,
            "line_id": leg.line.id,
            "line_code": leg.line.code,
            "period": leg.period,
            "amount": fmt(leg.amount, p.currency),
            "currency": p.currency,
            "dimensions": leg.line.dimensions,
        }

    # ------------------------------------------------------------ allocations and transfers

    async def allocate(
        self,
        s: AsyncSession,
        who: Principal,
        *,
        line_id: str,
        period: str,
        amount: Decimal,
        currency: str,
        date: dt.date | None = None,
        memo: str | None = None,
        external_ref: str | None = None,
    ) -> dict[str, Any]:
        return await self._cached_first(
            s,
            line_id,
            lambda cached: self._allocate(
                s,
                who,
                cached,
                line_id=line_id,
                period=period,
                amount=amount,
                currency=currency,
                date=date,
                memo=memo,
                external_ref=external_ref,
            ),
        )

    async def _allocate(
        self,
        s: AsyncSession,
        who: Principal,
        cached: bool,
        *,
        line_id: str,
        period: str,
        amount: Decimal,
        currency: str,
        date: dt.date | None,
        memo: str | None,
        external_ref: str | None,
    ) -> dict[str, Any]:
        ln, p = await self._line_and_plan(s, who, line_id, period=period, cached=cached)
        on = await self._postable(s, p, period, date)
        m = await self.money(s, p, amount, currency, on)
        leg = Leg(ln, period, "allocation", m.minor, (m.minor, 0, 0, 0), m, on, memo=memo, external_ref=external_ref)
        await self._write(
            s,
            who,
            p,
            [leg],
            check=False,
            events=[("budget.allocation.posted", leg.id, self._entry_event(leg, p))],
            guard=[(ln, p, period)] if p.guarded else (),
            last=True,
        )
        return entry_view(s.info["budget_written"][leg.id], p.currency, ln.code)

    async def transfer(
        self,
        s: AsyncSession,
        who: Principal,
        *,
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
        src, p = await self._line_and_plan(s, who, from_line_id, "from_line_id", period=period)
        dst = await self.line(s, who, to_line_id, "to_line_id")
        if dst.plan_id != src.plan_id:
            raise Invalid.on("to_line_id", "belongs to another plan; transfers stay inside one plan", "cross_plan")
        on = await self._postable(s, p, period, date)
        m = await self.money(s, p, amount, currency, on)
        out = Leg(src, period, "transfer_out", m.minor, (-m.minor, 0, 0, 0), m, on, memo=memo)
        inn = Leg(dst, period, "transfer_in", m.minor, (m.minor, 0, 0, 0), m, on, memo=memo)
        group = out.id
        # Money that is not there cannot be moved, whatever the overspend policy.
        await self._write(
            s,
            who,
            p,
            [out, inn],
            check=True,
            group_id=group,
            events=[
                (
                    "budget.transfer.posted",
                    inn.id,
                    {
                        **self._entry_event(inn, p),
                        "transfer_id": group,
                        "from_entry_id": out.id,
                        "from_line_id": src.id,
                        "from_line_code": src.code,
                        "to_line_id": dst.id,
                        "to_line_code": dst.code,
                        "from_dimensions": src.dimensions,
                    },
                )
            ],
        )
        return {
            "id": group,
            "plan_id": p.id,
            "period": period,
            "amount": fmt(m.minor, p.currency),
            "currency": p.currency,
            "from_line_id": src.id,
            "to_line_id": dst.id,
            "entries": [entry_view(s.info["budget_written"][leg.id], p.currency, leg.line.code) for leg in (out, inn)],
        }

    async def _entry(self, s: AsyncSession, entry_id: str) -> Row:
        row = (await s.execute(select(entries).where(entries.c.id == entry_id))).first()
        if row is None:
            raise NotFound(f"No ledger entry {entry_id}.")
        return row

    # ------------------------------------------------------------ commitments

    async def commitment(self, s: AsyncSession, commitment_id: str, *, lock: bool = False) -> Row:
        q = select(commitments).where(commitments.c.id == commitment_id)
        if lock:
            q = q.with_for_update()
        row = (await s.execute(q)).first()
        if row is None:
            raise NotFound(f"No commitment {commitment_id}.")
        return row

    async def get_commitment(self, s: AsyncSession, who: Principal, commitment_id: str) -> dict[str, Any]:
        c = await self.commitment(s, commitment_id)
        ln, p = await self._line_and_plan(s, who, c.line_id)
        return commitment_view(c, p, ln)

    async def create_commitment(
        self,
        s: AsyncSession,
        who: Principal,
        *,
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
        return await self._cached_first(
            s,
            line_id,
            lambda cached: self._create_commitment(
                s,
                who,
                cached,
                line_id=line_id,
                period=period,
                amount=amount,
                currency=currency,
                date=date,
                external_ref=external_ref,
                memo=memo,
                vendor=vendor,
                external_revision=external_revision,
            ),
        )

    async def _create_commitment(
        self,
        s: AsyncSession,
        who: Principal,
        cached: bool,
        *,
        line_id: str,
        period: str,
        amount: Decimal,
        currency: str,
        date: dt.date | None,
        external_ref: str | None,
        memo: str | None,
        vendor: str | None,
        external_revision: int | None,
    ) -> dict[str, Any]:
        ln, p = await self._line_and_plan(s, who, line_id, period=period, cached=cached)
        on = await self._postable(s, p, period, date)
        m = await self.money(s, p, amount, currency, on)
        if external_ref is not None and await s.scalar(
            select(commitments.c.id).where(commitments.c.external_ref == external_ref)
        ):
            raise Conflict(
                f"A commitment with external_ref {external_ref!r} already exists.",
                errors=[FieldError("external_ref", "already used by another commitment", "duplicate")],
            )
        over_threshold = p.approval_threshold_minor is not None and m.minor > p.approval_threshold_minor
        reason = None
        if p.overspend_policy == "block":
            # Nothing here depends on the figures: _write locks the balance rows as its last statement and
            # refuses with a 409 naming the shortfall when the commitment does not fit.
            reason = "threshold" if over_threshold else None
        else:
            # require_approval: whether it fits decides its status, so the figures are locked and read first.
            locked = await self._lock(s, [(ln, period)])
            available = min(
                locked[(a, period)].allocated
                - locked[(a, period)].committed
                - locked[(a, period)].pending
                - locked[(a, period)].spent
                for a in ancestors(ln.path)
            )
            if m.minor > available:
                reason = "over_available"
            elif over_threshold:
                reason = "threshold"
        status = "pending_approval" if reason else "committed"
        cid = new_id()
        deltas = (0, 0, m.minor, 0) if reason else (0, m.minor, 0, 0)
        leg = Leg(
            ln,
            period,
            "commitment",
            m.minor,
            deltas,
            m,
            on,
            commitment_id=cid,
            external_ref=external_ref,
            vendor=vendor,
            memo=memo,
        )
        now = utcnow()
        values = dict(
            id=cid,
            plan_id=p.id,
            line_id=ln.id,
            period=period,
            entry_date=on,
            status=status,
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
        c = SimpleNamespace(**values)
        subject = "budget.commitment.requested" if reason else "budget.commitment.committed"
        await self._write(
            s,
            who,
            p,
            [leg],
            check=p.overspend_policy == "block",
            commitment=values,
            events=[(subject, c.id, self._commitment_data(c, p, ln, subject))],
            guard=[(ln, p, period)] if p.guarded else (),
            watch=(ln, period),
            last=True,
        )
        return commitment_view(c, p, ln)

    async def _commitment_event(self, s: AsyncSession, c: Row, p: Row, ln: Row, subject: str) -> None:
        await self.outbox.add(s, subject, c.id, self._commitment_data(c, p, ln, subject))

    @staticmethod
    def _commitment_data(c: Row, p: Row, ln: Row, subject: str) -> dict[str, Any]:
        data = {
            "commitment_id": c.id,
            "plan_id": p.id,
            "line_id": ln.id,
            "line_code": ln.code,
            "period": c.period,
            "amount": fmt(c.amount_minor, p.currency),
            "currency": p.currency,
            "original_amount": fmt(c.original_amount_minor, c.original_currency),
            "original_currency": c.original_currency,
            "external_ref": c.external_ref,
            "memo": c.memo,
            "requested_by": c.requested_by,
            "reason": c.reason,
            "dimensions": {d: (ln.dimensions or {}).get(d) for d in DIMENSIONS},
        }
        if subject != "budget.commitment.requested":
            data["status"] = c.status
        return data

    async def _open_commitment(
        self, s: AsyncSession, who: Principal | None, commitment_id: str
    ) -> tuple[Row, Row, Row, dict[tuple[str, str], Row]]:
        """Lock the commitment's balances, then the commitment itself (always in that order), and make
        sure it still sits where the balances were locked."""
        c = await self.commitment(s, commitment_id)
        ln, p = await self._line_and_plan(s, who, c.line_id)
        locked = await self._lock(s, [(ln, c.period)])
        now = await self.commitment(s, commitment_id, lock=True)
        if (now.line_id, now.period) != (c.line_id, c.period):
            raise Raced(commitment_id)
        return now, ln, p, locked

    async def approve(self, s: AsyncSession, who: Principal, commitment_id: str) -> dict[str, Any]:
        c, ln, p, locked = await self._open_commitment(s, who, commitment_id)
        if c.status != "pending_approval":
            raise Conflict(f"Commitment {c.id} is {c.status}; only a pending_approval commitment can be approved.")
        await self._postable(s, p, c.period, None)
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
        await self._write(s, who, p, [leg], check=False)
        c = await self._set_status(s, c, "committed", who)
        await self._commitment_event(s, c, p, ln, "budget.commitment.committed")
        return commitment_view(c, p, ln)

    async def release(self, s: AsyncSession, who: Principal, commitment_id: str) -> dict[str, Any]:
        c, ln, p, locked = await self._open_commitment(s, who, commitment_id)
        if c.status not in OPEN_STATUSES:
            raise Conflict(f"Commitment {c.id} is {c.status}; only an open commitment can be released.")
        await self._postable(s, p, c.period, None)
        c = await self._release_locked(s, who, c, ln, p, locked)
        return commitment_view(c, p, ln)

    async def _release_locked(
        self, s: AsyncSession, who: Principal, c: Row, ln: Row, p: Row, locked: dict[tuple[str, str], Row]
    ) -> Row:
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
            await self._write(s, who, p, [leg], check=False)
        c = await self._set_status(s, c, "released", who)
        await self._commitment_event(s, c, p, ln, "budget.commitment.released")
        return c

    async def _set_status(self, s: AsyncSession, c: Row, status: str, who: Principal | None, **extra: Any) -> Row:
        values = dict(status=status, version=c.version + 1, updated_at=utcnow(), **extra)
        if who is not None and status in ("committed", "released"):
            values["decided_by"] = who.subject
        await s.execute(update(commitments).where(commitments.c.id == c.id).values(**values))
        return await self.commitment(s, c.id)

    async def change_commitment(
        self,
        s: AsyncSession,
        who: Principal,
        c: Row,
        *,
        ln: Row,
        period: str,
        amount: Decimal,
        currency: str,
        external_revision: int | None,
        vendor: str | None,
        memo: str | None,
    ) -> dict[str, Any]:
        """Move an open commitment to a new amount, line or period: release the old hold, hold the new one."""
        if ln.plan_id != c.plan_id:
            raise Invalid.on(
                "budget_line",
                f"line {ln.code!r} is in another plan than the order's commitment; "
                "an order cannot move between plans (cancel it and raise a new one)",
            )
        p = await self.plan(s, ln.plan_id)
        old_ln = await self.line(s, who, c.line_id)  # the line it leaves must be in scope, as the one it reaches
        if c.status not in OPEN_STATUSES:
            raise Conflict(f"Commitment {c.id} is {c.status}; it can no longer change.")
        on = await self._postable(s, p, period, None)
        await self._postable(s, p, c.period, None)
        m = await self.money(s, p, amount, currency, on)
        await self._lock(s, [(old_ln, c.period), (ln, period)])
        read, c = c, await self.commitment(s, c.id, lock=True)
        # Decided, moved or changed by a concurrent request since the first read: judge again under the lock.
        if (c.line_id, c.period, c.status) != (read.line_id, read.period, read.status):
            raise Raced(c.id)
        if (
            external_revision is not None
            and c.external_revision is not None
            and external_revision <= c.external_revision
        ):
            return commitment_view(c, p, await self.line(s, None, c.line_id))  # a newer revision won
        if m.minor < c.consumed_minor:
            raise Invalid.on(
                "amount",
                f"is below the {fmt(c.consumed_minor, p.currency)} {p.currency} already invoiced against this order",
            )
        bucket = 2 if c.status == "pending_approval" else 1
        old_open, new_open = c.amount_minor - c.consumed_minor, m.minor - c.consumed_minor
        legs = []
        for line_row, per, kind, value in (
            (old_ln, c.period, "release", -old_open),
            (ln, period, "commitment", new_open),
        ):
            if value:
                d = [0, 0, 0, 0]
                d[bucket] = value
                legs.append(
                    Leg(
                        line_row,
                        per,
                        kind,
                        abs(value),
                        tuple(d),
                        m,
                        on,
                        commitment_id=c.id,
                        external_ref=c.external_ref,
                        vendor=vendor,
                        memo=memo,
                    )
                )
        if legs:
            await self._write(s, who, p, legs, check=p.overspend_policy == "block", watch=(ln, period))
        await s.execute(
            update(commitments)
            .where(commitments.c.id == c.id)
            .values(
                line_id=ln.id,
                period=period,
                entry_date=on,
                amount_minor=m.minor,
                original_amount_minor=m.original_minor,
                original_currency=m.original_currency,
                fx_rate=m.rate,
                external_revision=external_revision,
                vendor=vendor,
                memo=memo,
                version=c.version + 1,
                updated_at=utcnow(),
            )
        )
        c = await self.commitment(s, c.id)
        await self._commitment_event(s, c, p, ln, "budget.commitment.changed")
        return commitment_view(c, p, ln)

    # ------------------------------------------------------------ actuals

    async def post_actual(
        self,
        s: AsyncSession,
        who: Principal,
        *,
        line_id: str,
        period: str,
        amount: Decimal,
        currency: str,
        date: dt.date | None = None,
        commitment_id: str | None = None,
        external_ref: str | None = None,
        memo: str | None = None,
        vendor: str | None = None,
    ) -> dict[str, Any]:
        ln, p = await self._line_and_plan(s, who, line_id, period=period)
        on = await self._postable(s, p, period, date)
        m = await self.money(s, p, amount, currency, on)
        keys = [(ln, period)]
        c = c_line = None
        if commitment_id is not None:
            c = (await s.execute(select(commitments).where(commitments.c.id == commitment_id))).first()
            if c is None:
                raise Invalid.on("commitment_id", f"no commitment {commitment_id!r}", "not_found")
            if c.plan_id != p.id:
                raise Invalid.on("commitment_id", "belongs to another plan")
            c_line = await self.line(s, who, c.line_id, "commitment_id")
            keys.append((c_line, c.period))
        await self._lock(s, keys)
        legs = [
            Leg(
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
            )
        ]
        consume = 0
        if c is not None:
            read, c = c, await self.commitment(s, c.id, lock=True)
            if (c.line_id, c.period) != (read.line_id, read.period):
                raise Raced(c.id)  # moved since the first read: its balances are not the ones locked
            if c.status != "committed":
                raise Conflict(f"Commitment {c.id} is {c.status}; actuals can only consume a committed commitment.")
            if c.period != period:
                await self._postable(s, p, c.period, None)
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
                    )
                )
        await self._write(s, who, p, legs, check=p.overspend_policy == "block", watch=(ln, period))
        status = None
        if c is not None:
            consumed = c.consumed_minor + consume
            c = await self._set_status(
                s, c, "closed" if consumed >= c.amount_minor else "committed", None, consumed_minor=consumed
            )
            status = c.status
        leg = legs[0]
        await self.outbox.add(
            s,
            "budget.actual.posted",
            leg.id,
            {
                **self._entry_event(leg, p),
                "date": dt.datetime.combine(on, dt.time(), dt.UTC).isoformat(),
                "original_amount": fmt(m.original_minor, m.original_currency),
                "original_currency": m.original_currency,
                "commitment_id": commitment_id,
                "external_ref": external_ref,
                "vendor": vendor,
            },
        )
        return {
            **entry_view(s.info["budget_written"][leg.id], p.currency, ln.code),
            "commitment_status": status,
            "consumed": fmt(consume, p.currency),
        }

    # ------------------------------------------------------------ reversals

    async def reverse(self, s: AsyncSession, who: Principal, entry_id: str, memo: str | None = None) -> dict[str, Any]:
        target = await self._entry(s, entry_id)
        group = (
            await s.execute(select(entries).where(entries.c.group_id == target.group_id).order_by(entries.c.seq))
        ).all()
        if any(e.kind == "reversal" for e in group):
            raise Conflict("A reversal cannot itself be reversed; post a new entry instead.")
        if any(e.kind not in REVERSIBLE for e in group):
            raise Conflict(f"A {target.kind} entry is not reversed; release or change the commitment instead.")
        p = await self.plan(s, target.plan_id)
        line_rows = {}
        for e in group:
            line_rows[e.line_id] = await self.line(s, who, e.line_id, "path.entry_id")
        for per in sorted({e.period for e in group}):
            await self._postable(s, p, per, None, "path.entry_id")
        await self._lock(s, [(line_rows[e.line_id], e.period) for e in group])
        if await s.scalar(select(entries.c.id).where(entries.c.reverses_group_id == target.group_id).limit(1)):
            raise Conflict(f"Entry {entry_id} has already been reversed.")
        legs: list[Leg] = []
        sources: list[Row] = []
        restore: dict[str, int] = {}
        for e in group:
            if e.kind == "consumption":
                c = await self.commitment(s, e.commitment_id, lock=True)
                if c.status == "released":
                    continue  # its open remainder was released; nothing to hand back
                restore[c.id] = restore.get(c.id, 0) + e.amount_minor
            m = Money(e.original_amount_minor, e.original_currency, e.amount_minor, e.fx_rate)
            legs.append(
                Leg(
                    line_rows[e.line_id],
                    e.period,
                    "reversal",
                    e.amount_minor,
                    (-e.d_allocated, -e.d_committed, -e.d_pending, -e.d_spent),
                    m,
                    e.entry_date,
                    commitment_id=e.commitment_id,
                    external_ref=e.external_ref,
                    memo=memo,
                    reverses_group_id=target.group_id,
                )
            )
            sources.append(e)
        group_id, _ = await self._write(s, who, p, legs, check=p.overspend_policy == "block")
        written = s.info["budget_written"]
        for cid, amount in restore.items():
            c = await self.commitment(s, cid)
            await self._set_status(s, c, "committed", None, consumed_minor=c.consumed_minor - amount)
        for e, leg in zip(sources, legs, strict=True):
            subject = {"allocation": "budget.allocation.posted", "actual": "budget.actual.posted"}.get(e.kind)
            if subject is None:
                continue
            # Consumers that sum these (KPI's spend) are corrected by the negative amount.
            data = {**self._entry_event(leg, p), "amount": fmt(-leg.amount, p.currency), "reverses_entry_id": e.id}
            if e.kind == "actual":
                data.update(
                    date=dt.datetime.combine(e.entry_date, dt.time(), dt.UTC).isoformat(),
                    original_amount=fmt(-e.original_amount_minor, e.original_currency),
                    original_currency=e.original_currency,
                    commitment_id=e.commitment_id,
                    external_ref=e.external_ref,
                    vendor=e.vendor,
                )
            await self.outbox.add(s, subject, leg.id, data)
        return {
            "id": group_id,
            "reverses_group_id": target.group_id,
            "entries": [entry_view(written[leg.id], p.currency, leg.line.code) for leg in legs],
        }

    # ------------------------------------------------------------ ERP and contracts

    async def resolve_line(self, s: AsyncSession, fiscal_year: int, code: str, field_name: str = "budget_line") -> Row:
        """The line coded `code` in the one active plan of `fiscal_year` that has it."""
        rows = (
            await s.execute(
                select(lines)
                .join(plans, plans.c.id == lines.c.plan_id)
                .where(plans.c.fiscal_year == fiscal_year, plans.c.status == "active", lines.c.code == code)
            )
        ).all()
        if not rows:
            raise Invalid.on(
                field_name, f"no active plan of fiscal year {fiscal_year} has a line coded {code!r}", "not_found"
            )
        if len(rows) > 1:
            raise Invalid.on(
                field_name,
                f"{len(rows)} active plans of fiscal year {fiscal_year} have a line coded {code!r}; it is ambiguous",
                "ambiguous",
            )
        return rows[0]

    async def erp_purchase_order(
        self, s: AsyncSession, who: Principal, body: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Upsert the commitment of a PO; returns (commitment, created). Idempotent by (po_number, revision)."""
        po, revision = body["po_number"], body["revision"]
        existing = (await s.execute(select(commitments).where(commitments.c.external_ref == po))).first()
        if existing is not None and existing.external_revision is not None and revision <= existing.external_revision:
            return await self.get_commitment(s, who, existing.id), False
        if body["action"] == "cancelled":
            if existing is None:
                raise NotFound(f"No commitment for purchase order {po!r}.")
            c, ln, p, locked = await self._open_commitment(s, who, existing.id)
            if c.external_revision is not None and revision <= c.external_revision:
                return commitment_view(c, p, ln), False  # a newer revision won meanwhile
            if c.status in OPEN_STATUSES:
                await self._postable(s, p, c.period, None)  # a closed month refuses the release, as the API does
                c = await self._release_locked(s, who, c, ln, p, locked)
            c = await self._set_status(s, c, c.status, None, external_revision=revision)
            return commitment_view(c, p, ln), False
        ln = await self.resolve_line(s, body["fiscal_year"], body["budget_line"])
        if not who.may_see(ln.dimensions):
            raise Forbidden(f"Your scopes do not cover line {ln.code!r}.")
        if existing is None:
            return await self.create_commitment(
                s,
                who,
                line_id=ln.id,
                period=body["period"],
                amount=body["amount"],
                currency=body["currency"],
                external_ref=po,
                memo=body.get("description"),
                vendor=body.get("vendor"),
                external_revision=revision,
            ), True
        return await self.change_commitment(
            s,
            who,
            existing,
            ln=ln,
            period=body["period"],
            amount=body["amount"],
            currency=body["currency"],
            external_revision=revision,
            vendor=body.get("vendor"),
            memo=body.get("description"),
        ), False

    async def erp_invoice(self, s: AsyncSession, who: Principal, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Post an invoice as an actual, against its PO's commitment; idempotent by invoice number."""
        number = body["invoice_number"]
        seen = (await s.execute(select(erp_invoices).where(erp_invoices.c.invoice_number == number))).first()
        if seen is not None:
            e = (
                await s.execute(select(entries).where(entries.c.group_id == seen.group_id, entries.c.kind == "actual"))
            ).first()
            p = await self.plan(s, e.plan_id)
            ln = await self.line(s, who, e.line_id)
            return {**entry_view(e, p.currency, ln.code), "replayed": True}, False
        ln = await self.resolve_line(s, body["fiscal_year"], body["budget_line"])
        commitment_id = None
        if body.get("po_number"):
            commitment_id = await s.scalar(
                select(commitments.c.id).where(commitments.c.external_ref == body["po_number"])
            )
            if commitment_id is None:
                raise Invalid.on("po_number", f"no purchase order {body['po_number']!r} is known", "not_found")
        result = await self.post_actual(
            s,
            who,
            line_id=ln.id,
            period=body["period"],
            amount=body["amount"],
            currency=body["currency"],
            commitment_id=commitment_id,
            external_ref=number,
            vendor=body.get("vendor"),
        )
        await s.execute(
            insert(erp_invoices).values(invoice_number=number, group_id=result["group_id"], created_at=utcnow())
        )
        return result, True

    async def contract_committed(self, s: AsyncSession, who: Principal, data: dict[str, Any]) -> None:
        """registry.contract.created/renewed: commit the term's cost against its budget line (once)."""
        ref = f"contract:{data['contract_id']}:{data.get('term', 1)}"
        if not data.get("budget_line_code") or Decimal(str(data.get("commit_amount") or 0)) <= 0:
            return  # a free or unbudgeted tool: nothing to commit
        if await s.scalar(select(commitments.c.id).where(commitments.c.external_ref == ref)):
            return
        ln = await self.resolve_line(s, int(data["fiscal_year"]), data["budget_line_code"], "budget_line_code")
        amount = Decimal(str(data["commit_amount"]))
        await self.create_commitment(
            s,
            who,
            line_id=ln.id,
            period=data["period"],
            amount=amount,
            currency=data["currency"],
            external_ref=ref,
            memo=f"{data.get('tool_name', 'tool')} contract term {data.get('term', 1)}",
            vendor=data.get("tool_name"),
        )

    async def contract_cancelled(self, s: AsyncSession, who: Principal, data: dict[str, Any]) -> None:
        ref = f"contract:{data['contract_id']}:{data.get('term', 1)}"
        cid = await s.scalar(select(commitments.c.id).where(commitments.c.external_ref == ref))
        if cid is None:
            return
        c, ln, p, locked = await self._open_commitment(s, None, cid)
        if c.status in OPEN_STATUSES:
            await self._release_locked(s, who, c, ln, p, locked)

    async def workflow_decided(self, s: AsyncSession, who: Principal, commitment_id: str, approved: bool) -> None:
        c = await self.commitment(s, commitment_id)
        if c.status != "pending_approval":
            return  # already decided here (e.g. by finance through the API); nothing to do
        try:
            await (self.approve if approved else self.release)(s, who, commitment_id)
        except Conflict:
            # Decided through the API between our read and our lock (nothing was written yet): done.
            if (await self.commitment(s, commitment_id)).status != "pending_approval":
                return
            raise

    # ------------------------------------------------------------ CSV import and export

    async def import_csv(self, s: AsyncSession, who: Principal, plan_id: str, text: str) -> dict[str, Any]:
        """Create or update lines and post allocations from a CSV, all or nothing."""
        p = await self.plan(s, plan_id)
        if p.status == "closed":
            raise Conflict(f"Plan {p.name!r} is closed.")
        headers, records = read_csv(text)
        known = {"code", "parent_code", "name", "period", "amount", "currency", "tags", "dimensions", *DIMENSIONS}
        errs = Errors()
        missing = {"code"} - set(headers)
        unknown = [h for h in headers if h not in known]
        if missing or unknown:
            if missing:
                errs.add("header", f"missing column(s): {', '.join(sorted(missing))}")
            if unknown:
                errs.add("header", f"unknown column(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
            errs.raise_if_any("The CSV header is wrong; nothing was imported.")
        existing = {r.code: r for r in (await s.execute(select(lines).where(lines.c.plan_id == p.id))).all()}
        codes_by_id = {r.id: r.code for r in existing.values()}
        closed = set(await self.list_closed_periods(s, p.id))
        new_lines: dict[str, dict[str, Any]] = {}
        updates: dict[str, dict[str, Any]] = {}
        allocations: list[tuple[str, str, Money, dt.date, int]] = []
        bad_rows: dict[int, list[dict[str, str]]] = defaultdict(list)

        def bad(row_no: int, fname: str, message: str) -> None:
            bad_rows[row_no].append({"field": fname, "message": message})

        for i, raw in enumerate(records, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            if None in raw:
                bad(i, "row", "has more cells than the header")
            code, name, parent_code = row.get("code", ""), row.get("name", ""), row.get("parent_code") or None
            if not code:
                bad(i, "code", "is required")
                continue
            if len(code) > CODE_MAX:
                bad(i, "code", f"is longer than {CODE_MAX} characters")
            elif not re.match(CODE_PATTERN, code):
                bad(i, "code", "must start with a letter or digit and hold only letters, digits, '_', '.' and '-'")
            if len(name) > NAME_MAX:
                bad(i, "name", f"is longer than {NAME_MAX} characters")
            dims = {d: row[d] for d in DIMENSIONS if row.get(d)}
            if row.get("dimensions"):
                for part in row["dimensions"].split(";"):
                    k, sep, v = part.partition("=")
                    if not sep or k.strip() not in DIMENSIONS:
                        bad(i, "dimensions", f"{part!r} is not one of {', '.join(DIMENSIONS)} as key=value")
                    else:
                        dims[k.strip()] = v.strip()
            for d, v in dims.items():
                if len(v) > DIMENSION_MAX[d]:
                    bad(i, d, f"is longer than {DIMENSION_MAX[d]} characters")
            tags = [t.strip() for t in row.get("tags", "").split(";") if t.strip()]
            if len(tags) > MAX_TAGS:
                bad(i, "tags", f"has more than {MAX_TAGS} tags")
            if code in existing:
                cur = existing[code]
                cur_parent = codes_by_id.get(cur.parent_id) if cur.parent_id else None
                if parent_code is not None and parent_code != cur_parent:
                    bad(i, "parent_code", f"line {code!r} sits under {cur_parent!r}; moving lines is not supported")
                merged = {**(cur.dimensions or {}), **dims}
                if not who.may_see(cur.dimensions):
                    bad(i, "code", f"line {code!r} is outside your scopes")
                elif not who.may_see(merged):
                    bad(i, "dimensions", f"{merged} would take line {code!r} outside your scopes")
                if (name and name != cur.name) or (dims and merged != cur.dimensions) or tags:
                    updates[code] = {"name": name or cur.name, "dimensions": merged, "tags": tags or cur.tags}
            elif code in new_lines:
                spec = new_lines[code]
                if parent_code not in (None, spec["parent_code"]) or (name and name != spec["name"]):
                    bad(i, "code", f"line {code!r} is defined differently on row {spec['row']}")
            else:
                if not name:
                    bad(i, "name", f"is required for the new line {code!r}")
                if parent_code is not None and parent_code not in existing and parent_code not in new_lines:
                    bad(
                        i, "parent_code", f"{parent_code!r} is neither a line of the plan nor defined on an earlier row"
                    )
                parent_dims = (
                    existing[parent_code].dimensions
                    if parent_code in existing
                    else new_lines.get(parent_code, {}).get("merged")
                    if parent_code
                    else None
                )
                if parent_code in existing and not who.may_see(parent_dims):
                    bad(
                        i,
                        "parent_code",
                        f"line {parent_code!r} is outside your scopes; a line under it would add to its subtree",
                    )
                merged = merged_dimensions(parent_dims, dims)
                if not who.may_see(merged) and (parent_code not in existing or who.may_see(parent_dims)):
                    bad(i, "dimensions", f"{merged} is outside your scopes")
                new_lines[code] = {
                    "row": i,
                    "name": name,
                    "parent_code": parent_code,
                    "dims": dims,
                    "merged": merged,
                    "tags": tags,
                }
            period, amount_text = row.get("period", ""), row.get("amount", "")
            if not period and not amount_text:
                continue
            if not period:
                bad(i, "period", "is required when amount is given")
                continue
            if not amount_text:
                bad(i, "amount", "is required when period is given")
                continue
            currency = (row.get("currency") or p.currency).upper()
            try:
                check_period(p, period)
                if p.status != "active":
                    raise Conflict(f"plan {p.name!r} is a draft; activate it before importing allocations")
                if period in closed:
                    raise Conflict(f"period {period} is closed")
                if currency not in EXPONENTS:
                    raise Invalid.on("currency", f"{currency!r} is not an ISO 4217 currency code")
                try:
                    amount = parse_decimal(amount_text)
                except ValueError as exc:
                    raise Invalid.on("amount", str(exc)) from None
                first, _ = period_bounds(period)
                m = await self.money(s, p, amount, currency, first)
                allocations.append((code, period, m, first, i))
            except (Invalid, Conflict) as exc:
                if exc.errors:
                    for e in exc.errors:
                        bad(i, e.field, e.message)
                else:
                    bad(i, "period", exc.detail)
        if bad_rows:
            report = [{"row": r, "errors": errs_} for r, errs_ in sorted(bad_rows.items())]
            raise Invalid(
                f"{len(report)} bad row(s); nothing was imported.",
                errors=[
                    FieldError(f"rows[{r['row']}].{e['field']}", e["message"]) for r in report for e in r["errors"]
                ],
                rows=report,
            )
        created = []
        for code, spec in new_lines.items():
            view = await self._create_line(
                s,
                who,
                p,
                code=code,
                name=spec["name"],
                parent_code=spec["parent_code"],
                parent_id=None,
                dimensions=spec["dims"],
                tags=spec["tags"],
            )
            created.append(view["id"])
        for code, values in updates.items():
            cur = existing[code]
            await s.execute(update(lines).where(lines.c.id == cur.id).values(**values, version=cur.version + 1))
        posted = 0
        if allocations:
            by_code = {r.code: r for r in (await s.execute(select(lines).where(lines.c.plan_id == p.id))).all()}
            legs = [
                Leg(
                    by_code[code],
                    per,
                    "allocation",
                    m.minor,
                    (m.minor, 0, 0, 0),
                    m,
                    on,
                    memo=f"CSV import row {row_no}",
                )
                for code, per, m, on, row_no in allocations
            ]
            await self._lock(s, [(leg.line, leg.period) for leg in legs])
            for leg in legs:
                # Allocations only add money, so no check needs the figures between two of them.
                await self._write(s, who, p, [leg], check=False, group_id=leg.id)
                await self.outbox.add(s, "budget.allocation.posted", leg.id, self._entry_event(leg, p))
                posted += 1
        return {
            "plan_id": p.id,
            "rows": len(records),
            "lines_created": len(created),
            "lines_updated": len(updates),
            "allocations_posted": posted,
        }

    async def export_csv(
        self, s: AsyncSession, who: Principal, plan_id: str, start: str | None, end: str | None
    ) -> str:
        p = await self.plan(s, plan_id)
        start, end = period_range(p, start, end)
        f = await self._figures(s, who, p, start, end)
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(
            [
                "code",
                "parent_code",
                "name",
                *DIMENSIONS,
                "from",
                "to",
                "allocated",
                "committed",
                "pending",
                "spent",
                "available",
                "currency",
            ]
        )
        for lid, r in sorted(f["lines"].items(), key=lambda kv: _path_codes(kv[1].path, f["all_codes"])):
            v = f["subtree"][lid].view(p.currency)
            w.writerow(
                [
                    r.code,
                    f["all_codes"].get(r.parent_id, "") if r.parent_id else "",
                    r.name,
                    *[(r.dimensions or {}).get(d, "") for d in DIMENSIONS],
                    start,
                    end,
                    v["allocated"],
                    v["committed"],
                    v["pending"],
                    v["spent"],
                    v["available"],
                    p.currency,
                ]
            )
        return out.getvalue()


def _path_codes(path: str, codes: dict[str, str]) -> list[str]:
    return [codes.get(i, i) for i in ancestors(path)]


def _elapsed_share(start: str, end: str, today: dt.date) -> Decimal:
    first, _ = period_bounds(start)
    _, last = period_bounds(end)
    total = (last - first).days + 1
    done = min(max((today - first).days + 1, 0), total)
    return (Decimal(done) / Decimal(total)).quantize(Decimal("0.0001"))


def _pacing(fig: Figures, elapsed: Decimal) -> dict[str, Any]:
    """Share of the period range elapsed against share of the budget spent (and consumed)."""
    if fig.allocated <= 0:
        return {"elapsed_share": str(elapsed), "spent_share": None, "consumed_share": None, "status": "no_budget"}
    spent = (Decimal(fig.spent) / Decimal(fig.allocated)).quantize(Decimal("0.0001"))
    consumed = (Decimal(fig.consumed) / Decimal(fig.allocated)).quantize(Decimal("0.0001"))
    tolerance = Decimal("0.10")
    status = (
        "overspending"
        if spent > elapsed + tolerance
        else "underspending"
        if spent < elapsed - tolerance
        else "on_track"
    )
    return {"elapsed_share": str(elapsed), "spent_share": str(spent), "consumed_share": str(consumed), "status": status}
