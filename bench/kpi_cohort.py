"""KPI benchmark: a cohort conversion (services/kpi/cohorts.py) over many leads, and a brute-force baseline.

    .venv/bin/python bench/kpi_cohort.py                    # 1,000,000 leads (the issue's size)
    .venv/bin/python bench/kpi_cohort.py --leads 200000     # what runs in under a minute on a shared machine

Data (SQLite, a fresh migrated file): N leads over 2027, 60 % of them reaching MQL 0 to 60 days later and
a third of those SQL 0 to 45 days after that, each fact with a channel; a lead's facts are bulk-inserted
as the lifecycle table's rows. Timed, in one run:
1. `cohorts.cohort` as the route calls it: MQL in 2027-Q1 -> SQL within 30 days, grouped by channel
   (one LEFT JOIN query, then the summary in a worker thread);
2. the baseline (brute force): every MQL and SQL fact read with plain SELECTs, joined in Python dicts,
   counted and sorted per channel. Both answers are compared (they must be equal).
Prints wall and CPU seconds (CPU: the steadier figure on a loaded machine).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, select  # noqa: E402

from pitcrew.migrations import upgrade_async  # noqa: E402
from services.kpi import cohorts  # noqa: E402
from services.kpi.models import lifecycle_facts  # noqa: E402
from services.kpi.raw import tune_sqlite  # noqa: E402
from shared.db import Database  # noqa: E402
from shared.uow import UnitOfWork  # noqa: E402

CHANNELS = ["search", "social", "display", "email", "events", "video", "affiliate", "partner"]
T0 = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


def facts(n: int) -> list[dict]:
    rnd = random.Random(1)
    now = dt.datetime.now(dt.UTC)
    rows = []
    for i in range(n):
        dims = {"channel": rnd.choice(CHANNELS)}
        lead = T0 + dt.timedelta(seconds=rnd.randrange(365 * 86400))
        rows.append({"entity_id": f"L{i}", "stage": "lead", "time": lead, "dimensions": dims})
        if rnd.random() < 0.6:
            mql = lead + dt.timedelta(seconds=rnd.randrange(60 * 86400))
            rows.append({"entity_id": f"L{i}", "stage": "mql", "time": mql, "dimensions": dims})
            if rnd.random() < 1 / 3:
                sql = mql + dt.timedelta(seconds=rnd.randrange(45 * 86400))
                rows.append({"entity_id": f"L{i}", "stage": "sql", "time": sql, "dimensions": dims})
    for r in rows:
        r.update(source="bench", received_at=now)
    return rows


async def brute_force(db: Database, first: dt.datetime, last: dt.datetime, window_days: int) -> list[dict]:
    f = lifecycle_facts.c
    async with db.transaction(readonly=True) as s:
        mqls = (await s.execute(select(f.entity_id, f.time, f.dimensions).where(f.stage == "mql"))).all()
        sqls = dict((await s.execute(select(f.entity_id, f.time).where(f.stage == "sql"))).all())
    entered: dict[str, int] = defaultdict(int)
    took: dict[str, list[float]] = defaultdict(list)
    for entity, t, dims in mqls:
        if not first <= t < last:
            continue
        entered[dims["channel"]] += 1
        reached = sqls.get(entity)
        if reached is not None and 0 <= (reached - t).total_seconds() <= window_days * 86400:
            took[dims["channel"]].append((reached - t).total_seconds())
    out = []
    for ch in sorted(entered):
        spans = sorted(took[ch])
        median = spans[math.ceil(0.5 * len(spans)) - 1] if spans else None
        out.append({"channel": ch, "entered": entered[ch], "converted": len(spans), "median": median})
    return out


async def run(n: int, path: Path) -> None:
    url = f"sqlite:///{path}"
    await upgrade_async("kpi", url)
    db = Database(url)
    tune_sqlite(db)
    try:
        rows = facts(n)
        t0 = time.perf_counter()
        for lo in range(0, len(rows), 50_000):
            async with db.transaction() as s:
                await s.execute(insert(lifecycle_facts), rows[lo : lo + 50_000])
        print(f"  {n:,} leads, {len(rows):,} lifecycle facts inserted in {time.perf_counter() - t0:.1f} s")

        def uow_factory(readonly: bool = False):
            return _uow(db, readonly)

        t0, c0 = time.perf_counter(), time.process_time()
        answer = await cohorts.cohort(
            uow_factory,
            None,  # unscoped
            from_stage="mql",
            to_stage="sql",
            period="2027-Q1",
            window_days=30,
            group_by=["channel"],
            fiscal_start=1,
            limits=cohorts.CohortLimits(max_entities=10_000_000, seconds=3600),
        )
        t_api, c_api = time.perf_counter() - t0, time.process_time() - c0
        first, last = T0, dt.datetime(2027, 4, 1, tzinfo=dt.UTC)
        t0, c0 = time.perf_counter(), time.process_time()
        base = await brute_force(db, first, last, 30)
        t_base, c_base = time.perf_counter() - t0, time.process_time() - c0
        got = [
            {
                "channel": i["group"]["channel"],
                "entered": i["entered"],
                "converted": i["converted"],
                "median": i["median_days"],
            }
            for i in answer["items"]
        ]
        want = [{**b, "median": cohorts._days(b["median"])} for b in base]
        assert got == want, (got[:2], want[:2])
        entered = sum(i["entered"] for i in answer["items"])
        print(f"  cohort MQL 2027-Q1 -> SQL in 30 days by channel: {entered:,} entered")
        print(f"    cohorts.cohort (SQL join, summary off the loop) {t_api:7.2f} s wall, {c_api:6.2f} s CPU")
        print(f"    brute-force baseline (SELECTs, Python join)     {t_base:7.2f} s wall, {c_base:6.2f} s CPU")
    finally:
        await db.dispose()


class _uow:
    def __init__(self, db: Database, readonly: bool):
        self.cm = db.transaction(readonly=readonly)

    async def __aenter__(self) -> UnitOfWork:
        return UnitOfWork(await self.cm.__aenter__())

    async def __aexit__(self, *exc: object) -> None:
        await self.cm.__aexit__(*exc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=1_000_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pitcrew-bench-cohort-"))
    print(f"KPI cohort benchmark, SQLite file in {tmp}")
    asyncio.run(run(args.leads, tmp / "kpi.db"))
    for suffix in ("", "-wal", "-shm"):
        Path(str(tmp / "kpi.db") + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
