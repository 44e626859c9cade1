"""Workflow domain benchmark: starting instances through the API, reading them, and firing their real
SLA timers (warning, then breach with its escalation), on the service's migrated schema.

The app runs in process (httpx over ASGI, no network, NATS off: events stay in the outbox); its own
timer loop is stopped so the benchmark fires the timers itself, with the service's scheduler and
handlers. Baselines from the same run: an authenticated `GET /v1/calendars/{key}` (the request stack
with one primary-key read) for the API figures, and the same scheduler draining as many timers
with a no-op handler for the firing rate.

    .venv/bin/python bench/workflow_sla.py             # 2,000 instances (4,000 timers), SQLite and PostgreSQL
    .venv/bin/python bench/workflow_sla.py --quick     # 500 instances
    .venv/bin/python bench/workflow_sla.py --backend sqlite

Runs against whatever `services/` the working directory holds, so two commits compare by running
the same script in each checkout alternately.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, os.getcwd())
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
from sqlalchemy import func, insert, select, update  # noqa: E402

from pitcrew.migrations import upgrade_async  # noqa: E402
from services.workflow.main import create_app  # noqa: E402
from services.workflow.models import infra  # noqa: E402
from services.workflow.scheduler import BatchedTimerScheduler  # noqa: E402
from services.workflow.settings import Settings  # noqa: E402
from shared.db import utcnow  # noqa: E402
from shared.identity import HEADER, Principal, mint  # noqa: E402
from shared.settings import DEV_IDENTITY_SECRET  # noqa: E402

POSTGRES_URL = os.environ.get("PITCREW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ALWAYS = {d: ["00:00", "24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
ADA = Principal(subject="ada", roles=frozenset({"admin"}))
MIA = Principal(subject="mia", roles=frozenset({"marketer"}))


def signed(who: Principal) -> dict[str, str]:
    """The identity header (it lives a minute, as the gateway's do: minted per request)."""
    return {HEADER: mint(who, DEV_IDENTITY_SECRET)}


T = infra.timers


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def timed(n: int, call) -> tuple[list[float], list[float]]:  # noqa: ANN001 - an async callable of the index
    """Wall and CPU milliseconds of each call. The app runs in this process (SQLite too, in its
    thread), so the process's CPU time is the steadier figure on a machine shared with other work."""
    wall, cpu = [], []
    for i in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        await call(i)
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return wall, cpu


async def setup(c: httpx.AsyncClient) -> None:
    r = await c.post("/v1/calendars", headers=signed(ADA), json={"key": "always", "timezone": "UTC", "hours": ALWAYS})
    assert r.status_code == 201, r.text
    stage = {
        "name": "Review",
        "assignees": {"roles": ["approver"], "scope_from_context": ["region"]},
        "sla": {"business_hours": "1", "calendar": "always", "warn_at": "0.5"},
        "escalation": {"reassign_to_role": "mops", "notify": ["admin"]},
    }
    body = {"key": "bench", "name": "Bench", "calendar": "always", "stages": [stage]}
    r = await c.post("/v1/definitions", headers=signed(ADA), json=body)
    assert r.status_code == 201, r.text


async def fire_all(runtime, expected: int) -> float:  # noqa: ANN001
    """Make every pending SLA timer due (warnings before breaches) and fire them; returns timers/s."""
    now = utcnow()
    async with runtime.transaction() as s:
        await s.execute(update(T).where(T.c.kind.like("%warning")).values(due_at=now - dt.timedelta(seconds=2)))
        await s.execute(update(T).where(T.c.kind.like("%breach")).values(due_at=now - dt.timedelta(seconds=1)))
    t0, c0 = time.perf_counter(), time.process_time()
    fired = 0
    while n := await runtime.scheduler.fire_due():
        fired += n
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert fired == expected, (fired, expected)
    return fired / elapsed, cpu * 1000 / fired


async def noop_drain(runtime, n: int) -> float:  # noqa: ANN001
    async def noop(s, row) -> None:  # noqa: ANN001
        return None

    created, due = utcnow(), utcnow() - dt.timedelta(seconds=60)
    rows = [
        {"id": str(uuid.uuid4()), "kind": "noop", "subject_id": f"s{i}", "payload": {}, "status": "pending"}
        for i in range(n)
    ]
    for row in rows:
        row.update(due_at=due, created_at=created)
    async with runtime.transaction() as s:
        await s.execute(insert(T), rows)
    sch = BatchedTimerScheduler("bench", runtime.db, T, {"noop": noop})
    t0, c0 = time.perf_counter(), time.process_time()
    fired = 0
    while k := await sch.fire_due():
        fired += k
    assert fired == n
    return n / (time.perf_counter() - t0), (time.process_time() - c0) * 1000 / n


async def bench_app(url: str, n: int) -> dict[str, float]:
    await upgrade_async("workflow", url)
    settings = Settings(
        database_url=url, nats_url="nats://127.0.0.1:1", nats_enabled=False, log_json=False, log_level="WARNING"
    )
    app = create_app(settings)
    out: dict[str, float] = {}
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        await runtime.scheduler.stop()  # the benchmark fires the timers itself
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as c:
            await setup(c)
            base, base_cpu = await timed(n, lambda i: c.get("/v1/calendars/always", headers=signed(ADA)))
            ids: list[str] = []

            async def start(i: int) -> None:
                body = {
                    "definition_key": "bench",
                    "subject": {"type": "commitment", "id": f"c{i}", "service": "budget"},
                    "context": {"amount": "25000.00", "region": "EMEA"},
                }
                r = await c.post("/v1/instances", headers=signed(MIA), json=body)
                assert r.status_code == 201, r.text
                ids.append(r.json()["id"])

            starts, starts_cpu = await timed(n, start)
            views, views_cpu = await timed(n, lambda i: c.get(f"/v1/instances/{ids[i]}", headers=signed(MIA)))
        out["fire"], out["fire_cpu"] = await fire_all(runtime, 2 * n)
        async with runtime.transaction(readonly=True) as s:
            breached = await s.scalar(
                select(func.count()).select_from(infra.outbox).where(infra.outbox.c.subject == "workflow.sla.breached")
            )
        assert breached == n, breached
        out["noop"], out["noop_cpu"] = await noop_drain(runtime, 2 * n)
    out |= {
        "base_p50": statistics.median(base),
        "base_cpu": statistics.median(base_cpu),
        "start_cpu": statistics.median(starts_cpu),
        "view_cpu": statistics.median(views_cpu),
        "start_p50": statistics.median(starts),
        "start_p95": pct(starts, 95),
        "view_p50": statistics.median(views),
        "view_p95": pct(views, 95),
    }
    return out


async def bench_backend(backend: str, n: int) -> None:
    tmp = pg_name = None
    if backend == "sqlite":
        tmp = tempfile.mkdtemp(prefix="pitcrew-bench-")
        url = f"sqlite:///{tmp}/workflow.db"
    else:
        pg_name = f"pitcrew_bench_sla_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(POSTGRES_URL)
        await conn.execute(f'CREATE DATABASE "{pg_name}"')
        await conn.close()
        url = POSTGRES_URL.rpartition("/")[0] + f"/{pg_name}"
    try:
        r = await bench_app(url, n)
        print(f"\n{backend}: {n:,} instances, {2 * n:,} SLA timers")
        print("  (wall p50 / p95 ms; CPU: median ms of this process per request, per timer)")
        print(
            f"  baseline  GET /v1/calendars/always          wall {r['base_p50']:7.2f}"
            f"           CPU {r['base_cpu']:6.2f}"
        )
        for key, what in (("start", "POST /v1/instances      "), ("view", "GET /v1/instances/{id}  ")):
            print(
                f"  {key:<9} {what}         wall {r[key + '_p50']:7.2f} / {r[key + '_p95']:7.2f}"
                f" CPU {r[key + '_cpu']:6.2f} ({r[key + '_cpu'] / r['base_cpu']:.1f}x baseline)"
            )
        print(
            f"  fire      warning + breach, real handlers  {r['fire']:7,.0f} timers/s, CPU {r['fire_cpu']:.2f} ms/timer"
            f"  (no-op handler {r['noop']:,.0f}/s, CPU {r['noop_cpu']:.3f} ms/timer)"
        )
    finally:
        if pg_name:
            conn = await asyncpg.connect(POSTGRES_URL)
            await conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            await conn.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="500 instances instead of 2,000")
    ap.add_argument("--instances", type=int, default=None)
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = ap.parse_args()
    n = args.instances or (500 if args.quick else 2000)
    for backend in ["sqlite", "postgres"] if args.backend == "both" else [args.backend]:
        asyncio.run(bench_backend(backend, n))


if __name__ == "__main__":
    main()
