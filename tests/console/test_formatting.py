"""The console's money formatting is babel's, only faster: compared figure by figure."""

from __future__ import annotations

from decimal import Decimal

import pytest
from babel.numbers import format_currency

from console.formatting import money, negotiate_locale, when

AMOUNTS = ["0.00", "0.05", "7.50", "999.99", "1000.00", "12345.60", "1234567.89", "100000000.00", "-250.00"]


@pytest.mark.parametrize("locale", ["en", "en_GB", "de", "fr", "es", "it", "nl", "pt", "ja", "en_IN"])
@pytest.mark.parametrize("currency", ["EUR", "USD", "GBP", "JPY", "CHF"])
def test_money_is_what_babel_writes(locale: str, currency: str):
    for text in AMOUNTS:
        amount = Decimal(text)
        assert money(text, currency, locale) == format_currency(amount, currency, locale=locale), (locale, text)


def test_missing_figures_and_locale_negotiation():
    assert money(None, "EUR") == "–" and money("", "EUR") == "–"
    assert negotiate_locale("de-DE,de;q=0.9,en;q=0.8") == "de"
    assert negotiate_locale("xx-YY") == "en"
    assert when("2026-12-03T17:30:00+00:00", "Europe/Berlin", "en") == "3 Dec 2026, 18:30 CET"


@pytest.mark.parametrize("locale", ["en", "de", "fr", "ja", "es"])
def test_times_are_what_babel_writes_in_the_persons_zone(locale: str):
    import datetime as dt
    from zoneinfo import ZoneInfo

    from babel.dates import format_datetime

    for iso, tz in (("2026-12-03T17:30:00+00:00", "Europe/Berlin"), ("2026-07-01T23:05:00Z", "America/New_York")):
        instant = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
        local = instant.astimezone(ZoneInfo(tz))
        expected = format_datetime(instant, "d MMM y, HH:mm", tzinfo=ZoneInfo(tz), locale=locale)
        assert when(iso, tz, locale) == f"{expected} {local.tzname()}"
