"""Data out by content negotiation: `Accept` is read with its q-values (the highest wins, ties by the
order given, JSON first among types one range matches), `format=` overrides it, and an Accept naming
none of JSON, CSV and Parquet is a 406 problem before any work; on every route that gives files."""

from __future__ import annotations

import pytest

from services.kpi.export import negotiate

PARQUET = "application/vnd.apache.parquet"


@pytest.mark.parametrize(
    "accept, want",
    [
        (None, "json"),
        ("", "json"),
        ("*/*", "json"),
        ("application/json", "json"),
        ("text/csv", "csv"),
        (PARQUET, "parquet"),
        (f"{PARQUET};q=0.1, text/csv;q=0.9", "csv"),  # the highest q wins, not the first named
        (f"text/csv;q=0.2, {PARQUET};q=0.3", "parquet"),
        ("application/json, text/csv", "json"),  # a tie: the order given
        ("text/csv, application/json", "csv"),
        (f"text/csv;q=0.5, application/json;q=0.5, {PARQUET};q=0.5", "csv"),
        ("text/csv;q=0.5, */*", "json"),  # */* at 1 beats text/csv at 0.5
        ("text/csv, */*;q=0.1", "csv"),
        ("application/*", "json"),  # one range matching JSON and Parquet: JSON first
        ("text/*", "csv"),
        ("text/*;q=0.4, text/csv;q=0", None),  # the most specific range rules: csv is refused
        ("*/*, application/json;q=0", "csv"),  # JSON refused, */* lets CSV through
        ("TEXT/CSV; charset=utf-8; q=0.8, application/json; q=0.7", "csv"),
        ("text/csv;q=abc, application/json;q=0.3", "json"),  # a bad q-value skips its range
        ("text/csv;q=2", None),
        ("image/png", None),
        ("text/html", None),
        ("text/csv;q=0", None),
        ("application/xml, text/html;q=0.9, */*;q=0.8", "json"),  # a browser
    ],
)
def test_negotiate(accept, want):
    assert negotiate(accept) == want


async def _feed(client) -> None:
    items = [
        {"type": "leads", "value": "10", "time": "2027-01-10T10:00:00Z", "dimensions": {"channel": "search"}},
        {"type": "spend", "value": "50.5", "time": "2027-01-10T10:00:00Z", "dimensions": {"channel": "search"}},
    ]
    assert (await client.post("/v1/measurements", json={"items": items})).json()["accepted"] == 2
    tps = [{"journey_id": "j1", "time": "2027-01-09T10:00:00Z", "channel": "search"}]
    convs = [{"journey_id": "j1", "time": "2027-01-10T10:00:00Z", "value": "100.00"}]
    assert (await client.post("/v1/touchpoints", json={"items": tps})).status_code == 201
    assert (await client.post("/v1/conversions", json={"items": convs})).status_code == 201


ROUTES = [
    ("GET", "/v1/metrics/leads/series", {"params": {"from": "2027-01-01", "to": "2027-01-31"}}),
    ("GET", "/v1/scorecard", {"params": {"metrics": "leads,spend", "period": "2027-01"}}),
    ("GET", "/v1/attribution", {"params": {"from": "2027-01-01", "to": "2027-01-31"}}),
    (
        "POST",
        "/v1/query",
        {"json": {"metrics": ["leads"], "time_range": {"from": "2027-01-01", "to": "2027-01-31"}, "grain": "month"}},
    ),
]


def _kind(r) -> str:
    media = r.headers["content-type"].split(";")[0]
    return {"application/json": "json", "text/csv": "csv", PARQUET: "parquet"}[media]


@pytest.mark.db
@pytest.mark.parametrize("method, path, kw", ROUTES, ids=[r[1] for r in ROUTES])
async def test_every_file_route_negotiates_by_q_value(kpi, method, path, kw):
    await _feed(kpi.client)
    cases = {
        f"{PARQUET};q=0.1, text/csv;q=0.9": "csv",
        f"text/csv;q=0.1, {PARQUET};q=0.9": "parquet",
        "application/json, text/csv": "json",
        "text/csv, application/json": "csv",
        "*/*": "json",
    }
    for accept, want in cases.items():
        r = await kpi.client.request(method, path, headers={"Accept": accept}, **kw)
        assert r.status_code == 200, (accept, r.text)
        assert _kind(r) == want, accept
    # format= overrides Accept, even one that would be refused
    params = {**kw.get("params", {}), "format": "csv"}
    r = await kpi.client.request(method, path, headers={"Accept": "image/png"}, **{**kw, "params": params})
    assert r.status_code == 200 and _kind(r) == "csv"


@pytest.mark.db
@pytest.mark.parametrize("method, path, kw", ROUTES, ids=[r[1] for r in ROUTES])
async def test_an_accept_naming_nothing_offered_is_406(kpi, method, path, kw):
    for accept in ("image/png", "text/csv;q=0", "application/json;q=0, text/html"):
        r = await kpi.client.request(method, path, headers={"Accept": accept}, **kw)
        assert r.status_code == 406, (accept, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "text/csv" in r.json()["detail"]


@pytest.mark.db
async def test_the_406_is_declared_on_every_file_route(kpi):
    doc = (await kpi.client.get("/openapi.json")).json()
    for method, path, _ in ROUTES:
        op = doc["paths"][path.replace("leads", "{key}")][method.lower()]
        assert "406" in op["responses"], path
        assert "application/problem+json" in op["responses"]["406"]["content"]
