"""Rollup sums are bounded (a CHECK constraint, 409 naming the rule, the whole batch rolled back) and reads
that add many of them up are exact on SQLite too. Before: 1,000 values of 9999999999 on one day were a 500
on PostgreSQL ("value out of int64 range") and an inexact float sum on SQLite, and a year of large sums was
an "integer overflow" 500 on SQLite."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from services.kpi import values as kv
from services.kpi.models import (
    MAX_ROLLUP_SUM,
    dimension_sets,
    infra,
    measurements,
    quality_issues,
    rollups_daily,
    rollups_monthly,
    seen_values,
)

pytestmark = pytest.mark.db

TABLES = (
    measurements,
    rollups_daily,
    rollups_monthly,
    dimension_sets,
    seen_values,
    quality_issues,
    infra.outbox,
    infra.idempotency,
)
TOP = "9999999999.999999"  # the largest value one measurement may have
TOP_MICRO = 9_999_999_999_999_999


async def snapshot(kpi) -> dict:
    """Row counts of every table an ingest writes, and the rollup rows themselves."""
    async with kpi.runtime.transaction(readonly=True) as s:
        out: dict = {t.name: int(await s.scalar(select(func.count()).select_from(t))) for t in TABLES}
        for t in (rollups_daily, rollups_monthly):
            out[t.name + "_rows"] = sorted(tuple(r) for r in await s.execute(select(t)))
    return out


def item(value: str, day: str = "2027-03-10", channel: str = "search", **extra) -> dict:
    return {"type": "revenue", "value": value, "time": f"{day}T12:00:00Z", "dimensions": {"channel": channel}, **extra}


def refused(r) -> dict:
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert "1,000,000,000,000" in body["detail"] and "nothing" in body["detail"], body
    return body


@pytest.mark.parametrize("extras", [False, True])  # with extras: 1,002 items, SQLite's chunked path
@pytest.mark.parametrize("key", [None, "big-batch"])  # with a key: the idempotent path, whose record rolls back too
async def test_1000_of_9999999999_on_one_day_are_409_and_write_nothing(kpi, extras, key):
    ok = await kpi.client.post("/v1/measurements", json={"items": [item("5")]})
    assert ok.status_code == 200 and ok.json()["accepted"] == 1, ok.text
    before = await snapshot(kpi)
    # The same day and dimension set as the stored one (whose rollup must stay as it is), and new
    # things (a dimension value, a type) whose rows and first sightings must not stay either.
    items = [item("9999999999", external_id=f"e{i}") for i in range(1000)]
    if extras:
        items += [item("1", channel="brand-new"), {**item("1"), "type": "brand_new_type"}]
    headers = {"Idempotency-Key": key} if key else {}
    refused(await kpi.client.post("/v1/measurements", json={"items": items}, headers=headers))
    assert await snapshot(kpi) == before
    # The rule is about the sum: the same values spread over dimension sets are fine (and the key is free).
    spread = [{**it, "dimensions": {"channel": f"c{i % 20}"}} for i, it in enumerate(items)]
    r = await kpi.client.post("/v1/measurements", json={"items": spread}, headers=headers)
    assert r.status_code == 200 and r.json()["accepted"] == len(items), r.text


async def test_the_bound_is_exact_for_days_and_months_and_checked_by_the_database(kpi):
    # 100 of the largest value fit a day (sum 10**18 - 100 micro-units); 100 micro-units more do not.
    r = await kpi.client.post("/v1/measurements", json={"items": [item(TOP)] * 100})
    assert r.status_code == 200 and r.json()["accepted"] == 100, r.text
    assert 100 * TOP_MICRO == MAX_ROLLUP_SUM - 100
    before = await snapshot(kpi)
    refused(await kpi.client.post("/v1/measurements", json={"items": [item("0.0001")]}))  # the day (and month)
    refused(await kpi.client.post("/v1/measurements", json={"items": [item("0.0001", day="2027-03-11")]}))  # month
    refused(await kpi.client.post("/v1/measurements", json={"items": [item("0.000099"), item("0.000001")]}))
    assert await snapshot(kpi) == before
    assert (await kpi.client.post("/v1/measurements", json={"items": [item("0.000099")]})).json()["accepted"] == 1
    # One batch's own share of a rollup is bounded too (the upsert's proposed row), even where the new sum
    # would fit; in two batches the sum goes down to the same bound below zero.
    before = await snapshot(kpi)
    refused(await kpi.client.post("/v1/measurements", json={"items": [item("-" + TOP)] * 200}))
    assert await snapshot(kpi) == before
    for _ in range(2):
        r = await kpi.client.post("/v1/measurements", json={"items": [item("-" + TOP)] * 100})
        assert r.status_code == 200 and r.json()["accepted"] == 100, r.text
    refused(await kpi.client.post("/v1/measurements", json={"items": [item("-1")]}))
    r = await kpi.client.get(
        "/v1/metrics/revenue/series", params={"from": "2027-03-01", "to": "2027-03-31", "grain": "month"}
    )
    assert r.json()["series"][0]["points"][0]["value"] == "-999999999999.999801", r.text
    # A rebuild from the raw rows gives the same rollups.
    rows = await snapshot(kpi)
    assert (await kpi.client.post("/v1/rollups/rebuild", json={})).status_code == 200
    assert await snapshot(kpi) == rows


async def test_reads_over_many_large_rollups_are_exact(kpi):
    # 12 months x 10 channels, each near the bound: every read adds up more than 2**63 micro-units.
    for month in range(1, 13):
        items = [item(TOP, day=f"2026-{month:02d}-15", channel=f"c{c}") for c in range(10) for _ in range(100)]
        r = await kpi.client.post("/v1/measurements", json={"items": items})
        assert r.status_code == 200 and r.json()["accepted"] == 1000, r.text

    def money(n: int) -> str:
        return kv.fmt(Decimal(n * TOP_MICRO).scaleb(-6), "currency")

    assert 1000 * TOP_MICRO > 2**63
    card = await kpi.client.get("/v1/scorecard", params={"metrics": "revenue", "period": "2026"})
    assert card.status_code == 200, card.text
    assert card.json()["items"][0]["actual"] == money(12_000) == "119999999999999.988"
    for extra in ({"read_from": "rollup"}, {"read_from": "raw"}, {"tz": "Europe/Berlin"}):
        r = await kpi.client.get(
            "/v1/metrics/revenue/series", params={"from": "2026-01-01", "to": "2026-12-31", "grain": "quarter", **extra}
        )
        assert r.status_code == 200, (extra, r.text)
        assert [p["value"] for p in r.json()["series"][0]["points"]] == [money(3000)] * 4, extra
    # A day: ten daily rollups; ragged month edges: daily and monthly rollups in one bucket.
    for params, want in (
        ({"from": "2026-01-15", "to": "2026-01-15", "grain": "day"}, [money(1000)]),
        ({"from": "2026-01-02", "to": "2026-12-30", "grain": "quarter"}, [money(3000)] * 4),
        ({"from": "2026-01-10", "to": "2026-02-20", "grain": "week"}, None),
    ):
        r = await kpi.client.get("/v1/metrics/revenue/series", params=params)
        assert r.status_code == 200, (params, r.text)
        values = [p["value"] for p in r.json()["series"][0]["points"]]
        if want is None:
            assert sorted(v for v in values if v != "0.00") == [money(1000)] * 2, values
        else:
            assert values == want, params
    # Averages and counts over the same rows, and a derived metric that divides the huge sums.
    avg = {
        "key": "revenue_avg",
        "name": "Average revenue",
        "kind": "base",
        "measurement_type": "revenue",
        "aggregation": "avg",
        "unit": "currency",
        "direction": "higher_is_better",
    }
    ratio = {
        "key": "revenue_share",
        "name": "Share",
        "kind": "derived",
        "formula": "revenue / (revenue * 2)",
        "unit": "percent",
        "direction": "higher_is_better",
    }
    for spec in (avg, ratio):
        assert (await kpi.client.post("/v1/metrics", json=spec)).status_code == 201
    card = await kpi.client.get("/v1/scorecard", params={"metrics": "revenue_avg,revenue_share", "period": "2026"})
    assert [i["actual"] for i in card.json()["items"]] == [TOP, "0.5"], card.text


async def test_a_consumed_event_that_would_break_the_bound_rolls_back_with_its_inbox_record(kpi):
    # A DomainError, so the consumer dead-letters it instead of retrying; the inbox keeps no record.
    from services.kpi import handlers
    from shared.consumer import Consumer
    from shared.errors import Conflict
    from shared.events import new_event

    spend = {
        "type": "spend",
        "value": TOP,
        "time": "2027-03-04T10:00:00Z",
        "source": "budget",
        "dimensions": {"currency": "EUR", "line_code": "EMEA-SEARCH", "region": "EMEA"},
    }
    r = await kpi.client.post("/v1/measurements", json={"items": [spend] * 100})
    assert r.status_code == 200 and r.json()["accepted"] == 100, r.text
    rt = kpi.runtime
    consumer = Consumer("kpi", rt.db, infra.inbox, rt.bus, handlers.handlers(rt))
    env = new_event(
        "budget.actual.posted",
        "budget",
        "e-9",
        {
            "entry_id": "e-9",
            "plan_id": "p-1",
            "line_id": "l-1",
            "line_code": "EMEA-SEARCH",
            "period": "2027-03",
            "date": "2027-03-04T10:00:00+00:00",
            "amount": "0.01",
            "currency": "EUR",
            "original_amount": "0.01",
            "original_currency": "EUR",
            "commitment_id": None,
            "external_ref": None,
            "vendor": None,
            "dimensions": {"region": "EMEA"},
        },
    )
    before = {**await snapshot(kpi), "inbox": await _count(kpi, infra.inbox)}
    with pytest.raises(Conflict):
        await consumer.handle(env, consumer.handlers[env.type])
    assert {**await snapshot(kpi), "inbox": await _count(kpi, infra.inbox)} == before


async def _count(kpi, table) -> int:
    async with kpi.runtime.transaction(readonly=True) as s:
        return int(await s.scalar(select(func.count()).select_from(table)))


async def test_a_sum_that_passes_64_bits_on_the_way_is_exact_in_raw_scans_and_rebuilds(kpi):
    # 1,000 of the largest value and 1,000 of its negative in one batch: a sum of 0 (and a rollup of 0), but
    # SQLite's sum() over the raw rows in order passes 2**63 on the way ("integer overflow", a 500 before).
    items = [item(TOP, external_id=f"p{i}") for i in range(1000)] + [
        item("-" + TOP, external_id=f"n{i}") for i in range(1000)
    ]
    r = await kpi.client.post("/v1/measurements", json={"items": items})
    assert r.status_code == 200 and r.json()["accepted"] == 2000, r.text
    params = {"from": "2027-03-01", "to": "2027-03-31", "grain": "month"}
    for read_from in ("rollup", "raw"):
        r = await kpi.client.get("/v1/metrics/revenue/series", params={**params, "read_from": read_from})
        assert r.status_code == 200 and r.json()["series"][0]["points"][0]["value"] == "0.00", r.text
    rows = await snapshot(kpi)
    r = await kpi.client.post("/v1/rollups/rebuild", json={})
    assert r.status_code == 200, r.text
    assert await snapshot(kpi) == rows
