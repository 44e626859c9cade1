"""Tools: the seeded taxonomy, versioned updates, guarded lifecycle, the audit history, roles."""

from __future__ import annotations

import pytest

from tests.harness import assert_problem, fields_of
from tests.registry.conftest import ANALYST, FINANCE, MOPS, PARTNER, make_tool, outbox_rows

pytestmark = pytest.mark.db


async def test_categories_are_seeded_by_the_migration(api):
    r = await api.get("/v1/categories")
    assert [c["key"] for c in r.json()["items"]] == [
        "advertising_promotion",
        "commerce_sales",
        "content_experience",
        "data",
        "management",
        "social_relationships",
    ]


async def test_create_read_patch_with_if_match_and_history(api):
    r = await api.post(
        "/v1/tools",
        headers=MOPS,
        json={
            "name": "Acme CRM",
            "vendor": "Acme",
            "category": "social_relationships",
            "capabilities": ["CRM", "email"],
            "owner": {"team": "mops", "person": "dana"},
            "lifecycle": "active",
            "time_class": "invest",
            "personal_data": True,
            "sso": True,
            "url": "https://acme.example",
        },
    )
    assert r.status_code == 201, r.text
    tool = r.json()
    assert tool["capabilities"] == ["crm", "email"] and tool["version"] == 1 and tool["status"] == "active"
    r = await api.get(f"/v1/tools/{tool['id']}")
    assert r.headers["etag"] == '"1"' and r.json()["name"] == "Acme CRM"

    assert_problem(await api.patch(f"/v1/tools/{tool['id']}", json={"notes": "x"}), 428)
    r = await api.patch(
        f"/v1/tools/{tool['id']}",
        headers={**MOPS, "If-Match": '"1"'},
        json={"notes": "main CRM", "owner": {"team": "sales", "person": "sam"}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2 and r.headers["etag"] == '"2"' and r.json()["owner"]["team"] == "sales"
    stale = await api.patch(f"/v1/tools/{tool['id']}", headers={"If-Match": '"1"'}, json={"notes": "lost update"})
    assert assert_problem(stale, 412)["current_version"] == 2
    body = assert_problem(
        await api.patch(f"/v1/tools/{tool['id']}", headers={"If-Match": '"2"'}, json={"lifecycle": "retired"}), 422
    )
    assert fields_of(body) == {"lifecycle"}
    assert (await api.get(f"/v1/tools/{tool['id']}")).json()["notes"] == "main CRM"

    r = await api.post(f"/v1/tools/{tool['id']}/lifecycle", json={"lifecycle": "sunsetting", "reason": "dup"})
    assert r.status_code == 200 and r.json()["lifecycle"] == "sunsetting" and r.json()["version"] == 3

    history = (await api.get(f"/v1/tools/{tool['id']}/history")).json()["items"]
    assert [(h["version"], h["action"], h["actor"]) for h in history] == [
        (1, "created", "maria"),
        (2, "updated", "maria"),
        (3, "lifecycle_changed", "dana"),
    ]
    assert history[1]["changes"] == {
        "notes": {"from": None, "to": "main CRM"},
        "owner": {"from": {"team": "mops", "person": "dana"}, "to": {"team": "sales", "person": "sam"}},
    }
    assert history[2]["changes"] == {"lifecycle": {"from": "active", "to": "sunsetting"}}
    assert history[2]["reason"] == "dup"


async def test_illegal_lifecycle_transitions_are_409_and_change_nothing(api):
    tool = await make_tool(api, "Old DMP", lifecycle="evaluating")
    for target in ("pilot", "active", "sunsetting", "retired"):
        r = await api.post(f"/v1/tools/{tool['id']}/lifecycle", json={"lifecycle": target})
        assert r.status_code == 200, r.text
    body = assert_problem(await api.post(f"/v1/tools/{tool['id']}/lifecycle", json={"lifecycle": "active"}), 409)
    assert "retired" in body["detail"] and body["allowed"] == []
    other = await make_tool(api, "Busy Tool")
    body = assert_problem(await api.post(f"/v1/tools/{other['id']}/lifecycle", json={"lifecycle": "retired"}), 409)
    assert body["allowed"] == ["sunsetting"]
    assert (await api.get(f"/v1/tools/{other['id']}")).json()["version"] == 1
    assert len((await api.get(f"/v1/tools/{other['id']}/history")).json()["items"]) == 1


async def test_bad_tool_input_names_the_fields(api):
    body = assert_problem(
        await api.post("/v1/tools", json={"name": "", "category": "nope", "lifecycle": "live", "time_class": "keep"}),
        422,
    )
    assert fields_of(body) == {"name", "lifecycle", "time_class"}
    body = assert_problem(await api.post("/v1/tools", json={"name": "X", "category": "nope"}), 422)
    assert fields_of(body) == {"category"} and "social_relationships" in body["detail"]
    await make_tool(api, "Same")
    assert_problem(await api.post("/v1/tools", json={"name": "Same", "category": "data"}), 409)
    assert_problem(await api.get("/v1/tools/nope"), 404)
    assert_problem(await api.post("/v1/tools/nope/lifecycle", json={"lifecycle": "active"}), 404)
    assert_problem(await api.get("/v1/tools/nope/history"), 404)
    assert_problem(await api.get("/v1/contracts/nope"), 404)
    assert (await api.get("/v1/tools")).json()["items"][0]["name"] == "Same"


async def test_roles_analyst_and_partner_cannot_write_the_catalogue(api):
    for who in (ANALYST, PARTNER, FINANCE):
        assert_problem(await api.post("/v1/tools", headers=who, json={"name": "Y", "category": "data"}), 403)
    assert (await api.get("/v1/tools", headers=ANALYST)).status_code == 200
    r = await api.get("/v1/tools", headers={"X-Pitcrew-Identity": ""})
    assert_problem(r, 401)


async def test_list_filters_and_cursor_pagination(api):
    for i in range(5):
        await make_tool(
            api, f"Tool {i}", capabilities=["email"] if i % 2 else ["ads"], category="data" if i < 3 else "management"
        )
    seen, cursor = [], None
    while True:
        page = (await api.get("/v1/tools", params={"limit": 2, **({"cursor": cursor} if cursor else {})})).json()
        seen += [t["name"] for t in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"Tool {i}" for i in range(5)]
    names = [t["name"] for t in (await api.get("/v1/tools", params={"capability": "email"})).json()["items"]]
    assert names == ["Tool 1", "Tool 3"]
    names = [t["name"] for t in (await api.get("/v1/tools", params={"category": "management"})).json()["items"]]
    assert names == ["Tool 3", "Tool 4"]
    assert_problem(await api.get("/v1/tools", params={"cursor": "garbage!"}), 422)


async def test_tool_changes_are_published_through_the_outbox(api, app):
    tool = await make_tool(api, "Evented")
    await api.patch(f"/v1/tools/{tool['id']}", headers={"If-Match": '"1"'}, json={"vendor": "New Vendor"})
    await api.post(f"/v1/tools/{tool['id']}/lifecycle", json={"lifecycle": "sunsetting"})
    created = await outbox_rows(app, "registry.tool.created", tool["id"])
    updated = await outbox_rows(app, "registry.tool.updated", tool["id"])
    changed = await outbox_rows(app, "registry.tool.lifecycle_changed", tool["id"])
    assert [len(created), len(updated), len(changed)] == [1, 1, 1]
    assert updated[0]["data"]["vendor"] == "New Vendor" and updated[0]["data"]["version"] == 2
    assert changed[0]["data"]["previous_lifecycle"] == "active" and changed[0]["data"]["lifecycle"] == "sunsetting"
