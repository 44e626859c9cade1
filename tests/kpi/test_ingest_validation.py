"""Ingest validation: the plain-Python fast path judges every item exactly as the careful path does."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from services.kpi import ingest, raw
from services.kpi import values as kv
from shared.identity import Principal


def careful(ing: ingest.Ingestor, items: list, principal: Principal | None, source: str) -> tuple[list, list]:
    """What `validate` must answer: every item through `_row`, the step-by-step checks with reasons."""
    rows, rejected = [], []
    for i, item in enumerate(items):
        try:
            rows.append(ing._row(i, item, principal, source))
        except ValueError as exc:
            rejected.append({"index": i, "reason": str(exc)})
    return rows, rejected


decimal_text = st.one_of(
    st.integers(-(10**16), 10**16).map(lambda n: f"{n / 10**6:.6f}"),
    st.integers(-(10**11), 10**11).map(str),
    st.from_regex(r"\A-?[0-9]{0,12}(\.[0-9]{0,8})?\Z"),
    st.text(alphabet="0123456789.-+eE_ ", max_size=14),
    st.text(max_size=6),
)
values = st.one_of(
    decimal_text,
    st.integers(-(10**11), 10**11),
    st.booleans(),
    st.floats(allow_nan=True),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
times = st.one_of(
    st.datetimes(
        min_value=dt.datetime(1900, 1, 1),
        max_value=dt.datetime(2100, 1, 1),
        timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-5)), None]),
    ).map(lambda t: t.isoformat()),
    # all of Python's dates, so times beyond shared.bounds (1900-2999) and ones whose UTC instant is not a
    # datetime at all (0001-01-01T00:00:00+01:00) meet both paths: each must be a rejected item, not a crash
    st.datetimes(
        min_value=dt.datetime(1, 1, 1),
        max_value=dt.datetime(9999, 12, 31, 23, 59, 59),
        timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=1)), dt.timezone(-dt.timedelta(hours=1))]),
    ).map(lambda t: t.isoformat()),
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "1899-12-31T23:59:59Z",
            "3000-01-01T00:00:00Z",
            "1900-01-01T00:00:00+14:00",
            "2999-12-31T23:59:59-12:00",
        ]
    ),
    st.sampled_from(
        [
            "2027-01-05T10:00:00Z",
            " 2027-01-05T10:00:00Z",
            "2027-01-05",
            "2027-W01-2T10:00:00Z",
            "2027-01-05T10:00:00.5+05:30",
            "not a time",
            "",
        ]
    ),
    st.integers(),
    st.none(),
)
dim_values = st.one_of(
    st.sampled_from(["search", " search ", "EMEA", "", "x" * 201]),
    st.integers(0, 2),
    st.booleans(),
    st.floats(0, 2),
    st.none(),
    st.lists(st.text(max_size=2), max_size=1),
)
dimensions = st.one_of(
    st.dictionaries(st.sampled_from(["channel", "region", "Bad-Name", "x"]), dim_values, max_size=3),
    st.none(),
    st.just("channel=search"),
    st.lists(st.integers(), max_size=1),
)
items = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["leads", "spend", "Leads!", ""]), "value": values, "time": times},
        optional={
            "dimensions": dimensions,
            "source": st.one_of(st.sampled_from(["crm", "", "s" * 101]), st.integers(), st.none()),
            "external_id": st.one_of(st.sampled_from(["e1", "e2", "", "e" * 201]), st.integers(), st.none()),
            "extra": st.just(1),
        },
    ),
    st.sampled_from([None, 7, "leads", [], {"type": ["leads"], "value": "1", "time": "2027-01-05T10:00:00Z"}]),
)


@settings(max_examples=300, deadline=None)
@given(batch=st.lists(items, max_size=12), scoped=st.booleans())
def test_validate_answers_exactly_what_the_item_by_item_checks_answer(batch, scoped):
    principal = Principal("feeder", frozenset({"partner"}), frozenset({"region:EMEA"})) if scoped else None
    # A fresh ingestor for each side, run twice: the second run exercises the warm caches.
    fast, slow = ingest.Ingestor(), ingest.Ingestor()
    for _ in range(2):
        answer = fast.validate(batch, principal, "default")
        assert answer == careful(slow, batch, principal, "default")
        for row in answer[0]:  # whatever is accepted lies within shared.bounds, in its own offset
            local = dt.datetime.fromisoformat(batch[row[raw.INDEX]]["time"].strip())
            assert dt.date(1900, 1, 1) <= local.date() <= dt.date(2999, 12, 31)


@given(st.one_of(decimal_text, st.integers(-(10**11), 10**11), st.booleans(), st.floats()))
def test_fast_micro_takes_only_values_to_micro_takes_and_agrees(value):
    fast = kv.fast_micro(value)
    if fast is not None:
        assert fast == kv.to_micro(value)


def test_common_decimal_shapes_take_the_fast_way():
    for text, micro in [
        ("0", 0),
        ("-0", 0),
        ("1", 1_000_000),
        ("12.5", 12_500_000),
        ("-0.000001", -1),
        ("9999999999.999999", 9_999_999_999_999_999),
        ("0001.10", 1_100_000),
    ]:
        assert kv.fast_micro(text) == micro == kv.to_micro(text)
    for text in ["1.", ".5", "+1", " 1", "1e3", "1_0", "1.0000000", "10000000000", "\u0663"]:
        assert kv.fast_micro(text) is None  # left to to_micro, which accepts or says why not


def test_a_cached_dimension_set_never_answers_for_a_different_value_type():
    ing = ingest.Ingestor()
    batch = [
        {"type": "leads", "value": "1", "time": "2027-01-05T10:00:00Z", "dimensions": d}
        for d in ({"x": 1}, {"x": True}, {"x": "1"}, {"x": 1.0}, {"x": "1"})
    ]
    for _ in range(2):
        rows, rejected = ing.validate(batch, None, "crm")
        assert [r[raw.INDEX] for r in rows] == [0, 2, 4]
        assert {r[raw.DIMS] for r in rows} == {(("x", "1"),)}
        assert [x["index"] for x in rejected] == [1, 3]


def test_an_unhashable_type_is_a_rejection_not_a_crash():
    rows, rejected = ingest.Ingestor().validate(
        [{"type": ["leads"], "value": "1", "time": "2027-01-05T10:00:00Z"}], None, "crm"
    )
    assert rows == [] and "type must be" in rejected[0]["reason"]


@settings(max_examples=300)
@given(
    t=st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)),
    sep=st.sampled_from(["T", " "]),
    frac=st.sampled_from([None, 0, 3, 6]),
    zone=st.sampled_from(["Z", "+00:00", "-00:00", "+01:00", ""]),
)
def test_the_time_text_sliced_from_the_input_is_the_stored_text_of_the_parsed_time(t, sep, frac, zone):
    if frac is not None:
        t = t.replace(microsecond=t.microsecond // 1000 * 1000 if frac == 3 else t.microsecond)
    text = t.isoformat(sep, {None: "auto", 0: "seconds", 3: "milliseconds", 6: "microseconds"}[frac]) + zone
    sliced = kv.iso_time_text(text)
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        assert sliced is None
    else:
        if sliced is not None:  # only UTC texts are sliced (another offset at year 1 or 9999 has no UTC time)
            assert sliced == kv.time_text(parsed.astimezone(dt.UTC))
        if zone in ("Z", "+00:00"):
            assert sliced is not None  # the common shapes do take the fast way
    for other in [
        "2027-01-05T10Z",
        "2027-01-05T10:00Z",
        "2027-01-05T10:00:00.5Z",
        "2027-W01-2T10:00:00Z",
        "20270105T100000Z",
        "2027-01-05T10:00:00.1234Z",
    ]:
        assert kv.iso_time_text(other) is None
