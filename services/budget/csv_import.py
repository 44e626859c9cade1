"""The spreadsheet import: create or update a plan's lines and post allocations from a CSV, all or
nothing. Every row is checked before anything is written; a bad file is one 422 naming each bad
row and field (`rows[3].currency`), and nothing of it is imported."""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from services.budget import events, fx
from services.budget.lines import (
    CODE_MAX,
    CODE_PATTERN,
    DIMENSION_MAX,
    DIMENSIONS,
    MAX_TAGS,
    NAME_MAX,
    add_line,
    merged_dimensions,
)
from services.budget.models import lines
from services.budget.periods import check_period, period_bounds
from services.budget.plans import Plan, closed_periods_of, get_plan
from services.budget.postings import Leg, Money, Postings, entry_event, lock
from shared.csvtext import read_csv
from shared.errors import Conflict, Errors, FieldError, Invalid
from shared.identity import Principal
from shared.money import EXPONENTS, parse_decimal
from shared.uow import UnitOfWork

COLUMNS = frozenset({"code", "parent_code", "name", "period", "amount", "currency", "tags", "dimensions", *DIMENSIONS})


def check_header(headers: list[str]) -> None:
    """A `code` column, and no column the import does not know."""
    errs = Errors()
    missing = {"code"} - set(headers)
    unknown = [h for h in headers if h not in COLUMNS]
    if missing:
        errs.add("header", f"missing column(s): {', '.join(sorted(missing))}")
    if unknown:
        errs.add("header", f"unknown column(s): {', '.join(unknown)}; known: {', '.join(sorted(COLUMNS))}")
    errs.raise_if_any("The CSV header is wrong; nothing was imported.")


def check_currency(code: str) -> str:
    """An ISO 4217 code as the standard writes it ("EUR"; "eur" is refused, not guessed)."""
    if code not in EXPONENTS:
        hint = f'; did you mean "{code.upper()}"?' if code.upper() in EXPONENTS else ""
        raise Invalid.on("currency", f"{code!r} is not an ISO 4217 currency code{hint}")
    return code


@dataclass
class Rows:
    """What a file asks for, row by row, with every problem found (row number -> field errors)."""

    p: Plan
    who: Principal
    existing: dict[str, Any]  # code -> line row
    closed: set[str]
    new_lines: dict[str, dict[str, Any]] = field(default_factory=dict)
    updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    allocations: list[tuple[str, str, Money, dt.date, int]] = field(default_factory=list)
    bad_rows: dict[int, list[dict[str, str]]] = field(default_factory=lambda: defaultdict(list))

    def bad(self, row_no: int, fname: str, message: str) -> None:
        self.bad_rows[row_no].append({"field": fname, "message": message})

    def cells(self, i: int, row: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        """The row's code, name and dimensions checked; its dimensions and tags."""
        code, name = row.get("code", ""), row.get("name", "")
        if len(code) > CODE_MAX:
            self.bad(i, "code", f"is longer than {CODE_MAX} characters")
        elif not re.match(CODE_PATTERN, code):
            self.bad(i, "code", "must start with a letter or digit and hold only letters, digits, '_', '.' and '-'")
        if len(name) > NAME_MAX:
            self.bad(i, "name", f"is longer than {NAME_MAX} characters")
        dims = {d: row[d] for d in DIMENSIONS if row.get(d)}
        if row.get("dimensions"):
            for part in row["dimensions"].split(";"):
                k, sep, v = part.partition("=")
                if not sep or k.strip() not in DIMENSIONS:
                    self.bad(i, "dimensions", f"{part!r} is not one of {', '.join(DIMENSIONS)} as key=value")
                else:
                    dims[k.strip()] = v.strip()
        for d, v in dims.items():
            if len(v) > DIMENSION_MAX[d]:
                self.bad(i, d, f"is longer than {DIMENSION_MAX[d]} characters")
        tags = [t.strip() for t in row.get("tags", "").split(";") if t.strip()]
        if len(tags) > MAX_TAGS:
            self.bad(i, "tags", f"has more than {MAX_TAGS} tags")
        return dims, tags

    def existing_line(
        self, i: int, code: str, name: str, parent_code: str | None, dims: dict[str, str], tags: list[str]
    ) -> None:
        cur = self.existing[code]
        codes_by_id = {r.id: r.code for r in self.existing.values()}
        cur_parent = codes_by_id.get(cur.parent_id) if cur.parent_id else None
        if parent_code is not None and parent_code != cur_parent:
            self.bad(i, "parent_code", f"line {code!r} sits under {cur_parent!r}; moving lines is not supported")
        merged = {**(cur.dimensions or {}), **dims}
        if not self.who.may_see(cur.dimensions):
            self.bad(i, "code", f"line {code!r} is outside your scopes")
        elif not self.who.may_see(merged):
            self.bad(i, "dimensions", f"{merged} would take line {code!r} outside your scopes")
        if (name and name != cur.name) or (dims and merged != cur.dimensions) or tags:
            self.updates[code] = {"name": name or cur.name, "dimensions": merged, "tags": tags or cur.tags}

    def new_line(
        self, i: int, code: str, name: str, parent_code: str | None, dims: dict[str, str], tags: list[str]
    ) -> None:
        if code in self.new_lines:
            spec = self.new_lines[code]
            if parent_code not in (None, spec["parent_code"]) or (name and name != spec["name"]):
                self.bad(i, "code", f"line {code!r} is defined differently on row {spec['row']}")
            return
        if not name:
            self.bad(i, "name", f"is required for the new line {code!r}")
        if parent_code is not None and parent_code not in self.existing and parent_code not in self.new_lines:
            self.bad(i, "parent_code", f"{parent_code!r} is neither a line of the plan nor defined on an earlier row")
        parent_dims = None
        if parent_code in self.existing:
            parent_dims = self.existing[parent_code].dimensions
        elif parent_code:
            parent_dims = self.new_lines.get(parent_code, {}).get("merged")
        if parent_code in self.existing and not self.who.may_see(parent_dims):
            self.bad(
                i,
                "parent_code",
                f"line {parent_code!r} is outside your scopes; a line under it would add to its subtree",
            )
        merged = merged_dimensions(parent_dims, dims)
        if not self.who.may_see(merged) and (parent_code not in self.existing or self.who.may_see(parent_dims)):
            self.bad(i, "dimensions", f"{merged} is outside your scopes")
        self.new_lines[code] = {
            "row": i,
            "name": name,
            "parent_code": parent_code,
            "dims": dims,
            "merged": merged,
            "tags": tags,
        }

    async def allocation(self, uow: UnitOfWork, i: int, code: str, row: dict[str, str]) -> None:
        """The row's allocation (period and amount, in the plan's currency unless given), if it has one."""
        period, amount_text = row.get("period", ""), row.get("amount", "")
        if not period and not amount_text:
            return
        if not period:
            return self.bad(i, "period", "is required when amount is given")
        if not amount_text:
            return self.bad(i, "amount", "is required when period is given")
        p = self.p
        try:
            check_period(p, period)
            if period in self.closed:
                raise Conflict(f"period {period} is closed")
            currency = check_currency(row.get("currency") or p.currency)
            try:
                amount = parse_decimal(amount_text)
            except ValueError as exc:
                raise Invalid.on("amount", str(exc)) from None
            first, _ = period_bounds(period)
            m = await fx.in_plan_currency(uow, p, amount, currency, first)
            self.allocations.append((code, period, m, first, i))
        except (Invalid, Conflict) as exc:
            for e in exc.errors:
                self.bad(i, e.field, e.message)
            if not exc.errors:
                self.bad(i, "period", exc.detail)

    def raise_if_bad(self) -> None:
        if not self.bad_rows:
            return
        report: list[dict[str, Any]] = [{"row": r, "errors": errs} for r, errs in sorted(self.bad_rows.items())]
        raise Invalid(
            f"{len(report)} bad row(s); nothing was imported.",
            errors=[FieldError(f"rows[{r['row']}].{e['field']}", e["message"]) for r in report for e in r["errors"]],
            rows=report,
        )


async def read_rows(uow: UnitOfWork, who: Principal, p: Plan, records: list[dict[Any, Any]]) -> Rows:
    existing = {r.code: r for r in (await uow.execute(select(lines).where(lines.c.plan_id == p.id))).all()}
    rows = Rows(p, who, existing, set(await closed_periods_of(uow, p.id)))
    for i, raw in enumerate(records, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if None in raw:
            rows.bad(i, "row", "has more cells than the header")
        code, name, parent_code = row.get("code", ""), row.get("name", ""), row.get("parent_code") or None
        if not code:
            rows.bad(i, "code", "is required")
            continue
        dims, tags = rows.cells(i, row)
        if code in existing:
            rows.existing_line(i, code, name, parent_code, dims, tags)
        else:
            rows.new_line(i, code, name, parent_code, dims, tags)
        await rows.allocation(uow, i, code, row)
    return rows


async def import_csv(uow: UnitOfWork, who: Principal, *, postings: Postings, plan_id: str, text: str) -> dict[str, Any]:
    """Create or update lines and post allocations from a CSV, all or nothing."""
    p = await get_plan(uow, plan_id)
    if p.status == "closed":
        raise Conflict(f"Plan {p.name!r} is closed.")
    headers, records = read_csv(text)
    check_header(headers)
    rows = await read_rows(uow, who, p, records)
    rows.raise_if_bad()
    for code, spec in rows.new_lines.items():
        parent = None
        if spec["parent_code"] is not None:
            q = select(lines).where(lines.c.plan_id == p.id, lines.c.code == spec["parent_code"])
            parent = (await uow.execute(q)).first()
        await add_line(
            uow, who, p, code=code, name=spec["name"], parent=parent, dimensions=spec["dims"], tags=spec["tags"]
        )
    for code, values in rows.updates.items():
        cur = rows.existing[code]
        await uow.execute(update(lines).where(lines.c.id == cur.id).values(**values, version=cur.version + 1))
    posted = await _allocate(uow, who, postings, p, rows.allocations)
    return {
        "plan_id": p.id,
        "rows": len(records),
        "lines_created": len(rows.new_lines),
        "lines_updated": len(rows.updates),
        "allocations_posted": posted,
    }


async def _allocate(
    uow: UnitOfWork,
    who: Principal,
    postings: Postings,
    p: Plan,
    allocations: list[tuple[str, str, Money, dt.date, int]],
) -> int:
    if not allocations:
        return 0
    by_code = {r.code: r for r in (await uow.execute(select(lines).where(lines.c.plan_id == p.id))).all()}
    legs = [
        Leg(by_code[code], per, "allocation", m.minor, (m.minor, 0, 0, 0), m, on, memo=f"CSV import row {row_no}")
        for code, per, m, on, row_no in allocations
    ]
    await lock(uow, p, [(leg.line, leg.period) for leg in legs])
    for leg in legs:
        # Allocations only add money, so no check needs the figures between two of them.
        await postings.write(uow, who, p, [leg], check=False, group_id=leg.id)
        await uow.publish(events.ALLOCATION_POSTED, leg.id, entry_event(leg, p))
    return len(legs)
