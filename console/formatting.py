"""Money in the plan's currency with the locale's separators, times in the person's time zone (babel)."""

from __future__ import annotations

import datetime as dt
import functools
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import get_month_names
from babel.numbers import (
    format_currency,
    format_decimal,
    format_percent,
    get_currency_precision,
    get_decimal_symbol,
    get_group_symbol,
)

SUPPORTED_LOCALES = ("en", "en_GB", "de", "fr", "es", "it", "nl", "pt", "ja")


def negotiate_locale(accept_language: str | None, default: str = "en") -> str:
    """The best supported locale for an Accept-Language header."""
    wanted = []
    for part in (accept_language or "").split(","):
        tag = part.split(";", 1)[0].strip().replace("-", "_")
        if tag and tag != "*":
            wanted.append(tag)
    found = Locale.negotiate(wanted, SUPPORTED_LOCALES, sep="_")
    return str(found) if found else default


def valid_locale(name: str, default: str = "en") -> str:
    try:
        Locale.parse(name)
    except (UnknownLocaleError, ValueError):
        return default
    return name


def zone(name: str | None, default: str = "UTC") -> ZoneInfo:
    try:
        return ZoneInfo(name or default)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def decimal(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


SAMPLE = Decimal("1234567.89")


@functools.lru_cache(maxsize=256)
def _currency_shape(currency: str, locale: str) -> tuple[str, int, str, str] | None:
    """The locale's way of writing this currency, found once with babel: a template around the digits,
    the currency's decimals and the two separators. None where the digits are not grouped by threes
    (babel then formats each amount itself)."""
    digits = get_currency_precision(currency)
    sample = format_currency(SAMPLE, currency, locale=locale)
    group, point = get_group_symbol(locale=locale), get_decimal_symbol(locale=locale)
    plain = f"{SAMPLE:,.{digits}f}".replace(",", "\0").replace(".", point).replace("\0", group)
    if sample.count(plain) != 1:
        return None
    return sample.replace(plain, "{}"), digits, group, point


def money(value: object, currency: str | None, locale: str = "en") -> str:
    """'12345.60' EUR -> '€12,345.60' (en) or '12.345,60 €' (de); the API's decimal string, never a float.

    A page shows hundreds of figures: babel's own format_currency costs ~50 µs each, so the locale's
    pattern is worked out once per currency and locale and applied with plain string formatting."""
    amount = decimal(value)
    if amount is None:
        return "–"
    if not currency:
        return format_decimal(amount, locale=locale)
    shape = _currency_shape(currency, locale) if amount >= 0 else None  # where the minus goes varies: babel's
    if shape is None:
        return format_currency(amount, currency, locale=locale)
    template, digits, group, point = shape
    return template.format(f"{amount:,.{digits}f}".replace(",", "\0").replace(".", point).replace("\0", group))


def number(value: object, locale: str = "en", digits: int = 2) -> str:
    amount = decimal(value)
    if amount is None:
        return "–"
    return format_decimal(amount, format=f"#,##0.{'0' * digits}" if digits else "#,##0", locale=locale)


def percent(share: object, locale: str = "en") -> str:
    value = decimal(share)
    return "–" if value is None else format_percent(value, format="#,##0.#%", locale=locale)


def parse_instant(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def when(value: str | None, tz: str, locale: str = "en") -> str:
    """An ISO instant shown in the person's time zone, e.g. '3 Dec 2026, 19:05 CET'."""
    instant = parse_instant(value)
    if instant is None:
        return "–"
    local = instant.astimezone(zone(tz))
    # babel's format_datetime(local, "d MMM y, HH:mm") costs ~100 µs; the same text from the locale's
    # month names (looked up once) costs a few, and a page lists dozens of times.
    return f"{local.day} {_months(locale)[local.month]} {local.year}, {local:%H:%M} {local.tzname() or tz}"


@functools.lru_cache(maxsize=64)
def _months(locale: str) -> dict[int, str]:
    return dict(get_month_names("abbreviated", "format", locale=locale))
