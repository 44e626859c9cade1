"""Gateway fixtures: fake upstream services in-process, a gateway in front of them, tokens."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from gateway.devtokens import mint_dev_token
from gateway.main import create_app
from gateway.settings import SERVICE_NAMES, Settings
from shared.migrations import upgrade_async
from tests.gateway.upstream import make_upstream

WEBHOOK_SECRETS = {"erp": "erp-secret-0123456789abcdef", "crm": "crm-secret-0123456789abcdef"}


class HostRouter(httpx.AsyncBaseTransport):
    """Sends each request to the in-process app for its host; a host marked down refuses connections."""

    def __init__(self, apps: dict[str, object]):
        self.transports = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}
        self.down: set[str] = set()
        self.hits: dict[str, int] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host in self.down or host not in self.transports:
            raise httpx.ConnectError(f"connection refused: {host}", request=request)
        self.hits[host] = self.hits.get(host, 0) + 1
        return await self.transports[host].handle_async_request(request)


@pytest.fixture(scope="session")
async def upstreams(databases) -> AsyncIterator[dict[str, object]]:
    """One fake app per service (plus a second budget replica), started once."""
    apps = {f"{name}.test": make_upstream(name, await databases.new(f"fake{name}")) for name in SERVICE_NAMES}
    apps["budget2.test"] = make_upstream("budget", await databases.new("fakebudget2"))
    async with contextlib.AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
        yield apps


@pytest.fixture()
def clear_upstreams(upstreams):
    for app in upstreams.values():
        app.state.received.clear()
        app.state.control.update(fail_next=0, fail_status=503)
    return upstreams


def gateway_settings(database_url: str, **overrides) -> Settings:
    values = dict(
        database_url=database_url,
        budget_url="http://budget.test", workflow_url="http://workflow.test", kpi_url="http://kpi.test",
        registry_url="http://registry.test", webhook_secrets=WEBHOOK_SECRETS,
        rate_limit_read="100000/minute", rate_limit_write="100000/minute", rate_limit_webhook="100000/minute",
        webhook_poll_seconds=0.05, webhook_retry_base_seconds=0.05, webhook_retry_max_seconds=0.2,
        upstream_timeout_seconds=5.0,
    )
    values.update(overrides)
    return Settings(**values)


_template: dict[str, Path] = {}


async def migrate(url: str) -> None:
    """Run the gateway's real migrations; on SQLite once, then copy the migrated file (fast tests)."""
    if not url.startswith("sqlite:///"):
        await upgrade_async("gateway", url)
        return
    if "path" not in _template:
        template = Path(tempfile.mkdtemp(prefix="pitcrew-gw-")) / "template.db"
        await upgrade_async("gateway", f"sqlite:///{template}")
        _template["path"] = template
    target = Path(url[len("sqlite:///"):])
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template["path"], target)


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings, router: HostRouter, *, run_forwarder: bool = True):
    await migrate(settings.database_url)
    app = create_app(settings, upstream_transport=router, run_forwarder=run_forwarder)
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                   base_url="http://gateway.test")
        async with client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture()
def host_router(upstreams, clear_upstreams) -> HostRouter:
    return HostRouter(upstreams)


@pytest.fixture()
async def gw(new_db, host_router) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway (fresh database, migrated) in front of the fake services."""
    async with running_gateway(gateway_settings(await new_db("gateway")), host_router) as client:
        yield client


@pytest.fixture()
def token() -> Callable[..., str]:
    settings = Settings()

    def make(*roles: str, sub: str = "dana", scopes: tuple[str, ...] = (), ttl: int = 600) -> str:
        return mint_dev_token(settings, sub, roles, scopes, ttl)

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return body
