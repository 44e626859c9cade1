"""Registry report latency on a large stack: analysis, overlaps, costs, renewals, graph, export, and
a discovery run over the budget's actuals.

    .venv/bin/python bench/registry_reports.py            # 2,000 tools, 6,000 integrations, 4,000 contracts,
                                                          # 100,000 actuals (60% of unknown vendors)
    .venv/bin/python bench/registry_reports.py --quick    # 300 tools, 10,000 actuals

Runs the real app in process (httpx ASGI transport, NATS off) on a temporary SQLite file.
Each report is requested repeatedly through the API; p50/p95 are printed next to a baseline
measured in the same run: reading the same rows with one plain SELECT each (the floor any
report built on them pays) plus, for the analysis, networkx's articulation points alone; the
discovery run (`/v1/discovery`) is set against a plain SELECT of the 100,000 spend rows it groups.
It also times the use case each `budget.actual.posted` runs (`discovery.record_actual`), one
transaction per actual as the consumer runs it.
The last column is the process CPU time per request (worker threads included): on a machine
shared with other work it moves far less than the wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx
import networkx as nx
from sqlalchemy import select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from pitcrew.migrations import upgrade_async  # noqa: E402
from services.registry import discovery, integrations, schemas, tools  # noqa: E402
from services.registry.main import create_app  # noqa: E402
from services.registry.models import DiscoveryCandidate, Tool, ToolSpend  # noqa: E402
from services.registry.settings import Settings  # noqa: E402
from shared.db import utcnow  # noqa: E402
from shared.identity import HEADER, Principal, mint  # noqa: E402
from shared.settings import DEV_IDENTITY_SECRET  # noqa: E402

CATEGORIES = [
    "advertising_promotion",
    "content_experience",
    "social_relationships",
    "commerce_sales",
    "data",
    "management",
]
CAPS = [f"cap{i}" for i in range(60)]


async def seed(rt, n_tools: int, edges: int, contracts: int) -> None:
    registry = rt.domain
    who = Principal("bench", frozenset({"admin"}))
    rng = random.Random(7)
    today = dt.date.today()
    ids = []
    async with rt.unit_of_work() as uow:
        for i in range(n_tools):
            view = await tools.create_tool(
                uow,
                who,
                body=schemas.ToolIn(
                    name=f"Tool {i:05d}",
                    vendor=f"Vendor {i % 97}",
                    category=CATEGORIES[i % 6],
                    capabilities=rng.sample(CAPS, 3),
                    owner=schemas.Owner(team=f"team{i % 12}", person=f"p{i}"),
                    lifecycle="active" if i % 10 else "pilot",
                ),
            )
            ids.append(view.id)
        for i in range(contracts):
            start = today - dt.timedelta(days=rng.randint(0, 300))
            await registry.contracts.create(
                uow,
                who,
                body=schemas.ContractIn(
                    tool_id=ids[i % n_tools],
                    start=start,
                    end=start + dt.timedelta(days=364),
                    billing_period=rng.choice(["monthly", "quarterly", "annual"]),
                    cost=Decimal(rng.randint(100, 50_000)),
                    currency="EUR",
                    seats=rng.randint(1, 200),
                    notice_days=rng.choice([30, 60, 90]),
                    budget_line_code="MARTECH",
                ),
            )
        seen = set()
        while len(seen) < edges:
            a, b = rng.sample(range(n_tools), 2)
            if (a, b) in seen:
                continue
            seen.add((a, b))
            await integrations.create_integration(
                uow,
                who,
                body=schemas.IntegrationIn(
                    from_tool_id=ids[a], to_tool_id=ids[b], method="api", data_objects=["contacts"]
                ),
            )


async def seed_spend(rt, n_actuals: int, vendors: int = 1000) -> None:
    """`n_actuals` spend rows as the consumer writes them: 60% on `vendors` unknown vendors' candidates
    (over four budget lines), 40% on the catalogue's tools; written in bulk."""
    rng = random.Random(11)
    start = dt.date.today() - dt.timedelta(days=365)
    async with rt.unit_of_work() as uow:
        tool_ids = list((await uow.scalars(select(Tool.id))).all())
        candidates = [
            {"id": f"cand-{i:05d}", "vendor_key": f"shadow vendor {i}", "vendor": f"Shadow Vendor {i}",
             "status": "open", "created_at": utcnow()}
            for i in range(vendors)
        ]  # fmt: skip
        await uow.execute(insert(DiscoveryCandidate), candidates)
        rows = []
        for n in range(n_actuals):
            unknown = n % 5 < 3
            c = candidates[rng.randrange(vendors)] if unknown else None
            rows.append(
                {
                    "entry_id": f"e-{n:07d}",
                    "vendor_key": c["vendor_key"] if c else "vendor",
                    "tool_id": None if c else rng.choice(tool_ids),
                    "candidate_id": c["id"] if c else None,
                    "amount_minor": rng.randint(1_000, 5_000_000),
                    "currency": "EUR",
                    "day": start + dt.timedelta(days=rng.randrange(365)),
                    "line_code": f"LINE-{n % 4}",
                    "external_ref": f"INV-{n}",
                }
            )
            if len(rows) == 10_000:
                await uow.execute(insert(ToolSpend), rows)
                rows = []
        if rows:
            await uow.execute(insert(ToolSpend), rows)


async def ingest(rt, n: int) -> list[float]:
    """Milliseconds per actual through the use case `budget.actual.posted` runs, a transaction each
    (half of a known tool's vendor, half of new vendors)."""
    out = []
    for i in range(n):
        vendor = f"Vendor {i % 97} Inc." if i % 2 else f"Brand New Vendor {i}"
        t0 = time.perf_counter()
        async with rt.unit_of_work() as uow:
            await discovery.record_actual(
                uow, entry_id=f"ingest-{i}", vendor=vendor, amount=Decimal("120.00"), currency="EUR",
                day=dt.date.today(), line_code="MARTECH", external_ref=None,
            )  # fmt: skip
        out.append((time.perf_counter() - t0) * 1000)
    return out


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(fn, runs: int, cpu: list[float] | None = None) -> list[float]:
    """Wall milliseconds of each run; with `cpu`, also the process's CPU milliseconds (worker threads
    included), the steadier figure on a machine shared with other work."""
    out = []
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t0) * 1000)
        if cpu is not None:
            cpu.append((time.process_time() - c0) * 1000)
    return out


async def main(quick: bool) -> None:
    tools, edges, contracts, runs = (300, 900, 600, 20) if quick else (2000, 6000, 4000, 20)
    actuals = 10_000 if quick else 100_000
    tmp = Path(tempfile.mkdtemp(prefix="pitcrew-bench-registry-"))
    url = f"sqlite:///{tmp}/registry.db"
    await upgrade_async("registry", url)
    app = create_app(Settings(database_url=url, nats_enabled=False, log_level="WARNING"))
    rt = app.state.runtime
    async with app.router.lifespan_context(app):
        t0 = time.perf_counter()
        await seed(rt, tools, edges, contracts)
        print(
            f"seeded {tools} tools, {edges} integrations, {contracts} contracts in "
            f"{time.perf_counter() - t0:.1f} s (one transaction, domain layer)"
        )
        t0 = time.perf_counter()
        await seed_spend(rt, actuals)
        print(f"seeded {actuals:,} actuals' spend rows in {time.perf_counter() - t0:.1f} s (bulk)")
        per_actual = await ingest(rt, 400)
        print(
            f"budget.actual.posted use case: p50 {statistics.median(per_actual):.2f} ms, "
            f"p95 {pct(per_actual, 0.95):.2f} ms per actual (a transaction each, {len(per_actual)} actuals)"
        )
        headers = {HEADER: mint(Principal("bench", frozenset({"analyst"})), DEV_IDENTITY_SECRET, 3600)}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://registry", headers=headers
        ) as c:

            async def raw_rows() -> None:
                async with rt.transaction(readonly=True) as s:
                    for table in ("tools", "integrations", "contracts"):
                        (await s.execute(text(f"SELECT * FROM {table}"))).all()  # noqa: S608 - fixed names

            base = await timed(raw_rows, runs)
            g = nx.Graph()
            async with rt.transaction(readonly=True) as s:
                g.add_edges_from((await s.execute(text("SELECT from_tool_id, to_tool_id FROM integrations"))).all())
            nx_only = await timed(lambda: asyncio.sleep(0, list(nx.articulation_points(g))), runs)
            print(f"\nbaseline: plain SELECT of tools+integrations+contracts  p50 {statistics.median(base):7.1f} ms")
            print(f"baseline: networkx articulation points alone          p50 {statistics.median(nx_only):7.1f} ms")

            async def raw_spend() -> None:
                async with rt.transaction(readonly=True) as s:
                    (await s.execute(text("SELECT * FROM tool_spend"))).all()

            spend_base = await timed(raw_spend, runs)
            print(
                f"baseline: plain SELECT of the {actuals:,} spend rows     p50 {statistics.median(spend_base):7.1f} ms"
            )
            print(f"\n{'report':<34}{'p50 ms':>9}{'p95 ms':>9}{'p50 / SELECT':>14}{'cpu p50 ms':>12}")
            for path in (
                "/v1/analysis",
                "/v1/overlaps",
                "/v1/costs?group_by=team",
                "/v1/renewals?within_days=90",
                "/v1/graph?format=mermaid",
                "/v1/tools?limit=100",
                "/v1/export?format=yaml",
                "/v1/discovery",
            ):

                async def get(path: str = path) -> None:
                    r = await c.get(path)
                    assert r.status_code == 200, r.text

                cpu: list[float] = []
                samples = await timed(get, runs if "export" not in path else max(3, runs // 4), cpu)
                p50 = statistics.median(samples)
                ratio = p50 / statistics.median(spend_base if "discovery" in path else base)
                print(f"{path:<34}{p50:>9.1f}{pct(samples, 0.95):>9.1f}{ratio:>13.1f}x{statistics.median(cpu):>12.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small stack (300 tools)")
    asyncio.run(main(parser.parse_args().quick))
