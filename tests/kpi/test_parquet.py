"""Data out as Parquet: series, scorecard, attribution and the semantic query, read back with pyarrow; the
metric versions and the answer's parameters are in the file's key-value metadata; written by row groups."""

from __future__ import annotations

import io
import json
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.kpi import export

PARQUET = "application/vnd.apache.parquet"


def read(body: bytes) -> tuple[pq.ParquetFile, list[dict], dict[str, str]]:
    f = pq.ParquetFile(io.BytesIO(body))
    meta = {k.decode(): v.decode() for k, v in (f.schema_arrow.metadata or {}).items() if k.startswith(b"pitcrew.")}
    return f, f.read().to_pylist(), meta


async def feed(client) -> None:
    items = [
        {"type": "leads", "value": "10", "time": "2027-01-10T10:00:00Z", "dimensions": {"channel": "search"}},
        {"type": "leads", "value": "4", "time": "2027-02-10T10:00:00Z", "dimensions": {"channel": "search"}},
        {"type": "spend", "value": "-50.5", "time": "2027-02-10T10:00:00Z", "dimensions": {"channel": "search"}},
        {"type": "spend", "value": "12.25", "time": "2027-02-11T10:00:00Z", "dimensions": {"channel": "=X(1)"}},
        {"type": "leads", "value": "2", "time": "2027-02-11T10:00:00Z", "dimensions": {"channel": "=X(1)"}},
    ]
    r = await client.post("/v1/measurements", json={"items": items})
    assert r.json()["accepted"] == len(items), r.text


@pytest.mark.db
async def test_a_series_as_parquet_has_the_json_values_typed_and_the_version_in_its_metadata(kpi):
    await feed(kpi.client)
    params = {"from": "2027-01-01", "to": "2027-02-28", "group_by": "channel", "compare": "previous_period"}
    as_json = (await kpi.client.get("/v1/metrics/cpl/series", params=params)).json()
    r = await kpi.client.get("/v1/metrics/cpl/series", params={**params, "format": "parquet"})
    assert r.status_code == 200 and r.headers["content-type"] == PARQUET, r.text
    assert 'filename="cpl-v1-month.parquet"' in r.headers["content-disposition"]
    assert r.headers["x-metric-version"] == "1"
    f, rows, meta = read(r.content)
    assert meta["pitcrew.metric"] == "cpl" and meta["pitcrew.metric_version"] == "1"
    assert json.loads(meta["pitcrew.answer"])["grain"] == "month"
    schema = f.schema_arrow
    assert schema.field("bucket").type == pa.date32() and schema.field("value").type == pa.decimal128(38, 6)
    assert schema.field("version").type == pa.int64() and schema.field("channel").type == pa.string()
    want = [
        (s["group"]["channel"], p["bucket"], p["value"], p["compare"]["previous_period"]["value"])
        for s in as_json["series"]
        for p in s["points"]
    ]
    got = [(x["channel"], x["bucket"].isoformat(), x["value"], x["previous_period_value"]) for x in rows]
    assert got == [
        (c, b, None if v is None else Decimal(v), None if pv is None else Decimal(pv)) for c, b, v, pv in want
    ]
    assert ("=X(1)", "2027-02-01", Decimal("6.125"), None) in got  # text is not escaped: it is typed
    assert ("search", "2027-02-01", Decimal("-12.625"), Decimal("0")) in got
    assert {(x["metric"], x["version"]) for x in rows} == {("cpl", 1)}
    by_accept = await kpi.client.get("/v1/metrics/cpl/series", params=params, headers={"Accept": PARQUET})
    assert by_accept.headers["content-type"] == PARQUET and read(by_accept.content)[1] == rows
    as_json_again = await kpi.client.get(
        "/v1/metrics/cpl/series", params={**params, "format": "json"}, headers={"Accept": PARQUET}
    )
    assert as_json_again.json() == as_json  # format= wins over the header


@pytest.mark.db
async def test_a_pinned_version_is_the_one_in_the_files_metadata(kpi):
    await feed(kpi.client)
    spec = {"name": "Leads", "kind": "base", "measurement_type": "leads", "aggregation": "count", "unit": "count"}
    assert (
        await kpi.client.put("/v1/metrics/leads", json={**spec, "direction": "higher_is_better"})
    ).status_code == 200
    params = {"from": "2027-01-01", "to": "2027-01-31", "format": "parquet"}
    _, latest, meta2 = read((await kpi.client.get("/v1/metrics/leads/series", params=params)).content)
    _, pinned, meta1 = read((await kpi.client.get("/v1/metrics/leads/series", params={**params, "version": 1})).content)
    assert (meta2["pitcrew.metric_version"], latest[0]["value"], latest[0]["version"]) == ("2", Decimal(1), 2)
    assert (meta1["pitcrew.metric_version"], pinned[0]["value"], pinned[0]["version"]) == ("1", Decimal(10), 1)


@pytest.mark.db
async def test_scorecard_attribution_and_query_as_parquet(kpi):
    await feed(kpi.client)
    params = {"metrics": "leads,cpl", "period": "2027-02", "compare": "last_year"}
    card = (await kpi.client.get("/v1/scorecard", params=params)).json()
    r = await kpi.client.get("/v1/scorecard", params=params, headers={"Accept": f"{PARQUET}, text/csv;q=0.5"})
    assert r.headers["content-type"] == PARQUET
    _, rows, meta = read(r.content)
    assert meta["pitcrew.metric_versions"] == "leads=1,cpl=1"
    assert [(x["metric"], x["version"], x["actual"], x["at_risk"]) for x in rows] == [
        (i["metric"], i["version"], Decimal(i["actual"]), False) for i in card["items"]
    ]
    assert rows[0]["last_year_period"] == "2026-02" and str(rows[0]["from"]) == "2027-02-01"

    tp = [{"journey_id": "j1", "time": "2027-03-01T10:00:00Z", "channel": "social"}]
    tp.append({"journey_id": "j1", "time": "2027-03-05T10:00:00Z", "channel": "search"})
    assert (await kpi.client.post("/v1/touchpoints", json={"items": tp})).status_code == 201
    conv = {"items": [{"journey_id": "j1", "time": "2027-03-10T10:00:00Z", "value": "900.01"}]}
    assert (await kpi.client.post("/v1/conversions", json=conv)).status_code == 201
    ap = {"model": "linear", "from": "2027-03-01", "to": "2027-03-31", "ci": 0.9, "resamples": 50, "seed": 3}
    as_json = (await kpi.client.get("/v1/attribution", params=ap)).json()
    r = await kpi.client.get("/v1/attribution", params={**ap, "format": "parquet"})
    _, rows, meta = read(r.content)
    assert meta["pitcrew.attribution_model"] == "linear" and json.loads(meta["pitcrew.answer"])["seed"] == 3
    assert [(x["channel"], x["credit"], x["position_based"], x["ci_low"]) for x in rows] == [
        (c["channel"], Decimal(c["credit"]), Decimal(c["by_model"]["position_based"]), Decimal(c["interval"]["low"]))
        for c in as_json["credits"]
    ]
    assert sum(x["credit"] for x in rows) == Decimal("900.01")

    q = {"metrics": ["spend", "cpl"], "dimensions": ["channel"], "grain": "all"}
    q["time_range"] = {"from": "2027-01-01", "to": "2027-02-28"}
    table = (await kpi.client.post("/v1/query", json=q)).json()
    r = await kpi.client.post("/v1/query", params={"format": "parquet"}, json=q)
    assert r.status_code == 200 and r.headers["x-metric-versions"] == "spend=1,cpl=1"
    _, rows, meta = read(r.content)
    assert (meta["pitcrew.metric_versions"], meta["pitcrew.truncated"]) == ("spend=1,cpl=1", "false")
    assert [(x["channel"], x["spend"], x["cpl"]) for x in rows] == [
        (t["channel"], Decimal(t["spend"]), None if t["cpl"] is None else Decimal(t["cpl"])) for t in table["rows"]
    ]


@pytest.mark.db
async def test_a_long_series_is_written_in_row_groups(kpi, monkeypatch):
    await feed(kpi.client)
    monkeypatch.setattr(export, "ROW_GROUP_ROWS", 100)
    params = {"from": "2027-01-01", "to": "2027-12-31", "grain": "day", "group_by": "channel", "format": "parquet"}
    f, rows, _ = read((await kpi.client.get("/v1/metrics/leads/series", params=params)).content)
    assert len(rows) == 2 * 365 and f.metadata.num_row_groups == 8  # 730 rows: 7 groups of 100 and one of 30
    assert sum(x["value"] for x in rows) == Decimal(16)


def test_row_groups_are_sent_as_they_are_written():
    """The writer yields each row group before reading the rows of the next (nothing is built whole)."""
    read_rows = []

    def rows():
        for i in range(25):
            read_rows.append(i)
            yield [i, str(i), f"{i}.5"]

    t = export.Table([("n", "int"), ("s", "text"), ("d", "decimal")], rows, {"pitcrew.metric_version": "7"})
    schema = export.schema_of(t)
    read_rows.clear()
    chunks = export.parquet_chunks(t, schema, row_group_rows=10)
    first = next(chunks)
    assert len(read_rows) == 10 and first[:4] == b"PAR1"
    rest = list(chunks)
    assert len(rest) == 2  # the second group, then the third (5 rows) with the footer
    f, out, meta = read(first + b"".join(rest))
    assert f.metadata.num_row_groups == 3 and meta == {"pitcrew.metric_version": "7"}
    assert out[24] == {"n": 24, "s": "24", "d": Decimal("24.5")}


def test_a_decimal_past_32_integer_digits_widens_the_column():
    big = "1" + "0" * 35 + ".5"
    t = export.Table([("d", "decimal")], lambda: iter([[big], [None]]))
    schema = export.schema_of(t)
    assert schema.field("d").type == pa.decimal256(76, 6)
    _, out, _ = read(b"".join(export.parquet_chunks(t, schema)))
    assert out == [{"d": Decimal(big)}, {"d": None}]
    empty = export.Table([("d", "decimal")], lambda: iter([]))
    f, out, _ = read(b"".join(export.parquet_chunks(empty, export.schema_of(empty))))
    assert out == [] and f.schema_arrow.field("d").type == pa.decimal128(38, 6)
