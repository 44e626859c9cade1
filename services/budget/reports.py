"""Read models: a line's balance and entries, a plan's line tree, its summary by dimension with
pacing and by fiscal quarter, and its CSV export. All read the running balances (never re-sum the ledger); a scoped
caller sees only the lines its scopes cover, and subtree figures of only those."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, func, literal, select, type_coerce

from services.budget.figures import Figures, pacing
from services.budget.lines import DIMENSIONS, ancestors, get_line, line_view
from services.budget.models import balances, entries, lines
from services.budget.periods import elapsed_share, fiscal_quarter, period_range
from services.budget.plans import Plan, get_plan
from services.budget.postings import entry_view
from shared.db import utcnow
from shared.errors import Invalid
from shared.identity import Principal
from shared.pagination import decode_cursor, page_of
from shared.uow import UnitOfWork

EXPORT_COLUMNS = (
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
)


def dimension(name: str) -> Any:
    """A line dimension as text in SQL (json_extract on SQLite, ->> on PostgreSQL)."""
    if name not in DIMENSIONS:
        raise Invalid.on("query.group_by", f"must be one of {', '.join(DIMENSIONS)}")
    return type_coerce(lines.c.dimensions, JSON)[name].as_string()


@dataclass
class Tree:
    """Own and subtree figures of every line a caller may see."""

    lines: dict[str, Any]  # line id -> row, visible lines only
    own: dict[str, Figures]
    subtree: dict[str, Figures]
    codes: dict[str, str]  # line id -> code, every line of the plan (a parent may be hidden)


async def figures(uow: UnitOfWork, who: Principal, p: Plan, start: str, end: str, under: str | None = None) -> Tree:
    """The figures of the lines `who` may see (under the path `under`), from the running balances."""
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
    all_lines = list((await uow.execute(lq)).all())
    visible = {r.id: r for r in all_lines if who.may_see(r.dimensions)}
    b = balances.c
    bq = select(
        b.line_id,
        func.sum(b.own_allocated),
        func.sum(b.own_committed),
        func.sum(b.own_pending),
        func.sum(b.own_spent),
    ).where(b.plan_id == p.id, b.period >= start, b.period <= end)
    own: dict[str, Figures] = {}
    for row in (await uow.execute(bq.group_by(b.line_id))).all():
        if row[0] in visible:
            own[row[0]] = Figures(*(int(row[i] or 0) for i in range(1, 5)))
    subtree: dict[str, Figures] = {lid: Figures() for lid in visible}
    for lid, fig in own.items():
        for anc in ancestors(visible[lid].path):
            if anc in subtree:
                subtree[anc].add(fig)
    return Tree(visible, own, subtree, {r.id: r.code for r in all_lines})


async def _balance(uow: UnitOfWork, who: Principal, p: Plan, ln: Any, start: str, end: str) -> dict[str, str]:
    if not who.scopes:
        # The running subtree totals: one indexed read, whatever the size of the ledger.
        b = balances.c
        q = select(
            func.coalesce(func.sum(b.allocated), 0),
            func.coalesce(func.sum(b.committed), 0),
            func.coalesce(func.sum(b.pending), 0),
            func.coalesce(func.sum(b.spent), 0),
        ).where(b.line_id == ln.id, b.period >= start, b.period <= end)
        row = (await uow.execute(q)).one()
        return Figures(*map(int, row)).view(p.currency)
    # A scoped caller sees only the part of the subtree it may see.
    tree = await figures(uow, who, p, start, end, under=ln.path)
    return tree.subtree.get(ln.id, Figures()).view(p.currency)


async def line_detail(uow: UnitOfWork, who: Principal, *, line_id: str) -> dict[str, Any]:
    ln = await get_line(uow, who, line_id, "path.line_id")
    p = await get_plan(uow, ln.plan_id)
    pcode = await uow.scalar(select(lines.c.code).where(lines.c.id == ln.parent_id)) if ln.parent_id else None
    return {**line_view(ln, pcode), "balance": await _balance(uow, who, p, ln, *period_range(p, None, None))}


async def line_balance(
    uow: UnitOfWork, who: Principal, *, line_id: str, start: str | None, end: str | None
) -> dict[str, Any]:
    ln = await get_line(uow, who, line_id, "path.line_id")
    p = await get_plan(uow, ln.plan_id)
    start, end = period_range(p, start, end)
    balance = await _balance(uow, who, p, ln, start, end)
    return {"line_id": ln.id, "line_code": ln.code, "from": start, "to": end, **balance}


async def line_entries(
    uow: UnitOfWork, who: Principal, *, line_id: str, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    ln = await get_line(uow, who, line_id, "path.line_id")
    p = await get_plan(uow, ln.plan_id)
    q = select(entries).where(entries.c.line_id == ln.id).order_by(entries.c.seq).limit(limit + 1)
    after = decode_cursor(cursor, int)
    if after:
        q = q.where(entries.c.seq > after[0])
    rows, nxt = page_of(list((await uow.execute(q)).all()), limit, lambda r: (r.seq,))
    return [entry_view(r, p.currency, ln.code) for r in rows], nxt


async def tree(uow: UnitOfWork, who: Principal, *, plan_id: str, start: str | None, end: str | None) -> dict[str, Any]:
    """The plan's lines as a tree, each with its subtree balance."""
    p = await get_plan(uow, plan_id)
    start, end = period_range(p, start, end)
    f = await figures(uow, who, p, start, end)
    nodes: dict[str, dict[str, Any]] = {}
    for lid, r in sorted(f.lines.items(), key=lambda kv: (kv[1].depth, kv[1].code)):
        nodes[lid] = {
            "id": lid,
            "code": r.code,
            "name": r.name,
            "parent_id": r.parent_id,
            "parent_code": f.codes.get(r.parent_id) if r.parent_id else None,
            "depth": r.depth,
            "dimensions": r.dimensions,
            "tags": r.tags,
            "version": r.version,
            "balance": f.subtree[lid].view(p.currency),
            "children": [],
        }
    roots: list[dict[str, Any]] = []
    for node in nodes.values():
        parent = node["parent_id"]
        (nodes[parent]["children"] if parent in nodes else roots).append(node)
    return {"plan_id": p.id, "currency": p.currency, "from": start, "to": end, "items": roots}


async def summary(
    uow: UnitOfWork,
    who: Principal,
    *,
    plan_id: str,
    group_by: str | None,
    start: str | None,
    end: str | None,
    today: dt.date | None = None,
) -> dict[str, Any]:
    """The plan's figures per value of one dimension (or in total), with pacing against elapsed time."""
    p = await get_plan(uow, plan_id)
    start, end = period_range(p, start, end)
    by_key = await _by_dimension(uow, who, p, group_by, start, end)
    groups = {k: fig for k, fig in by_key.items() if fig.has_money}  # a group appears once it has money
    total = Figures()
    for fig in groups.values():
        total.add(fig)
    elapsed = elapsed_share(start, end, today or utcnow().date())
    items = [
        {"group": {group_by: k} if group_by else {}, **fig.view(p.currency), "pacing": pacing(fig, elapsed)}
        for k, fig in sorted(groups.items(), key=lambda kv: (kv[0] is None, str(kv[0])))
    ]
    return {
        "plan_id": p.id,
        "currency": p.currency,
        "from": start,
        "to": end,
        "fiscal_year": f"FY{p.fiscal_year}",
        "group_by": group_by,
        "groups": items,
        "quarters": await _by_quarter(uow, who, p, start, end),
        "total": {**total.view(p.currency), "pacing": pacing(total, elapsed)},
    }


async def _by_quarter(uow: UnitOfWork, who: Principal, p: Plan, start: str, end: str) -> list[dict[str, Any]]:
    """The visible lines' own figures per fiscal quarter of the range (summed here, not in SQLite)."""
    b = balances.c
    q = (
        select(b.period, b.own_allocated, b.own_committed, b.own_pending, b.own_spent)
        .select_from(balances.join(lines, lines.c.id == b.line_id))
        .where(b.plan_id == p.id, b.period >= start, b.period <= end)
    )
    for dim in sorted({sc.partition(":")[0] for sc in who.scopes if ":" in sc}):
        q = q.where(dimension(dim).in_(sorted(who.scope_values(dim) or ())))
    figs: dict[str, Figures] = defaultdict(Figures)
    months: dict[str, set[str]] = defaultdict(set)
    for row in (await uow.execute(q)).all():
        name = fiscal_quarter(p, row.period)
        figs[name].add(Figures(*(int(row[i]) for i in range(1, 5))))
        months[name].add(row.period)
    return [{"quarter": k, "periods": sorted(months[k]), **figs[k].view(p.currency)} for k in sorted(figs)]


async def _by_dimension(
    uow: UnitOfWork, who: Principal, p: Plan, group_by: str | None, start: str, end: str
) -> dict[Any, Figures]:
    # Summed per line over the range in the database (at most 12 months, so inside BIGINT), then per
    # dimension value here, where integers do not overflow (SQLite's sum() over a thousand lines could).
    # Scopes become WHERE clauses.
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
    key = dimension(group_by) if group_by else literal(None)
    q = select(key.label("k"), per_line.c.a, per_line.c.c, per_line.c.p, per_line.c.s).select_from(
        per_line.join(lines, lines.c.id == per_line.c.line_id)
    )
    for dim in sorted({sc.partition(":")[0] for sc in who.scopes if ":" in sc}):
        q = q.where(dimension(dim).in_(sorted(who.scope_values(dim) or ())))
    by_key: dict[Any, Figures] = defaultdict(Figures)
    for row in (await uow.execute(q)).all():
        by_key[row.k].add(Figures(*(int(row[i] or 0) for i in range(1, 5))))
    return by_key


async def export_csv(uow: UnitOfWork, who: Principal, *, plan_id: str, start: str | None, end: str | None) -> str:
    """The plan's lines with their subtree figures over the range, as CSV (tree order)."""
    p = await get_plan(uow, plan_id)
    start, end = period_range(p, start, end)
    f = await figures(uow, who, p, start, end)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(EXPORT_COLUMNS)
    for lid, r in sorted(f.lines.items(), key=lambda kv: [f.codes.get(i, i) for i in ancestors(kv[1].path)]):
        v = f.subtree[lid].view(p.currency)
        parent = f.codes.get(r.parent_id, "") if r.parent_id else ""
        dims = [(r.dimensions or {}).get(d, "") for d in DIMENSIONS]
        figs = [v[k] for k in ("allocated", "committed", "pending", "spent", "available")]
        w.writerow([r.code, parent, r.name, *dims, start, end, *figs, p.currency])
    return out.getvalue()
