"""Metric definitions: the seeded catalog, versions, formulas, cycles, roles."""

from __future__ import annotations

import pytest

from services.kpi import catalog, formula
from shared.errors import Invalid

pytestmark = pytest.mark.db

LEADS_PER_DOLLAR = {
    "key": "leads_per_dollar",
    "name": "Leads per dollar",
    "kind": "derived",
    "formula": "leads / spend",
    "unit": "count",
    "direction": "higher_is_better",
}


async def test_the_catalog_is_seeded_once_even_when_seeding_runs_again(kpi):
    r = await kpi.client.get("/v1/metrics", params={"limit": 500})
    keys = [m["key"] for m in r.json()["items"]]
    expected = {
        "spend",
        "leads",
        "mqls",
        "sqls",
        "opportunities",
        "won_deals",
        "revenue",
        "cpl",
        "cac",
        "roi",
        "roas",
        "lead_to_mql_rate",
        "mql_to_sql_rate",
        "sql_to_opportunity_rate",
        "win_rate",
        "approval_cycle_time",
        "sla_attainment",
        "budget_utilization",
        "sla_breaches",
    }
    assert expected <= set(keys)
    async with kpi.runtime.unit_of_work() as uow:  # a second replica's seeding inserts nothing
        assert await catalog.seed_catalog(uow) == 0
    r2 = await kpi.client.get("/v1/metrics", params={"limit": 500})
    assert [m["key"] for m in r2.json()["items"]] == keys
    cpl = (await kpi.client.get("/v1/metrics/cpl")).json()
    assert (cpl["formula"], cpl["depends_on"], cpl["version"]) == ("spend / leads", ["leads", "spend"], 1)


async def test_list_paginates_with_a_cursor(kpi):
    seen, cursor = [], None
    while True:
        r = await kpi.client.get("/v1/metrics", params={"limit": 5, **({"cursor": cursor} if cursor else {})})
        body = r.json()
        seen += [m["key"] for m in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) >= 19


async def test_create_update_versions_and_if_match(kpi):
    r = await kpi.client.post("/v1/metrics", json=LEADS_PER_DOLLAR)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1 and r.json()["depends_on"] == ["leads", "spend"]
    again = await kpi.client.post("/v1/metrics", json=LEADS_PER_DOLLAR)
    assert again.status_code == 409

    r = await kpi.client.put(
        "/v1/metrics/leads_per_dollar",
        headers={"If-Match": '"1"'},
        json={**LEADS_PER_DOLLAR, "formula": "leads / spend * 1000", "name": "Leads per k$"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2 and r.headers["ETag"] == '"2"'
    stale = await kpi.client.put("/v1/metrics/leads_per_dollar", headers={"If-Match": '"1"'}, json=LEADS_PER_DOLLAR)
    assert stale.status_code == 412
    v1 = (await kpi.client.get("/v1/metrics/leads_per_dollar", params={"version": 1})).json()
    assert v1["formula"] == "leads / spend"
    versions = (await kpi.client.get("/v1/metrics/leads_per_dollar/versions")).json()["items"]
    assert [v["version"] for v in versions] == [1, 2]
    assert (await kpi.client.get("/v1/metrics/nope")).status_code == 404


async def test_a_pinned_version_answers_with_its_own_formula(kpi):
    await kpi.client.post("/v1/metrics", json=LEADS_PER_DOLLAR)
    await kpi.client.put("/v1/metrics/leads_per_dollar", json={**LEADS_PER_DOLLAR, "formula": "leads / spend * 1000"})
    items = [
        {"type": "spend", "value": "200", "time": "2027-01-03T00:00:00Z"},
        {"type": "leads", "value": "4", "time": "2027-01-04T00:00:00Z"},
    ]
    assert (await kpi.client.post("/v1/measurements", json={"items": items})).json()["accepted"] == 2
    params = {"from": "2027-01-01", "to": "2027-01-31", "grain": "month"}
    latest = (await kpi.client.get("/v1/metrics/leads_per_dollar/series", params=params)).json()
    pinned = (await kpi.client.get("/v1/metrics/leads_per_dollar/series", params={**params, "version": 1})).json()
    assert latest["series"][0]["points"][0]["value"] == "20"
    assert pinned["series"][0]["points"][0]["value"] == "0.02"
    assert pinned["version"] == 1


async def test_a_cycle_is_refused_and_nothing_is_written(kpi):
    a = {
        "key": "a_metric",
        "name": "A",
        "kind": "derived",
        "formula": "spend * 2",
        "unit": "currency",
        "direction": "lower_is_better",
    }
    b = {**a, "key": "b_metric", "formula": "a_metric + 1"}
    assert (await kpi.client.post("/v1/metrics", json=a)).status_code == 201
    assert (await kpi.client.post("/v1/metrics", json=b)).status_code == 201
    r = await kpi.client.put("/v1/metrics/a_metric", json={**a, "formula": "b_metric / 2"})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "a_metric -> b_metric -> a_metric" in r.json()["detail"]
    assert r.json()["errors"][0]["field"] == "formula"
    self_ref = await kpi.client.put("/v1/metrics/a_metric", json={**a, "formula": "a_metric + 1"})
    assert self_ref.status_code == 422
    versions = (await kpi.client.get("/v1/metrics/a_metric/versions")).json()["items"]
    assert len(versions) == 1


async def test_bad_definitions_are_422_naming_the_field(kpi):
    bad_syntax = {**LEADS_PER_DOLLAR, "formula": "leads / (spend"}
    r = await kpi.client.post("/v1/metrics", json=bad_syntax)
    assert r.status_code == 422 and "column" in r.json()["detail"], r.text
    unknown = await kpi.client.post("/v1/metrics", json={**LEADS_PER_DOLLAR, "formula": "leads / nothing_here"})
    assert unknown.status_code == 422 and "nothing_here" in unknown.json()["detail"]
    call = await kpi.client.post("/v1/metrics", json={**LEADS_PER_DOLLAR, "formula": "__import__('os')"})
    assert call.status_code == 422
    base_without_type = {"key": "x", "name": "X", "kind": "base", "unit": "count", "direction": "higher_is_better"}
    r = await kpi.client.post("/v1/metrics", json=base_without_type)
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"measurement_type", "aggregation"}
    r = await kpi.client.post("/v1/metrics", json={**base_without_type, "unit": "furlongs"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "unit"
    assert (await kpi.client.get("/v1/metrics/x")).status_code == 404


async def test_analysts_read_but_never_write(kpi):
    async with kpi.as_("ann", "analyst") as analyst:
        assert (await analyst.get("/v1/metrics/cpl")).status_code == 200
        assert (await analyst.post("/v1/metrics", json=LEADS_PER_DOLLAR)).status_code == 403
        assert (await analyst.put("/v1/metrics/cpl", json=LEADS_PER_DOLLAR)).status_code == 403
    async with kpi.as_("mo", "mops") as mops:
        assert (await mops.post("/v1/metrics", json=LEADS_PER_DOLLAR)).status_code == 201
    anonymous = await kpi.client.get("/v1/metrics", headers={"X-Pitcrew-Identity": ""})
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("spend +", 8),
        ("spend ** 2", 8),
        ("1e3 * spend", 2),
        ("spend.x", 6),
        ("f(spend)", 1),
        ("spend if leads else 1", 7),
        ("(spend / leads", 15),
        ("SPEND / 2", 1),
        ("spend $ 2", 7),
        ("", 1),
    ],
)
def test_formula_parser_refuses_everything_but_arithmetic(text, column):
    with pytest.raises(Invalid) as err:
        formula.parse(text)
    assert f"column {column}" in err.value.detail


def test_formula_is_exact_decimal_arithmetic_and_division_by_zero_is_none():
    from decimal import Decimal

    f = formula.parse("(revenue - spend) / spend + 0.1")
    assert f.references == {"revenue", "spend"}
    assert f.evaluate({"revenue": Decimal("300"), "spend": Decimal("200")}) == Decimal("0.6")
    assert f.evaluate({"revenue": Decimal("300"), "spend": Decimal("0")}) is None
    assert f.evaluate({"revenue": None, "spend": Decimal("1")}) is None
    assert formula.parse("-leads * 3").evaluate({"leads": Decimal("2")}) == Decimal("-6")
