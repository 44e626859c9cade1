"""Money: integer minor units plus an ISO 4217 code in storage, decimal strings in JSON.

Never a float. Rounding is banker's rounding and happens once, at conversion.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from shared.errors import Invalid

# ISO 4217 active codes with their minor-unit exponents (2 unless listed otherwise).
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN BZD "
    "CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS "
    "GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL "
    "MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK "
    "PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS "
    "TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
)
EXPONENTS: dict[str, int] = {
    **{c: 2 for c in _EXPONENT_2.split()},
    **{c: 0 for c in _EXPONENT_0.split()},
    **{c: 3 for c in _EXPONENT_3.split()},
    **{c: 4 for c in _EXPONENT_4.split()},
}


# Bounds of any decimal the API takes: beyond them a value is a typo or an attack, and would
# overflow a column or the decimal context (a 500) instead of getting a 4xx naming the field.
MAX_INTEGER_DIGITS = 18
MAX_DECIMAL_PLACES = 20
# Minor units of one amount stay below this (10**16 cents is a hundred trillion euros), far under
# BIGINT's 9.2e18; the budget's running monthly figures are held to it too (a CHECK constraint), so
# the sums its reads make stay inside BIGINT.
MAX_MINOR = 10**16
# FX rates (units of one currency per unit of another): beyond these a rate is a typo, and a stored
# 1E+999999999 made every later conversion in that currency a 500.
RATE_MIN, RATE_MAX, RATE_DIGITS = Decimal("1e-12"), Decimal("1e12"), 20


def check_rate(rate: Decimal) -> Decimal:
    """An FX rate within RATE_MIN..RATE_MAX with at most RATE_DIGITS significant digits, or ValueError."""
    if not RATE_MIN <= rate <= RATE_MAX or len(rate.normalize().as_tuple().digits) > RATE_DIGITS:
        raise ValueError(f"must be between {RATE_MIN} and {RATE_MAX} with at most {RATE_DIGITS} significant digits")
    return rate


def exponent(currency: str, field: str = "currency") -> int:
    try:
        return EXPONENTS[currency]
    except KeyError:
        raise Invalid.on(field, f"{currency!r} is not an ISO 4217 currency code") from None


def to_minor(amount: Decimal, currency: str, field: str = "amount") -> int:
    """Exact conversion to minor units; more decimals than the currency has is an error, not a rounding."""
    exp = exponent(currency)
    if not amount.is_finite():
        raise Invalid.on(field, f"{amount} is not a finite number")
    if -int(amount.as_tuple().exponent) > MAX_DECIMAL_PLACES or amount.adjusted() >= MAX_INTEGER_DIGITS:
        raise Invalid.on(field, f"{amount} is out of range")  # before scaleb, which could over- or underflow
    scaled = amount.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise Invalid.on(field, f"{amount} has more than {exp} decimal places, the most {currency} has")
    minor = int(scaled)
    if abs(minor) >= MAX_MINOR:
        raise Invalid.on(
            field, f"{amount} {currency} is more than one amount may be (less than {fmt(MAX_MINOR, currency)})"
        )
    return minor


def from_minor(minor: int, currency: str) -> Decimal:
    exp = EXPONENTS.get(currency, 2)
    return Decimal(minor).scaleb(-exp).quantize(Decimal(1).scaleb(-exp))


def fmt(minor: int, currency: str) -> str:
    """Minor units as the decimal string the API returns: 125000 EUR -> "1250.00"."""
    return str(from_minor(minor, currency))


def convert(minor: int, from_currency: str, to_currency: str, rate: Decimal) -> int:
    """Convert minor units at `rate` (to per from); banker's rounding, once."""
    if from_currency == to_currency:
        return minor
    exp = exponent(to_currency)
    with localcontext() as ctx:  # exact product: the one rounding is the quantize below
        ctx.prec = 80
        value = from_minor(minor, from_currency) * rate
        return int(value.scaleb(exp).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


# The one grammar of a decimal in the API, money included: ASCII digits, an optional leading minus,
# an optional decimal point with digits on both sides. Python's Decimal() alone also takes "１００",
# "٣", "1_000", " 100.00", "+5", ".5", "5.", "1e5", "NaN": each a different way for two systems to
# disagree about an amount.
DECIMAL_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
GRAMMAR = 'a decimal string of ASCII digits with an optional "-" and decimal point, e.g. "1250.00"'


def decimal_text(value: Decimal) -> str:
    """`value` in the grammar, never in exponent form: str() writes 0.00000000 as "0E-8" and
    100 scaled by 10 as "1E+3", which DECIMAL_TEXT (and a client reading it) does not accept."""
    return format(value, "f")


def parse_decimal_text(text: str) -> Decimal:
    """`text` as a Decimal when it follows DECIMAL_TEXT exactly, else ValueError naming the grammar."""
    if len(text) > 100:
        raise ValueError("is longer than 100 characters")
    if DECIMAL_TEXT.fullmatch(text) is None:
        raise ValueError(f"{text!r} is not {GRAMMAR}")
    return Decimal(text)


def parse_decimal(value: Any) -> Decimal:
    """A decimal string in the API's one grammar (DECIMAL_TEXT) as a Decimal; floats and JSON numbers
    are refused, and so is anything outside MAX_INTEGER_DIGITS / MAX_DECIMAL_PLACES. Raises ValueError
    with the reason."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError('send amounts as decimal strings such as "1250.00", never as floating-point numbers')
    if isinstance(value, Decimal):
        parsed = value
    elif isinstance(value, int):
        raise ValueError(f'send amounts as decimal strings such as "{value}", not as JSON numbers')
    elif isinstance(value, str):
        parsed = parse_decimal_text(value)
    else:
        raise ValueError("must be a decimal string")
    if not parsed.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    if -int(parsed.as_tuple().exponent) > MAX_DECIMAL_PLACES:
        raise ValueError(f"{value!r} has more than {MAX_DECIMAL_PLACES} decimal places")
    if parsed and parsed.adjusted() >= MAX_INTEGER_DIGITS:
        raise ValueError(f"{value!r} has more than {MAX_INTEGER_DIGITS} digits before the decimal point")
    return parsed


def _parse_currency(value: Any) -> str:
    """An ISO 4217 code exactly as the standard writes it ("EUR"; "eur" is refused, not guessed)."""
    if not isinstance(value, str) or value not in EXPONENTS:
        hint = f'; did you mean "{value.upper()}"?' if isinstance(value, str) and value.upper() in EXPONENTS else ""
        raise ValueError(f"{value!r} is not an ISO 4217 currency code{hint}")
    return value


# Pydantic field types: a decimal string in, a decimal string out.
# The documents say what is accepted: a string of the grammar (a JSON number is refused), so a
# generated client sends money as text and never as a float.
DECIMAL_SCHEMA = {"type": "string", "pattern": f"^{DECIMAL_TEXT.pattern}$", "examples": ["1250.00"]}
DecimalStr = Annotated[
    Decimal,
    BeforeValidator(parse_decimal),
    PlainSerializer(decimal_text, return_type=str),
    WithJsonSchema(DECIMAL_SCHEMA),
]
CurrencyCode = Annotated[
    str,
    BeforeValidator(_parse_currency),
    WithJsonSchema({"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["EUR"], "description": "ISO 4217"}),
]
