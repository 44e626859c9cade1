"""Soak: mixed load through the gateway for a long time; errors, latency over time, memory growth.

    .venv/bin/python bench/soak.py                     # 30 minutes, SQLite
    .venv/bin/python bench/soak.py --minutes 5 --backend postgres

The whole stack runs (its own NATS; SQLite in a temporary folder, or throwaway PostgreSQL
databases), 16 clients send the workload of bench/embedded_load.py (half writes: commitments,
measurements, allocations; half reads: balances, summaries, series) for the whole time. Every
minute it prints requests/s, errors, read and write p50/p99 of that minute, and the resident
memory (RSS) of every process. At the end: total errors, the p50/p99 of the first and the last
minute, and each process's RSS growth between the end of the first minute (after warm-up) and
the end (aim: under 5%).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.embedded_load import CLIENTS, one, pct, seed  # noqa: E402
from gateway.devtokens import mint_dev_token  # noqa: E402
from gateway.settings import Settings as GatewaySettings  # noqa: E402
from pitcrew.launcher import free_port, start_stack  # noqa: E402
from pitcrew.topology import APPS, PROCESSES  # noqa: E402

PG_URL = os.environ.get("PITCREW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def postgres_databases(run: str) -> dict[str, str]:
    import asyncpg

    names = {app: f"pitcrew_soak_{app}_{run}" for app in APPS}

    async def create() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            for n in names.values():
                await conn.execute(f'CREATE DATABASE "{n}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return names


def drop_databases(names: dict[str, str]) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(PG_URL)
        try:
            for n in names.values():
                await conn.execute(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


async def soak(url: str, stack: object, minutes: float) -> None:
    token = mint_dev_token(GatewaySettings(), "soak", ["admin"], (), 24 * 3600)
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as client:
        world = await seed(client)
        children = {c.name: c.proc.pid for c in stack.children}  # type: ignore[attr-defined]
        minute: dict[str, list[float]] = {"reads": [], "writes": []}
        errors = {"now": 0, "total": 0}
        history: list[dict[str, object]] = []
        end = time.perf_counter() + minutes * 60

        async def worker(i: int) -> None:
            rnd = random.Random(i)
            n = i
            while time.perf_counter() < end:
                try:
                    write, took, status = await one(client, world, rnd, n)
                except httpx.HTTPError:
                    errors["now"] += 1
                    continue
                n += 1
                minute["writes" if write else "reads"].append(took)
                if status >= 400:
                    errors["now"] += 1

        async def reporter() -> None:
            started = time.perf_counter()
            while time.perf_counter() < end:
                await asyncio.sleep(min(60.0, max(0.0, end - time.perf_counter())))
                reads, writes = minute["reads"], minute["writes"]
                minute["reads"], minute["writes"] = [], []
                rss = {name: rss_kib(pid) for name, pid in children.items()}
                row = {
                    "at": time.perf_counter() - started,
                    "rate": (len(reads) + len(writes)) / 60.0,
                    "errors": errors["now"],
                    "reads": (pct(reads, 0.5), pct(reads, 0.99)),
                    "writes": (pct(writes, 0.5), pct(writes, 0.99)),
                    "rss": rss,
                }
                errors["total"] += errors["now"]
                errors["now"] = 0
                history.append(row)
                memory = " ".join(f"{k} {v // 1024} MiB" for k, v in rss.items())
                print(
                    f"{row['at'] / 60:5.1f} min  {row['rate']:6.0f} req/s  errors {row['errors']:4d}  "
                    f"reads p50/p99 {row['reads'][0]:6.1f}/{row['reads'][1]:7.1f} ms  "
                    f"writes p50/p99 {row['writes'][0]:6.1f}/{row['writes'][1]:7.1f} ms  | {memory}",
                    flush=True,
                )

        await asyncio.gather(reporter(), *(worker(i) for i in range(CLIENTS)))
    if len(history) < 2:
        print("run at least two minutes to compare the first and the last")
        return
    first, last = history[0], history[-1]
    print(f"\nerrors in all: {errors['total']}")
    for label, row in (("first minute", first), ("last minute ", last)):
        (r50, r99), (w50, w99) = row["reads"], row["writes"]  # type: ignore[misc]
        print(f"{label}: reads p50/p99 {r50:.1f}/{r99:.1f} ms, writes p50/p99 {w50:.1f}/{w99:.1f} ms")
    print("RSS growth from the end of the first minute to the end (aim < 5%):")
    for name, before in first["rss"].items():  # type: ignore[union-attr]
        after = last["rss"][name]  # type: ignore[index]
        growth = (after - before) / before * 100 if before else float("nan")
        print(f"  {name:9} {before // 1024:5d} -> {after // 1024:5d} MiB  {growth:+6.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="pitcrew-soak-"))
    env = dict(os.environ)
    env.update({f"PITCREW_{name.upper()}_PORT": str(free_port()) for name in PROCESSES})
    env.update({"PITCREW_VAR_DIR": str(var), "PITCREW_LOG_LEVEL": "WARNING"})
    env["PITCREW_NATS_URL"] = f"nats://127.0.0.1:{free_port()}"
    env.update(
        {"PITCREW_GATEWAY_RATE_LIMIT_READ": "1000000/minute", "PITCREW_GATEWAY_RATE_LIMIT_WRITE": "1000000/minute"}
    )
    names: dict[str, str] = {}
    if args.backend == "postgres":
        names = postgres_databases(uuid.uuid4().hex[:8])
        base = PG_URL.rpartition("/")[0]
        env.update({f"PITCREW_{app.upper()}_DATABASE_URL": f"{base}/{n}" for app, n in names.items()})
    stack, urls, _ = start_stack(var_dir=var, env=env, echo=lambda *_: None, ready_timeout=180)
    try:
        print(f"soak: {args.minutes:g} minutes, {CLIENTS} clients, {args.backend}; logs in {var / 'log'}", flush=True)
        asyncio.run(soak(urls["gateway"], stack, args.minutes))
    finally:
        stack.stop()
        if names:
            drop_databases(names)


if __name__ == "__main__":
    main()
