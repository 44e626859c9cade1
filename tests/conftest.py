"""Fixtures every test suite shares: a real NATS server and throwaway databases.

`make test` runs on SQLite; `make test-postgres` sets PITCREW_TEST_BACKEND=postgres
and every `db` test then runs against fresh databases on PITCREW_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from pitcrew.launcher import free_port, start_nats, wait_for_port

BACKEND = os.environ.get("PITCREW_TEST_BACKEND", "sqlite")
POSTGRES_URL = os.environ.get("PITCREW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

os.environ.setdefault("PITCREW_LOG_LEVEL", "WARNING")


class NatsServer:
    """A real nats-server with JetStream on a free port; can be stopped and started again."""

    def __init__(self, store: Path):
        self.store = store
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = start_nats(self.port, self.store)
        wait_for_port("127.0.0.1", self.port)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    store = Path(tempfile.mkdtemp(prefix="pitcrew-nats-"))
    server = NatsServer(store)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(store, ignore_errors=True)


@pytest.fixture()
def nats_url(nats_server: NatsServer) -> str:
    if nats_server.proc is None:
        nats_server.start()
    return nats_server.url


class Databases:
    """Creates throwaway databases for the configured backend and drops them afterwards."""

    def __init__(self, backend: str, tmp: Path):
        self.backend = backend
        self.tmp = tmp
        self.created: list[str] = []

    async def new(self, label: str = "db") -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.tmp}/{label}-{uuid.uuid4().hex[:8]}.db"
        name = f"pitcrew_t_{label}_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.created.append(name)
        base, _, _ = POSTGRES_URL.rpartition("/")
        return f"{base}/{name}"

    async def drop_all(self) -> None:
        if not self.created:
            return
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            for name in self.created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(scope="session")
async def databases(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Databases]:
    dbs = Databases(BACKEND, tmp_path_factory.mktemp("db"))
    yield dbs
    await dbs.drop_all()


@pytest.fixture()
async def new_db(databases: Databases) -> Callable[[str], object]:
    return databases.new


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if BACKEND != "postgres":
        # PostgreSQL-only tests belong to `make test-postgres`: left out here, not reported as skipped.
        keep = [i for i in items if not i.get_closest_marker("postgres_only")]
    else:
        # On PostgreSQL only the database-facing tests run (not those about SQLite's own settings).
        keep = [
            i
            for i in items
            if (i.get_closest_marker("db") or i.get_closest_marker("postgres_only"))
            and not i.get_closest_marker("sqlite_only")
        ]
    deselected = [i for i in items if i not in keep]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = keep


async def eventually(check: Callable[[], object], timeout: float = 10.0, interval: float = 0.05) -> object:
    """Poll an (async or sync) check until it returns truthy; the last value otherwise fails the test."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        await asyncio.sleep(interval)
