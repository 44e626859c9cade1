"""Notify under a burst: 10,000 events published at once, each an e-mail to its metric's owner.

    .venv/bin/python bench/notify_throughput.py           # 10,000 events, 100 people
    .venv/bin/python bench/notify_throughput.py --quick   # 1,000 events

Real processes: a NATS server, the local SMTP sink (`pitcrew.mailsink`, aiosmtpd, storing each
message as a file named by its arrival in ms) and the notify service under uvicorn on a fresh
SQLite database. The events (`kpi.target.at_risk` naming an owner; every person gets e-mail and
in-app, the rate limit set out of the way) are published to JetStream as fast as a client can.
Printed: the messages the sink accepted per second (from the first publish to the last arrival)
and the p50/p99 from an event's publish to its message's arrival (the message carries
X-Pitcrew-Event-Id), beside the baseline measured in the same run: the same number of messages
sent straight to the same sink with aiosmtplib over as many connections as notify uses.
"""

from __future__ import annotations

import argparse
import asyncio
import email.parser
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import httpx
import nats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pitcrew.launcher import free_port, start_nats, wait_for_port  # noqa: E402
from pitcrew.migrations import upgrade  # noqa: E402
from shared.bus import ensure_streams  # noqa: E402
from shared.events import Envelope  # noqa: E402
from shared.identity import HEADER, Principal, mint  # noqa: E402
from shared.settings import DEV_IDENTITY_SECRET  # noqa: E402

CONNECTIONS = 10  # notify's delivery_concurrency default: the baseline uses as many


def start_sink(port: int, directory: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "pitcrew.mailsink", "--port", str(port), "--dir", str(directory)]
    return subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, cwd=ROOT)  # noqa: SIM115


def arrivals(directory: Path, seen: dict[str, float], names: set[str]) -> dict[str, float]:
    """event id -> arrival (s) of every message in the sink's directory; files read once each."""
    parser = email.parser.BytesHeaderParser()
    for f in directory.glob("*.eml"):
        if f.name in names:
            continue
        names.add(f.name)
        with f.open("rb") as fh:
            headers = parser.parse(fh)
        event = headers.get("X-Pitcrew-Event-Id")
        if event:
            seen[event] = int(f.name.split("-", 1)[0]) / 1000
    return seen


def start_notify(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115


def handled(db: Path) -> int:
    """Events the notify consumer has handled (its inbox rows), read from the SQLite file."""
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return int(conn.execute("SELECT count(*) FROM inbox").fetchone()[0])
    except sqlite3.Error:
        return 0


async def raw_sink_rate(port: int, n: int) -> float:
    """Messages/s the sink accepts straight from aiosmtplib, over CONNECTIONS connections."""
    body = "x" * 1500  # about the size of a notification's two parts

    async def one_connection(count: int) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port)
        await client.connect()
        for _ in range(count):
            m = EmailMessage()
            m["From"], m["To"], m["Subject"] = "bench@pitcrew.local", "raw@example.com", "raw"
            m.set_content(body)
            await client.send_message(m)
        await client.quit()

    started = time.perf_counter()
    await asyncio.gather(*(one_connection(n // CONNECTIONS) for _ in range(CONNECTIONS)))
    return (n // CONNECTIONS * CONNECTIONS) / (time.perf_counter() - started)


async def run(n: int, people: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pitcrew-notify-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        nats_port, smtp_port, raw_port, http_port = free_port(), free_port(), free_port(), free_port()
        procs.append(start_nats(nats_port, tmp / "nats", log_file=tmp / "nats.log"))
        procs.append(start_sink(smtp_port, tmp / "mail", tmp / "sink.log"))
        procs.append(start_sink(raw_port, tmp / "raw", tmp / "raw.log"))
        for port in (nats_port, smtp_port, raw_port):
            wait_for_port("127.0.0.1", port)
        db = f"sqlite:///{tmp}/notify.db"
        await asyncio.to_thread(upgrade, "notify", db)
        env = dict(os.environ)
        env.update(
            PITCREW_NOTIFY_DATABASE_URL=db,
            PITCREW_NATS_URL=f"nats://127.0.0.1:{nats_port}",
            PITCREW_NOTIFY_SMTP_URL=f"smtp://127.0.0.1:{smtp_port}",
            PITCREW_NOTIFY_RATE_LIMIT_COUNT="1000000",
            PITCREW_NOTIFY_DELIVERY_POLL_SECONDS="0.05",
            PITCREW_NOTIFY_DELIVERY_BATCH="500",
            PITCREW_LOG_LEVEL="WARNING",
        )
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "services.notify.main:app",
            "--port",
            str(http_port),
            "--log-level",
            "warning",
        ]
        procs.append(start_notify(cmd, env, tmp / "notify.log"))
        base = f"http://127.0.0.1:{http_port}"
        admin = {HEADER: mint(Principal("bench", frozenset({"admin"})), DEV_IDENTITY_SECRET, ttl_seconds=3600)}
        async with httpx.AsyncClient(base_url=base, headers=admin, timeout=30) as c:
            for _ in range(1200):
                try:
                    if (await c.get("/ready")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise SystemExit(f"notify did not become ready in 120 s; see {tmp / 'notify.log'}")
            csv = "id,name,email\n" + "".join(f"p{i},Person {i},p{i}@example.com\n" for i in range(people))
            r = await c.post("/v1/people/import", content=csv, headers={"content-type": "text/csv"})
            assert r.status_code == 200, r.text

        raw = await raw_sink_rate(raw_port, n)

        nc = await nats.connect(f"nats://127.0.0.1:{nats_port}")
        js = nc.jetstream()
        await ensure_streams(js)
        published: dict[str, float] = {}
        started = time.time()
        for i in range(n):
            env_ = Envelope(
                type="kpi.target.at_risk",
                source="kpi",
                subject_id=f"t{i}",
                data={
                    "target_id": f"t{i}",
                    "metric": "leads",
                    "period": "2027-Q1",
                    "actual": "10",
                    "target": "100",
                    "projected": "40",
                    "owner": f"p{i % people}",
                },
                id=str(uuid.uuid4()),
            )
            published[env_.id] = time.time()
            await js.publish(env_.type, env_.to_json().encode(), headers={"Nats-Msg-Id": env_.id})
        publish_s = time.time() - started
        await nc.close()
        deadline = time.time() + 600
        got: dict[str, float] = {}
        names: set[str] = set()
        handled_at = None
        while time.time() < deadline:
            got = arrivals(tmp / "mail", got, names)
            if handled_at is None and handled(tmp / "notify.db") >= n:
                handled_at = time.time() - started
            if len(got) >= n:
                break
            await asyncio.sleep(2.0)
        if len(got) < n:
            print(f"only {len(got)} of {n} messages arrived within 600 s")
        lat = sorted(got[e] - published[e] for e in got if e in published)
        span = max(got.values()) - started
        rate = len(got) / span
        p50 = statistics.median(lat)
        p99 = lat[int(len(lat) * 0.99) - 1]
        print(f"events: {n:,} to {people} people, published in {publish_s:.1f} s ({n / publish_s:,.0f}/s)")
        files = len(names)
        print(f"notify: {len(got):,} e-mails accepted by the sink in {span:.1f} s = {rate:,.0f}/s ({files:,} files)")
        print(f"event -> message: p50 {p50:.2f} s, p99 {p99:.2f} s")
        if handled_at:
            print(f"events handled (inbox rows) within {handled_at:.1f} s of the first publish")
        print(f"baseline, the sink alone over {CONNECTIONS} connections: {raw:,.0f}/s")
        print(f"ratio notify / sink alone: {rate / raw:.2f}x")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 events")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--people", type=int, default=100)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the children on SIGTERM too
    asyncio.run(run(args.events or (1_000 if args.quick else 10_000), args.people))


if __name__ == "__main__":
    main()
