"""What the gateway costs: the same authenticated GET directly and through the gateway, in one run.

Starts real processes on free ports: a service (the registry on a throwaway SQLite
database by default, or `--upstream minimal`: a tiny shared-library service with
a SQLite-backed list), the gateway in front of it, and load generators in their own
processes (raw asyncio streams on keep-alive connections, uvloop if present: far
cheaper per request than an HTTP client library, and their CPU use is measured and
printed so you can see they are not the bottleneck).

Direct requests carry a minted X-Pitcrew-Identity; gateway requests carry a Bearer
JWT, so authentication, the policy, the rate limiter and identity minting are all
on. Throughput is measured at `--concurrency` connections; added latency at
concurrency 1 (an unloaded p50 is what "adds under 2 ms" means), with direct and
gateway requests sent in turn from one client so both meet the same load from
whatever else runs on the machine.

    .venv/bin/python bench/gateway_overhead.py            # full run
    .venv/bin/python bench/gateway_overhead.py --quick    # a few seconds per phase
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pitcrew.launcher import free_port, wait_for_port  # noqa: E402

# --- the minimal upstream (`--upstream minimal`) ------------------------------------------------


def minimal_app():
    """A service built like the real ones (shared app, identity check) with a cheap SQLite-backed list."""
    from fastapi import APIRouter, Depends
    from sqlalchemy import Column, Integer, String, Table, insert, select

    from shared.app import ServiceSpec, create_service_app, get_runtime
    from shared.db import make_metadata
    from shared.identity import current_principal
    from shared.settings import BaseServiceSettings
    from shared.tables import attach

    metadata = make_metadata()
    infra = attach(metadata)
    items = Table("items", metadata, Column("id", Integer, primary_key=True), Column("name", String(100)))
    router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)])

    @router.get("/items")
    async def list_items(limit: int = 20, rt=Depends(get_runtime)) -> dict:
        async with rt.transaction(readonly=True) as s:
            rows = (await s.execute(select(items).order_by(items.c.id).limit(limit))).all()
        return {"items": [{"id": r.id, "name": r.name} for r in rows], "next_cursor": None}

    async def seed(runtime) -> None:
        async with runtime.db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        async with runtime.transaction() as s:
            if not (await s.execute(select(items.c.id).limit(1))).first():
                await s.execute(insert(items), [{"id": i, "name": f"item {i}"} for i in range(1, 51)])

    settings = BaseServiceSettings(
        service_name="minimal", database_url=os.environ["BENCH_DATABASE_URL"], nats_enabled=False
    )
    spec = ServiceSpec(
        name="minimal",
        title="minimal",
        description="bench upstream",
        infra=infra,
        routers=[router],
        uses_nats=False,
        on_startup=seed,
    )
    return create_service_app(spec, settings)


# --- the load generator ----------------------------------------------------------------------


def _client_proc(
    port: int, path: str, headers: dict[str, str], connections: int, duration: float, out: mp.Queue
) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    ).encode()
    latencies: list[float] = []
    gateway_ms: list[float] = []
    errors = 0

    async def one_connection(deadline: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                status = int(head[9:12])
                for line in head.split(b"\r\n"):
                    lower = line.lower()
                    if lower.startswith(b"content-length:"):
                        length = int(line[15:])
                    elif lower.startswith(b"x-gateway-latency:"):
                        gateway_ms.append(float(line[18:]))
                    elif lower.startswith(b"transfer-encoding: chunked"):
                        raise RuntimeError("chunked answers are not expected here")
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - start)
                if status != 200:
                    errors += 1
        finally:
            writer.close()

    async def main() -> None:
        deadline = time.perf_counter() + duration
        await asyncio.gather(*(one_connection(deadline) for _ in range(connections)))

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    asyncio.run(main())
    wall = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    out.put({"latencies": latencies, "gateway_ms": gateway_ms, "errors": errors, "wall": wall, "cpu": cpu})


def _paired_proc(targets: list[tuple[int, str, dict[str, str]]], duration: float, out: mp.Queue) -> None:
    """Concurrency 1 over several targets in turn (A, B, A, B, ...): each sees the same machine load."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    requests = [
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "\r\n"
        ).encode()
        for port, path, headers in targets
    ]
    latencies: list[list[float]] = [[] for _ in targets]
    gateway_ms: list[list[float]] = [[] for _ in targets]
    errors = 0

    async def main() -> None:
        nonlocal errors
        conns = [await asyncio.open_connection("127.0.0.1", port) for port, _, _ in targets]
        deadline = time.perf_counter() + duration
        while time.perf_counter() < deadline:
            for i, (reader, writer) in enumerate(conns):
                start = time.perf_counter()
                writer.write(requests[i])
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    lower = line.lower()
                    if lower.startswith(b"content-length:"):
                        length = int(line[15:])
                    elif lower.startswith(b"x-gateway-latency:"):
                        gateway_ms[i].append(float(line[18:]))
                await reader.readexactly(length)
                latencies[i].append(time.perf_counter() - start)
                if int(head[9:12]) != 200:
                    errors += 1
        for _, writer in conns:
            writer.close()

    asyncio.run(main())
    out.put({"latencies": latencies, "gateway_ms": gateway_ms, "errors": errors})


def drive_paired(targets: list[tuple[int, str, dict[str, str]]], duration: float) -> list[dict]:
    q: mp.Queue = mp.Queue()
    p = mp.Process(target=_paired_proc, args=(targets, duration, q))
    p.start()
    r = q.get(timeout=duration + 60)
    p.join()
    if r["errors"]:
        raise SystemExit(f"{r['errors']} non-200 answers at concurrency 1")
    lat = r["latencies"]
    out = []
    for i in range(len(targets)):
        values = sorted(lat[i])
        gw = sorted(r["gateway_ms"][i])
        out.append(
            {
                "requests": len(values),
                "p50": _pct(values, 50) * 1000,
                "p99": _pct(values, 99) * 1000,
                "gateway_p50": _pct(gw, 50) if gw else None,
                "gateway_p99": _pct(gw, 99) if gw else None,
            }
        )
    # The added time request by request (each gateway request against the direct one just before it).
    n = min(len(x) for x in lat)
    diffs = sorted((lat[1][k] - lat[0][k]) * 1000 for k in range(n))
    out[1]["paired_added_p50"] = _pct(diffs, 50)
    return out


def drive(port: int, path: str, headers: dict[str, str], concurrency: int, duration: float, processes: int) -> dict:
    """Run the load from `processes` client processes sharing `concurrency` connections."""
    q: mp.Queue = mp.Queue()
    per = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    procs = [mp.Process(target=_client_proc, args=(port, path, headers, n, duration, q)) for n in per if n]
    for p in procs:
        p.start()
    results = [q.get(timeout=duration + 60) for _ in procs]
    for p in procs:
        p.join()
    lat = sorted(x for r in results for x in r["latencies"])
    gw = sorted(x for r in results for x in r["gateway_ms"])
    wall = max(r["wall"] for r in results)
    return {
        "requests": len(lat),
        "rps": len(lat) / wall,
        "errors": sum(r["errors"] for r in results),
        "p50": _pct(lat, 50) * 1000,
        "p99": _pct(lat, 99) * 1000,
        "gateway_p50": _pct(gw, 50) if gw else None,
        "gateway_p99": _pct(gw, 99) if gw else None,
        "client_cpu": sum(r["cpu"] for r in results) / wall,  # cores busy in the load generator
    }


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * p / 100))]


# --- processes -------------------------------------------------------------------------------


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=ROOT)  # noqa: SIM115


def uvicorn_cmd(target: str, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
        *extra,
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short phases (about 20 s in all)")
    ap.add_argument("--upstream", choices=("registry", "minimal"), default="registry")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--duration", type=float, default=None, help="seconds per throughput phase")
    ap.add_argument("--rounds", type=int, default=None, help="direct/gateway alternations (best of each)")
    ap.add_argument("--client-processes", type=int, default=1)
    ap.add_argument("--log-level", default="INFO", help="PITCREW_LOG_LEVEL of both servers (INFO keeps access logs)")
    args = ap.parse_args()
    duration = args.duration or (3.0 if args.quick else 10.0)
    rounds = args.rounds or (1 if args.quick else 2)

    from gateway.devtokens import mint_dev_token
    from gateway.settings import Settings as GatewaySettings
    from pitcrew.migrations import upgrade
    from shared.identity import Principal, mint
    from shared.settings import DEV_IDENTITY_SECRET

    tmp = Path(tempfile.mkdtemp(prefix="pitcrew-bench-gw-"))
    svc_port, gw_port = free_port(), free_port()
    env = {
        **os.environ,
        "PITCREW_LOG_LEVEL": args.log_level,
        "PITCREW_ENVIRONMENT": "development",
        "PITCREW_IDENTITY_SECRET": DEV_IDENTITY_SECRET,
    }
    svc_env = dict(env)
    if args.upstream == "registry":
        db = f"sqlite:///{tmp}/registry.db"
        upgrade("registry", db)
        svc_env.update(
            PITCREW_REGISTRY_DATABASE_URL=db,
            PITCREW_REGISTRY_NATS_ENABLED="false",
            PITCREW_NATS_URL="nats://127.0.0.1:1",
        )
        svc_cmd = uvicorn_cmd("services.registry.main:app", svc_port)
        path = "/v1/tools?limit=20"
        service = "registry"
    else:
        svc_env["BENCH_DATABASE_URL"] = f"sqlite:///{tmp}/minimal.db"
        svc_cmd = uvicorn_cmd("gateway_overhead:minimal_app", svc_port, "--factory", "--app-dir", str(ROOT / "bench"))
        path = "/v1/items?limit=20"
        service = "registry"  # routed under /registry
    gw_db = f"sqlite:///{tmp}/gateway.db"
    upgrade("gateway", gw_db)
    svc_url = f"http://127.0.0.1:{svc_port}"
    gw_env = {
        **env,
        "PITCREW_GATEWAY_DATABASE_URL": gw_db,
        "PITCREW_GATEWAY_BUDGET_URL": svc_url,
        "PITCREW_GATEWAY_WORKFLOW_URL": svc_url,
        "PITCREW_GATEWAY_KPI_URL": svc_url,
        "PITCREW_GATEWAY_REGISTRY_URL": svc_url,
        # The limiter stays on (its cost is part of the figure), just high enough not to refuse.
        "PITCREW_GATEWAY_RATE_LIMIT_READ": "100000000/minute",
    }
    procs = []
    try:
        procs.append(start(svc_cmd, svc_env, tmp / "service.log"))
        wait_for_port("127.0.0.1", svc_port, 120)
        procs.append(start(uvicorn_cmd("gateway.main:app", gw_port), gw_env, tmp / "gateway.log"))
        wait_for_port("127.0.0.1", gw_port, 120)

        identity = mint(Principal("bench", frozenset({"analyst"})), DEV_IDENTITY_SECRET, ttl_seconds=3600)
        token = mint_dev_token(GatewaySettings(), "bench", ["analyst"], (), 3600)
        direct = (svc_port, path, {"X-Pitcrew-Identity": identity})
        through = (gw_port, f"/{service}{path}", {"Authorization": f"Bearer {token}"})

        # Warm up both paths (connections, caches) and check they answer 200.
        for target in (direct, through):
            w = drive(*target, 4, 1.0, 1)
            if w["errors"] or not w["requests"]:
                raise SystemExit(f"warm-up failed on port {target[0]}: {w}; logs in {tmp}")

        best: dict[str, dict] = {}
        for _ in range(rounds):
            for name, target in (("direct", direct), ("gateway", through)):
                r = drive(*target, args.concurrency, duration, args.client_processes)
                if r["errors"]:
                    raise SystemExit(f"{name}: {r['errors']} non-200 answers; logs in {tmp}")
                if name not in best or r["rps"] > best[name]["rps"]:
                    best[name] = r
        # Unloaded: one request at a time, direct and through the gateway in turn, so both see the
        # same background load of this shared machine (in two separate phases, a neighbour's burst
        # in one of them moved the added figure by a millisecond or more).
        pair = drive_paired([direct, through], max(4.0, duration))
        serial = {"direct": pair[0], "gateway": pair[1]}
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    d, g = best["direct"], best["gateway"]
    print(
        f"upstream: {args.upstream} (GET {path}), {os.cpu_count()} cores, concurrency {args.concurrency}, "
        f"{duration:.0f} s x {rounds} round(s), {args.client_processes} client process(es), "
        f"log level {args.log_level}"
    )
    print(f"{'':10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'client cores':>14}")
    for name, r in (("direct", d), ("gateway", g)):
        print(f"{name:10}{r['rps']:>10.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['client_cpu']:>14.2f}")
    print(f"throughput ratio gateway/direct: {g['rps'] / d['rps']:.2f}x  (aim >= 0.78x; nginx keep-alive proxy 0.78x)")
    sd, sg = serial["direct"], serial["gateway"]
    print(
        f"unloaded (concurrency 1): direct p50 {sd['p50']:.2f} ms p99 {sd['p99']:.2f} ms; "
        f"gateway p50 {sg['p50']:.2f} ms p99 {sg['p99']:.2f} ms"
    )
    print(
        f"added at p50 (unloaded): {sg['p50'] - sd['p50']:.2f} ms  (aim < 2 ms); "
        f"median of paired differences {sg['paired_added_p50']:.2f} ms; "
        f"X-Gateway-Latency p50 {sg['gateway_p50']:.2f} ms p99 {sg['gateway_p99']:.2f} ms"
    )
    print(f"unloaded requests: {sd['requests']} direct, {sg['requests']} through the gateway, interleaved")
    print(
        f"added at p50 under load (concurrency {args.concurrency}): {g['p50'] - d['p50']:.2f} ms; "
        f"X-Gateway-Latency p50 {g['gateway_p50']:.2f} ms"
    )


if __name__ == "__main__":
    main()
