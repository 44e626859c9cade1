"""Conditions as JSON data, checked and evaluated without `eval`.

A condition is a leaf `{"field": "amount", "op": "gte", "value": "10000"}` or a group
`{"all": [...]}` / `{"any": [...]}`; a list means `all`. Fields are dotted paths into
the context (`dimensions.region`). Numbers and numeric strings compare as Decimal, so
"9000.00" < "10000" holds. A missing field makes every operator false except
`exists` with value false.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.errors import Errors

OPS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists")
_MISSING = object()
MAX_DEPTH = 8


def validate(raw: Any, errors: Errors, where: str, depth: int = 0) -> None:
    """Record every problem of a condition tree in `errors`, each with its path."""
    if depth > MAX_DEPTH:
        errors.add(where, f"conditions nest deeper than {MAX_DEPTH} levels")
        return
    if isinstance(raw, list):
        for i, item in enumerate(raw):
            validate(item, errors, f"{where}[{i}]", depth + 1)
        return
    if not isinstance(raw, dict):
        errors.add(where, 'must be {"field", "op", "value"}, {"all": [...]} or {"any": [...]}')
        return
    groups = [k for k in ("all", "any") if k in raw]
    if groups:
        if len(raw) != 1:
            errors.add(where, "a group has exactly one key, all or any")
            return
        items = raw[groups[0]]
        if not isinstance(items, list) or not items:
            errors.add(f"{where}.{groups[0]}", "must be a non-empty list of conditions")
            return
        validate(items, errors, f"{where}.{groups[0]}", depth + 1)
        return
    unknown = set(raw) - {"field", "op", "value"}
    if unknown:
        errors.add(where, f"unknown keys {sorted(unknown)}; a condition has field, op and value")
    field_name = raw.get("field")
    if not isinstance(field_name, str) or not field_name.strip():
        errors.add(f"{where}.field", "is required: a dotted path into the context, e.g. amount")
    op = raw.get("op")
    if op not in OPS:
        errors.add(f"{where}.op", f"must be one of {', '.join(OPS)}")
        return
    if op == "exists":
        if not isinstance(raw.get("value", True), bool):
            errors.add(f"{where}.value", "must be true or false for exists")
        return
    if "value" not in raw:
        errors.add(f"{where}.value", "is required")
        return
    value = raw["value"]
    if op in ("in", "not_in") and not isinstance(value, list):
        errors.add(f"{where}.value", f"must be a list for {op}")
    if op in ("gt", "gte", "lt", "lte") and _number(value) is None and not isinstance(value, str):
        errors.add(f"{where}.value", f"must be a number, a numeric string or a string for {op}")


def evaluate(cond: Any, context: dict[str, Any]) -> bool:
    """True when the (already validated) condition holds on `context`."""
    if isinstance(cond, list):
        return all(evaluate(c, context) for c in cond)
    if "all" in cond:
        return all(evaluate(c, context) for c in cond["all"])
    if "any" in cond:
        return any(evaluate(c, context) for c in cond["any"])
    actual = lookup(context, cond["field"])
    op = cond["op"]
    expected = cond.get("value", True)
    if op == "exists":
        return (actual is not _MISSING and actual is not None) == bool(expected)
    if actual is _MISSING or actual is None:
        return False
    if op == "eq":
        return _equal(actual, expected)
    if op == "ne":
        return not _equal(actual, expected)
    if op == "in":
        return any(_equal(actual, v) for v in expected)
    if op == "not_in":
        return not any(_equal(actual, v) for v in expected)
    if op == "contains":
        if isinstance(actual, list):
            return any(_equal(a, expected) for a in actual)
        if isinstance(actual, dict):
            return str(expected) in actual
        return isinstance(actual, str) and str(expected) in actual
    a, b = _number(actual), _number(expected)
    if a is not None and b is not None:
        return _ordered(op, a, b)
    if isinstance(actual, str) and isinstance(expected, str):  # strings order lexically (ISO dates)
        return _ordered(op, actual, expected)
    return False


def _ordered(op: str, a: Any, b: Any) -> bool:
    return bool({"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op])


def specificity(cond: Any) -> int:
    """How many leaf tests a condition makes: more is more specific."""
    if isinstance(cond, list):
        return sum(specificity(c) for c in cond)
    if isinstance(cond, dict) and ("all" in cond or "any" in cond):
        return specificity(cond.get("all") or cond.get("any") or [])
    return 1


def lookup(context: dict[str, Any], path: str) -> Any:
    value: Any = context
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return _MISSING
    return value


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):  # NaN and infinities order nothing (and Decimal NaN raises on <)
        return Decimal(str(value)) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except (InvalidOperation, ValueError):
            return None
        return d if d.is_finite() else None
    return None


def _equal(a: Any, b: Any) -> bool:
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na == nb
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return str(a) == str(b) if isinstance(a, str | int) and isinstance(b, str | int) else a == b
