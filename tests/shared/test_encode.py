"""Answers are encoded exactly, whatever a database gives back."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from shared.idempotency import encode


def test_an_integer_past_64_bits_is_encoded_exactly_not_a_500() -> None:
    # PostgreSQL's JSONB stores 1e20 as an exact integer and gives it back as one; orjson refuses it.
    body = {"context": {"n": 10**20}, "amount": Decimal("1.50"), "at": dt.date(2027, 3, 1)}
    assert json.loads(encode(body)) == {"context": {"n": 10**20}, "amount": "1.50", "at": "2027-03-01"}


def test_the_usual_answer_takes_the_fast_encoder() -> None:
    assert encode({"amount": Decimal("2.00"), "ids": ["a"]}) == b'{"amount":"2.00","ids":["a"]}'
