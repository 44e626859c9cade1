"""ERP mapping: rules that turn a document's ERP coordinates (company code, cost centre, GL account,
vendor, internal order or campaign code) into a budget line code, so the ERP need not know Pitcrew's
line codes.

Rules are tried by priority (lower first; equal priorities by creation). A rule's condition left null
matches any value; one ending in `*` matches by prefix (`6*` matches GL account 6120); any other
must equal the document's value exactly. The first rule whose every condition holds names the line
code, resolved like a code the ERP sends itself: in the active plan of the document's fiscal year.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update

from services.budget.lines import resolve_line
from services.budget.models import erp_mapping_rules as rules_table
from services.budget.postings import new_id
from services.budget.schemas import ERP_COORDINATES
from shared.db import utcnow
from shared.errors import Invalid, NotFound, PreconditionFailed
from shared.identity import Principal, ensure_unscoped
from shared.uow import UnitOfWork


def rule_view(r: Any) -> dict[str, Any]:
    """A rule as the API shows it (`erp_schemas.MappingRuleOut`)."""
    return {c: getattr(r, c) for c in rules_table.c.keys()}


def holds(condition: str | None, value: str | None) -> bool:
    """Whether a document's value meets one condition of a rule."""
    if condition is None:
        return True
    if value is None:
        return False
    if condition.endswith("*"):
        return value.startswith(condition[:-1])
    return value == condition


def why_not(rule: Any, coordinates: dict[str, str | None]) -> str | None:
    """The first condition of `rule` the coordinates fail (None: the rule matches)."""
    for field in ERP_COORDINATES:
        condition = getattr(rule, field)
        if not holds(condition, coordinates.get(field)):
            got = coordinates.get(field)
            return (
                f"{field} {got!r} does not match {condition!r}"
                if got is not None
                else f"no {field} (rule: {condition!r})"
            )
    return None


def conditions(rule: Any) -> str:
    return ", ".join(f"{f}={getattr(rule, f)}" for f in ERP_COORDINATES if getattr(rule, f) is not None)


async def all_rules(uow: UnitOfWork) -> list[Any]:
    q = select(rules_table).order_by(rules_table.c.priority, rules_table.c.created_at, rules_table.c.id)
    return list((await uow.execute(q)).all())


def first_match(rules: list[Any], coordinates: dict[str, str | None]) -> tuple[Any | None, list[dict[str, Any]]]:
    """The first rule that matches and every rule checked up to it, with why each did or did not."""
    checked = []
    for r in rules:
        reason = why_not(r, coordinates)
        matched = reason is None
        checked.append(
            {"rule_id": r.id, "priority": r.priority, "matched": matched, "why": reason or f"matches {conditions(r)}"}
        )
        if matched:
            return r, checked
    return None, checked


async def line_code_for(uow: UnitOfWork, coordinates: dict[str, str | None]) -> tuple[str | None, str]:
    """The line code the rules map these coordinates to (None if none does), and why."""
    rule, checked = first_match(await all_rules(uow), coordinates)
    return (rule.line_code if rule else None), _reason(rule, checked, coordinates)


def _reason(rule: Any, checked: list[dict[str, Any]], coordinates: dict[str, str | None]) -> str:
    if rule is not None:
        return f"rule {rule.id} (priority {rule.priority}: {conditions(rule)}) maps it to line {rule.line_code!r}"
    given = ", ".join(f"{k}={v}" for k, v in coordinates.items() if v is not None) or "no coordinates"
    return f"no mapping rule matches {given} ({len(checked)} rules tried)"


def _need_a_condition(values: dict[str, Any]) -> None:
    if all(values.get(f) is None for f in ERP_COORDINATES):
        raise Invalid.on(
            "cost_center", f"a rule needs at least one condition ({', '.join(ERP_COORDINATES)})", "missing"
        )


async def create_rule(uow: UnitOfWork, who: Principal, **values: Any) -> dict[str, Any]:
    ensure_unscoped(who, "Changing the ERP mapping")
    _need_a_condition(values)
    row = dict(id=new_id(), version=1, created_by=who.subject, created_at=utcnow(), **values)
    await uow.execute(insert(rules_table).values(**row))
    await uow.audit("erp_mapping_rule", row["id"], action="budget.erp_mapping.created", after=row)
    return rule_view((await uow.execute(select(rules_table).where(rules_table.c.id == row["id"]))).one())


async def get_rule(uow: UnitOfWork, *, rule_id: str, lock: bool = False) -> Any:
    q = select(rules_table).where(rules_table.c.id == rule_id)
    r = (await uow.execute(q.with_for_update() if lock else q)).first()
    if r is None:
        raise NotFound(f"No mapping rule {rule_id}.")
    return r


async def update_rule(
    uow: UnitOfWork, who: Principal, *, rule_id: str, expected_version: int, **values: Any
) -> dict[str, Any]:
    """Replace a rule's priority, conditions, line code and description (If-Match: the version it was
    read at); it applies to documents that arrive from now on and to assignments."""
    ensure_unscoped(who, "Changing the ERP mapping")
    _need_a_condition(values)
    r = await get_rule(uow, rule_id=rule_id, lock=True)
    if r.version != expected_version:
        raise PreconditionFailed(
            f"Mapping rule {rule_id} is at version {r.version}, not {expected_version}; fetch it again and retry.",
            current_version=r.version,
        )
    changed = dict(values, version=r.version + 1, updated_by=who.subject, updated_at=utcnow())
    # The version in the WHERE too: a writer that read the same version and lost the lock race changes nothing.
    q = update(rules_table).where(rules_table.c.id == rule_id, rules_table.c.version == expected_version)
    done = await uow.execute(q.values(**changed))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise PreconditionFailed(f"Mapping rule {rule_id} changed meanwhile; fetch it again and retry.")
    after = rule_view(await get_rule(uow, rule_id=rule_id))
    await uow.audit("erp_mapping_rule", rule_id, action="budget.erp_mapping.changed", before=rule_view(r), after=after)
    return after


async def delete_rule(uow: UnitOfWork, who: Principal, *, rule_id: str) -> dict[str, Any]:
    ensure_unscoped(who, "Changing the ERP mapping")
    r = await get_rule(uow, rule_id=rule_id)
    await uow.execute(delete(rules_table).where(rules_table.c.id == rule_id))
    await uow.audit("erp_mapping_rule", rule_id, action="budget.erp_mapping.deleted", before=rule_view(r))
    return rule_view(r)


async def list_rules(uow: UnitOfWork) -> list[dict[str, Any]]:
    return [rule_view(r) for r in await all_rules(uow)]


async def test(
    uow: UnitOfWork, who: Principal, *, coordinates: dict[str, str | None], fiscal_year: int | None
) -> dict[str, Any]:
    """Which line a document with these coordinates would hit, and why (nothing is posted)."""
    rule, checked = first_match(await all_rules(uow), coordinates)
    line = None
    reason = _reason(rule, checked, coordinates)
    if rule is not None and fiscal_year is not None:
        try:
            ln = await resolve_line(uow, fiscal_year, rule.line_code)
        except Invalid as exc:
            reason += f"; but {exc.errors[0].message}: such a document would be refused"
        else:
            if who.may_see(ln.dimensions):
                line = {"id": ln.id, "plan_id": ln.plan_id, "code": ln.code, "name": ln.name}
    return {
        "matched": rule is not None,
        "line_code": rule.line_code if rule else None,
        "line": line,
        "rule": rule_view(rule) if rule else None,
        "reason": reason,
        "checked": checked,
    }
