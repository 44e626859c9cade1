"""FX: rates entered by finance (quote per one base, by day), and an amount in any currency as it
counts in a plan's currency (the latest rate on or before the entry's day; the inverse pair serves
too). Rates are kept as decimal text; an amount converts once, with banker's rounding."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, insert, select, tuple_, update

from services.budget.models import fx_rates
from services.budget.plans import Plan
from services.budget.postings import Money
from shared.db import utcnow
from shared.errors import FieldError, Invalid
from shared.identity import Principal, ensure_unscoped
from shared.money import MAX_MINOR, check_rate, convert, exponent, fmt, to_minor
from shared.pagination import decode_cursor, page_of
from shared.uow import UnitOfWork


async def post_rate(
    uow: UnitOfWork, who: Principal, *, base: str, quote: str, date: dt.date, rate: Decimal
) -> dict[str, Any]:
    """Enter (or correct) the rate of a currency pair on a day."""
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
    before = await uow.scalar(select(fx_rates.c.rate).where(key))
    if before is not None:
        await uow.execute(update(fx_rates).where(key).values(**values))
    else:
        await uow.execute(insert(fx_rates).values(base=base, quote=quote, rate_date=date, **values))
    view = {"base": base, "quote": quote, "date": date.isoformat(), "rate": str(rate), "created_by": who.subject}
    old = None if before is None else {**view, "rate": before}
    await uow.audit(
        "fx_rate", f"{base}/{quote}/{date.isoformat()}", action="budget.fx_rate.set", before=old, after=view
    )
    return view


async def list_rates(
    uow: UnitOfWork, *, base: str | None, quote: str | None, limit: int, cursor: str | None
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
    rows, nxt = page_of(list((await uow.execute(q)).all()), limit, lambda r: (r.base, r.quote, r.rate_date.isoformat()))
    items = [
        {"base": r.base, "quote": r.quote, "date": r.rate_date.isoformat(), "rate": r.rate, "created_by": r.created_by}
        for r in rows
    ]
    return items, nxt


async def rate(uow: UnitOfWork, base: str, quote: str, on: dt.date) -> Decimal:
    """The latest rate on or before `on` (quote per base); the inverse pair serves too."""
    c = fx_rates.c
    for b, q, invert in ((base, quote, False), (quote, base, True)):
        r = await uow.scalar(
            select(c.rate).where(c.base == b, c.quote == q, c.rate_date <= on).order_by(c.rate_date.desc()).limit(1)
        )
        if r is not None:
            return Decimal(1) / Decimal(r) if invert else Decimal(r)
    raise Invalid(
        f"No FX rate {base}/{quote} on or before {on.isoformat()}; post one to /v1/fx-rates first.",
        errors=[FieldError("currency", f"no FX rate {base}/{quote} on or before {on.isoformat()}", "no_fx_rate")],
    )


async def in_plan_currency(
    uow: UnitOfWork, p: Plan, amount: Decimal, currency: str, on: dt.date, field_name: str = "amount"
) -> Money:
    """`amount` of `currency` as given and as it counts in the plan's currency on `on`."""
    if amount <= 0:
        raise Invalid.on(field_name, "must be greater than zero", "not_positive")
    exponent(currency)
    original = to_minor(amount, currency, field_name)
    if currency == p.currency:
        return Money(original, currency, original, "1")
    r = await rate(uow, currency, p.currency, on)
    minor = convert(original, currency, p.currency, r)
    if minor <= 0:
        raise Invalid.on(field_name, f"{amount} {currency} is less than one minor unit of {p.currency}")
    if minor >= MAX_MINOR:
        raise Invalid.on(
            field_name, f"{amount} {currency} is {fmt(minor, p.currency)} {p.currency}, more than one amount may be"
        )
    return Money(original, currency, minor, str(r))
