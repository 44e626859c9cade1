"""Scopes on the registry's write paths: its rows carry no dimensions, so they reach every scope.

A mops user narrowed to `region:EMEA` may read the catalogue but not change it: a contract it
created would commit money on any budget line, APAC's included, through the budget's consumer.
The routes refuse it, and so does the domain on every path that writes (the catalogue import
reaches tools, contracts and integrations through the same use cases), so a path added later
cannot forget it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from services.registry import catalog, integrations, schemas, stack_schemas, tools
from shared.errors import Forbidden
from tests.harness import assert_problem, identity, principal
from tests.registry.conftest import MOPS, make_contract, make_tool

pytestmark = pytest.mark.db

EMEA_MOPS = identity("emma", "mops", scopes=["region:EMEA"])
EMEA_FINANCE = identity("emma", "finance", scopes=["region:EMEA"])
EMEA_PARTNER = identity("emma", "partner", scopes=["region:EMEA"])
READS = ("/v1/tools", "/v1/contracts", "/v1/integrations", "/v1/fx-rates", "/v1/utilization")


async def snapshot(api, *paths: str) -> list[dict]:
    return [(await api.get(p)).json() for p in (*READS, *paths)]


async def test_every_write_route_is_refused_to_a_scoped_principal_and_changes_nothing(api):
    tool = await make_tool(api, "Acme")
    other = await make_tool(api, "Beta")
    contract = await make_contract(api, tool["id"])
    edge = (
        await api.post(
            "/v1/integrations", json={"from_tool_id": tool["id"], "to_tool_id": other["id"], "method": "api"}
        )
    ).json()
    before = await snapshot(api, f"/v1/tools/{tool['id']}", f"/v1/contracts/{contract['id']}")
    # Every body is valid: the refusal is about the scope, nothing else.
    writes = [
        ("POST", "/v1/tools", EMEA_MOPS, {"name": "X", "vendor": "X", "category": "data"}, {}),
        ("PATCH", f"/v1/tools/{tool['id']}", EMEA_MOPS, {"notes": "x"}, {"If-Match": '"1"'}),
        ("POST", f"/v1/tools/{tool['id']}/lifecycle", EMEA_MOPS, {"lifecycle": "sunsetting"}, {}),
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
            {"from_tool_id": tool["id"], "to_tool_id": other["id"], "method": "api", "data_objects": ["leads"]},
            {},
        ),
        (
            "POST",
            "/v1/utilization",
            EMEA_PARTNER,
            {"tool_id": tool["id"], "date": "2026-01-01", "active_users": 1, "source": "sso"},
            {},
        ),
        ("POST", "/v1/fx-rates", EMEA_FINANCE, {"currency": "USD", "rate": "0.9"}, {}),
        ("PATCH", f"/v1/integrations/{edge['id']}", EMEA_MOPS, {"owner": "x"}, {"If-Match": '"1"'}),
        ("DELETE", f"/v1/integrations/{edge['id']}", EMEA_MOPS, None, {}),
        ("POST", f"/v1/integrations/{edge['id']}/health", EMEA_PARTNER, {"working": False}, {}),
        ("PUT", "/v1/layers", EMEA_MOPS, {"layers": [{"key": "data", "name": "Data"}], "rules": []}, {}),
        ("PUT", f"/v1/contracts/{contract['id']}/milestones", EMEA_FINANCE, {"days": [10]}, {}),
        ("POST", "/v1/discovery/any/accept", EMEA_MOPS, {"category": "data"}, {}),
        ("POST", "/v1/discovery/any/merge", EMEA_MOPS, {"tool_id": tool["id"]}, {}),
        ("POST", "/v1/discovery/any/ignore", EMEA_MOPS, {}, {}),
        ("POST", "/v1/usage/import", EMEA_PARTNER, {}, {}),
    ]
    for method, path, headers, body, extra in writes:
        r = await api.request(method, path, json=body, headers={**headers, **extra})
        assert "scope" in assert_problem(r, 403)["detail"], (method, path)
    catalogue = b"kind: Tool\nmetadata: {name: Imported}\nspec: {category: data}\n"
    r = await api.post("/v1/import", content=catalogue, headers={**EMEA_MOPS, "Content-Type": "application/yaml"})
    assert_problem(r, 403)
    assert await snapshot(api, f"/v1/tools/{tool['id']}", f"/v1/contracts/{contract['id']}") == before
    # Reading stays open to them, and the same writes work for an unscoped mops.
    assert (await api.get("/v1/tools", headers=EMEA_MOPS)).status_code == 200
    assert (
        await api.post("/v1/tools", headers=MOPS, json={"name": "X", "vendor": "X", "category": "data"})
    ).status_code == 201


async def test_every_write_use_case_refuses_a_scoped_principal_whatever_path_calls_it(app, api):
    """The domain's own check, below the routes: what a route, the import or a future event handler
    calls refuses a principal narrowed by a dimension scope, before writing anything."""
    tool = await make_tool(api, "Acme")
    other = await make_tool(api, "Beta")
    contract = await make_contract(api, tool["id"])
    before = await snapshot(api)
    rt, registry = app.state.runtime, app.state.runtime.domain
    emea = principal("emma", "admin", scopes=["region:EMEA"])
    doc = stack_schemas.CatalogDocument.model_validate(
        {"kind": "Tool", "metadata": {"name": "Imported"}, "spec": {"category": "data"}}
    )
    terms = schemas.ContractIn(
        tool_id=tool["id"], start=dt.date(2027, 1, 1), end=dt.date(2027, 12, 31), cost=Decimal(1), currency="EUR"
    )
    use_cases = {
        "create_tool": lambda uow: tools.create_tool(uow, emea, body=schemas.ToolIn(name="X", category="data")),
        "update_tool": lambda uow: tools.update_tool(
            uow, emea, tool_id=tool["id"], patch=schemas.ToolPatch(notes="x"), expected_version=1
        ),
        "change_lifecycle": lambda uow: tools.change_lifecycle(
            uow, emea, tool_id=tool["id"], body=schemas.LifecycleIn(lifecycle="sunsetting"), expected_version=None
        ),
        "create_contract": lambda uow: registry.contracts.create(uow, emea, body=terms),
        "renew_contract": lambda uow: registry.contracts.renew(
            uow, emea, contract_id=contract["id"], body=schemas.RenewIn(), expected_version=None
        ),
        "cancel_contract": lambda uow: registry.contracts.cancel(
            uow, emea, contract_id=contract["id"], body=schemas.CancelIn(), expected_version=None
        ),
        "create_integration": lambda uow: integrations.create_integration(
            uow,
            emea,
            body=schemas.IntegrationIn(from_tool_id=tool["id"], to_tool_id=other["id"], method="api"),
        ),
        "record_usage": lambda uow: registry.usage.record(
            uow,
            emea,
            body=schemas.UtilizationIn(tool_id=tool["id"], date=dt.date(2026, 1, 1), active_users=1, source="sso"),
        ),
        "set_fx_rate": lambda uow: registry.costs.set_rate(
            uow, emea, body=stack_schemas.FxRateIn(currency="USD", rate=Decimal("0.9"))
        ),
        "import_catalogue": lambda uow: catalog.import_catalogue(uow, emea, docs=[doc], contracts=registry.contracts),
    }
    for name, use_case in use_cases.items():
        with pytest.raises(Forbidden, match="scope"):
            async with rt.unit_of_work() as uow:
                await use_case(uow)
        assert await snapshot(api) == before, name
    # The same use cases go through for an unscoped principal (the refusal is the scope, not the call).
    async with rt.unit_of_work() as uow:
        created = await tools.create_tool(
            uow, principal("dana", "mops"), body=schemas.ToolIn(name="X", category="data")
        )
    assert created.name == "X"
