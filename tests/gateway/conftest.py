"""Gateway fixtures: fake services on real local ports, a gateway in front of them, tokens."""

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
from pitcrew.migrations import upgrade_async
from tests.gateway.network import Network, ServiceHost
from tests.gateway.upstream import make_upstream
from tests.harness import assert_problem  # noqa: F401 - the one problem assertion, re-exported for the tests here

WEBHOOK_SECRETS = {"erp": "erp-secret-0123456789abcdef", "crm": "crm-secret-0123456789abcdef"}


@pytest.fixture(scope="session")
async def upstreams(databases) -> AsyncIterator[dict[str, object]]:
    """One fake app per service (plus a second budget replica), started once."""
    apps = {f"{name}.test": make_upstream(name, await databases.new(f"fake{name}")) for name in SERVICE_NAMES}
    apps["budget2.test"] = make_upstream("budget", await databases.new("fakebudget2"))
    async with contextlib.AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
        yield apps


@pytest.fixture(scope="session")
async def network(upstreams) -> AsyncIterator[Network]:
    """Each fake app served by uvicorn on a real local port, behind its front door (tests/gateway/network.py)."""
    hits: dict[str, int] = {}
    hosts = {host: ServiceHost(host, app, hits) for host, app in upstreams.items()}
    started = []
    try:
        for host in hosts.values():
            await host.start()
            started.append(host)
        _urls.update({host: h.url for host, h in hosts.items()})
        yield Network(hosts, hits)
    finally:
        _urls.clear()
        for host in reversed(started):
            await host.stop()


@pytest.fixture()
def clear_upstreams(upstreams):
    for app in upstreams.values():
        app.state.received.clear()
        app.state.control.update(fail_next=0, fail_status=503, answer=None)
    return upstreams


@pytest.fixture()
async def net(network, clear_upstreams) -> Network:
    """The network with every service up, counters at zero."""
    await network.reset()
    return network


_urls: dict[str, str] = {}


def service_url(host: str) -> str:
    """The base URL the gateway uses for a fake service (its front door's real port)."""
    return _urls[host]


def gateway_settings(database_url: str, **overrides) -> Settings:
    values = dict(
        database_url=database_url,
        budget_url=service_url("budget.test"),
        workflow_url=service_url("workflow.test"),
        kpi_url=service_url("kpi.test"),
        registry_url=service_url("registry.test"),
        notify_url=service_url("notify.test"),
        webhook_secrets=WEBHOOK_SECRETS,
        rate_limit_read="100000/minute",
        rate_limit_write="100000/minute",
        rate_limit_webhook="100000/minute",
        webhook_poll_seconds=0.05,
        webhook_retry_base_seconds=0.05,
        webhook_retry_max_seconds=0.2,
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
    target = Path(url[len("sqlite:///") :])
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template["path"], target)


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings, *, run_forwarder: bool = True):
    """The gateway app in this process, reaching the services over real TCP; the test talks to it over ASGI."""
    await migrate(settings.database_url)
    app = create_app(settings, run_forwarder=run_forwarder)
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://gateway.test"
        )
        async with client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture()
async def gw(new_db, net) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway (fresh database, migrated) in front of the fake services."""
    async with running_gateway(gateway_settings(await new_db("gateway"))) as client:
        yield client


@pytest.fixture()
def token() -> Callable[..., str]:
    settings = Settings()

    def make(*roles: str, sub: str = "dana", scopes: tuple[str, ...] = (), ttl: int = 600) -> str:
        return mint_dev_token(settings, sub, roles, scopes, ttl)

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
