"""Scopes on the registry's write paths: its rows carry no dimensions, so they reach every scope.

A mops user narrowed to `region:EMEA` may read the catalogue but not change it: a contract it
created would commit money on any budget line, APAC's included, through the budget's consumer.
"""

from __future__ import annotations

import pytest

from shared.identity import HEADER, Principal, mint
from shared.settings import DEV_IDENTITY_SECRET
from tests.registry.conftest import MOPS, assert_problem, make_contract, make_tool

pytestmark = pytest.mark.db


def scoped(*roles: str) -> dict[str, str]:
    return {HEADER: mint(Principal("emma", frozenset(roles), frozenset({"region:EMEA"})), DEV_IDENTITY_SECRET, 300)}


EMEA_MOPS = scoped("mops")
EMEA_FINANCE = scoped("finance")
EMEA_PARTNER = scoped("partner")


async def test_every_write_is_refused_to_a_scoped_principal_and_changes_nothing(api):
    tool = await make_tool(api, "Acme")
    other = await make_tool(api, "Beta")
    contract = await make_contract(api, tool["id"])
    before = [
        (await api.get(p)).json()
        for p in (
            f"/v1/tools/{tool['id']}",
            f"/v1/contracts/{contract['id']}",
            "/v1/tools",
            "/v1/integrations",
            "/v1/fx-rates",
        )
    ]
    writes = [
        ("POST", "/v1/tools", EMEA_MOPS, {"name": "X", "vendor": "X", "category": "data"}, {}),
        ("PATCH", f"/v1/tools/{tool['id']}", EMEA_MOPS, {"notes": "x"}, {"If-Match": '"1"'}),
        ("POST", f"/v1/tools/{tool['id']}/lifecycle", EMEA_MOPS, {"lifecycle": "retiring"}, {}),
        (
            "POST",
            "/v1/contracts",
            EMEA_FINANCE,
            {"tool_id": tool["id"], "start": "2027-01-01", "end": "2027-12-31", "cost": "1.00", "currency": "EUR"},
            {},
        ),
        ("POST", f"/v1/contracts/{contract['id']}/renew", EMEA_FINANCE, {}, {}),
        ("POST", f"/v1/contracts/{contract['id']}/cancel", EMEA_FINANCE, {}, {}),
        (
            "POST",
            "/v1/integrations",
            EMEA_MOPS,
            {"from_tool_id": tool["id"], "to_tool_id": other["id"], "data_objects": ["leads"]},
            {},
        ),
        ("POST", "/v1/utilization", EMEA_PARTNER, {"tool_id": tool["id"], "date": "2027-01-01", "active_users": 1}, {}),
        (
            "POST",
            "/v1/fx-rates",
            EMEA_FINANCE,
            {"base": "USD", "quote": "EUR", "date": "2027-01-01", "rate": "0.9"},
            {},
        ),
    ]
    for method, path, headers, body, extra in writes:
        r = await api.request(method, path, json=body, headers={**headers, **extra})
        assert "scope" in assert_problem(r, 403)["detail"], (method, path)
    r = await api.post("/v1/import", content=b"tools: []\n", headers={**EMEA_MOPS, "Content-Type": "application/yaml"})
    assert_problem(r, 403)
    after = [
        (await api.get(p)).json()
        for p in (
            f"/v1/tools/{tool['id']}",
            f"/v1/contracts/{contract['id']}",
            "/v1/tools",
            "/v1/integrations",
            "/v1/fx-rates",
        )
    ]
    assert after == before
    # Reading stays open to them, and the same writes work for an unscoped mops.
    assert (await api.get("/v1/tools", headers=EMEA_MOPS)).status_code == 200
    assert (
        await api.post("/v1/tools", headers=MOPS, json={"name": "X", "vendor": "X", "category": "data"})
    ).status_code == 201
