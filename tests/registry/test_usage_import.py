"""Usage from SSO exports (person, tool, last login) and seat right-sizing with the saving it brings."""

from __future__ import annotations

import pytest

from tests.harness import assert_problem, fields_of
from tests.registry.conftest import ANALYST, PARTNER, days, make_contract, make_tool

pytestmark = pytest.mark.db
CSV = {"Content-Type": "text/csv"}


def export(rows: list[tuple[str, str, str]]) -> bytes:
    return ("person,tool,last_login\n" + "".join(f"{p},{t},{d}\n" for p, t, d in rows)).encode()


async def test_an_export_sets_logins_utilization_and_rightsizing(api):
    crm = await make_tool(api, "Acme CRM", vendor="Acme")
    bi = await make_tool(api, "Insight BI")
    await make_contract(api, crm["id"], cost="12000.00", seats=40, start=days(-100), end=days(265))
    await make_contract(api, bi["id"], cost="6000.00", seats=5, start=days(-100), end=days(265))
    planner = await make_tool(api, "Planner")
    await make_contract(api, planner["id"], cost="2000.00", seats=20, start=days(-100), end=days(265))
    rows = [(f"user{n}@corp", "Acme CRM", days(-5)) for n in range(10)]  # 10 active in 30 days
    rows += [(f"user{n}@corp", "acme crm", days(-200)) for n in range(3)]  # older logins of the same people
    rows += [(f"old{n}@corp", "ACME", days(-60)) for n in range(8)]  # active in 90 days only (vendor name)
    rows += [(f"bi{n}@corp", "Insight BI", days(-1)) for n in range(5)]  # 5 * 1.1 -> 6 > 5 seats: no cut
    rows += [(f"p{n}@corp", "Planner", days(-40)) for n in range(10)]  # 10 * 1.1 = 11 seats exactly, not 12
    rows += [("x@corp", "Shadow Notes", days(-1)), ("y@corp", "Shadow Notes", days(-2))]
    r = await api.post("/v1/usage/import", content=export(rows), headers={**PARTNER, **CSV})
    assert r.status_code == 201, r.text
    assert r.json() == {"rows": 38, "tools": 3, "people": 33, "unknown_tools": {"Shadow Notes": 2}}
    used = (await api.get(f"/v1/tools/{crm['id']}/utilization")).json()
    assert (
        used["active_users"] == 10 and used["seats"] == 40 and used["source"] == "sso" and used["utilization"] == 0.25
    )
    body = (await api.get("/v1/rightsizing", headers=ANALYST)).json()
    # CRM: 18 people in 90 days, +10% -> 20 seats of 40; the 20 surplus seats cost 12000 * 20/40 = 6000 a year.
    assert body["items"][1] == {
        "tool_id": planner["id"],
        "name": "Planner",
        "seats": 20,
        "active_30": 0,
        "active_90": 10,
        "recommended_seats": 11,
        "annual_cost": "2000.00",
        "annual_saving": "900.00",
    }
    assert body["items"][:1] == [
        {
            "tool_id": crm["id"],
            "name": "Acme CRM",
            "seats": 40,
            "active_30": 10,
            "active_90": 18,
            "recommended_seats": 20,
            "annual_cost": "12000.00",
            "annual_saving": "6000.00",
        }
    ]  # BI uses all 5 seats: nothing to save
    assert len(body["items"]) == 2 and body["total_annual_saving"] == "6900.00" and body["currency"] == "EUR"
    # A re-import is harmless; a later login moves a person into the 30 days.
    r = await api.post("/v1/usage/import", content=export([("old0@corp", "Acme CRM", days(0))]), headers=CSV)
    assert r.status_code == 201
    assert (await api.get(f"/v1/tools/{crm['id']}/utilization")).json()["active_users"] == 11


async def test_a_bad_export_is_refused_whole(api):
    await make_tool(api, "Acme CRM")
    bad = export([("a@corp", "Acme CRM", "yesterday"), ("", "Acme CRM", days(-1)), ("b@corp", "Acme CRM", days(3))])
    problem = assert_problem(await api.post("/v1/usage/import", content=bad, headers=CSV), 422)
    assert fields_of(problem) == {"rows[0].last_login", "rows[1].person", "rows[2].last_login"}
    r = await api.post("/v1/usage/import", content=b"who,app\nx,y\n", headers=CSV)
    assert fields_of(assert_problem(r, 422)) == {"body"}
    assert_problem(await api.post("/v1/usage/import", content=b"x", headers={"Content-Type": "text/plain"}), 415)
    assert_problem(await api.post("/v1/usage/import", content=export([]), headers={**ANALYST, **CSV}), 403)
    assert (await api.get("/v1/rightsizing")).json()["items"] == []
    assert (await api.get("/v1/utilization", params={"flag": "shelfware"})).json()["items"] == []
