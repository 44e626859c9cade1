"""Mixed load on the embedded default (SQLite): 16 clients through the gateway, writes' fair queue off vs on.

    .venv/bin/python bench/embedded_load.py            # 4 alternating rounds of 15 s per stack
    .venv/bin/python bench/embedded_load.py --quick    # 2 rounds of 5 s

Two whole stacks run side by side on SQLite (each its own NATS, databases and ports): one with
`PITCREW_<APP>_SQLITE_WRITE_QUEUE=false` (writers take BEGIN IMMEDIATE and the losers sleep in
SQLite's busy handler, as before) and one with the queue on (each process's writes wait their turn
in one FIFO queue). Rounds alternate between them so both meet the same stretch of the machine's
speed. Each round, 16 clients loop for the round's length: half the requests are writes (a budget
commitment, a KPI measurement, a budget allocation), half are reads (a line balance, a plan summary,
a KPI series), each through the gateway with a bearer token. Printed: requests/s, and p50/p99 of
reads and of writes per stack, with the aim (writes p99 < 250 ms) beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.devtokens import mint_dev_token  # noqa: E402
from gateway.settings import Settings as GatewaySettings  # noqa: E402
from pitcrew.launcher import free_port, start_stack  # noqa: E402
from pitcrew.topology import APPS, PROCESSES  # noqa: E402

CLIENTS = 16
LINES = 20


def start(label: str, queue: bool) -> tuple[object, str]:
    var = Path(tempfile.mkdtemp(prefix=f"pitcrew-bench-embedded-{label}-"))
    env = dict(os.environ)
    env.update({f"PITCREW_{name.upper()}_PORT": str(free_port()) for name in PROCESSES})
    env.update({f"PITCREW_{name.upper()}_SQLITE_WRITE_QUEUE": "true" if queue else "false" for name in APPS})
    env.update({"PITCREW_VAR_DIR": str(var), "PITCREW_LOG_LEVEL": "WARNING"})
    # One bench principal makes every request: the per-principal rate limits would answer 429 instead.
    env.update(
        {"PITCREW_GATEWAY_RATE_LIMIT_READ": "1000000/minute", "PITCREW_GATEWAY_RATE_LIMIT_WRITE": "1000000/minute"}
    )
    env.pop("PITCREW_NATS_URL", None)
    # Each stack starts its own NATS: a free port, so the two never share streams.
    env["PITCREW_NATS_URL"] = f"nats://127.0.0.1:{free_port()}"
    stack, urls, _ = start_stack(var_dir=var, env=env, echo=lambda *_: None, ready_timeout=120)
    return stack, urls["gateway"]


async def seed(client: httpx.AsyncClient) -> dict[str, list[str] | str]:
    """A plan with funded lines to commit against, and the KPI spend metric to read."""
    plan = (
        await client.post(
            "/budget/v1/plans",
            json={"name": "Load", "fiscal_year": 2027, "currency": "EUR", "overspend_policy": "block"},
        )
    ).json()
    await client.post(f"/budget/v1/plans/{plan['id']}/activate")
    lines = []
    for i in range(LINES):
        ln = (
            await client.post(
                f"/budget/v1/plans/{plan['id']}/lines",
                json={"code": f"L{i}", "name": f"Line {i}", "dimensions": {"channel": f"c{i % 4}"}},
            )
        ).json()
        lines.append(ln["id"])
        r = await client.post(
            "/budget/v1/allocations",
            json={"line_id": ln["id"], "period": "2027-03", "amount": "100000000.00", "currency": "EUR"},
        )
        assert r.status_code == 201, r.text
    return {"plan": plan["id"], "lines": lines}


async def one(client: httpx.AsyncClient, world: dict, rnd: random.Random, n: int) -> tuple[bool, float, int]:
    line = rnd.choice(world["lines"])
    write = n % 2 == 0
    kind = (n // 2) % 3
    started = time.perf_counter()
    if write and kind == 0:
        r = await client.post(
            "/budget/v1/commitments",
            json={"line_id": line, "period": "2027-03", "amount": "1.00", "currency": "EUR"},
        )
    elif write and kind == 1:
        item = {
            "type": "leads",
            "value": "1",
            "time": "2027-03-02T10:00:00Z",
            "dimensions": {"channel": "search"},
            "source": "bench",
            "external_id": f"{rnd.random()}",
        }
        r = await client.post("/kpi/v1/measurements", json={"items": [item]})
    elif write:
        r = await client.post(
            "/budget/v1/allocations", json={"line_id": line, "period": "2027-04", "amount": "1.00", "currency": "EUR"}
        )
    elif kind == 0:
        r = await client.get(f"/budget/v1/lines/{line}/balance", params={"from": "2027-01", "to": "2027-12"})
    elif kind == 1:
        r = await client.get(f"/budget/v1/plans/{world['plan']}/summary", params={"group_by": "channel"})
    else:
        r = await client.get(
            "/kpi/v1/metrics/leads/series", params={"from": "2027-01-01", "to": "2027-12-31", "grain": "month"}
        )
    return write, time.perf_counter() - started, r.status_code


async def round_(url: str, token: str, world: dict, seconds: float) -> tuple[list[float], list[float], int, int]:
    reads: list[float] = []
    writes: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, limits=limits, timeout=60
    ) as client:
        end = time.perf_counter() + seconds

        async def worker(i: int) -> None:
            nonlocal errors
            rnd = random.Random(i)
            n = i
            while time.perf_counter() < end:
                write, took, status = await one(client, world, rnd, n)
                n += 1
                (writes if write else reads).append(took)
                errors += status >= 400
                statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(worker(i) for i in range(CLIENTS)))
    if errors:
        print(f"  answers by status: {dict(sorted(statuses.items()))}")
    return reads, writes, errors, len(reads) + len(writes)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


async def run(args: argparse.Namespace, stacks: dict[str, tuple[object, str]]) -> None:
    token = mint_dev_token(GatewaySettings(), "bench", ["admin"], (), 7200)
    worlds = {}
    for label, (_, url) in stacks.items():
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
            worlds[label] = await seed(c)
    results: dict[str, list[tuple[list[float], list[float], int, int, float]]] = {k: [] for k in stacks}
    for r in range(args.rounds):
        for label, (_, url) in stacks.items():
            started = time.perf_counter()
            reads, writes, errors, total = await round_(url, token, worlds[label], args.seconds)
            elapsed = time.perf_counter() - started
            results[label].append((reads, writes, errors, total, elapsed))
            print(
                f"round {r + 1} {label:9}: {total / elapsed:6.0f} req/s, reads p99 {pct(reads, 0.99):7.1f} ms, "
                f"writes p99 {pct(writes, 0.99):7.1f} ms, errors {errors}",
                flush=True,
            )
    print(
        f"\n{CLIENTS} clients, half writes, through the gateway on SQLite ({args.rounds} rounds of {args.seconds:g} s):"
    )
    print(
        f"{'':10} {'req/s':>7} {'reads p50':>10} {'reads p99':>10} {'writes p50':>11} {'writes p99':>11} {'errors':>7}"
    )
    for label, rounds in results.items():
        reads = [x for rd in rounds for x in rd[0]]
        writes = [x for rd in rounds for x in rd[1]]
        rate = statistics.mean(rd[3] / rd[4] for rd in rounds)
        errors = sum(rd[2] for rd in rounds)
        print(
            f"{label:10} {rate:7.0f} {pct(reads, 0.5):8.1f}ms {pct(reads, 0.99):8.1f}ms "
            f"{pct(writes, 0.5):9.1f}ms {pct(writes, 0.99):9.1f}ms {errors:7d}"
        )
    print("aim: writes p99 < 250 ms with the queue on (DESIGN.md)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 4)
    args.seconds = args.seconds or (5.0 if args.quick else 15.0)
    # Started outside the event loop: the launcher migrates each database with its own loop.
    stacks = {"queue off": start("off", False), "queue on": start("on", True)}
    try:
        asyncio.run(run(args, stacks))
    finally:
        for stack, _ in stacks.values():
            stack.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
