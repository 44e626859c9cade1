"""Scopes on every budget write path, against the row as it is and as it will be.

The hardening review found an EMEA-scoped finance user taking over an APAC line through
the CSV import (`code,name,region` / `APAC-x,hijacked,EMEA`: only the row after the change
was checked), creating an EMEA line under an APAC parent (whose figures then rolled into
APAC's subtree), and a `region:None` scope reaching the lines without a region. Each write
path below runs once on a row inside the caller's scope (it works) and once on rows outside
it (403 or a 422 naming the row, and nothing written).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.budget.conftest import ADMIN, problem, who

pytestmark = pytest.mark.db

EMEA = who("finance", scopes=("region:EMEA",), subject="fiona")
NONE_SCOPE = who("finance", scopes=("region:None",), subject="nobody")


class World:
    """A plan with an EMEA subtree, an APAC subtree and a line with no region, all funded."""

    def __init__(self, budget):
        self.b = budget

    async def build(self) -> World:
        b = self.b
        self.plan = await b.plan(threshold="500.00")
        pid = self.plan["id"]
        self.emea = await b.line(pid, "EMEA", region="EMEA")
        self.emea2 = await b.line(pid, "EMEA-EVENTS", parent="EMEA")
        self.apac = await b.line(pid, "APAC", region="APAC")
        self.apac_x = await b.line(pid, "APAC-x", parent="APAC")
        self.noreg = await b.line(pid, "SHARED")
        for ln in (self.emea, self.emea2, self.apac, self.apac_x, self.noreg):
            await b.allocate(ln["id"], "10000.00")
        c = await b.commit(self.apac["id"], "100.00")
        self.apac_commitment = c.json()
        pending = await b.commit(self.apac["id"], "900.00")
        self.apac_pending = pending.json()
        assert pending.json()["status"] == "pending_approval"
        self.apac_actual = await b.ok(
            "POST",
            "/v1/actuals",
            201,
            json={"line_id": self.apac["id"], "period": "2027-03", "amount": "10.00", "currency": "EUR"},
        )
        return self

    async def snapshot(self) -> list:
        """Everything a write could change: the tree with its figures, every line's entries, the plan."""
        b = self.b
        tree = await b.ok("GET", f"/v1/plans/{self.plan['id']}/lines?from=2027-01&to=2027-12")
        entries = [
            await b.ok("GET", f"/v1/lines/{ln['id']}/entries?limit=200")
            for ln in (self.emea, self.emea2, self.apac, self.apac_x, self.noreg)
        ]
        plan = await b.ok("GET", f"/v1/plans/{self.plan['id']}")
        rates = await b.ok("GET", "/v1/fx-rates")
        return [tree, entries, plan, rates]


def csv(text: str) -> dict:
    return {"content": text.encode(), "headers": {**EMEA, "Content-Type": "text/csv"}}


# Each case: (name, the request on a row in scope -> expected status, the same request out of scope).
Request = Callable[["World"], Awaitable[object]]


def post(url: Callable[[World], str], body: Callable[[World], dict], headers: dict = EMEA) -> Request:
    async def go(w: World):
        return await w.b.c.post(url(w), json=body(w), headers=headers)

    return go


def money(line: str, **extra) -> Callable[[World], dict]:
    return lambda w: {
        "line_id": getattr(w, line)["id"],
        "period": "2027-03",
        "amount": "10.00",
        "currency": "EUR",
        **extra,
    }


def ask(w: World, *lines: str) -> dict:
    """A bottom-up request for 10.00 on each line in 2027-04."""
    items = [{"line_id": getattr(w, ln)["id"], "period": "2027-04", "amount": "10.00"} for ln in lines]
    return {"plan_id": w.plan["id"], "currency": "EUR", "justification": "more", "items": items}


PLAN_LINES = lambda w: f"/v1/plans/{w.plan['id']}/lines"  # noqa: E731
OUT_OF_SCOPE: list[tuple[str, Request, int]] = [
    (
        "line under an APAC parent, itself EMEA",
        post(
            PLAN_LINES,
            lambda w: {"code": "SNEAK", "name": "x", "parent_code": "APAC", "dimensions": {"region": "EMEA"}},
        ),
        403,
    ),
    ("line with no region", post(PLAN_LINES, lambda w: {"code": "NOREG2", "name": "x"}), 403),
    ("allocation to APAC", post(lambda w: "/v1/allocations", money("apac")), 403),
    ("allocation to the line without a region", post(lambda w: "/v1/allocations", money("noreg")), 403),
    (
        "transfer out of APAC",
        post(
            lambda w: "/v1/transfers",
            lambda w: {
                "from_line_id": w.apac["id"],
                "to_line_id": w.emea["id"],
                "period": "2027-03",
                "amount": "10.00",
                "currency": "EUR",
            },
        ),
        403,
    ),
    (
        "transfer into APAC",
        post(
            lambda w: "/v1/transfers",
            lambda w: {
                "from_line_id": w.emea["id"],
                "to_line_id": w.apac["id"],
                "period": "2027-03",
                "amount": "10.00",
                "currency": "EUR",
            },
        ),
        403,
    ),
    ("commitment on APAC", post(lambda w: "/v1/commitments", money("apac")), 403),
    (
        "approval of an APAC commitment",
        post(lambda w: f"/v1/commitments/{w.apac_pending['id']}/approve", lambda w: {}),
        403,
    ),
    (
        "release of an APAC commitment",
        post(lambda w: f"/v1/commitments/{w.apac_commitment['id']}/release", lambda w: {}),
        403,
    ),
    ("actual on APAC", post(lambda w: "/v1/actuals", money("apac")), 403),
    (
        "actual on EMEA consuming an APAC commitment",
        post(lambda w: "/v1/actuals", lambda w: {**money("emea")(w), "commitment_id": w.apac_commitment["id"]}),
        403,
    ),
    ("reversal of an APAC actual", post(lambda w: f"/v1/entries/{w.apac_actual['id']}/reverse", lambda w: {}), 403),
    ("a new plan", post(lambda w: "/v1/plans", lambda w: {"name": "x", "fiscal_year": 2028, "currency": "EUR"}), 403),
    ("activating the plan", post(lambda w: f"/v1/plans/{w.plan['id']}/activate", lambda w: {}), 403),
    ("closing the plan", post(lambda w: f"/v1/plans/{w.plan['id']}/close", lambda w: {}), 403),
    (
        "closing a month of every line",
        post(lambda w: f"/v1/plans/{w.plan['id']}/periods/2027-01/close", lambda w: {}),
        403,
    ),
    (
        "an FX rate every line converts with",
        post(lambda w: "/v1/fx-rates", lambda w: {"base": "USD", "quote": "EUR", "date": "2027-01-01", "rate": "0.9"}),
        403,
    ),
    (
        "region:None on the line without a region",
        post(lambda w: "/v1/allocations", money("noreg"), headers=NONE_SCOPE),
        403,
    ),
    ("bottom-up request for APAC", post(lambda w: "/v1/requests", lambda w: ask(w, "apac")), 403),
    ("bottom-up request for EMEA and APAC", post(lambda w: "/v1/requests", lambda w: ask(w, "emea", "apac_x")), 403),
    ("bottom-up request for the line without a region", post(lambda w: "/v1/requests", lambda w: ask(w, "noreg")), 403),
]


@pytest.mark.parametrize(("name", "request_", "status"), OUT_OF_SCOPE, ids=[c[0] for c in OUT_OF_SCOPE])
async def test_out_of_scope_writes_are_refused_and_write_nothing(budget, name, request_, status):
    w = await World(budget).build()
    before = await w.snapshot()
    body = problem(await request_(w), status)
    assert "scope" in body["detail"]
    assert await w.snapshot() == before


async def test_patching_a_plan_needs_an_unscoped_principal(budget):
    w = await World(budget).build()
    before = await w.snapshot()
    r = await budget.c.patch(
        f"/v1/plans/{w.plan['id']}",
        json={"approval_threshold": "1.00"},
        headers={**EMEA, "If-Match": str(w.plan["version"])},
    )
    assert "scope" in problem(r, 403)["detail"]
    assert await w.snapshot() == before


IN_SCOPE: list[tuple[str, Request, int]] = [
    ("line under EMEA", post(PLAN_LINES, lambda w: {"code": "EMEA-WEB", "name": "Web", "parent_code": "EMEA"}), 201),
    ("allocation to EMEA", post(lambda w: "/v1/allocations", money("emea")), 201),
    ("bottom-up request for EMEA lines", post(lambda w: "/v1/requests", lambda w: ask(w, "emea", "emea2")), 201),
    (
        "transfer inside EMEA",
        post(
            lambda w: "/v1/transfers",
            lambda w: {
                "from_line_id": w.emea["id"],
                "to_line_id": w.emea2["id"],
                "period": "2027-03",
                "amount": "10.00",
                "currency": "EUR",
            },
        ),
        201,
    ),
    ("commitment on EMEA", post(lambda w: "/v1/commitments", money("emea")), 201),
    ("actual on EMEA", post(lambda w: "/v1/actuals", money("emea2")), 201),
]


@pytest.mark.parametrize(("name", "request_", "status"), IN_SCOPE, ids=[c[0] for c in IN_SCOPE])
async def test_in_scope_writes_work(budget, name, request_, status):
    w = await World(budget).build()
    r = await request_(w)
    assert r.status_code == status, r.text


async def test_the_csv_import_cannot_take_over_an_apac_line(budget):
    """The finding itself: the row names an APAC line and sets its region to EMEA."""
    w = await World(budget).build()
    before = await w.snapshot()
    url = f"/v1/plans/{w.plan['id']}/import"
    r = await budget.c.post(url, **csv("code,name,region\nAPAC-x,hijacked,EMEA\n"))
    body = problem(r, 422)
    assert body["rows"] == [
        {"row": 2, "errors": [{"field": "code", "message": "line 'APAC-x' is outside your scopes"}]}
    ]
    # Without the region column it was refused before too; it still is.
    problem(await budget.c.post(url, **csv("code,name\nAPAC-x,hijacked\n")), 422)
    assert await w.snapshot() == before


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("code,name,parent_code\nSNEAK,x,APAC\n", "parent_code"),  # a new line under APAC
        ("code,name,parent_code,region\nSNEAK,x,APAC,EMEA\n", "parent_code"),  # ... even one marked EMEA
        ("code,region\nEMEA-EVENTS,APAC\n", "dimensions"),  # moving an EMEA line to APAC
        ("code,name\nSHARED,renamed\n", "code"),  # the line without a region
        ("code,period,amount\nAPAC-x,2027-03,5.00\n", "code"),  # money onto an APAC line
    ],
)
async def test_csv_import_rows_out_of_scope_are_named_and_nothing_is_written(budget, text, field):
    w = await World(budget).build()
    before = await w.snapshot()
    body = problem(await budget.c.post(f"/v1/plans/{w.plan['id']}/import", **csv(text)), 422)
    assert [e["field"] for e in body["rows"][0]["errors"]] == [field]
    assert await w.snapshot() == before


async def test_csv_import_in_scope_works(budget):
    w = await World(budget).build()
    r = await budget.c.post(
        f"/v1/plans/{w.plan['id']}/import",
        **csv(
            "code,name,parent_code,period,amount\nEMEA-EVENTS,Events,,2027-04,5.00\nEMEA-WEB,Web,EMEA,2027-04,7.00\n"
        ),
    )
    assert r.status_code == 200, r.text
    assert r.json()["lines_created"] == 1 and r.json()["lines_updated"] == 1 and r.json()["allocations_posted"] == 2


async def test_an_erp_change_cannot_move_an_apac_order_onto_an_emea_line_for_an_emea_partner(budget):
    w = await World(budget).build()
    po = {
        "po_number": "PO-9",
        "revision": 1,
        "fiscal_year": 2027,
        "budget_line": "APAC",
        "period": "2027-03",
        "amount": "50.00",
        "currency": "EUR",
        "vendor": "Acme",
        "action": "created",
    }
    assert (await budget.c.post("/v1/erp/purchase-orders", json=po, headers=ADMIN)).status_code in (200, 201)
    before = await w.snapshot()
    partner = who("partner", scopes=("region:EMEA",), subject="erp-emea")
    r = await budget.c.post(
        "/v1/erp/purchase-orders",
        headers=partner,
        json={**po, "revision": 2, "budget_line": "EMEA", "action": "changed"},
    )
    assert "scope" in problem(r, 403)["detail"]
    assert await w.snapshot() == before
