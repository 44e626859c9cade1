"""Measurements: batches with per-item rejections, idempotency, CSV, scopes, data quality, rebuild."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from services.kpi import raw, values
from services.kpi.models import measurements, rollups_daily, rollups_monthly

pytestmark = pytest.mark.db


def m(type_: str, value: str, time: str, ext: str | None = None, source: str = "crm", **dims: str) -> dict:
    item = {"type": type_, "value": value, "time": time, "dimensions": dims, "source": source}
    if ext:
        item["external_id"] = ext
    return item


async def count(kpi, table) -> int:
    async with kpi.runtime.transaction(readonly=True) as s:
        return await s.scalar(select(func.count()).select_from(table))


async def snapshot(kpi, table) -> list:
    async with kpi.runtime.transaction(readonly=True) as s:
        return sorted(tuple(r) for r in await s.execute(select(table)))


async def test_a_batch_reports_each_rejected_item_and_accepts_the_rest(kpi):
    items = [
        m("leads", "1", "2027-01-05T10:00:00Z", "l1", channel="search"),
        m("leads", "1,5", "2027-01-05T10:00:00Z", "l2"),
        m("leads", 1.5, "2027-01-05T10:00:00Z", "l3"),
        m("leads", "1", "2027-01-05T10:00:00", "l4"),
        m("Leads!", "1", "2027-01-05T10:00:00Z", "l5"),
        m("leads", "0.0000001", "2027-01-05T10:00:00Z", "l6"),
        {"type": "leads", "time": "2027-01-05T10:00:00Z"},
        m("leads", "1", "2027-01-05T10:00:00Z", "l8", Channel="x"),
        m("spend", "1200.50", "2027-01-06T10:00:00+02:00", "s1", channel="search"),
    ]
    r = await kpi.client.post("/v1/measurements", json={"items": items})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2 and body["duplicates"] == 0
    reasons = {x["index"]: x["reason"] for x in body["rejected"]}
    assert set(reasons) == {1, 2, 3, 4, 5, 6, 7}
    assert "floating-point" in reasons[2] and "UTC offset" in reasons[3] and "6 decimal places" in reasons[5]
    assert "value is required" in reasons[6] and "dimension name" in reasons[7]
    assert await count(kpi, measurements) == 2
    async with kpi.runtime.transaction(readonly=True) as s:
        values = sorted(v for (v,) in await s.execute(select(measurements.c.value)))
    assert values == [1_000_000, 1_200_500_000]  # exact micro-units, never floats


async def test_duplicates_by_source_and_external_id_are_dropped_within_and_across_batches(kpi):
    items = [
        m("leads", "1", "2027-01-05T10:00:00Z", "lead:1"),
        m("leads", "1", "2027-01-05T10:00:00Z", "lead:1"),
        m("leads", "1", "2027-01-05T10:00:00Z", "lead:1", source="other"),
        m("leads", "1", "2027-01-05T10:00:00Z"),
    ]
    first = (await kpi.client.post("/v1/measurements", json={"items": items})).json()
    assert (first["accepted"], first["duplicates"]) == (3, 1)
    second = (await kpi.client.post("/v1/measurements", json={"items": items[:3]})).json()
    assert (second["accepted"], second["duplicates"]) == (0, 3)
    assert await count(kpi, measurements) == 3
    assert (await snapshot(kpi, rollups_daily))[0][3] == 3  # rollup count


async def test_an_idempotency_key_replays_the_first_answer(kpi):
    items = [m("leads", "1", "2027-01-05T10:00:00Z", None)]
    h = {"Idempotency-Key": "batch-1"}
    a = await kpi.client.post("/v1/measurements", json={"items": items}, headers=h)
    b = await kpi.client.post("/v1/measurements", json={"items": items}, headers=h)
    assert a.json() == b.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert b.headers.get("Idempotent-Replayed") == "true"
    assert await count(kpi, measurements) == 1
    other = await kpi.client.post("/v1/measurements", json={"items": items * 2}, headers=h)
    assert other.status_code == 409


async def test_more_than_10000_items_is_refused_whole(kpi):
    items = [m("leads", "1", "2027-01-05T10:00:00Z", f"x{i}") for i in range(10_001)]
    r = await kpi.client.post("/v1/measurements", json={"items": items})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "items"
    assert await count(kpi, measurements) == 0


async def test_csv_import_maps_extra_columns_to_dimensions(kpi):
    csv = (
        "type,value,time,external_id,channel,region\n"
        "spend,100.00,2027-02-01T00:00:00Z,inv-1,search,EMEA\n"
        "leads,4,2027-02-02T00:00:00Z,lead-1,search,EMEA\n"
        "leads,oops,2027-02-02T00:00:00Z,lead-2,search,EMEA\n"
    )
    r = await kpi.client.post("/v1/measurements/import", content=csv, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 2 and r.json()["rejected"][0]["index"] == 2
    s = await kpi.client.get(
        "/v1/metrics/cpl/series", params={"from": "2027-02-01", "to": "2027-02-28", "group_by": "region"}
    )
    assert s.json()["series"] == [{"group": {"region": "EMEA"}, "points": [{"bucket": "2027-02-01", "value": "25.00"}]}]
    bad = await kpi.client.post("/v1/measurements/import", content="a,b\n1,2\n", headers={"Content-Type": "text/csv"})
    assert bad.status_code == 422 and "type" in bad.json()["detail"]
    wrong_type = await kpi.client.post("/v1/measurements/import", content=csv, headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 422


async def test_roles_and_scopes_on_writes(kpi):
    item = m("leads", "1", "2027-01-05T10:00:00Z", "a", region="APAC")
    async with kpi.as_("ann", "analyst") as analyst:
        assert (await analyst.post("/v1/measurements", json={"items": [item]})).status_code == 403
    async with kpi.as_("erp", "partner", scopes=("region:EMEA",)) as partner:
        r = await partner.post(
            "/v1/measurements", json={"items": [item, {**item, "external_id": "b", "dimensions": {"region": "EMEA"}}]}
        )
        assert r.status_code == 200
        assert r.json()["accepted"] == 1 and "outside your scopes" in r.json()["rejected"][0]["reason"]


async def test_a_scoped_reader_sees_only_its_region(kpi):
    items = [
        m("spend", "100", "2027-01-05T10:00:00Z", "e", region="EMEA", channel="search"),
        m("spend", "900", "2027-01-05T10:00:00Z", "n", region="NA", channel="search"),
    ]
    await kpi.client.post("/v1/measurements", json={"items": items})
    params = {"from": "2027-01-01", "to": "2027-01-31", "group_by": "channel"}
    everyone = (await kpi.client.get("/v1/metrics/spend/series", params=params)).json()
    assert everyone["series"][0]["points"][0]["value"] == "1000.00"
    async with kpi.as_("eve", "marketer", scopes=("region:EMEA",)) as eve:
        mine = (await eve.get("/v1/metrics/spend/series", params=params)).json()
        assert mine["series"][0]["points"][0]["value"] == "100.00"
        sneaky = (await eve.get("/v1/metrics/spend/series", params={**params, "filter": "region:NA"})).json()
        assert sneaky["series"] == []


async def test_quality_shows_rejections_duplicates_late_data_and_new_spellings(kpi):
    await kpi.client.post(
        "/v1/measurements", json={"items": [m("leads", "1", "2027-01-05T10:00:00Z", "q1", channel="paid_social")]}
    )
    async with kpi.runtime.transaction() as s:  # make the first sighting old, so "Paid-Social" is the new one
        from services.kpi.models import seen_values

        await s.execute(seen_values.update().values(first_seen_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)))
    items = [
        m("leads", "1", "2027-01-05T10:00:00Z", "q1", channel="paid_social"),
        m("leads", "x", "2027-01-05T10:00:00Z", "q2"),
        m("leadz", "1", "2020-01-05T10:00:00Z", "q3", channel="Paid-Social"),
    ]
    r = (await kpi.client.post("/v1/measurements", json={"items": items})).json()
    assert (r["accepted"], r["duplicates"], len(r["rejected"])) == (1, 1, 1)
    q = (await kpi.client.get("/v1/quality")).json()
    assert q["rejected"]["count"] == 1 and q["rejected"]["items"][0]["index"] == 1
    assert q["duplicates_dropped"]["count"] == 1
    assert q["duplicates_dropped"]["batches"][0]["sample"][0]["external_id"] == "q1"
    assert q["late_arrivals"]["count"] == 1 and q["late_arrivals"]["batches"][0]["sample"][0]["external_id"] == "q3"
    new = {(v["dimension"], v["value"]): v for v in q["new_dimension_values"]}
    assert new[("channel", "Paid-Social")]["similar_to"] == ["paid_social"]
    types = {v["value"]: v for v in q["new_measurement_types"]}
    assert types["leadz"]["used_by_metric"] is False
    async with kpi.as_("mark", "marketer") as marketer:
        assert (await marketer.get("/v1/quality")).status_code == 403


async def test_rebuild_recomputes_exactly_what_incremental_rollups_hold(kpi):
    items = [
        m(
            "spend",
            f"{i}.25",
            f"2027-0{1 + i % 3}-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
            f"s{i}",
            channel=["search", "social"][i % 2],
        )
        for i in range(300)
    ]
    for lo in range(0, 300, 70):  # several batches, so rows are upserted repeatedly
        await kpi.client.post("/v1/measurements", json={"items": items[lo : lo + 70]})
    daily, monthly = await snapshot(kpi, rollups_daily), await snapshot(kpi, rollups_monthly)
    r = await kpi.client.post("/v1/rollups/rebuild", json={})
    assert r.status_code == 200 and r.json()["rollup_rows"] == len(daily)
    assert await snapshot(kpi, rollups_daily) == daily
    assert await snapshot(kpi, rollups_monthly) == monthly
    async with kpi.runtime.transaction() as s:  # damage one range, rebuild only that range
        await s.execute(
            rollups_daily.delete().where(
                rollups_daily.c.day < values.day_number(dt.datetime(2027, 2, 10, tzinfo=dt.UTC))
            )
        )
    await kpi.client.post("/v1/rollups/rebuild", json={"from": "2027-02-03", "to": "2027-02-04", "types": ["spend"]})
    assert await snapshot(kpi, rollups_daily) != daily  # January is still missing ...
    await kpi.client.post("/v1/rollups/rebuild", json={"from": "2027-01-01", "to": "2027-02-01"})
    assert await snapshot(kpi, rollups_daily) == daily  # ... until its range is rebuilt
    assert await snapshot(kpi, rollups_monthly) == monthly
    async with kpi.as_("mo", "mops") as mops:
        assert (await mops.post("/v1/rollups/rebuild", json={})).status_code == 403


async def test_a_large_batch_with_stored_and_repeated_ids_counts_each_item_once(kpi):
    """Over several 1,000-row INSERT statements: stored ids, repeats across statements, ids from two sources."""
    first = [m("leads", "1", "2027-01-05T10:00:00Z", f"e{i}", channel="search") for i in range(0, 3000, 7)]
    r = (await kpi.client.post("/v1/measurements", json={"items": first})).json()
    assert (r["accepted"], r["duplicates"]) == (len(first), 0)
    items = []
    for i in range(2600):
        day = 1 + i % 28
        items.append(
            m(
                "spend" if i % 3 else "leads",
                f"{i % 50}.5",
                f"2027-03-{day:02d}T{i % 24:02d}:30:00.250Z",
                f"e{i}",
                channel=["search", "social"][i % 2],
                region=["EMEA", "NA"][i % 5 == 0],
            )
        )
    items += [m("spend", "2.25", "2027-03-02T00:00:00Z", f"e{i}", channel="search") for i in range(2000, 2010)]
    items += [m("spend", "3", "2027-03-02T00:00:00+00:00", f"e{i}", source="erp") for i in range(5)]
    items += [m("leads", "1", "2027-03-03T00:00:00Z", None, channel="email") for _ in range(3)]
    r = (await kpi.client.post("/v1/measurements", json={"items": items})).json()
    stored = len([i for i in range(2600) if i % 7 == 0])
    assert r["rejected"] == []
    assert (r["accepted"], r["duplicates"]) == (2600 - stored + 5 + 3, stored + 10)
    assert await count(kpi, measurements) == len(first) + r["accepted"]
    async with kpi.runtime.transaction(readonly=True) as s:
        total = await s.scalar(select(func.sum(measurements.c.value)).where(measurements.c.source == "crm"))
        times = {
            t
            for (t,) in await s.execute(
                select(measurements.c.time).where(measurements.c.source == "crm", measurements.c.external_id == "e1")
            )
        }
    expected = len(first) * 1_000_000 + sum(((i % 50) * 1_000_000 + 500_000) for i in range(2600) if i % 7) + 3_000_000
    assert total == expected  # the first occurrence of e2000..e2009 counts, not the repeats
    assert times == {dt.datetime(2027, 3, 2, 1, 30, 0, 250_000, tzinfo=dt.UTC)}
    q = (await kpi.client.get("/v1/quality")).json()
    sample = q["duplicates_dropped"]["batches"][0]["sample"]
    assert [x["index"] for x in sample] == sorted(x["index"] for x in sample) and sample[0]["index"] == 0
    daily, monthly = await snapshot(kpi, rollups_daily), await snapshot(kpi, rollups_monthly)
    await kpi.client.post("/v1/rollups/rebuild", json={})
    assert await snapshot(kpi, rollups_daily) == daily
    assert await snapshot(kpi, rollups_monthly) == monthly
    assert sum(row[3] for row in monthly) == len(first) + r["accepted"]


async def test_rejections_in_a_large_batch_keep_their_indexes_and_reasons_across_statements(kpi):
    """Items judged chunk by chunk (1,000 per INSERT) are reported with their own index and reason, in order."""
    items = [m("leads", "1", f"2027-04-{1 + i % 30:02d}T08:00:00Z", f"r{i}", channel="search") for i in range(2500)]
    bad = {
        5: ("value", "1.1234567"),
        999: ("time", "2027-04-01T08:00:00"),
        1000: ("type", "Leads"),
        1999: ("value", 1.5),
        2001: ("time", "yesterday"),
    }
    for i, (name, value) in bad.items():
        items[i][name] = value
    items[2400]["external_id"] = "r2300"  # a repeat of an item in the same statement
    items[2450]["external_id"] = "r10"  # a repeat of an item two statements earlier
    r = (await kpi.client.post("/v1/measurements", json={"items": items})).json()
    assert [x["index"] for x in r["rejected"]] == sorted(bad)
    assert "more than 6 decimal places" in r["rejected"][0]["reason"]
    assert "has no UTC offset" in r["rejected"][1]["reason"] and "type must be" in r["rejected"][2]["reason"]
    assert "floating-point" in r["rejected"][3]["reason"]
    assert (r["accepted"], r["duplicates"]) == (2500 - len(bad) - 2, 2)
    assert await count(kpi, measurements) == r["accepted"]
    daily = await snapshot(kpi, rollups_daily)
    assert sum(row[3] for row in daily) == r["accepted"]
    await kpi.client.post("/v1/rollups/rebuild", json={})
    assert await snapshot(kpi, rollups_daily) == daily


@pytest.mark.sqlite_only
async def test_the_service_applies_its_sqlite_settings_to_its_connections(kpi):
    assert kpi.url.startswith("sqlite")
    async with kpi.runtime.transaction(readonly=True) as s:
        pages = (await (await s.connection()).exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar()
    assert pages == 10_000 and raw.SQLITE_PRAGMAS == ("PRAGMA wal_autocheckpoint=10000",)
