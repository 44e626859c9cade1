"""Bad input is a 4xx problem naming the field, and nothing is written."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from services.budget.lines import MAX_DEPTH
from services.budget.models import commitments, entries
from shared.pagination import encode_cursor
from tests.budget.conftest import ADMIN, problem

pytestmark = pytest.mark.db


async def counts(budget) -> tuple[int, int]:
    async with budget.runtime.transaction(readonly=True) as s:
        return (
            await s.scalar(select(func.count()).select_from(entries)),
            await s.scalar(select(func.count()).select_from(commitments)),
        )


@pytest.mark.parametrize("path", ["/v1/allocations", "/v1/commitments", "/v1/actuals"])
async def test_bad_amounts_currencies_periods_and_lines(budget, path):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "L")
    await budget.allocate(ln["id"], "100.00")
    before = await counts(budget)
    good = {"line_id": ln["id"], "period": "2027-03", "amount": "10.00", "currency": "EUR"}
    cases = [
        ({"amount": "0"}, 422, "amount"),
        ({"amount": "-5.00"}, 422, "amount"),
        ({"amount": 5.5}, 422, "amount"),
        ({"amount": "ten"}, 422, "amount"),
        ({"amount": "1.001"}, 422, "amount"),
        ({"currency": "EURO"}, 422, "currency"),
        ({"currency": "JPY", "amount": "1.5"}, 422, "amount"),
        ({"period": "2027-13"}, 422, "period"),
        ({"period": "2026-03"}, 422, "period"),
        ({"line_id": "no-such-line"}, 422, "line_id"),
        ({"date": "2027-04-01"}, 422, "date"),
        ({"surprise": 1}, 422, "surprise"),
        # Out of range: a tiny amount must not round to a 0.00 entry, a huge one must not overflow
        # a column or the decimal context (both were 500s or silent zeros before).
        ({"amount": "1e-999999999"}, 422, "amount"),
        ({"amount": "0.000000000000000000001"}, 422, "amount"),
        ({"amount": "1e999999999"}, 422, "amount"),
        ({"amount": "100000000000000000000"}, 422, "amount"),
        ({"amount": "100000000000000.00"}, 422, "amount"),  # 10**16 cents: above what one amount may be
        ({"amount": "1" * 101}, 422, "amount"),
    ]
    for change, status, field in cases:
        body = problem(await budget.c.post(path, headers=ADMIN, json={**good, **change}), status)
        assert field in {e["field"] for e in body.get("errors", [])}, (change, body)
    assert await counts(budget) == before


async def test_draft_plan_refuses_postings(budget):
    plan = await budget.plan(activate=False)
    ln = await budget.line(plan["id"], "L")
    body = problem(
        await budget.c.post(
            "/v1/commitments",  # a draft takes allocations (its budget being built), nothing else
            headers=ADMIN,
            json={"line_id": ln["id"], "period": "2027-03", "amount": "1.00", "currency": "EUR"},
        ),
        409,
    )
    assert "draft" in body["detail"]
    assert (await budget.ok("POST", f"/v1/plans/{plan['id']}/activate"))["status"] == "active"
    problem(await budget.c.post(f"/v1/plans/{plan['id']}/activate", headers=ADMIN), 409)


async def test_duplicate_line_code_and_unknown_parent(budget):
    plan = await budget.plan()
    await budget.line(plan["id"], "L")
    body = problem(
        await budget.c.post(f"/v1/plans/{plan['id']}/lines", headers=ADMIN, json={"code": "L", "name": "again"}), 409
    )
    assert body["errors"][0]["field"] == "code"
    body = problem(
        await budget.c.post(
            f"/v1/plans/{plan['id']}/lines", headers=ADMIN, json={"code": "M", "name": "m", "parent_code": "NOPE"}
        ),
        422,
    )
    assert body["errors"][0]["field"] == "parent_code"
    body = problem(
        await budget.c.post(
            f"/v1/plans/{plan['id']}/lines",
            headers=ADMIN,
            json={"code": "N", "name": "n", "dimensions": {"colour": "red"}},
        ),
        422,
    )
    assert body["errors"][0]["field"] == "dimensions.colour"
    problem(await budget.c.get("/v1/lines/nope/balance", headers=ADMIN), 404)
    other = await budget.line(plan["id"], "O")
    problem(await budget.c.get(f"/v1/lines/{other['id']}/balance?from=2027-05&to=2027-02", headers=ADMIN), 422)


async def test_a_nul_character_is_never_a_500_and_writes_nothing_where_it_cannot_be_stored(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "L")
    await budget.allocate(ln["id"], "100.00")
    before = await counts(budget)
    r = await budget.c.post(
        "/v1/commitments",
        headers=ADMIN,
        json={"line_id": ln["id"], "period": "2027-03", "amount": "10.00", "currency": "EUR", "memo": "a\u0000b"},
    )
    if budget.runtime.db.is_sqlite:  # SQLite stores it as given
        assert r.status_code == 201, r.text
        return
    body = problem(r, 422)  # PostgreSQL cannot: a 422 naming the body, and the transaction rolled back
    assert body["errors"][0]["code"] == "nul_character"
    assert await counts(budget) == before


async def test_fx_rates_thresholds_and_cursors_out_of_range_are_422(budget):
    for rate in ("1E+999999999", "1" + "0" * 40, "0.0000000000001", "1.234567890123456789012"):
        body = problem(
            await budget.c.post(
                "/v1/fx-rates", headers=ADMIN, json={"base": "USD", "quote": "EUR", "date": "2027-03-01", "rate": rate}
            ),
            422,
        )
        assert body["errors"][0]["field"] == "rate", (rate, body)
    ok = await budget.ok(
        "POST",
        "/v1/fx-rates",
        201,
        json={"base": "USD", "quote": "EUR", "date": "2027-03-01", "rate": "0.923456789012345678"},
    )
    assert ok["rate"] == "0.923456789012345678"
    body = problem(
        await budget.c.post(
            "/v1/plans",
            headers=ADMIN,
            json={"name": "P", "fiscal_year": 2027, "currency": "EUR", "approval_threshold": "1e30"},
        ),
        422,
    )
    assert body["errors"][0]["field"] == "approval_threshold"

    plan = await budget.plan()
    ln = await budget.line(plan["id"], "L")
    for url, cursor in (
        (f"/v1/lines/{ln['id']}/entries", encode_cursor("x")),
        (f"/v1/lines/{ln['id']}/entries", encode_cursor(1, 2)),
        ("/v1/fx-rates", encode_cursor("USD")),
        ("/v1/fx-rates", encode_cursor("USD", "EUR", "not-a-date")),
        ("/v1/fx-rates", "%%%"),
    ):
        body = problem(await budget.c.get(url, params={"cursor": cursor}, headers=ADMIN), 422)
        assert body["errors"][0]["field"] == "query.cursor", (url, cursor, body)


async def test_a_line_tree_has_a_depth_limit(budget):
    plan = await budget.plan()
    parent = None
    for depth in range(MAX_DEPTH):
        await budget.line(plan["id"], f"D{depth}", parent=parent)
        parent = f"D{depth}"
    body = problem(
        await budget.c.post(
            f"/v1/plans/{plan['id']}/lines",
            headers=ADMIN,
            json={"code": "TOO-DEEP", "name": "Too deep", "parent_code": parent},
        ),
        422,
    )
    assert body["errors"][0]["field"] == "parent_code" and f"{MAX_DEPTH} levels" in body["detail"]


async def test_an_amount_too_large_once_converted_to_the_plan_currency_is_422(budget):
    plan = await budget.plan(currency="JPY")
    ln = await budget.line(plan["id"], "L")
    await budget.ok(
        "POST", "/v1/fx-rates", 201, json={"base": "USD", "quote": "JPY", "date": "2027-01-01", "rate": "160"}
    )
    before = await counts(budget)
    body = problem(
        await budget.c.post(
            "/v1/allocations",
            headers=ADMIN,
            json={"line_id": ln["id"], "period": "2027-03", "amount": "99999999999999.99", "currency": "USD"},
        ),
        422,
    )
    assert body["errors"][0]["field"] == "amount" and "JPY" in body["detail"]
    ok = await budget.ok(
        "POST",
        "/v1/allocations",
        201,
        json={"line_id": ln["id"], "period": "2027-03", "amount": "1000.00", "currency": "USD"},
    )
    assert ok["amount"] == "160000"
    assert (await counts(budget))[0] == before[0] + 1


async def test_periods_in_other_digits_and_oversized_query_values_are_422_and_write_nothing(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "L")
    before = await counts(budget)
    for period in ("２０２７-03", "٢٠٢٧-03", "2027-03\n"):
        body = problem(
            await budget.c.post(
                "/v1/commitments",
                headers=ADMIN,
                json={"line_id": ln["id"], "period": period, "amount": "1.00", "currency": "EUR"},
            ),
            422,
        )
        assert body["errors"][0]["field"] == "period", (period, body)
        if "\n" not in period:  # (a client cannot put a raw newline in a URL)
            problem(await budget.c.post(f"/v1/plans/{plan['id']}/periods/{period}/close", headers=ADMIN), 422)
    assert await counts(budget) == before
    assert "٢٠٢٧-03" not in (await budget.ok("GET", f"/v1/plans/{plan['id']}"))["closed_periods"]
    problem(await budget.c.get("/v1/plans", params={"fiscal_year": "3000000000"}, headers=ADMIN), 422)


async def test_a_lone_surrogate_in_any_json_field_is_a_422_on_the_body_and_writes_nothing(budget):
    # The standard library's JSON parser let "\ud800" through; no database, event or answer can
    # encode it, so it was a 500 wherever a field had no pattern (ids, tags, memos).
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "L")
    await budget.allocate(ln["id"], "100.00")
    before = await counts(budget)
    json_in = {**ADMIN, "Content-Type": "application/json"}
    move = {"period": "2027-03", "amount": "1.00", "currency": "EUR"}
    for url, doc in (
        ("/v1/transfers", {**move, "from_line_id": ln["id"], "to_line_id": "\ud800"}),
        ("/v1/actuals", {**move, "line_id": ln["id"], "commitment_id": "\udfff"}),
        ("/v1/commitments", {**move, "line_id": "\ud800x"}),
        (f"/v1/plans/{plan['id']}/lines", {"code": "T", "name": "T", "tags": ["\ud800"]}),
        (f"/v1/plans/{plan['id']}/lines", {"code": "T", "name": "T", "parent_id": "\ud800"}),
    ):
        body = json.dumps(doc)  # ensure_ascii: the surrogate travels as the escape "\\ud800"
        answer = problem(await budget.c.post(url, headers=json_in, content=body.encode()), 422)
        assert answer["errors"][0]["field"] == "body", (url, answer)
    assert await counts(budget) == before
    assert [x["code"] for x in (await budget.ok("GET", f"/v1/plans/{plan['id']}/lines"))["items"]] == ["L"]
    # A surrogate pair is one character (here an emoji), and welcome.
    ok = await budget.c.post(
        f"/v1/plans/{plan['id']}/lines", headers=json_in, content=b'{"code": "E", "name": "\\ud83d\\ude80 launch"}'
    )
    assert ok.status_code == 201 and ok.json()["name"] == "\U0001f680 launch", ok.text


async def test_if_match_must_be_an_ascii_version_in_range(budget):
    plan = await budget.plan(activate=False)
    # Header bytes arrive as Latin-1: b"\xb2" is "²", which str.isdigit() accepts and int() refuses.
    for value in (b'"\xb2"', '"٣"'.encode(), b'"' + b"9" * 5000 + b'"', b'"99999999999"', b'"-1"'):
        body = problem(
            await budget.c.patch(
                f"/v1/plans/{plan['id']}", headers={**ADMIN, "If-Match": value}, json={"name": "Renamed"}
            ),
            422,
        )
        assert body["errors"][0]["field"] == "header.If-Match", (value, body)
    assert (await budget.ok("GET", f"/v1/plans/{plan['id']}"))["name"] == "FY27 Global"


async def test_cursors_beyond_bigint_are_422_on_both_databases(budget):
    plan = await budget.plan()
    ln = await budget.line(plan["id"], "L")
    for cursor in (encode_cursor(10**30), encode_cursor(1e308), encode_cursor(-(2**63) - 1)):
        body = problem(
            await budget.c.get(f"/v1/lines/{ln['id']}/entries", params={"cursor": cursor}, headers=ADMIN), 422
        )
        assert body["errors"][0]["field"] == "query.cursor"


async def test_csv_with_bare_carriage_returns_imports_and_an_oversized_cell_is_422(budget):
    plan = await budget.plan()
    csv_in = {**ADMIN, "Content-Type": "text/csv"}
    r = await budget.c.post(
        f"/v1/plans/{plan['id']}/import",
        headers=csv_in,
        content=b"code,name,period,amount,currency\rA,Alpha,2027-03,10.00,EUR\rB,Beta,,,\r",
    )
    assert r.status_code == 200 and r.json()["lines_created"] == 2, r.text
    before = await counts(budget)
    body = problem(
        await budget.c.post(
            f"/v1/plans/{plan['id']}/import", headers=csv_in, content=b'code,name\nC,"' + b"x" * 200_000 + b'"\n'
        ),
        422,
    )
    assert body["errors"][0]["field"] == "body" and "field limit" in body["detail"]
    assert await counts(budget) == before


async def test_a_commitment_with_a_bad_period_on_a_require_approval_plan_is_422(budget):
    plan = await budget.plan(policy="require_approval", threshold="50.00")
    ln = await budget.line(plan["id"], "L")
    await budget.allocate(ln["id"], "10.00")
    before = await counts(budget)
    for period in ("2027-13", "２０２７-03", "2026-12", "2027-3"):
        body = problem(await budget.commit(ln["id"], "500.00", period=period), 422)
        assert body["errors"][0]["field"] == "period", (period, body)
    assert await counts(budget) == before


async def test_fx_rate_dates_lie_within_the_bounds_every_service_takes(budget):
    for day in ("9999-12-31", "0001-01-01", "1899-12-31", "3000-01-01"):
        body = problem(
            await budget.c.post(
                "/v1/fx-rates", headers=ADMIN, json={"base": "USD", "quote": "EUR", "date": day, "rate": "0.9"}
            ),
            422,
        )
        assert body["errors"][0]["field"] == "date" and "2999-12-31" in body["detail"], (day, body)
    assert (await budget.ok("GET", "/v1/fx-rates"))["items"] == []


async def test_a_month_of_a_line_holds_at_most_what_one_amount_may_be_and_summaries_never_overflow(budget):
    # Two allocations just under the limit of one amount overflowed nothing alone, but ten of them
    # overflowed BIGINT on PostgreSQL (a 500) and turned the balance into a float on SQLite.
    plan = await budget.plan()
    parent = await budget.line(plan["id"], "P")
    a = await budget.line(plan["id"], "A", parent="P")
    b = await budget.line(plan["id"], "B", parent="P")
    top = "99999999999999.99"
    await budget.allocate(a["id"], top)
    before = await counts(budget)
    for line_id in (a["id"], b["id"]):  # A's own month, then P's subtree month (B's own would fit)
        body = problem(
            await budget.c.post(
                "/v1/allocations",
                headers=ADMIN,
                json={"line_id": line_id, "period": "2027-03", "amount": "0.01", "currency": "EUR"},
            ),
            409,
        )
        assert "minor units" in body["detail"], body
    assert await counts(budget) == before
    assert (await budget.balance(parent["id"]))["allocated"] == top
    assert (await budget.balance(b["id"]))["allocated"] == "0.00"

    # A plan of many lines at the limit in every month: its summary sums far past BIGINT.
    rows = [f"L{i},Line {i},2027-{m:02d},{top},EUR" for i in range(80) for m in range(1, 13)]
    csv_in = {**ADMIN, "Content-Type": "text/csv"}
    big = await budget.plan()
    r = await budget.c.post(
        f"/v1/plans/{big['id']}/import",
        headers=csv_in,
        content=("code,name,period,amount,currency\n" + "\n".join(rows) + "\n").encode(),
    )
    assert r.status_code == 200, r.text
    total = (await budget.ok("GET", f"/v1/plans/{big['id']}/summary"))["total"]
    assert total["allocated"] == f"{80 * 12 * 9999999999999999 // 100}.{80 * 12 * 9999999999999999 % 100:02d}"


async def test_a_hand_made_cursor_with_a_lone_surrogate_is_422(budget):
    import base64

    cursor = base64.urlsafe_b64encode(b'["\\ud800"]').decode()
    for url in ("/v1/plans", "/v1/fx-rates"):
        body = problem(await budget.c.get(url, params={"cursor": cursor}, headers=ADMIN), 422)
        assert body["errors"][0]["field"] == "query.cursor"
