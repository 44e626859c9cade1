"""Sign-in, session cookie, CSRF and the error pages of the console (no browser: routing and forms)."""

from __future__ import annotations

import httpx

from console.web import SignInNeeded  # noqa: F401 - the console's own exception, imported to prove the module loads
from tests.console.conftest import csrf_of, sign_in


async def test_a_visitor_is_sent_to_sign_in_and_comes_back_where_they_were_going(console):
    async with console() as client:
        r = await client.get("/plans/abc?start=2026-01")
        assert r.status_code == 303
        assert r.headers["location"] == "/signin?next=%2Fplans%2Fabc%3Fstart%3D2026-01"
        form = await client.get(r.headers["location"])
        assert form.status_code == 200 and 'value="/plans/abc?start=2026-01"' in form.text
        r = await sign_in(client, next="/plans/abc?start=2026-01")
        assert r.status_code == 303 and r.headers["location"] == "/plans/abc?start=2026-01"


async def test_the_session_cookie_is_signed_httponly_and_samesite(console):
    async with console() as client:
        r = await sign_in(client)
        cookie = r.headers["set-cookie"].lower()
        assert cookie.startswith("pitcrew_console=") and "httponly" in cookie and "samesite=lax" in cookie
        # A cookie edited by hand (here: made admin) is not signed by the console: no session at all.
        name, value = r.headers["set-cookie"].split(";", 1)[0].split("=", 1)
        payload, _, sig = value.partition(".")
        client.cookies.clear()
        client.cookies.set(name, payload.replace("a", "b") + "." + sig)
        assert (await client.get("/plans")).status_code == 303


async def test_a_form_without_the_session_csrf_token_is_refused_and_changes_nothing(console):
    async with console() as client:
        await sign_in(client)
        page = await client.get("/signin")
        token = csrf_of(page.text)
        # Forged: no token, a wrong token, or the token of another session.
        for data in ({}, {"csrf": "forged"}, {"csrf": token[:-2] + "xx"}):
            r = await client.post("/lines/some-line/commit", data={**data, "period": "2026-01", "amount": "10"})
            assert r.status_code == 403, r.text
            assert "did not come from your current console session" in r.text and "Nothing was changed" in r.text
        r = await client.post("/signout", data={})
        assert r.status_code == 403
        other = httpx.AsyncClient(transport=client._transport, base_url="http://console.test")
        await sign_in(other, user="mallory")
        r = await other.post("/signout", data={"csrf": token})  # maria's token in mallory's session
        assert r.status_code == 403
        await other.aclose()
        # The right token signs out.
        r = await client.post("/signout", data={"csrf": token})
        assert r.status_code == 303 and r.headers["location"] == "/signin"
        assert (await client.get("/plans")).status_code == 303


async def test_the_development_sign_in_is_refused_in_production(console):
    async with console(environment="production", session_secret="s" * 40, identity_secret="i" * 40) as client:
        page = await client.get("/signin")
        assert page.status_code == 200 and "/signin/dev" not in page.text
        r = await sign_in(client)
        assert r.status_code == 403 and "switched off in production" in r.text


async def test_bad_sign_in_fields_are_named_and_nothing_is_signed_in(console):
    async with console() as client:
        r = await sign_in(client, user="no spaces allowed", roles=("emperor",), scopes="region EMEA!")
        assert r.status_code == 303
        page = await client.get(r.headers["location"])
        assert "User:" in page.text and "Role:" in page.text and "Scopes:" in page.text
        assert (await client.get("/plans")).status_code == 303


async def test_sign_in_never_redirects_to_another_site(console):
    async with console() as client:
        for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
            r = await sign_in(client, next=target)
            assert r.headers["location"] == "/", target


async def test_an_unavailable_part_is_named_in_plain_words_without_a_stack_trace(console):
    async with console() as client:  # the gateway address refuses connections
        await sign_in(client)
        r = await client.get("/plans")
        assert r.status_code == 503
        assert "The budget part of Pitcrew cannot be reached right now" in r.text
        assert "Traceback" not in r.text and "httpx" not in r.text
        assert r.headers["content-security-policy"].startswith("default-src 'self'")


async def test_an_unknown_page_is_a_plain_404(console):
    async with console() as client:
        r = await client.get("/no/such/page")
        assert r.status_code == 404 and "There is no page at this address." in r.text


async def test_an_uploaded_csv_reaches_the_api_and_its_refusal_is_shown(console):
    async with console() as client:  # the gateway is unreachable: the import is refused, in plain words
        await sign_in(client, roles=("mops",))
        token = csrf_of((await client.get("/signin")).text)
        r = await client.post(
            "/plans/p1/import", data={"csrf": token}, files={"file": ("lines.csv", b"code\nX\n", "text/csv")}
        )
        assert r.status_code == 303 and r.headers["location"] == "/plans/p1"
        page = await client.get("/signin")  # any page shows the flash
        assert "Nothing was imported from lines.csv" in page.text and "budget" in page.text
        r = await client.post("/plans/p1/import", data={"csrf": token})
        assert "Choose a CSV file to import." in (await client.get("/signin")).text
