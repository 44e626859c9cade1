"""OIDC authorization code + PKCE against a fake provider over real HTTP; the token it yields is
accepted by a real gateway configured with the provider's JWKS."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import uvicorn

from gateway.settings import Settings as GatewaySettings
from pitcrew.launcher import free_port
from tests.console.fake_oidc import FakeProvider
from tests.gateway.conftest import running_gateway
from tests.gateway.network import _Server


@contextlib.asynccontextmanager
async def serve(app, port: int):
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture()
async def provider():
    fake = FakeProvider()
    port = free_port()
    fake.issuer = f"http://127.0.0.1:{port}"
    async with serve(fake.app, port):
        yield fake


def oidc_settings(provider: FakeProvider, **more: object) -> dict[str, object]:
    return {
        "oidc_issuer": provider.issuer,
        "oidc_client_id": provider.client_id,
        "oidc_redirect_url": "http://console.test/auth/callback",
        **more,
    }


async def sign_in_with_provider(client: httpx.AsyncClient, next_url: str = "/plans") -> httpx.Response:
    start = await client.get("/auth/login", params={"next": next_url})
    assert start.status_code == 303, start.text
    query = parse_qs(urlsplit(start.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    async with httpx.AsyncClient() as browser:  # the provider, over real HTTP
        answer = await browser.get(start.headers["location"])
    assert answer.status_code == 302
    back = urlsplit(answer.headers["location"])
    return await client.get(f"{back.path}?{back.query}")


async def test_sign_in_with_code_and_pkce_and_the_gateway_accepts_the_token(console, provider, new_db):
    gateway = GatewaySettings(
        database_url=await new_db("gateway"),
        jwks_url=f"{provider.issuer}/jwks",
        oidc_issuer=provider.issuer,
        oidc_audience="pitcrew",
    )
    port = free_port()
    async with running_gateway(gateway, run_forwarder=False) as gw:
        async with serve(gw.app, port) as gateway_url, console(**oidc_settings(provider), gateway_url=gateway_url) as c:
            page = await c.get("/signin")
            assert "/auth/login" in page.text
            done = await sign_in_with_provider(c)
            assert done.status_code == 303 and done.headers["location"] == "/plans"
            sent = provider.token_requests[-1]
            assert sent["grant_type"] == "authorization_code" and len(sent["code_verifier"]) >= 43
            # Signed in as the provider's user; the gateway verified the access token (JWKS, issuer, audience)
            # and answered: the console reached the gateway's own API with it.
            # (No workflow service runs here: the gateway accepted the token, then found the service down;
            # a refused token would have been a 401 and a redirect to the sign-in page.)
            inbox = await c.get("/approvals")
            assert inbox.status_code == 503 and "workflow" in inbox.text, inbox.text[-1500:]
            assert "Ada" in inbox.text and "(finance; region:EMEA)" in inbox.text
            assert "Times in Asia/Tokyo." in inbox.text  # the provider's zoneinfo claim


async def test_a_callback_with_a_foreign_state_is_refused(console, provider):
    async with console(**oidc_settings(provider)) as c:
        await c.get("/auth/login")
        r = await c.get("/auth/callback", params={"code": "x", "state": "not-the-one"})
        assert r.status_code == 403 and "does not belong to a sign-in started here" in r.text
        assert (await c.get("/plans")).status_code == 303  # still signed out


async def test_an_id_token_with_another_nonce_is_refused(console, provider):
    provider.nonce_override = "replayed-nonce"
    async with console(**oidc_settings(provider)) as c:
        r = await sign_in_with_provider(c)
        assert r.status_code == 403 and "nonce mismatch" in r.text
        assert (await c.get("/plans")).status_code == 303


async def test_an_id_token_signed_by_another_key_is_refused(console, provider):
    from cryptography.hazmat.primitives.asymmetric import rsa

    original = provider.sign
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    provider.sign = lambda claims, key=None: original(claims, other)  # type: ignore[method-assign]
    async with console(**oidc_settings(provider)) as c:
        r = await sign_in_with_provider(c)
        assert r.status_code == 403 and "could not be verified" in r.text


async def test_without_a_provider_single_sign_on_is_not_offered(console):
    async with console() as c:
        assert "/auth/login" not in (await c.get("/signin")).text
        assert (await c.get("/auth/login")).status_code == 404
