"""Budget ledger benchmark: postings/s (domain layer and HTTP API, 8 clients) and plan-summary latency.

    .venv/bin/python bench/budget_ledger.py            # full: 10 s runs, 1,000 lines x 1,000,000 entries
    .venv/bin/python bench/budget_ledger.py --quick    # 3 s runs, 100,000 entries

Runs on SQLite (a temporary file) and on PostgreSQL (a throwaway database created and
dropped at PITCREW_TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/postgres).
Every posting is a commitment through the real code path: the line and plan, the entry, the
commitment row and the outbox event, the balance rows of the line and its ancestors locked and
updated, the invariant checked, commit. HTTP postings are POSTed to the service directly (with a
minted identity) and through the gateway (Bearer JWT: authentication, policy, rate limiter on).
Baselines measured in the same run: raw single-row INSERT transactions from 8 connections on
the same database and, with PGLEDGER_SQL_DIR pointing at a directory holding pgledger's SQL
(pgledger.sql plus its ULID helper), pgledger_create_transfer from 8 connections on a throwaway
database. All the rates of a backend are measured in alternating windows (--rounds, 5 by
default), so each spans the same stretch of the machine's drifting speed; the ratios to
pgledger are printed with their range over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _loadgen as loadgen  # noqa: E402
from gateway.devtokens import mint_dev_token  # noqa: E402
from gateway.settings import Settings as GatewaySettings  # noqa: E402
from pitcrew.launcher import free_port, wait_for_port  # noqa: E402
from pitcrew.migrations import upgrade_async  # noqa: E402
from services.budget import allocations, commitments, container, lines, plans, reports  # noqa: E402
from services.budget.container import Budget  # noqa: E402
from services.budget.events import CATALOGUE  # noqa: E402
from services.budget.lines import ancestors  # noqa: E402
from services.budget.models import infra  # noqa: E402
from services.budget.periods import periods_of  # noqa: E402
from services.budget.settings import Settings  # noqa: E402
from shared.db import Database  # noqa: E402
from shared.identity import HEADER, Principal, mint  # noqa: E402
from shared.outbox import Outbox  # noqa: E402
from shared.settings import DEV_IDENTITY_SECRET  # noqa: E402
from shared.uow import UnitOfWork  # noqa: E402

PG_URL = os.environ.get("PITCREW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CLIENTS = 8
WHO = Principal("bench", frozenset({"admin"}))
CHANNELS = ("search", "social", "events", "display", "email", "video", "print", "martech")


# ---------------------------------------------------------------- databases


async def new_pg_db(label: str) -> str:
    name = f"pitcrew_bench_{label}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return PG_URL.rpartition("/")[0] + "/" + name


async def drop_pg_db(url: str) -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)')
    finally:
        await conn.close()


async def pg_available() -> bool:
    try:
        conn = await asyncpg.connect(PG_URL, timeout=3)
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


async def run_clients(work, seconds: float, clients: int = CLIENTS) -> tuple[int, float]:
    """Run `work(i)` in a loop from `clients` tasks for `seconds`; returns (operations done, seconds taken)."""
    deadline = time.perf_counter() + seconds
    counts = [0] * clients

    async def client(i: int) -> None:
        while time.perf_counter() < deadline:
            await work(i)
            counts[i] += 1

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return sum(counts), time.perf_counter() - start


async def interleaved(workloads: dict, seconds: float, rounds: int) -> dict[str, dict]:
    """Each workload's rate, measured in `rounds` alternating windows of `seconds / rounds` each.

    On a shared 2-core VM the machine's speed drifts by tens of percent within a minute. Measured
    one after the other, each figure would catch a different speed, and a ratio between them
    would say more about when each ran than about what it measures. Alternating short windows
    spread every workload over the same stretch of time; after one warm-up window each (pools
    filled, statements prepared, caches warm), a workload's rate is its operations over its time
    in all rounds, and the per-round ratios show the spread.
    """
    window = seconds / rounds
    for work in workloads.values():
        await run_clients(work, min(1.0, window))
    out = {name: {"ops": 0, "secs": 0.0, "rounds": []} for name in workloads}
    for _ in range(rounds):
        for name, work in workloads.items():
            n, t = await run_clients(work, window)
            o = out[name]
            o["ops"] += n
            o["secs"] += t
            o["rounds"].append(n / t)
    for o in out.values():
        o["rate"] = o["ops"] / o["secs"]
    return out


# ---------------------------------------------------------------- baseline: raw inserts


@contextlib.asynccontextmanager
async def raw_insert_workload(url: str):
    db = Database(url, pool_size=CLIENTS)
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql(
            "CREATE TABLE bench_raw (id VARCHAR(36) PRIMARY KEY, line_id VARCHAR(36), amount BIGINT)"
        )
    sql = (
        "INSERT INTO bench_raw (id, line_id, amount) VALUES (?, ?, ?)"
        if db.is_sqlite
        else "INSERT INTO bench_raw (id, line_id, amount) VALUES ($1, $2, $3)"
    )

    async def work(i: int) -> None:
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql(sql, (str(uuid.uuid4()), "x", 100))

    try:
        yield work
    finally:
        await db.dispose()


# ---------------------------------------------------------------- postings


def outbox() -> Outbox:
    """The outbox as the service builds it: events checked against the catalogue, each with its audit entry."""
    return Outbox(infra.outbox, "budget", CATALOGUE, audit=infra.audit)


async def posting_plan(db: Database, budget: Budget, box: Outbox) -> list[str]:
    """A plan of 4 regions x 16 leaves with money in every leaf and month; returns the leaf ids."""
    async with db.transaction() as s:
        uow = UnitOfWork(s, box)
        plan = await plans.create_plan(
            uow, WHO, name="bench", fiscal_year=2027, currency="EUR", overspend_policy="block", approval_threshold=None
        )
        await plans.activate_plan(uow, WHO, plan_id=plan["id"])
        leaves = []
        for r in range(4):
            await lines.create_line(
                uow, WHO, plan_id=plan["id"], code=f"R{r}", name=f"Region {r}", dimensions={"region": f"R{r}"}
            )
            for k in range(16):
                leaf = await lines.create_line(
                    uow,
                    WHO,
                    plan_id=plan["id"],
                    code=f"R{r}-{k}",
                    name=f"leaf {k}",
                    parent_code=f"R{r}",
                    dimensions={"channel": CHANNELS[k % 8]},
                )
                leaves.append(leaf["id"])
        for leaf in leaves:
            for per in periods_of(2027):
                await allocations.allocate(
                    uow,
                    WHO,
                    postings=budget.postings,
                    line_id=leaf,
                    period=per,
                    amount=Decimal("100000000"),
                    currency="EUR",
                )
    return leaves


async def _leaves(url: str) -> list[str]:
    db = Database(url, pool_size=2)
    try:
        box = outbox()
        return await posting_plan(db, container.for_database(db, box), box)
    finally:
        await db.dispose()


@contextlib.asynccontextmanager
async def domain_workload(url: str):
    """8 clients calling the domain layer in this process, as the service's endpoint does."""
    leaves = await _leaves(url)
    db = Database(url, pool_size=CLIENTS, server_settings=Settings().database_server_settings)  # as the service
    box = outbox()
    budget = container.for_database(db, box, group_commit=Settings().group_commit_statements)
    periods = periods_of(2027)

    async def work(i: int) -> None:
        async with db.transaction(single_action=True) as s:  # as a POST without Idempotency-Key
            await commitments.create_commitment(
                UnitOfWork(s, box),
                WHO,
                postings=budget.postings,
                line_id=random.choice(leaves),
                period=random.choice(periods),
                amount=Decimal("1.00"),
                currency="EUR",
            )

    try:
        yield work
    finally:
        await db.dispose()


class Server:
    """The budget service in a real uvicorn process (NATS off: the outbox keeps the events)."""

    def __init__(self, url: str, workers: int = 1):
        self.url, self.workers = url, workers
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> str:
        env = {
            **os.environ,
            "PITCREW_BUDGET_DATABASE_URL": self.url,
            "PITCREW_BUDGET_NATS_ENABLED": "false",
            "PITCREW_LOG_LEVEL": "WARNING",
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "services.budget.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--workers",
                str(self.workers),
            ],
            cwd=ROOT,
            env=env,
        )
        wait_for_port("127.0.0.1", self.port, timeout=30)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=15)


class Gateway:
    """The gateway in a real uvicorn process in front of `service` (authentication, policy, rate limiter on)."""

    def __init__(self, service: str):
        self.service = service
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="pitcrew-bench-gw-"))
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> str:
        db = f"sqlite:///{self.tmp}/gateway.db"
        subprocess.run(
            [sys.executable, "-c", f"from pitcrew.migrations import upgrade; upgrade('gateway', {db!r})"],
            cwd=ROOT,
            check=True,
        )  # in its own process: upgrade() runs its own event loop
        env = {
            **os.environ,
            "PITCREW_GATEWAY_DATABASE_URL": db,
            "PITCREW_GATEWAY_BUDGET_URL": self.service,
            "PITCREW_LOG_LEVEL": "WARNING",
            "PITCREW_ENVIRONMENT": "development",
            # The limiter stays on (its cost is part of the figure), just high enough not to refuse.
            "PITCREW_GATEWAY_RATE_LIMIT_WRITE": "100000000/minute",
        }
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "gateway.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env=env,
        )
        wait_for_port("127.0.0.1", self.port, timeout=30)
        return f"http://127.0.0.1:{self.port}/budget"

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        shutil.rmtree(self.tmp, ignore_errors=True)


def headers(via_gateway: bool = False) -> dict[str, str]:
    if via_gateway:
        return {"Authorization": f"Bearer {mint_dev_token(GatewaySettings(), WHO.subject, ['admin'], (), 3600)}"}
    return {HEADER: mint(WHO, os.environ.get("PITCREW_IDENTITY_SECRET", DEV_IDENTITY_SECRET), 3600)}


@contextlib.asynccontextmanager
async def http_workload(url: str, workers: int, via_gateway: bool = False):
    """Commitments POSTed by 8 clients to the service, directly or through the gateway."""
    leaves = await _leaves(url)
    periods = periods_of(2027)
    with Server(url, workers) as base, Gateway(base) if via_gateway else contextlib.nullcontext(base) as front:
        # A lean keep-alive client per connection (bench/_loadgen.py): the load generator shares the 2
        # cores with what it measures (the peer, pgledger, is driven by bare asyncpg).
        conns = [loadgen.Connection(front, headers(via_gateway)) for _ in range(CLIENTS)]
        try:
            for _ in range(50):
                with contextlib.suppress(OSError):
                    if (await conns[0].request("GET", "v1/plans?limit=1"))[0] == 200:
                        break
                await asyncio.sleep(0.1)

            async def work(i: int) -> None:
                status, body = await conns[i].request(
                    "POST",
                    "v1/commitments",
                    {
                        "line_id": random.choice(leaves),
                        "period": random.choice(periods),
                        "amount": "1.00",
                        "currency": "EUR",
                    },
                )
                if status != 201:
                    raise RuntimeError(body.decode())

            yield work
        finally:
            for c in conns:
                c.close()


# ---------------------------------------------------------------- pgledger, the peer


def pgledger_sql(sql_dir: Path) -> list[str]:
    """The SQL files of pgledger, the ULID helper first (pgledger's ids call uuid_to_ulid)."""
    files = sorted(sql_dir.glob("*.sql"), key=lambda p: (0 if "ulid" in p.name.lower() else 1, p.name))
    return [f.read_text() for f in files]


@contextlib.asynccontextmanager
async def pgledger_workload(url: str, scripts: list[str]):
    """pgledger_create_transfer between random pairs of 64 accounts, from 8 bare asyncpg connections."""
    conn = await asyncpg.connect(url)
    for script in scripts:
        await conn.execute(script)
    accounts = [
        await conn.fetchval("SELECT id FROM pgledger_create_account($1, 'EUR')", f"acct-{i}") for i in range(64)
    ]
    await conn.close()
    conns = [await asyncpg.connect(url) for _ in range(CLIENTS)]

    async def work(i: int) -> None:
        a, b = random.sample(accounts, 2)
        await conns[i].fetch("SELECT * FROM pgledger_create_transfer($1, $2, $3)", a, b, Decimal("1.00"))

    try:
        yield work
    finally:
        for c in conns:
            await c.close()


# ---------------------------------------------------------------- summary at size


def entry_rows(plan_id: str, leaf_ids: list[str], n: int, seed: int = 7):
    rnd = random.Random(seed)
    periods = periods_of(2027)
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    for i in range(n):
        line = leaf_ids[rnd.randrange(len(leaf_ids))]
        per = periods[rnd.randrange(12)]
        kind = ("allocation", "actual", "actual", "commitment")[i % 4]
        amt = rnd.randrange(100, 100000)
        d = (amt * 4, 0, 0, 0) if kind == "allocation" else (0, amt, 0, 0) if kind == "commitment" else (0, 0, 0, amt)
        eid = str(uuid.UUID(int=rnd.getrandbits(128)))
        yield (eid, eid, plan_id, line, per, f"{per}-01", kind, amt, amt, "EUR", "1", *d, "bench", now)


ENTRY_COLS = (
    "id",
    "group_id",
    "plan_id",
    "line_id",
    "period",
    "entry_date",
    "kind",
    "amount_minor",
    "original_amount_minor",
    "original_currency",
    "fx_rate",
    "d_allocated",
    "d_committed",
    "d_pending",
    "d_spent",
    "author",
    "created_at",
)


async def load_big_plan(url: str, n_entries: int) -> tuple[str, float]:
    """1,000 lines (10 regions x 99 leaves + roots) and n entries, bulk-loaded, balances rebuilt to match.

    Returns the plan id and how long re-summing the ledger for the plan took (the baseline a summary
    would pay without running balances)."""
    db = Database(url, pool_size=2)
    async with db.transaction() as s:
        uow = UnitOfWork(s, outbox())
        plan = await plans.create_plan(
            uow, WHO, name="big", fiscal_year=2027, currency="EUR", overspend_policy="block", approval_threshold=None
        )
        await plans.activate_plan(uow, WHO, plan_id=plan["id"])
    plan_id = plan["id"]
    # Lines and their balance rows straight in SQL (the domain path is measured above).
    line_rows, paths = [], {}
    leaf_ids = []
    for r in range(10):
        rid = str(uuid.uuid4())
        paths[rid] = f"/{rid}/"
        line_rows.append((rid, plan_id, f"R{r}", f"Region {r}", None, paths[rid], 0, f'{{"region":"R{r}"}}'))
        for k in range(99):
            lid = str(uuid.uuid4())
            paths[lid] = f"/{rid}/{lid}/"
            leaf_ids.append(lid)
            line_rows.append(
                (
                    lid,
                    plan_id,
                    f"R{r}-{k}",
                    f"leaf {k}",
                    rid,
                    paths[lid],
                    1,
                    f'{{"region":"R{r}","channel":"{CHANNELS[k % 8]}"}}',
                )
            )
    await db.dispose()
    t_resum = 0.0
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        con = sqlite3.connect(path)
        now = time.strftime("%Y-%m-%d %H:%M:%S")
        con.executemany(
            "INSERT INTO lines (id, plan_id, code, name, parent_id, path, depth, dimensions, tags, "
            "version, created_at) VALUES (?,?,?,?,?,?,?,?,'[]',1,?)",
            [(*row, now) for row in line_rows],
        )
        con.executemany(
            "INSERT INTO balances VALUES (?,?,?,0,0,0,0,0,0,0,0)",
            [(lid, per, plan_id) for lid in paths for per in periods_of(2027)],
        )
        placeholders = ",".join("?" * len(ENTRY_COLS))
        con.executemany(
            f"INSERT INTO entries ({','.join(ENTRY_COLS)}) VALUES ({placeholders})",
            entry_rows(plan_id, leaf_ids, n_entries),
        )
        con.commit()
        t0 = time.perf_counter()
        sums = con.execute(
            "SELECT line_id, period, sum(d_allocated), sum(d_committed), sum(d_pending), "
            "sum(d_spent) FROM entries WHERE plan_id = ? GROUP BY line_id, period",
            (plan_id,),
        ).fetchall()
        t_resum = time.perf_counter() - t0
        con.executemany(
            "UPDATE balances SET allocated=?, committed=?, pending=?, spent=?, own_allocated=?, "
            "own_committed=?, own_pending=?, own_spent=? WHERE line_id=? AND period=?",
            _balance_updates(sums, paths),
        )
        con.commit()
        con.close()
    else:
        conn = await asyncpg.connect(url)
        try:
            await conn.executemany(
                "INSERT INTO lines (id, plan_id, code, name, parent_id, path, depth, dimensions, tags, version, "
                "created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8::jsonb,'[]'::jsonb,1,now())",
                line_rows,
            )
            await conn.copy_records_to_table(
                "balances",
                records=[(lid, per, plan_id, 0, 0, 0, 0, 0, 0, 0, 0) for lid in paths for per in periods_of(2027)],
                columns=[
                    "line_id",
                    "period",
                    "plan_id",
                    "allocated",
                    "committed",
                    "pending",
                    "spent",
                    "own_allocated",
                    "own_committed",
                    "own_pending",
                    "own_spent",
                ],
            )
            import datetime as dt

            now = dt.datetime.now(dt.UTC)

            def typed(rows):
                for r in rows:
                    yield (*r[:5], dt.date.fromisoformat(r[5]), *r[6:16], now)

            await conn.copy_records_to_table(
                "entries", records=typed(entry_rows(plan_id, leaf_ids, n_entries)), columns=list(ENTRY_COLS)
            )
            await conn.execute("ANALYZE entries; ANALYZE balances; ANALYZE lines")
            t0 = time.perf_counter()
            sums = await conn.fetch(
                "SELECT line_id, period, sum(d_allocated), sum(d_committed), sum(d_pending), "
                "sum(d_spent) FROM entries WHERE plan_id = $1 GROUP BY line_id, period",
                plan_id,
            )
            t_resum = time.perf_counter() - t0
            await conn.executemany(
                "UPDATE balances SET allocated=$1, committed=$2, pending=$3, spent=$4, own_allocated=$5, "
                "own_committed=$6, own_pending=$7, own_spent=$8 WHERE line_id=$9 AND period=$10",
                _balance_updates([tuple(r) for r in sums], paths),
            )
        finally:
            await conn.close()
    return plan_id, t_resum


def _balance_updates(sums, paths: dict[str, str]) -> list[tuple]:
    own = {(r[0], r[1]): [int(v) for v in r[2:6]] for r in sums}
    sub: dict[tuple[str, str], list[int]] = {}
    for (lid, per), figs in own.items():
        for anc in ancestors(paths[lid]):
            acc = sub.setdefault((anc, per), [0, 0, 0, 0])
            for i, v in enumerate(figs):
                acc[i] += v
    return [(*sub[key], *own.get(key, [0, 0, 0, 0]), key[0], key[1]) for key in sub]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def summary_latency(url: str, n_entries: int, runs: int) -> dict[str, float]:
    t0 = time.perf_counter()
    plan_id, t_resum = await load_big_plan(url, n_entries)
    load_s = time.perf_counter() - t0
    db = Database(url, pool_size=2)
    domain = []
    for _ in range(runs):
        t = time.perf_counter()
        async with db.transaction(readonly=True) as s:
            out = await reports.summary(UnitOfWork(s), WHO, plan_id=plan_id, group_by="channel", start=None, end=None)
        domain.append(time.perf_counter() - t)
    assert len(out["groups"]) == len(CHANNELS), out["groups"]
    await db.dispose()
    http = []
    with Server(url) as base:
        async with httpx.AsyncClient(base_url=base, headers=headers(), timeout=30) as client:
            for _ in range(3):  # warm up
                r = await client.get(f"/v1/plans/{plan_id}/summary?group_by=channel")
                assert r.status_code == 200, r.text
            for _ in range(runs):
                t = time.perf_counter()
                r = await client.get(f"/v1/plans/{plan_id}/summary?group_by=channel&from=2027-01&to=2027-12")
                http.append(time.perf_counter() - t)
                assert r.status_code == 200
    return {
        "load_s": load_s,
        "resum_ms": t_resum * 1000,
        "domain_p50_ms": statistics.median(domain) * 1000,
        "domain_p95_ms": pct(domain, 0.95) * 1000,
        "http_p50_ms": statistics.median(http) * 1000,
        "http_p95_ms": pct(http, 0.95) * 1000,
    }


# ---------------------------------------------------------------- main


async def bench_backend(
    backend: str,
    seconds: float,
    rounds: int,
    n_entries: int,
    runs: int,
    workers: int,
    summary: bool = True,
    peer_sql: list[str] | None = None,
) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="pitcrew-bench-"))
    made: list[str] = []

    async def fresh(label: str, migrate: bool = True) -> str:
        if backend == "sqlite":
            url = f"sqlite:///{tmp}/{label}.db"
        else:
            url = await new_pg_db(label)
            made.append(url)
        if migrate:
            await upgrade_async("budget", url)
        return url

    out: dict = {}
    try:
        async with contextlib.AsyncExitStack() as stack:
            workloads = {}
            if peer_sql is not None:
                workloads["pgledger"] = await stack.enter_async_context(
                    pgledger_workload(await fresh("pgledger", migrate=False), peer_sql)
                )
            workloads["raw_insert"] = await stack.enter_async_context(raw_insert_workload(await fresh("raw")))
            workloads["domain"] = await stack.enter_async_context(domain_workload(await fresh("domain")))
            workloads["http"] = await stack.enter_async_context(http_workload(await fresh("http"), workers))
            workloads["gateway"] = await stack.enter_async_context(
                http_workload(await fresh("gw"), workers, via_gateway=True)
            )
            rates = await interleaved(workloads, seconds, rounds)
        labels = {
            "pgledger": "pgledger_create_transfer, 8 connections",
            "raw_insert": "raw single-row INSERT, 8 connections",
            "domain": "domain-layer postings, 8 clients",
            "http": f"HTTP postings, 8 clients, uvicorn x{workers}",
            "gateway": "HTTP postings, 8 clients, through the gateway",
        }
        for name, r in rates.items():
            out[name] = r["rate"]
            out[f"{name}_rounds"] = r["rounds"]
            print(
                f"  [{backend}] {labels[name]}: {r['rate']:.0f}/s (rounds: "
                f"{', '.join(f'{x:.0f}' for x in r['rounds'])})",
                flush=True,
            )
        if summary:
            out["summary"] = await summary_latency(await fresh("summary"), n_entries, runs)
            print(f"  [{backend}] summary: {out['summary']}", flush=True)
    finally:
        for url in made:
            await drop_pg_db(url)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _ratios(r: dict, name: str) -> str:
    """The overall ratio to pgledger and its range over the rounds."""
    per_round = [a / b for a, b in zip(r[f"{name}_rounds"], r["pgledger_rounds"], strict=True)]
    return f"{r[name] / r['pgledger']:.2f}x of it (rounds {min(per_round):.2f}-{max(per_round):.2f})"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 s runs and 100,000 entries")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--entries", type=int, default=None)
    ap.add_argument("--http-workers", type=int, default=1, help="uvicorn worker processes")
    ap.add_argument("--rounds", type=int, default=None, help="alternating windows per rate (default 5; 3 quick)")
    ap.add_argument("--skip-summary", action="store_true")
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    args = ap.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    n_entries = args.entries or (100_000 if args.quick else 1_000_000)
    runs = 20 if args.quick else 50
    rounds = args.rounds or (3 if args.quick else 5)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and not await pg_available():
        print(f"PostgreSQL not reachable at {PG_URL}; skipping it")
        backends.remove("postgres")
    print(
        f"budget ledger benchmark: {seconds:.0f} s per rate in {rounds} alternating rounds, {CLIENTS} clients "
        f"({args.http_workers} uvicorn worker(s)), summary over 1,000 lines x {n_entries:,} entries"
    )
    sql_dir = os.environ.get("PGLEDGER_SQL_DIR")
    peer_sql = pgledger_sql(Path(sql_dir)) if sql_dir else None
    results = {
        b: await bench_backend(
            b,
            seconds,
            rounds,
            n_entries,
            runs,
            args.http_workers,
            not args.skip_summary,
            peer_sql if b == "postgres" else None,
        )
        for b in backends
    }
    print()
    print(
        f"{'backend':<10} {'raw INSERT/s':>13} {'domain/s':>9} {'ratio':>6} {'HTTP/s':>8} {'ratio':>6} "
        f"{'summary p50/p95 (domain)':>25} {'(HTTP)':>16} {'re-sum ledger':>14}"
    )
    for b, r in results.items():
        s = r.get("summary") or dict.fromkeys(
            ("domain_p50_ms", "domain_p95_ms", "http_p50_ms", "http_p95_ms", "resum_ms"), float("nan")
        )
        print(
            f"{b:<10} {r['raw_insert']:>13.0f} {r['domain']:>9.0f} {r['domain'] / r['raw_insert']:>6.2f} "
            f"{r['http']:>8.0f} {r['http'] / r['raw_insert']:>6.2f} "
            f"{s['domain_p50_ms']:>12.1f} / {s['domain_p95_ms']:>6.1f} ms "
            f"{s['http_p50_ms']:>6.1f} / {s['http_p95_ms']:>5.1f} ms {s['resum_ms']:>11.0f} ms"
        )
    if "pgledger" in results.get("postgres", {}):
        r = results["postgres"]
        print(
            f"\npgledger_create_transfer, 8 connections, same run: {r['pgledger']:.0f}/s; budget domain layer "
            f"{_ratios(r, 'domain')} (aim >= 1), budget over HTTP {_ratios(r, 'http')}, through the gateway "
            f"{_ratios(r, 'gateway')} (aim >= 0.5)"
        )
    elif "postgres" in results:
        print("\n(set PGLEDGER_SQL_DIR to a directory with pgledger.sql and its ULID helper to compare with pgledger)")


if __name__ == "__main__":
    try:  # the loop uvicorn runs the service on (uvicorn[standard] brings uvloop); the peer gets it too
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
