"""The console in this process over ASGI; the gateway it calls is a real one where a test needs it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from console.main import create_app
from console.settings import Settings
from pitcrew.launcher import free_port

CSRF = re.compile(r'name="csrf" value="([^"]+)"|"X-CSRF-Token": "([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page carries no CSRF field"
    return found.group(1) or found.group(2)


def console_settings(**overrides: object) -> Settings:
    # A gateway address nothing listens on, unless a test gives a real one.
    values: dict[str, object] = {"gateway_url": f"http://127.0.0.1:{free_port()}", "environment": "test"}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture()
def console() -> Callable[..., object]:
    """`async with console(**settings) as client`: a console app and a client keeping its cookies."""
    import contextlib

    @contextlib.asynccontextmanager
    async def start(**overrides: object) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(console_settings(**overrides))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as client:
                yield client

    return start


async def sign_in(client: httpx.AsyncClient, user: str = "maria", roles: tuple[str, ...] = ("marketer",), **extra: str):
    form = await client.get("/signin")
    data = {"csrf": csrf_of(form.text), "user": user, "role": list(roles), "tz": "Europe/Berlin", **extra}
    return await client.post("/signin/dev", data=data)
