"""The directory: people through the API and CSV, who may change what, roles resolving to people."""

from __future__ import annotations

from services.notify import people
from tests.harness import assert_problem, identity
from tests.notify.conftest import add_person, client, domain

pytestmark = __import__("pytest").mark.db


async def test_a_person_is_created_read_and_changed_with_their_version(api):
    created = await add_person(api, "ann", roles=["approver"], scopes=["region:EMEA"], timezone="Europe/Berlin")
    assert created["version"] == 1 and created["roles"] == ["approver"]
    r = await api.get("/v1/people/ann")
    assert r.status_code == 200 and r.headers["etag"] == '"1"'
    body = {k: v for k, v in r.json().items() if k not in ("id", "version", "created_at", "updated_at")}
    body["team"] = "emea"
    r = await api.put("/v1/people/ann", json=body, headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["team"] == "emea" and r.json()["version"] == 2
    assert_problem(await api.put("/v1/people/ann", json=body, headers={"If-Match": '"1"'}), 412)
    assert_problem(await api.post("/v1/people", json={"id": "ann", "name": "Again"}), 409)


async def test_bad_fields_are_named(api):
    r = await api.post(
        "/v1/people",
        json={"id": "x", "name": "X", "email": "nope", "timezone": "Mars/Base", "roles": ["king"], "scopes": ["EMEA"]},
    )
    body = assert_problem(r, 422)
    fields = {e["field"] for e in body["errors"]}
    assert {"email", "timezone", "roles", "scopes"} <= fields, fields
    assert (await api.get("/v1/people")).json()["items"] == []


async def test_only_an_admin_changes_roles_and_people_change_their_own_details(app, api):
    await add_person(api, "bob", roles=["marketer"])
    async with client(app, identity("bob", "marketer")) as bob:
        me = (await bob.get("/v1/people/bob")).json()
        fields = {k: v for k, v in me.items() if k not in ("id", "version", "created_at", "updated_at")}
        r = await bob.put("/v1/people/bob", json={**fields, "roles": ["admin"]})
        assert_problem(r, 403)
        r = await bob.put("/v1/people/bob", json={**fields, "chat_handle": "@bob"})
        assert r.status_code == 200 and r.json()["chat_handle"] == "@bob"
        assert_problem(await bob.get("/v1/people/dana"), 403)
        assert_problem(await bob.post("/v1/people", json={"id": "eve", "name": "Eve"}), 403)
    assert (await api.get("/v1/people/bob")).json()["roles"] == ["marketer"]


async def test_csv_import_creates_and_updates_all_or_nothing(app, api):
    await add_person(api, "ann", roles=["approver"])
    csv = (
        "id,name,email,roles,scopes,team,quiet_start,quiet_end\n"
        "ann,Ann Updated,ann@example.com,approver finance,region:EMEA,emea,20:00,07:00\n"
        "carl,Carl,carl@example.com,approver,region:APAC,apac,,\n"
    )
    r = await api.post("/v1/people/import", content=csv, headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 1, "updated": 1, "people": ["ann", "carl"]}
    ann = (await api.get("/v1/people/ann")).json()
    assert ann["name"] == "Ann Updated" and ann["roles"] == ["approver", "finance"]
    assert ann["quiet_hours"] == {"start": "20:00", "end": "07:00"}

    bad = "id,name,email,roles\nzed,Zed,zed@example.com,approver\nyan,Yan,not-mail,wizard\n"
    r = await api.post("/v1/people/import", content=bad, headers={"content-type": "text/csv"})
    body = assert_problem(r, 422)
    assert {e["field"] for e in body["errors"]} == {"body.line 3.email", "body.line 3.roles"}
    assert_problem(await api.get("/v1/people/zed"), 404)  # nothing written
    assert_problem(await api.post("/v1/people/import", content="a,b\n1,2\n", headers={"content-type": "text/csv"}), 422)
    assert_problem(await api.post("/v1/people/import", json={"x": 1}), 422, "header.Content-Type")


async def test_roles_resolve_to_the_people_whose_scopes_cover_the_task(app, api):
    await add_person(api, "emea", roles=["approver"], scopes=["region:EMEA"])
    await add_person(api, "apac", roles=["approver"], scopes=["region:APAC"])
    await add_person(api, "global", roles=["approver"])
    await add_person(api, "gone", roles=["approver"], active=False)
    await add_person(api, "fin", roles=["finance"])
    rt = app.state.runtime
    async with rt.unit_of_work(readonly=True) as uow:
        emea = [p.id for p in await people.holders(uow, ["approver"], {"region": "EMEA"})]
        anywhere = [p.id for p in await people.holders(uow, ["approver", "finance"])]
    assert emea == ["emea", "global"]
    assert anywhere == ["apac", "emea", "fin", "global"]
    assert [p["id"] for p in (await api.get("/v1/people", params={"role": "approver"})).json()["items"]] == [
        "apac",
        "emea",
        "global",
        "gone",
    ]
    assert domain(app).settings.port == 8005


async def test_preferences_are_the_persons_own(app, api):
    await add_person(api, "ann")
    prefs = {
        "items": [
            {"kind": "*", "channels": ["in_app"], "mode": "digest"},
            {"kind": "sla_breached", "channels": ["email"]},
        ]
    }
    async with client(app, identity("ann", "approver")) as ann:
        r = await ann.put("/v1/people/ann/preferences", json=prefs)
        assert r.status_code == 200, r.text
        assert [p["kind"] for p in r.json()["items"]] == ["*", "sla_breached"]
        assert_problem(await ann.put("/v1/people/dana/preferences", json=prefs), 403)
        r = await ann.put("/v1/people/ann/preferences", json={"items": [{"kind": "spam", "channels": ["fax"]}]})
        assert {e["field"] for e in assert_problem(r, 422)["errors"]} == {"items.0.kind", "items.0.channels.0"}
    stored = (await api.get("/v1/people/ann/preferences")).json()["items"]
    assert stored[0] == {"kind": "*", "channels": ["in_app"], "mode": "digest", "enabled": True}
