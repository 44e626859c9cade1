"""The chaos suite's cluster: the real processes on PostgreSQL (one throwaway database per app) and a NATS
of their own, so a test may SIGKILL any of them, terminate database connections, or take a service
away for minutes, and then check that every effect happened exactly once and nothing is half-written.

Run by `make test-chaos` (PostgreSQL at PITCREW_TEST_POSTGRES_URL); not part of `make test`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest

from pitcrew.launcher import free_port, start_stack
from pitcrew.topology import APPS, PROCESSES
from tests.conftest import POSTGRES_URL, NatsServer
from tests.e2e.conftest import WEBHOOK_SECRETS, Cluster

pytestmark = [pytest.mark.chaos, pytest.mark.postgres_only]


async def _admin(sql: list[str]) -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


def terminate_connections(database: str) -> int:
    """pg_terminate_backend on every connection to `database`: each in-flight transaction dies mid-way."""

    async def go() -> int:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            rows = await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
            return sum(1 for r in rows if r[0])
        finally:
            await conn.close()

    return asyncio.run(go())


@dataclass
class ChaosCluster(Cluster):
    databases: dict[str, str] = field(default_factory=dict)

    def kill_nats(self) -> None:
        """SIGKILL the NATS server, as a crash of its host would."""
        proc = self.nats.proc
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.nats.proc = None


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaosCluster]:
    run = uuid.uuid4().hex[:8]
    names = {app: f"pitcrew_t_chaos_{app}_{run}" for app in APPS}
    asyncio.run(_admin([f'CREATE DATABASE "{n}"' for n in names.values()]))
    nats = NatsServer(tmp_path_factory.mktemp("nats"))
    nats.start()
    var = tmp_path_factory.mktemp("chaos")
    base = POSTGRES_URL.rpartition("/")[0]
    env = dict(os.environ)
    env.update({f"PITCREW_{app.upper()}_PORT": str(free_port()) for app in PROCESSES})
    env.update({f"PITCREW_{app.upper()}_DATABASE_URL": f"{base}/{n}" for app, n in names.items()})
    env["PITCREW_GATEWAY_WEBHOOK_SECRETS"] = json.dumps(WEBHOOK_SECRETS)
    env.update(
        {"PITCREW_GATEWAY_RATE_LIMIT_READ": "1000000/minute", "PITCREW_GATEWAY_RATE_LIMIT_WRITE": "1000000/minute"}
    )
    env["PITCREW_VAR_DIR"] = str(var)
    stack, urls, _ = start_stack(var_dir=var, env=env, nats_url=nats.url, echo=lambda *_: None, ready_timeout=180)
    try:
        yield ChaosCluster(stack, urls, nats, databases=names)
    finally:
        stack.stop()
        nats.stop()
        asyncio.run(_admin([f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in names.values()]))


def persist(
    call: Callable[[], httpx.Response], *, ok: tuple[int, ...] = (200, 201, 202), seconds: float = 240
) -> httpx.Response:
    """Send until the system answers `ok`, as a client with an Idempotency-Key does: transport errors and
    5xx answers (a service or its database gone for a moment) are retried with the same request."""
    import time

    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            r = call()
        except httpx.HTTPError as exc:
            last = exc
        else:
            if r.status_code in ok:
                return r
            if r.status_code < 500 and r.status_code != 429:
                raise AssertionError(f"refused: {r.status_code} {r.text}")
            last = r
        time.sleep(0.2)
    raise AssertionError(f"no answer in {ok} within {seconds}s; last: {last!r}")


def in_parallel(n: int, job: Callable[[int], Any], workers: int = 4) -> list[Any]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(job, range(n)))
