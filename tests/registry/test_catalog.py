"""Import and export of the catalogue: YAML documents and CSV rows, all or nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.harness import assert_problem, fields_of
from tests.registry.conftest import ANALYST, client, make_settings, running

pytestmark = pytest.mark.db

YAML = {"content-type": "application/yaml"}

CATALOGUE = """\
apiVersion: pitcrew.dev/v1
kind: Tool
metadata:
  name: Acme CRM
  description: The CRM of record
spec:
  vendor: Acme
  category: social_relationships
  capabilities: [crm, email]
  owner: {team: mops, person: dana}
  lifecycle: active
  time_class: invest
  personal_data: true
  sso: true
  contracts:
    - start: 2027-01-01
      end: 2027-12-31
      billing_period: annual
      cost: "12000.00"
      currency: EUR
      seats: 50
      auto_renew: true
      notice_days: 60
      budget_line_code: MARTECH
  integrations:
    - to: Insight BI
      data_objects: [contacts, revenue]
      method: api
    - to: Mailer
      direction: two_way
      data_objects: [contacts]
      method: webhook
---
apiVersion: pitcrew.dev/v1
kind: Tool
metadata:
  name: Mailer
spec:
  vendor: Sendit
  category: content_experience
  capabilities: [email]
  owner: {team: mops}
  lifecycle: active
  contracts:
    - {start: 2027-02-01, end: 2028-01-31, billing_period: monthly, cost: "400.00", currency: EUR, seats: 5}
---
apiVersion: pitcrew.dev/v1
kind: Tool
metadata:
  name: Insight BI
spec:
  category: data
  capabilities: [analytics]
  lifecycle: pilot
"""


async def counts(app) -> dict[str, int]:
    rt = app.state.runtime
    out = {}
    async with rt.transaction(readonly=True) as s:
        for table in ("tools", "contracts", "integrations", "tool_history", "outbox", "timers"):
            t = rt.infra.outbox.metadata.tables[table]
            out[table] = await s.scalar(select(func.count()).select_from(t))
    return out


async def test_yaml_import_then_export_round_trips_into_a_fresh_registry(api, app, new_db, nats_url):
    r = await api.post("/v1/import", content=CATALOGUE, headers=YAML)
    assert r.status_code == 201, r.text
    assert {k: r.json()[k] for k in ("tools", "contracts", "integrations")} == {
        "tools": 3,
        "contracts": 2,
        "integrations": 2,
    }
    tools = {t["name"]: t for t in (await api.get("/v1/tools")).json()["items"]}
    assert tools["Acme CRM"]["notes"] == "The CRM of record" and tools["Insight BI"]["lifecycle"] == "pilot"
    contracts = (await api.get("/v1/contracts")).json()["items"]
    assert sorted(c["commit_amount"] for c in contracts) == ["12000.00", "4800.00"]
    assert (await counts(app))["outbox"] == 3 + 2  # tool.created x3, contract.created x2

    exported = (await api.get("/v1/export", params={"format": "yaml"})).text
    csv_text = (await api.get("/v1/export", params={"format": "csv"})).text
    assert csv_text.splitlines()[0].startswith("name,vendor,category,capabilities")
    from pitcrew.migrations import upgrade_async

    fresh_url = await new_db("registry")
    await upgrade_async("registry", fresh_url)
    async with running(make_settings(fresh_url, nats_url)) as fresh, client(fresh) as c:
        r = await c.post("/v1/import", content=exported, headers=YAML)
        assert r.status_code == 201, r.text
        assert (await c.get("/v1/export", params={"format": "yaml"})).text == exported
        graph = (await c.get("/v1/graph")).json()
        assert len(graph["edges"]) == 2


async def test_a_malformed_document_is_422_naming_document_and_field_and_nothing_is_written(api, app):
    before = await counts(app)
    bad_lifecycle = CATALOGUE.replace("lifecycle: pilot", "lifecycle: dormant")
    body = assert_problem(await api.post("/v1/import", content=bad_lifecycle, headers=YAML), 422)
    assert fields_of(body) == {"documents[2].spec.lifecycle"}
    assert "documents[2].spec.lifecycle" in body["detail"]

    bad_contract = CATALOGUE.replace("end: 2027-12-31", "end: 2026-12-31")
    body = assert_problem(await api.post("/v1/import", content=bad_contract, headers=YAML), 422)
    assert fields_of(body) == {"documents[0].spec.contracts[0].end"}

    bad_category = CATALOGUE.replace("category: content_experience", "category: email_stuff")
    body = assert_problem(await api.post("/v1/import", content=bad_category, headers=YAML), 422)
    assert fields_of(body) == {"documents[1].spec.category"}

    unknown_target = CATALOGUE.replace("- to: Mailer", "- to: Nobody")
    body = assert_problem(await api.post("/v1/import", content=unknown_target, headers=YAML), 422)
    assert fields_of(body) == {"documents[0].spec.integrations[1].to"}

    float_cost = CATALOGUE.replace('cost: "400.00"', "cost: 400.10")
    body = assert_problem(await api.post("/v1/import", content=float_cost, headers=YAML), 422)
    assert fields_of(body) == {"documents[1].spec.contracts[0].cost"}

    self_loop = CATALOGUE.replace("- to: Insight BI", "- to: Acme CRM")
    body = assert_problem(await api.post("/v1/import", content=self_loop, headers=YAML), 422)
    assert fields_of(body) == {"documents[0].spec.integrations[0].to_tool_id"}

    no_kind = CATALOGUE.replace("kind: Tool\nmetadata:\n  name: Mailer", "metadata:\n  name: Mailer")
    body = assert_problem(await api.post("/v1/import", content=no_kind, headers=YAML), 422)
    assert fields_of(body) == {"documents[1].kind"}

    body = assert_problem(await api.post("/v1/import", content="a: [1, 2\n---\nb: c", headers=YAML), 422)
    assert fields_of(body) == {"body"} and "line" in body["detail"]
    body = assert_problem(await api.post("/v1/import", content="- just\n- a list\n", headers=YAML), 422)
    assert fields_of(body) == {"documents[0]"}
    assert_problem(await api.post("/v1/import", content=CATALOGUE, headers={"content-type": "text/plain"}), 415)
    assert_problem(await api.post("/v1/import", content=CATALOGUE, headers={**YAML, **ANALYST}), 403)
    assert await counts(app) == before

    # A name already in the registry: 409, naming the document; still nothing written.
    assert (await api.post("/v1/tools", json={"name": "Mailer", "category": "data"})).status_code == 201
    before = await counts(app)
    body = assert_problem(await api.post("/v1/import", content=CATALOGUE, headers=YAML), 409)
    assert "documents[1]" in body["detail"]
    assert await counts(app) == before


async def test_csv_import_and_its_row_errors(api):
    csv_body = (
        "name,vendor,category,capabilities,owner_team,owner_person,lifecycle,personal_data,sso\n"
        "Ads Pro,AdCo,advertising_promotion,ads;retargeting,growth,gil,active,false,true\n"
        "Plan It,PlanCo,management,project,mops,,evaluating,,\n"
    )
    r = await api.post("/v1/import", content=csv_body, headers={"content-type": "text/csv"})
    assert r.status_code == 201 and r.json()["tools"] == 2, r.text
    tools = {t["name"]: t for t in (await api.get("/v1/tools")).json()["items"]}
    assert tools["Ads Pro"]["capabilities"] == ["ads", "retargeting"] and tools["Ads Pro"]["sso"] is True
    assert tools["Plan It"]["owner"] == {"team": "mops", "person": None}
    bad = "name,category,lifecycle,sso\nOne,data,active,true\nTwo,data,zombie,maybe\n"
    body = assert_problem(await api.post("/v1/import", content=bad, headers={"content-type": "text/csv"}), 422)
    assert fields_of(body) == {"rows[1].lifecycle", "rows[1].sso"}
    body = assert_problem(
        await api.post("/v1/import", content="name,category\nNew,gadgets\n", headers={"content-type": "text/csv"}), 422
    )
    assert fields_of(body) == {"rows[0].category"}
    body = assert_problem(
        await api.post(
            "/v1/import", content="name,category,colour\nx,data,red\n", headers={"content-type": "text/csv"}
        ),
        422,
    )
    assert "colour" in body["detail"]
    assert len((await api.get("/v1/tools")).json()["items"]) == 2
