"""Forecasts and scenarios beside the budget, the variance report comparing them with the actuals, the
promotion of a scenario (to the latest forecast, or by an admin to the budget) and the phasing helper."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import select

from tests.budget.conftest import ADMIN, FINANCE, Budget, problem

pytestmark = pytest.mark.db


async def _plan(budget: Budget) -> tuple[dict, dict, dict]:
    """A plan whose budget (2,500.00) is built in the draft and locked at activation, 300.00 spent."""
    plan = await budget.plan(activate=False)
    search = await budget.line(plan["id"], "SEARCH", channel="search")
    events = await budget.line(plan["id"], "EVENTS", channel="events")
    await budget.allocate(search["id"], "1000.00", period="2027-01")
    await budget.allocate(search["id"], "1000.00", period="2027-02")
    await budget.allocate(events["id"], "500.00", period="2027-01")
    plan = await budget.ok("POST", f"/v1/plans/{plan['id']}/activate")
    actual = {"line_id": search["id"], "period": "2027-01", "amount": "300.00", "currency": "EUR"}
    await budget.ok("POST", "/v1/actuals", 201, json=actual)
    return plan, search, events


def _amounts(version: dict) -> dict[tuple[str, str], str]:
    return {(a["line_code"], a["period"]): a["amount"] for a in version["amounts"]}


async def test_a_forecast_takes_actuals_to_date_and_the_variance_compares_it(budget):
    plan, search, _ = await _plan(budget)
    url = f"/v1/plans/{plan['id']}/versions"
    fc = await budget.ok(
        "POST", url, 201, headers=FINANCE, json={"kind": "forecast", "name": "Jan RF", "as_of": "2027-01"}
    )
    assert (fc["kind"], fc["seq"], fc["as_of"], fc["source"], fc["status"]) == (
        "forecast",
        2,  # version 1 is the budget locked at activation
        "2027-01",
        "budget",
        "open",
    )
    got = _amounts(fc)
    assert got[("SEARCH", "2027-01")] == "300.00" and got[("SEARCH", "2027-02")] == "1000.00"
    assert got[("EVENTS", "2027-01")] == "0.00"  # nothing spent: the actual is zero
    amounts = f"{url}/{fc['id']}/amounts"
    change = {"line_id": search["id"], "period": "2027-02", "amount": "1200.00", "currency": "EUR"}
    fc = await budget.ok("PUT", amounts, headers=FINANCE, json={"amounts": [change]})
    assert _amounts(fc)[("SEARCH", "2027-02")] == "1200.00" and fc["total"] == "1500.00"
    past = await budget.c.put(amounts, headers=FINANCE, json={"amounts": [{**change, "period": "2027-01"}]})
    assert problem(past, 422)["errors"][0]["field"] == "amounts[0].period"
    usd = await budget.c.put(amounts, headers=FINANCE, json={"amounts": [{**change, "currency": "USD"}]})
    assert problem(usd, 422)["errors"][0]["field"] == "amounts[0].currency"

    v = await budget.ok(
        "GET", f"/v1/plans/{plan['id']}/variance?compare=budget,forecast:latest,actual&group_by=channel"
    )
    assert v["compare"] == ["budget", "forecast:2", "actual"] and v["group_by"] == "channel"
    by = {g["group"]: g for g in v["items"]}
    assert by["search"]["total"]["figures"] == {"budget": "2000.00", "forecast:2": "1500.00", "actual": "300.00"}
    assert by["search"]["total"]["variances"] == [
        {"of": "forecast:2", "against": "budget", "absolute": "-500.00", "percent": "-25.00"},
        {"of": "actual", "against": "budget", "absolute": "-1700.00", "percent": "-85.00"},
    ]
    feb = next(p for p in by["search"]["periods"] if p["period"] == "2027-02")
    assert feb["variances"][0] == {"of": "forecast:2", "against": "budget", "absolute": "200.00", "percent": "20.00"}
    assert v["total"]["figures"]["budget"] == "2500.00"
    march = next(p for p in by["events"]["periods"] if p["period"] == "2027-03")
    assert march["variances"][0]["percent"] is None  # nothing budgeted: no percentage
    per_line = await budget.ok("GET", f"/v1/plans/{plan['id']}/variance?compare=actual,budget&from=2027-01&to=2027-01")
    assert {g["group"] for g in per_line["items"]} == {"SEARCH", "EVENTS"} and per_line["group_by"] == "line"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("compare=budget", "query.compare"),
        ("compare=budget,budget", "query.compare"),
        ("compare=budget,forecast:latest", "query.compare"),  # no forecast yet
        ("compare=budget,wishes", "query.compare"),
        ("compare=budget,actual&group_by=planet", "query.group_by"),
        ("compare=budget,actual&from=2026-12", "query.from"),
    ],
)
async def test_a_bad_variance_query_is_a_422_naming_it(budget, query, field):
    plan = await budget.plan()
    r = await budget.c.get(f"/v1/plans/{plan['id']}/variance?{query}", headers=ADMIN)
    assert problem(r, 422)["errors"][0]["field"] == field


async def test_a_scenario_is_promoted_to_the_latest_forecast_and_by_an_admin_to_the_budget(budget):
    plan, search, events = await _plan(budget)
    url = f"/v1/plans/{plan['id']}/versions"
    edit = {"line_id": events["id"], "period": "2027-01", "amount": "800.00", "currency": "EUR"}
    sc = await budget.ok(
        "POST", url, 201, headers=FINANCE, json={"kind": "scenario", "name": "More events", "amounts": [edit]}
    )
    assert sc["source"] == "budget" and _amounts(sc)[("EVENTS", "2027-01")] == "800.00"
    assert _amounts(sc)[("SEARCH", "2027-02")] == "1000.00"
    promoted = await budget.ok("POST", f"{url}/{sc['id']}/promote", headers=FINANCE, json={"to": "forecast"})
    assert promoted["status"] == "promoted" and promoted["promoted_to"] == "forecast"
    fc = await budget.ok("GET", f"{url}/{promoted['promoted_version_id']}")
    assert fc["kind"] == "forecast" and _amounts(fc)[("EVENTS", "2027-01")] == "800.00"
    again = await budget.c.post(f"{url}/{sc['id']}/promote", headers=FINANCE, json={"to": "forecast"})
    assert "promoted already" in problem(again, 409)["detail"]
    listed = (await budget.ok("GET", url))["items"]
    assert [(v["kind"], v["seq"]) for v in listed] == [("budget", 1), ("scenario", 2), ("forecast", 3)]
    v = await budget.ok("GET", f"/v1/plans/{plan['id']}/variance?compare=budget,forecast:latest")
    assert v["compare"] == ["budget", "forecast:3"]

    cut = {"line_id": search["id"], "period": "2027-01", "amount": "100.00", "currency": "EUR"}
    greedy = await budget.ok(
        "POST", url, 201, headers=FINANCE, json={"kind": "scenario", "name": "Cut", "amounts": [cut]}
    )
    r = await budget.c.post(f"{url}/{greedy['id']}/promote", headers=FINANCE, json={"to": "budget"})
    assert problem(r, 403)
    r = await budget.c.post(f"{url}/{greedy['id']}/promote", headers=ADMIN, json={"to": "budget"})
    assert "short by 200.00 EUR" in problem(r, 409)["detail"]  # 300 already spent
    assert (await budget.balance(search["id"], "2027-01", "2027-01"))["allocated"] == "1000.00"

    bigger = await budget.ok(
        "POST",
        url,
        201,
        headers=FINANCE,
        json={"kind": "scenario", "name": "B", "amounts": [edit, {**cut, "amount": "400.00"}]},
    )
    done = await budget.ok("POST", f"{url}/{bigger['id']}/promote", headers=ADMIN, json={"to": "budget"})
    assert done["promoted_to"] == "budget"
    assert (await budget.balance(events["id"], "2027-01", "2027-01"))["allocated"] == "800.00"
    assert (await budget.balance(search["id"], "2027-01", "2027-01"))["allocated"] == "400.00"
    assert (await budget.balance(search["id"], "2027-02", "2027-02"))["allocated"] == "1000.00"  # unchanged
    frozen = await budget.c.put(f"{url}/{bigger['id']}/amounts", headers=FINANCE, json={"amounts": [edit]})
    assert problem(frozen, 409)


async def test_phasing_spreads_evenly_by_weights_and_by_last_years_seasonality(budget):
    even = await budget.ok("POST", "/v1/phasing", headers=FINANCE, json={"amount": "1000.00", "currency": "EUR"})
    amounts = [Decimal(m["amount"]) for m in even["months"]]
    assert (
        sum(amounts) == Decimal("1000.00") and amounts[:4] == [Decimal("83.34")] * 4 and amounts[4] == Decimal("83.33")
    )
    weights = ["3"] + ["1"] * 11
    w = await budget.ok(
        "POST",
        "/v1/phasing",
        headers=FINANCE,
        json={"amount": "140.00", "currency": "EUR", "method": "weights", "weights": weights},
    )
    assert [m["amount"] for m in w["months"][:2]] == ["30.00", "10.00"]
    short = await budget.c.post(
        "/v1/phasing",
        headers=FINANCE,
        json={"amount": "1", "currency": "EUR", "method": "weights", "weights": ["1"] * 11},
    )
    assert problem(short, 422)["errors"][0]["field"] == "weights"

    last = await budget.plan(year=2026)  # last fiscal year: spend in March and in December
    old = await budget.line(last["id"], "SEARCH")
    for period, amount in (("2026-03", "100.00"), ("2026-12", "300.00")):
        await budget.ok(
            "POST",
            "/v1/actuals",
            201,
            json={"line_id": old["id"], "period": period, "amount": amount, "currency": "EUR"},
        )
    plan = await budget.ok("POST", "/v1/plans", 201, json={"name": "FY27", "fiscal_year": 2027, "currency": "EUR"})
    await budget.ok("POST", f"/v1/plans/{plan['id']}/activate")
    new = await budget.line(plan["id"], "SEARCH")
    body = {"amount": "1000.01", "currency": "EUR", "method": "seasonality", "line_id": new["id"]}
    s = await budget.ok("POST", "/v1/phasing", headers=FINANCE, json=body)
    by = {m["period"]: m["amount"] for m in s["months"]}
    assert by["2027-03"] == "250.00" and by["2027-12"] == "750.01" and by["2027-01"] == "0.00"
    fresh = await budget.line(plan["id"], "SOCIAL")
    r = await budget.c.post("/v1/phasing", headers=FINANCE, json={**body, "line_id": fresh["id"]})
    assert problem(r, 422)["errors"][0]["field"] == "line_id"


async def test_the_budget_is_locked_at_activation_and_only_an_admins_promotion_replaces_it(budget):
    plan, search, events = await _plan(budget)
    url = f"/v1/plans/{plan['id']}/versions"
    [locked] = (await budget.ok("GET", url))["items"]
    assert (locked["kind"], locked["seq"], locked["status"], locked["source"]) == ("budget", 1, "locked", "activation")
    assert locked["total"] == "2500.00"
    await budget.allocate(search["id"], "700.00", period="2027-02")  # the working figures move; the budget not
    v = await budget.ok("GET", f"/v1/plans/{plan['id']}/variance?compare=budget,allocated&group_by=channel")
    by = {g["group"]: g for g in v["items"]}
    assert by["search"]["total"]["figures"] == {"budget": "2000.00", "allocated": "2700.00"}
    assert by["search"]["total"]["variances"][0]["percent"] == "35.00"
    assert (await budget.ok("GET", f"{url}/{locked['id']}"))["total"] == "2500.00"

    edit = {"line_id": search["id"], "period": "2027-01", "amount": "1.00", "currency": "EUR"}
    frozen = await budget.c.put(f"{url}/{locked['id']}/amounts", headers=ADMIN, json={"amounts": [edit]})
    assert "locked" in problem(frozen, 409)["detail"]
    again = await budget.c.post(f"{url}/{locked['id']}/promote", headers=ADMIN, json={"to": "budget"})
    assert "promote a scenario" in problem(again, 409)["detail"]

    grow = {**edit, "period": "2027-03", "amount": "900.00"}
    sc = await budget.ok(
        "POST", url, 201, headers=FINANCE, json={"kind": "scenario", "name": "Q1 push", "amounts": [grow]}
    )
    assert sc["source"] == "budget" and sc["total"] == "3400.00"  # a copy of the locked budget, not the ledger
    r = await budget.c.post(f"{url}/{sc['id']}/promote", headers=FINANCE, json={"to": "budget"})
    problem(r, 403)
    assert [x["status"] for x in (await budget.ok("GET", url))["items"]] == ["locked", "open"]
    done = await budget.ok("POST", f"{url}/{sc['id']}/promote", headers=ADMIN, json={"to": "budget"})
    listed = (await budget.ok("GET", url))["items"]
    assert [(x["kind"], x["seq"], x["status"]) for x in listed] == [
        ("budget", 1, "superseded"),
        ("scenario", 2, "promoted"),
        ("budget", 3, "locked"),
    ]
    assert done["promoted_version_id"] == listed[2]["id"] and listed[2]["source"] == sc["id"]
    assert listed[2]["created_by"] == "dana" and listed[2]["total"] == "3400.00"
    v = await budget.ok(
        "GET", f"/v1/plans/{plan['id']}/variance?compare=budget:{locked['id']},budget,allocated&from=2027-02&to=2027-03"
    )
    assert v["compare"] == ["budget:1", "budget", "allocated"]
    assert v["total"]["figures"] == {"budget:1": "1000.00", "budget": "1900.00", "allocated": "1900.00"}
    # the promotion posted what took the working allocations to the scenario's (2027-02: 1700.00 -> 1000.00)
    assert (await budget.balance(search["id"], "2027-02", "2027-02"))["allocated"] == "1000.00"
    async with budget.runtime.transaction(readonly=True) as s:
        audit = budget.runtime.infra.audit
        rows = (await s.execute(select(audit.c.action).where(audit.c.action == "budget.version.locked"))).all()
    assert len(rows) == 2


async def test_a_draft_builds_its_budget_with_allocations_and_nothing_else(budget):
    plan = await budget.plan(activate=False)
    ln = await budget.line(plan["id"], "L")
    await budget.allocate(ln["id"], "100.00")
    spend = {"line_id": ln["id"], "period": "2027-03", "amount": "1.00", "currency": "EUR"}
    assert "draft" in problem(await budget.c.post("/v1/commitments", headers=ADMIN, json=spend), 409)["detail"]
    assert "draft" in problem(await budget.c.post("/v1/actuals", headers=ADMIN, json=spend), 409)["detail"]
    move = await budget.c.patch(
        f"/v1/plans/{plan['id']}", headers={**ADMIN, "If-Match": f'"{plan["version"]}"'}, json={"fiscal_year_start": 4}
    )
    assert problem(move, 409)["errors"][0]["field"] == "fiscal_year_start"
    assert (await budget.balance(ln["id"]))["allocated"] == "100.00"
    draft = await budget.ok("GET", f"/v1/plans/{plan['id']}/variance?compare=budget,allocated")
    assert draft["total"]["figures"] == {"budget": "100.00", "allocated": "100.00"}  # a draft's budget: its ledger
    assert (await budget.ok("GET", f"/v1/plans/{plan['id']}/versions"))["items"] == []
    sheet = "code,name,period,amount\nL,L,2027-04,50.00\nM,Media,2027-04,25.00\n"  # the spreadsheet builds it too
    r = await budget.c.post(
        f"/v1/plans/{plan['id']}/import", content=sheet.encode(), headers={**ADMIN, "Content-Type": "text/csv"}
    )
    assert r.status_code == 200 and r.json()["allocations_posted"] == 2, r.text
    await budget.ok("POST", f"/v1/plans/{plan['id']}/activate")
    [locked] = (await budget.ok("GET", f"/v1/plans/{plan['id']}/versions"))["items"]
    assert (locked["kind"], locked["total"]) == ("budget", "175.00")


async def _april_plan(budget: Budget) -> tuple[dict, dict, dict]:
    """Fiscal year 2027 from April (2026-04 .. 2027-03), budget locked at activation, one actual."""
    body = {"name": "FY27 April", "fiscal_year": 2027, "currency": "EUR", "fiscal_year_start": 4}
    plan = await budget.ok("POST", "/v1/plans", 201, json=body)
    search = await budget.line(plan["id"], "SEARCH", channel="search")
    events = await budget.line(plan["id"], "EVENTS", channel="events")
    for line, period, amount in (
        (search, "2026-04", "100.00"),  # FY2027-Q1
        (search, "2026-06", "300.00"),  # FY2027-Q1
        (search, "2026-07", "200.00"),  # FY2027-Q2
        (events, "2027-01", "1000.00"),  # FY2027-Q4 (the calendar year's first month)
        (events, "2027-03", "500.00"),  # FY2027-Q4
    ):
        await budget.allocate(line["id"], amount, period=period)
    plan = await budget.ok("POST", f"/v1/plans/{plan['id']}/activate")
    actual = {"line_id": search["id"], "period": "2026-06", "amount": "50.00", "currency": "EUR"}
    await budget.ok("POST", "/v1/actuals", 201, json=actual)
    return plan, search, events


async def test_the_variance_groups_by_fiscal_quarter_and_year_and_compares_a_scenario(budget):
    plan, search, events = await _april_plan(budget)
    edits = [
        {"line_id": search["id"], "period": "2026-05", "amount": "200.00", "currency": "EUR"},  # Q1 +200
        {"line_id": events["id"], "period": "2027-03", "amount": "0.00", "currency": "EUR"},  # Q4 -500
    ]
    sc = await budget.ok(
        "POST",
        f"/v1/plans/{plan['id']}/versions",
        201,
        headers=FINANCE,
        json={"kind": "scenario", "name": "Fewer fairs", "amounts": edits},
    )
    base = f"/v1/plans/{plan['id']}/variance?compare=budget,scenario:{sc['id']},actual"

    q = await budget.ok("GET", f"{base}&period=fiscal_quarter")
    assert q["period"] == "fiscal_quarter" and q["compare"] == ["budget", f"scenario:{sc['seq']}", "actual"]
    label = f"scenario:{sc['seq']}"
    by = {g["group"]: {p["period"]: p for p in g["periods"]} for g in q["items"]}
    assert list(by["SEARCH"]) == ["FY2027-Q1", "FY2027-Q2", "FY2027-Q3", "FY2027-Q4"]
    q1 = by["SEARCH"]["FY2027-Q1"]
    assert q1["months"] == ["2026-04", "2026-05", "2026-06"]
    assert q1["figures"] == {"budget": "400.00", label: "600.00", "actual": "50.00"}
    assert q1["variances"] == [
        {"of": label, "against": "budget", "absolute": "200.00", "percent": "50.00"},
        {"of": "actual", "against": "budget", "absolute": "-350.00", "percent": "-87.50"},
    ]
    q4 = by["EVENTS"]["FY2027-Q4"]
    assert q4["months"] == ["2027-01", "2027-02", "2027-03"]
    assert q4["figures"] == {"budget": "1500.00", label: "1000.00", "actual": "0.00"}
    assert q4["variances"][0] == {"of": label, "against": "budget", "absolute": "-500.00", "percent": "-33.33"}
    assert by["EVENTS"]["FY2027-Q1"]["variances"][0]["percent"] is None  # nothing budgeted there

    y = await budget.ok("GET", f"{base}&period=fiscal_year&group_by=channel")
    years = {g["group"]: g["periods"] for g in y["items"]}
    assert [p["period"] for p in years["search"]] == ["FY2027"] and len(years["search"][0]["months"]) == 12
    assert years["search"][0]["figures"] == years["search"][0]["figures"] | {"budget": "600.00", label: "800.00"}
    for g in y["items"]:  # one row per group: the fiscal year is the group's total
        assert g["periods"][0]["figures"] == g["total"]["figures"]
    m = await budget.ok("GET", base)
    assert m["period"] == "month" and m["total"] == q["total"] == y["total"]
    assert m["total"]["figures"] == {"budget": "2100.00", label: "1800.00", "actual": "50.00"}
    assert {p["period"]: p["months"] for p in m["items"][0]["periods"]}["2026-04"] == ["2026-04"]

    part = await budget.ok("GET", f"{base}&period=fiscal_quarter&from=2026-06&to=2027-01")
    parts = {p["period"]: p for p in next(g for g in part["items"] if g["group"] == "SEARCH")["periods"]}
    assert parts["FY2027-Q1"]["months"] == ["2026-06"] and parts["FY2027-Q1"]["figures"]["budget"] == "300.00"
    assert parts["FY2027-Q4"]["months"] == ["2027-01"]
    bad = await budget.c.get(f"{base}&period=week", headers=ADMIN)
    assert problem(bad, 422)["errors"][0]["field"] == "query.period"
