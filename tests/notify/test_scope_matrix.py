"""Who may call what on notify: the directory (admin writes, mops reads), one's own entry and
preferences, one's own inbox, partner subscriptions (partner and admin, each their own)."""

from __future__ import annotations

import pytest

from tests.harness import identity
from tests.notify.conftest import add_person, client

pytestmark = pytest.mark.db

ROLES = ("admin", "mops", "finance", "approver", "marketer", "analyst", "partner")
# (method, path, body) -> the roles that may; everyone else gets a 403.
MATRIX = [
    ("GET", "/v1/people", None, {"admin", "mops"}),
    ("POST", "/v1/people", {"id": "new", "name": "New"}, {"admin"}),
    ("GET", "/v1/people/ann", None, {"admin", "mops"}),
    ("GET", "/v1/people/ann/preferences", None, {"admin", "mops"}),
    ("PUT", "/v1/people/ann/preferences", {"items": []}, {"admin"}),
    ("PUT", "/v1/teams/emea", {}, {"admin"}),
    ("GET", "/v1/subscriptions", None, {"admin", "partner"}),
    ("POST", "/v1/subscriptions", {"url": "http://127.0.0.1:9/x", "event_types": ["kpi.>"]}, {"admin", "partner"}),
    ("GET", "/v1/inbox", None, set(ROLES)),
]


@pytest.mark.parametrize(("method", "path", "body", "allowed"), MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
async def test_roles(app, api, method, path, body, allowed):
    await add_person(api, "ann")
    for role in ROLES:
        async with client(app, identity(f"someone-{role}", role)) as c:
            r = await c.request(method, path, json=body)
            if role in allowed:
                assert r.status_code < 400, (role, r.status_code, r.text)
            else:
                assert r.status_code == 403, (role, r.status_code, r.text)


async def test_a_person_reads_and_sets_their_own_entry_and_preferences(app, api):
    await add_person(api, "ann")
    async with client(app, identity("ann", "analyst")) as ann:
        assert (await ann.get("/v1/people/ann")).status_code == 200
        assert (await ann.put("/v1/people/ann/preferences", json={"items": []})).status_code == 200
        assert (await ann.get("/v1/people/ann/preferences")).status_code == 200
    async with client(app, identity("no-entry", "approver")) as nobody:
        assert (await nobody.get("/v1/people/no-entry")).status_code == 404
        assert (await nobody.get("/v1/inbox")).json()["items"] == []
