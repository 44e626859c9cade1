"""The menu shows what a person's roles may use; the admin pages refuse everyone but administrators."""

from __future__ import annotations

import re

import pytest

from tests.console.conftest import csrf_of, sign_in

NAV = re.compile(r'<nav aria-label="Main">(.*?)</nav>', re.S)


def menu(html: str) -> list[str]:
    found = NAV.search(html)
    assert found, "no main menu on the page"
    return re.findall(r">([A-Za-z]+)</a>", found.group(1))


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        (("marketer",), ["Budget", "Approvals", "KPIs", "Stack"]),
        (("analyst",), ["Budget", "Approvals", "KPIs", "Stack"]),
        (("partner",), ["Budget", "KPIs", "Stack"]),
        (("finance", "approver"), ["Budget", "Approvals", "KPIs", "Stack"]),
    ],
)
async def test_a_non_admin_sees_no_admin_entry_and_admin_answers_403(console, roles, expected):
    # The gateway address is dead: a 403 here comes from the console before any API call (else a 503 page).
    async with console() as client:
        await sign_in(client, user="someone", roles=roles)
        r = await client.get("/admin")
        assert r.status_code == 403, r.text
        assert "for administrators" in r.text and ", ".join(sorted(roles)) in r.text
        assert menu(r.text) == expected
        r = await client.post("/admin/api-keys", data={"csrf": csrf_of(r.text), "name": "sneaky", "role": "admin"})
        assert r.status_code == 403 and "for administrators" in r.text


async def test_an_admin_sees_every_entry(console):
    async with console() as client:
        await sign_in(client, user="root", roles=("admin",))
        r = await client.get("/admin")  # the dead gateway: each section says it is unavailable
        assert r.status_code == 200 and "unavailable" in r.text
        assert menu(r.text) == ["Budget", "Approvals", "KPIs", "Stack", "Admin"]
