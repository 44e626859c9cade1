"""The gateway serves the console at `/` (one origin for the browser); API paths never reach the console."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

from console.main import create_app as create_console
from gateway.settings import Settings as GatewaySettings
from pitcrew.launcher import free_port
from tests.console.conftest import console_settings, csrf_of
from tests.gateway.conftest import running_gateway
from tests.gateway.network import _Server


@contextlib.asynccontextmanager
async def console_on_a_port():
    port = free_port()
    server = _Server(
        uvicorn.Config(create_console(console_settings()), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def test_pages_go_to_the_console_and_the_api_stays_the_api(new_db):
    async with console_on_a_port() as url:
        settings = GatewaySettings(database_url=await new_db("gateway"), console_url=url)
        async with running_gateway(settings, run_forwarder=False) as gw:
            page = await gw.get("/signin")
            assert page.status_code == 200 and "Development sign-in" in page.text
            assert page.headers["content-type"].startswith("text/html")
            css = await gw.get("/static/console.css")
            assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
            # A form posted through the gateway, with the cookie the console set through the gateway.
            r = await gw.post(
                "/signin/dev",
                data={"csrf": csrf_of(page.text), "user": "maria", "role": "marketer", "tz": "UTC", "next": "/x"},
            )
            assert r.status_code == 303 and r.headers["location"] == "/x"
            assert "pitcrew_console=" in r.headers["set-cookie"]
            # The API: the gateway's own answers, never the console's.
            health = await gw.get("/health")
            assert health.headers["content-type"].startswith("application/json")
            missing = await gw.get("/gateway/v1/nothing-here")
            assert missing.headers["content-type"].startswith("application/problem+json")
            assert (await gw.get("/budget/v1/plans")).status_code == 401  # the proxy, unauthenticated


async def test_a_console_that_is_down_is_a_plain_503_and_the_api_still_answers(new_db):
    settings = GatewaySettings(database_url=await new_db("gateway"), console_url=f"http://127.0.0.1:{free_port()}")
    async with running_gateway(settings, run_forwarder=False) as gw:
        r = await gw.get("/plans")
        assert r.status_code == 503 and "The Pitcrew console is unavailable" in r.text
        assert (await gw.get("/health")).status_code in (200, 503)
        assert (await gw.get("/openapi.json")).status_code == 200


async def test_without_a_console_url_unknown_paths_stay_404_problems(new_db):
    async with running_gateway(GatewaySettings(database_url=await new_db("gateway")), run_forwarder=False) as gw:
        r = await gw.get("/plans")
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
