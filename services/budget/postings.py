"""Postings: every change of money is one or more append-only ledger entries (`Leg`s) whose signed
deltas on the four buckets are applied, in the same transaction, to the running balances of the
line and of all its ancestors.

`Postings` is what one process shares between requests: the database's `Writer` (one statement on
PostgreSQL, a few on SQLite; see services.budget.writers) and, where the writer allows it, a cache
of the lines of active plans so a posting needs no read before its statement. The use cases
(allocations, commitments, actuals, reversals, the CSV import) build legs and call `write`; the
invariant "no line's available money goes negative under policy block" is the writer's to check
on the balance rows while they are locked.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Row

from services.budget import events
from services.budget.figures import BUCKETS, Figures
from services.budget.lines import ancestors, scopes_refuse
from services.budget.models import balances, closed_periods, entries, lines, plans
from services.budget.periods import check_period, control_scope, entry_date
from services.budget.plans import Plan
from shared.contracts import EventSpec
from shared.db import utcnow
from shared.errors import Conflict, DomainError, Invalid, NotFound
from shared.events import Envelope, new_event
from shared.identity import Principal
from shared.money import fmt
from shared.uow import UnitOfWork

T = TypeVar("T")
Key = tuple[str, str]  # (line id, period)
STATEMENTS = "budget.statements"  # uow.state: posting statements run in this unit of work
_LINE_CACHE_SIZE = 10_000

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


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Money:
    """An amount as given and as it counts in the plan currency."""

    original_minor: int
    original_currency: str
    minor: int  # plan currency
    rate: str


@dataclass
class Leg:
    """One ledger entry of a posting: a line, a period and the change to each bucket."""

    line: Any  # a `lines` row
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
    campaign_id: str | None = None
    id: str = field(default_factory=new_id)


@dataclass
class Posting:
    """Everything one posting writes, as the writer receives it."""

    plan: Plan
    rows: list[dict[str, Any]]  # the entries
    keys: list[Key]  # every touched (line, period), the line's ancestors included, sorted
    subtree: dict[Key, list[int]]  # per key: the change to its subtree figures
    own: dict[Key, list[int]]  # per key: the change to the line's own figures
    check: bool  # refuse a shortfall
    commitment: dict[str, Any] | None
    events: list[Envelope]
    guard: list[dict[str, Any]]  # cached lines and plans the statement must find unchanged (PostgreSQL)
    watch: tuple[Any, str] | None  # a (line, period) whose consumption thresholds publish events
    last: bool  # nothing is written after it in this unit of work
    now: dt.datetime
    # per key: the control period it belongs to (the period itself under control by month); a checked
    # shortfall is judged on the sum over each (line, control period): `keys` hold all of its months
    control: dict[Key, str] = field(default_factory=dict)

    def deltas(self) -> list[tuple[int, ...]]:
        """Per key (in order): the subtree and the own changes, 8 numbers."""
        return [(*self.subtree[k], *self.own.get(k, (0, 0, 0, 0))) for k in self.keys]


class Refused(Exception):
    """The writer refused a posting that would leave available money negative; nothing was written."""

    def __init__(self, found: list[dict[str, Any]]):
        super().__init__("shortfall")
        self.found = found


class Stale(Exception):
    """The cached line or plan a posting was built from changed; nothing was written."""


class Writer(Protocol):
    """How one database writes a posting: the dialect's only business in the ledger."""

    caches_lines: bool  # a posting may be built from cached lines (its statement checks they are current)

    async def write(self, uow: UnitOfWork, posting: Posting) -> dict[Key, Figures]:
        """Append the entries (and commitment, events), apply the deltas, refuse a checked shortfall
        (`Refused`), publish crossed thresholds of `watch`; the subtree figures after, per key."""
        ...


class Raced(Conflict):
    """A commitment moved (line, period) or was decided between this request's first read and its lock.
    Nothing was written; the same request, run again, sees the new state (the ERP ingest does so)."""

    def __init__(self, commitment_id: str):
        super().__init__(f"Commitment {commitment_id} changed while this request ran; nothing was written, retry it.")


@dataclass
class Written:
    """What a posting wrote: its group, each touched (line, period) before and after, and its entries."""

    group_id: str
    changes: dict[Key, tuple[Figures, Figures]]
    entries: dict[str, SimpleNamespace]
    control: dict[Key, str] = field(default_factory=dict)

    def in_control(self, key: Key) -> tuple[str, Figures, Figures]:
        """The control period of `key` and the line's figures over it, before and after the posting."""
        name = self.control.get(key, key[1])
        before, after = Figures(), Figures()
        for k, (b, a) in self.changes.items():
            if k[0] == key[0] and self.control.get(k, k[1]) == name:
                before.add(b)
                after.add(a)
        return name, before, after


class Postings:
    """The posting machinery one process shares between concurrent requests."""

    def __init__(self, writer: Writer, source: str = "budget"):
        self.writer = writer
        self.source = source
        # line id -> (line row, plan) of lines in active plans, when the writer guards cached rows.
        self._lines: dict[str, tuple[Any, Plan]] = {}

    async def target(
        self,
        uow: UnitOfWork,
        who: Principal | None,
        line_id: str,
        field_name: str = "line_id",
        period: str | None = None,
        cached: bool = False,
    ) -> tuple[Any, Plan]:
        """The line, its plan and whether `period` is closed, in one round trip (the hot path of every posting).

        With `cached` (through `cached_first`) a line and active plan read before may be used without the
        round trip; the plan is then marked `guarded`: the writer checks in its statement that they are
        still current and the period open, and anything refused on cached figures is decided again fresh.
        """
        if cached and line_id in self._lines:
            row, plan = self._lines[line_id]
            if who is None or who.may_see(row.dimensions):
                return row, replace(plan, checked_period=period, checked_period_closed=False, guarded=True)
        conn = await uow.connection()  # Core on the connection, skipping the ORM layer (hot path)
        row = (await conn.execute(_LINE_AND_PLAN, {"line_id": line_id, "period": period or ""})).first()
        if row is None:
            if field_name.startswith("path"):
                raise NotFound(f"No budget line {line_id}.")
            raise Invalid.on(field_name, f"no budget line {line_id!r}", "not_found")
        plan = Plan(**{c.name: getattr(row, f"p_{c.name}") for c in plans.c})
        if plan.status == "active" and self.writer.caches_lines:
            if len(self._lines) >= _LINE_CACHE_SIZE:
                self._lines.clear()
            self._lines[line_id] = (row, plan)
        if who is not None and not who.may_see(row.dimensions):
            raise scopes_refuse(who, f"line {row.code!r}")
        return row, replace(plan, checked_period=period, checked_period_closed=bool(row.period_closed))

    async def cached_first(self, uow: UnitOfWork, line_id: str, post: Callable[[bool], Awaitable[T]]) -> T:
        """Run `post(cached)` on the cached line and plan first, again on a fresh read if they were stale
        or if it refused before anything was written (so every refusal is decided on current rows)."""
        if line_id in self._lines:
            ran = uow.state.get(STATEMENTS, 0)
            try:
                return await post(True)
            except Stale:
                pass  # the statement found the cached rows outdated and wrote nothing
            except DomainError:
                if uow.state.get(STATEMENTS, 0) != ran:
                    raise  # refused by the statement itself, whose guard had passed: decided on current rows
            self._lines.pop(line_id, None)
        return await post(False)

    def forget(self, line_id: str) -> None:
        self._lines.pop(line_id, None)

    def event(self, spec: EventSpec[Any], subject_id: str, data: BaseModel) -> Envelope:
        """An event a posting writes in its own statement, checked against its model like any publish."""
        return new_event(spec.subject, self.source, subject_id, spec.dump(data))

    async def write(
        self,
        uow: UnitOfWork,
        who: Principal,
        p: Plan,
        legs: list[Leg],
        *,
        check: bool,
        group_id: str | None = None,
        commitment: dict[str, Any] | None = None,
        events: Sequence[Envelope] = (),
        watch: tuple[Any, str] | None = None,
        last: bool = False,
    ) -> Written:
        """Append the legs' entries (plus a new commitment row and events, if given) and apply them to the
        running balances of each line and its ancestors; a 409 naming the shortfall if `check` and available
        money would go negative.

        `watch` (a line and period) publishes budget.line.threshold_crossed when the posting takes that line's
        consumption past 80 % or 100 % of its allocation. `last`: the caller writes nothing after this (on
        PostgreSQL such a posting may commit by itself). A plan from the cache (`guarded`) is checked by the
        writer; if it is stale, nothing is written and `Stale` is raised.
        """
        posting = _posting(who, p, legs, check, group_id, commitment, list(events), watch, last)
        try:
            after_of = await self.writer.write(uow, posting)
        except Refused as refused:
            raise await shortfall(uow, p, refused.found) from None
        changes = {k: (after_of[k].minus(posting.subtree[k]), after_of[k]) for k in posting.keys}
        written = {r["id"]: SimpleNamespace(**r) for r in posting.rows}
        return Written(posting.rows[0]["group_id"], changes, written, posting.control)


def _posting(
    who: Principal,
    p: Plan,
    legs: list[Leg],
    check: bool,
    group_id: str | None,
    commitment: dict[str, Any] | None,
    events: list[Envelope],
    watch: tuple[Any, str] | None,
    last: bool,
) -> Posting:
    subtree: dict[Key, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    own: dict[Key, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for leg in legs:
        o = own[(leg.line.id, leg.period)]
        for i, d in enumerate(leg.deltas):
            o[i] += d
        for anc in ancestors(leg.line.path):
            acc = subtree[(anc, leg.period)]
            for i, d in enumerate(leg.deltas):
                acc[i] += d
    control = _control(p, subtree)
    group_id = group_id or legs[0].id
    now = utcnow()
    guard = []
    if p.guarded:
        guard = [
            dict(
                line_id=leg.line.id,
                line_version=leg.line.version,
                dimensions=leg.line.dimensions,
                plan_version=p.version,
                period=leg.period,
            )
            for leg in legs[:1]
        ]
    return Posting(
        plan=p,
        rows=[_entry_row(leg, group_id, p.id, who.subject, now) for leg in legs],
        keys=sorted(subtree),
        subtree=subtree,
        own=own,
        check=check,
        commitment=commitment,
        events=events,
        guard=guard,
        watch=watch,
        last=last,
        now=now,
        control=control,
    )


def _control(p: Plan, subtree: dict[Key, list[int]]) -> dict[Key, str]:
    """Each touched key's control period; under control by quarter or fiscal year the other months of
    each touched control period join the posting with no change, so the writer locks and sums them."""
    if p.control_period == "month":
        return {k: k[1] for k in subtree}
    control: dict[Key, str] = {}
    for line_id, period in list(subtree):
        name, months = control_scope(p, p.control_period, period)
        for m in months:
            subtree[(line_id, m)]  # noqa: B018 - the defaultdict adds the month with no change
            control[(line_id, m)] = name
    return control


def _entry_row(leg: Leg, group_id: str, plan_id: str, author: str, now: dt.datetime) -> dict[str, Any]:
    return dict(
        id=leg.id,
        group_id=group_id,
        plan_id=plan_id,
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
        author=author,
        created_at=now,
        campaign_id=leg.campaign_id,
    )


async def shortfall(uow: UnitOfWork, p: Plan, found: list[dict[str, Any]]) -> Conflict:
    """The 409 for a posting that would leave available money negative: names the worst shortfall (over
    the plan's control period: the month, or the fiscal quarter or year containing it)."""
    worst = max(found, key=lambda f: (-f["available"], f["line_id"], f["period"]))
    short, before = -worst["available"], worst["available"] - worst["d_available"]
    code = worst["line_code"]
    if code is None:
        code = await uow.scalar(select(lines.c.code).where(lines.c.id == worst["line_id"]))
    cur = p.currency
    scope = worst.get("control") or worst["period"]
    return Conflict(
        f"Line {code!r} has {fmt(max(before, 0), cur)} {cur} available in {scope}; short by {fmt(short, cur)} {cur}.",
        control_period=scope,
        shortfall=fmt(short, cur),
        currency=cur,
        line_id=worst["line_id"],
        line_code=code,
        period=worst["period"],
    )


async def postable(
    uow: UnitOfWork, p: Plan, period: str, date: dt.date | None, field_name: str = "period", *, draft: bool = False
) -> dt.date:
    """Plan active (or, for `draft` postings: allocations building the budget, a draft), period inside it
    and open, date inside the period; returns the entry date."""
    if p.status != "active" and not (draft and p.status == "draft"):
        what = "a draft; activate it before posting" if p.status == "draft" else "closed"
        raise Conflict(f"Plan {p.name!r} is {what}.")
    check_period(p, period, field_name)
    on = entry_date(period, date)
    if p.checked_period == period:
        closed = p.checked_period_closed  # looked up together with the line
    else:
        closed = bool(
            await uow.scalar(
                select(closed_periods.c.period).where(
                    closed_periods.c.plan_id == p.id, closed_periods.c.period == period
                )
            )
        )
    if closed:
        raise Conflict(
            f"Period {period} of plan {p.name!r} is closed; no new entries can be dated in it.", period=period
        )
    return on


async def lock(uow: UnitOfWork, p: Plan, keys: Iterable[tuple[Any, str]]) -> dict[Key, Any]:
    """Lock the balance rows of each (line, period) and of the line's ancestors, with every month of
    the plan's control period containing it (the rows its posting will lock), in one fixed order (for
    flows that must read figures or lock a commitment before they write)."""
    ids: set[str] = set()
    pers: set[str] = set()
    for ln, per in keys:
        ids.update(ancestors(ln.path))
        pers.update(control_scope(p, p.control_period, per)[1])
    conn = await uow.connection()
    rows = (await conn.execute(_LOCK_BALANCES, {"ids": sorted(ids), "periods": sorted(pers)})).all()
    return {(r.line_id, r.period): r for r in rows}


async def entry(uow: UnitOfWork, entry_id: str) -> Row[Any]:
    row = (await uow.execute(select(entries).where(entries.c.id == entry_id))).first()
    if row is None:
        raise NotFound(f"No ledger entry {entry_id}.")
    return row


def entry_view(e: Any, currency: str, line_code: str | None = None) -> dict[str, Any]:
    """An entry as the API shows it (`schemas.EntryOut`)."""
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
        "campaign_id": e.campaign_id,
    }


def entry_event(leg: Leg, p: Plan) -> events.BudgetEntryPosted:
    """The data of budget.allocation.posted (transfers and actuals add to it)."""
    return events.BudgetEntryPosted(
        entry_id=leg.id,
        plan_id=p.id,
        line_id=leg.line.id,
        line_code=leg.line.code,
        period=leg.period,
        amount=fmt(leg.amount, p.currency),
        currency=p.currency,
        dimensions=leg.line.dimensions,
    )
