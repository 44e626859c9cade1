"""KPI benchmark: ingest rate and series latency from rollups versus a raw scan.

    .venv/bin/python bench/kpi_query.py                 # 1,000,000 and 10,000,000 measurements
    .venv/bin/python bench/kpi_query.py --quick         # 100,000
    .venv/bin/python bench/kpi_query.py --size 2000000  # any sizes, repeatable flag
    .venv/bin/python bench/kpi_query.py --postgres      # also on PITCREW_TEST_POSTGRES_URL (throwaway db)

What it does, per size, in one run:
1. ingest: batches of 10,000 through the domain layer (Ingestor.ingest: validation, dedupe
   by external id, raw insert, rollup upsert, first sightings, one transaction per batch);
2. fills up to the size with fast bulk SQL (raw rows), then rebuilds the rollups from raw
   (timed: that is the rebuild command);
3. series through the API (in-process ASGI): month grain, group_by=channel, one year, for
   `spend` (one type) and `cpl` (spend / leads), with and without filter=region:EMEA, read
   from the rollups and by a raw scan (read_from=raw); prints p50/p95 and raw/rollup.

Data: one year (2027), types spend and leads, 8 channels x 10 campaigns x 4 regions
(320 dimension sets), times spread evenly. The peer (DuckDB scanning the raw rows in
process) was measured at p95 184 ms (80 ms for one year and a region) at 10M.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from sqlalchemy import text  # noqa: E402

from pitcrew.migrations import upgrade_async  # noqa: E402
from services.kpi.ingest import Ingestor  # noqa: E402
from services.kpi.main import create_app  # noqa: E402
from services.kpi.raw import INSERT_RAW, tune_sqlite  # noqa: E402
from services.kpi.rollups import rebuild_rollups  # noqa: E402
from services.kpi.settings import Settings  # noqa: E402
from services.kpi.values import day_number, dims_hash, month_number  # noqa: E402
from shared.db import Database  # noqa: E402
from shared.identity import HEADER, Principal, mint  # noqa: E402
from shared.settings import DEV_IDENTITY_SECRET  # noqa: E402
from shared.uow import UnitOfWork  # noqa: E402

CHANNELS = ["search", "social", "display", "email", "events", "video", "affiliate", "partner"]
REGIONS = ["EMEA", "NA", "APAC", "LATAM"]
CAMPAIGNS = {c: [f"{c}-{k}" for k in range(10)] for c in CHANNELS}
DIMSETS = [
    {"campaign": camp, "channel": ch, "region": rg} for ch in CHANNELS for camp in CAMPAIGNS[ch] for rg in REGIONS
]
YEAR_START = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
YEAR_SECONDS = 365 * 86400
BATCH = 10_000


def item(i: int, n: int, rnd: random.Random) -> dict:
    t = YEAR_START + dt.timedelta(seconds=(i * YEAR_SECONDS) // n)
    dims = DIMSETS[rnd.randrange(len(DIMSETS))]
    if i % 4 == 0:
        return {
            "type": "spend",
            "value": f"{rnd.randint(100, 500000) / 100:.2f}",
            "time": t.isoformat(),
            "dimensions": dims,
            "source": "bench",
            "external_id": f"m{i}",
        }
    return {
        "type": "leads",
        "value": "1",
        "time": t.isoformat(),
        "dimensions": dims,
        "source": "bench",
        "external_id": f"m{i}",
    }


async def ingest_phase(db: Database, n_ingest: int, n_total: int) -> tuple[float, float]:
    """Measurements per second through the domain layer, batches of 10,000, and the process CPU time
    (worker threads included) per measurement in microseconds: the steadier figure on a shared machine."""
    ing = Ingestor()
    rnd = random.Random(1)
    gc.freeze()  # as every service does once started (shared.app.start_runtime)
    elapsed = cpu = 0.0
    for start in range(0, n_ingest, BATCH):
        batch = [item(i, n_total, rnd) for i in range(start, min(n_ingest, start + BATCH))]
        t0, c0 = time.perf_counter(), time.process_time()
        result = await ing.ingest(db, None, items=batch, default_source="bench")
        elapsed += time.perf_counter() - t0
        cpu += time.process_time() - c0
        assert result.accepted == len(batch), result.rejected[:3]
    return n_ingest / elapsed, cpu / n_ingest * 1e6


async def bulk_fill(db: Database, start: int, n_total: int) -> float:
    """Raw rows start..n_total with fast executemany (what a backfill would do), then rebuild rollups."""
    async with db.transaction(readonly=True) as s:
        ids = {h: i for h, i in await s.execute(text("SELECT hash, id FROM dimension_sets"))}
    dimset_ids = [ids[dims_hash(d)] for d in DIMSETS]
    rnd = random.Random(2)
    now = dt.datetime.now(dt.UTC)
    sqlite = db.is_sqlite
    fmt_time = (lambda t: t.strftime("%Y-%m-%d %H:%M:%S.%f")) if sqlite else (lambda t: t)
    now_v = fmt_time(now) if sqlite else now
    chunk = 200_000
    for lo in range(start, n_total, chunk):
        rows = []
        for i in range(lo, min(n_total, lo + chunk)):
            t = YEAR_START + dt.timedelta(seconds=(i * YEAR_SECONDS) // n_total)
            spend = i % 4 == 0
            rows.append(
                (
                    "spend" if spend else "leads",
                    rnd.randint(100, 500000) * 10_000 if spend else 1_000_000,
                    fmt_time(t),
                    day_number(t),
                    month_number(t),
                    dimset_ids[rnd.randrange(len(dimset_ids))],
                    "bench",
                    f"m{i}",
                    now_v,
                )
            )
        async with db.engine.begin() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            if sqlite:
                await driver.executemany(INSERT_RAW, rows)
            else:
                await driver.copy_records_to_table(
                    "measurements",
                    records=rows,
                    columns=[
                        "type",
                        "value",
                        "time",
                        "day",
                        "month",
                        "dimset_id",
                        "source",
                        "external_id",
                        "received_at",
                    ],
                )
        print(f"    bulk raw rows: {min(n_total, lo + chunk):>12,}", end="\r", flush=True)
    print()
    t0 = time.perf_counter()
    async with db.transaction() as s:
        await rebuild_rollups(UnitOfWork(s))
    return time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def latency(client: httpx.AsyncClient, path: str, params: dict, runs: int) -> tuple[float, float, float, dict]:
    """p50 and p95 wall time and p50 process CPU time (threads included) per request, in ms; the last answer."""
    r = await client.get(path, params=params)  # warm-up (caches, page cache)
    assert r.status_code == 200, r.text
    times, cpus = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        r = await client.get(path, params=params)
        times.append((time.perf_counter() - t0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
        assert r.status_code == 200, r.text
    return pct(times, 0.5), pct(times, 0.95), pct(cpus, 0.5), r.json()


async def run_size(url: str, n: int, n_ingest: int, runs: int, raw_runs: int) -> None:
    label = "postgres" if url.startswith("postgres") else "sqlite"
    print(f"\n== {n:,} measurements on {label} ==")
    await upgrade_async("kpi", url)
    db = Database(url)
    tune_sqlite(db)  # the per-connection settings the service applies to its database (container.build)
    try:
        rate, cpu_us = await ingest_phase(db, min(n_ingest, n), n)
        print(
            f"  ingest (domain layer, batches of 10,000): {rate:,.0f} measurements/s"
            f"  [aim >= 50,000]  over {min(n_ingest, n):,}, cpu {cpu_us:.1f} us/measurement"
        )
        if n > n_ingest:
            t0 = time.perf_counter()
            rebuild_s = await bulk_fill(db, n_ingest, n)
            print(
                f"  bulk fill {n - n_ingest:,} raw rows + rollup rebuild: {time.perf_counter() - t0:.1f} s"
                f" (rebuild from raw {rebuild_s:.1f} s)"
            )
        async with db.transaction(readonly=True) as s:
            rollup_rows = (await s.execute(text("SELECT count(*) FROM rollups_daily"))).scalar()
            if db.is_sqlite:
                await s.execute(text("ANALYZE"))
        print(f"  rollup rows: {rollup_rows:,}")
    finally:
        await db.dispose()
    app = create_app(Settings(database_url=url, nats_enabled=False, target_check_seconds=0, log_level="WARNING"))
    headers = {HEADER: mint(Principal("bench", frozenset({"analyst"})), DEV_IDENTITY_SECRET, 3600)}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://kpi",
            headers=headers,
            timeout=600,
        ) as client,
    ):
        base = {"from": "2027-01-01", "to": "2027-12-31", "grain": "month", "group_by": "channel"}
        cases = [
            ("spend  month x channel, 1 year", "spend", {}),
            ("spend  ... + filter region:EMEA", "spend", {"filter": "region:EMEA"}),
            ("cpl    month x channel, 1 year", "cpl", {}),
            ("cpl    ... + filter region:EMEA", "cpl", {"filter": "region:EMEA"}),
        ]
        for name, key, extra in cases:
            path = f"/v1/metrics/{key}/series"
            p50r, p95r, cpur, body_r = await latency(client, path, {**base, **extra, "read_from": "rollup"}, runs)
            p50s, p95s, _, body_s = await latency(client, path, {**base, **extra, "read_from": "raw"}, raw_runs)
            assert body_r["series"] == body_s["series"], "rollups and raw scan disagree"
            print(
                f"  {name:<34} rollup p50 {p50r:7.1f} ms p95 {p95r:7.1f} ms cpu p50 {cpur:6.1f} ms"
                f" | raw scan p50 {p50s:8.1f} ms"
                f" p95 {p95s:8.1f} ms | raw/rollup p95 {p95s / p95r:6.1f}x | vs DuckDB peer p95"
                f" {(184 if not extra else 80) / p95r:4.1f}x faster"
            )


async def new_postgres_db() -> tuple[str, str]:
    import asyncpg

    base = os.environ.get("PITCREW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"pitcrew_bench_kpi_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return base, name


async def drop_postgres_db(base: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one small run (100,000 measurements)")
    ap.add_argument("--size", type=int, action="append", help="measurements (repeatable)")
    ap.add_argument("--ingest", type=int, default=200_000, help="how many go through the domain layer")
    ap.add_argument("--runs", type=int, default=40, help="timed requests per rollup case")
    ap.add_argument("--raw-runs", type=int, default=5, help="timed requests per raw-scan case")
    ap.add_argument("--postgres", action="store_true", help="also run on PostgreSQL")
    ap.add_argument("--postgres-only", action="store_true", help="run on PostgreSQL only")
    ap.add_argument("--keep", action="store_true", help="keep the SQLite files")
    args = ap.parse_args()
    sizes = args.size or ([100_000] if args.quick else [1_000_000, 10_000_000])
    ingest_n = min(args.ingest, 50_000) if args.quick else args.ingest
    tmp = Path(tempfile.mkdtemp(prefix="pitcrew-bench-kpi-"))
    print(f"KPI benchmark: sizes {', '.join(f'{s:,}' for s in sizes)}; SQLite files in {tmp}")
    for n in sizes:
        path = tmp / f"kpi-{n}.db"
        if not args.postgres_only:
            await run_size(f"sqlite:///{path}", n, ingest_n, args.runs, args.raw_runs)
            if not args.keep:
                for suffix in ("", "-wal", "-shm"):
                    Path(str(path) + suffix).unlink(missing_ok=True)  # noqa: ASYNC240 - between runs
        if args.postgres or args.postgres_only:
            base, name = await new_postgres_db()
            try:
                await run_size(base.rpartition("/")[0] + "/" + name, n, ingest_n, args.runs, args.raw_runs)
            finally:
                await drop_postgres_db(base, name)


if __name__ == "__main__":
    asyncio.run(main())
