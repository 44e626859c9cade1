"""Liveness, readiness and dependency health are three probes, and a frozen NATS is found by a round trip.

Before: /ready answered 503 while NATS was down, although writes kept working through the outbox,
so a readiness probe would have taken every replica out of rotation during a NATS outage; and a
NATS process frozen for 20 s (SIGSTOP keeps its TCP connections open) was reported connected.
"""

from __future__ import annotations

import os
import signal

import httpx
import pytest

from pitcrew.launcher import free_port
from shared.ops import MetricsPort
from tests.conftest import NatsServer, eventually
from tests.harness import identity
from tests.shared.sample import create_schema, make_app
from tests.shared.test_http import client

pytestmark = pytest.mark.db


async def test_a_frozen_nats_is_reported_degraded_while_the_service_stays_ready_and_writes(new_db, tmp_path):
    nats = NatsServer(tmp_path / "nats")
    nats.start()
    app = make_app(await new_db("health"), nats.url)
    await create_schema(app.state.runtime)
    try:
        async with app.router.lifespan_context(app), client(app) as c:
            await eventually(lambda: app.state.runtime.bus.connected)
            deps = (await c.get("/health/dependencies")).json()
            assert deps["status"] == "ok" and deps["dependencies"]["nats"]["ok"], deps
            assert deps["dependencies"]["nats"]["detail"].startswith("round trip")

            os.kill(nats.proc.pid, signal.SIGSTOP)
            try:
                # The signal is delivered when the process is next scheduled: ask only once it is stopped,
                # or a PING may still meet a running server.
                await eventually(lambda: _state(nats.proc.pid) in ("T", "t"))
                deps = (await c.get("/health/dependencies")).json()
                assert deps["status"] == "degraded"
                assert deps["dependencies"]["nats"] == {
                    "ok": False,
                    "detail": deps["dependencies"]["nats"]["detail"],
                    "required": False,
                }
                detail = deps["dependencies"]["nats"]["detail"]
                assert any(w in detail for w in ("PONG", "no answer", "not connected")), detail
                ready = await c.get("/ready")
                assert ready.status_code == 200, ready.text
                assert ready.json()["checks"]["database"]["ok"] is True
                assert (await c.get("/health")).status_code == 200
                r = await c.post("/v1/things", json={"name": "during", "amount": "1.00"}, headers=identity("dana"))
                assert r.status_code == 201, r.text
            finally:
                os.kill(nats.proc.pid, signal.SIGCONT)

            async def healthy() -> bool:
                return (await c.get("/health/dependencies")).json()["status"] == "ok"

            await eventually(healthy, timeout=30)
    finally:
        nats.stop()


async def test_readiness_needs_the_database(nats_url):
    # A database nobody listens on: the process is alive, but not ready for traffic.
    app = make_app("postgresql://postgres@127.0.0.1:1/nowhere", nats_url)
    async with app.router.lifespan_context(app), client(app) as c:
        assert (await c.get("/health")).status_code == 200
        ready = await c.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not_ready" and ready.json()["checks"]["database"]["ok"] is False
        deps = (await c.get("/health/dependencies")).json()
        assert deps["status"] == "degraded" and deps["dependencies"]["database"]["required"] is True


def test_the_metrics_port_serves_prometheus_to_the_scraper_only_while_running():
    port = free_port()
    server = MetricsPort(port, "127.0.0.1")
    server.start()
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/metrics")
        assert r.status_code == 200 and "python_info" in r.text
    finally:
        server.stop()
    try:
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1)
        raise AssertionError("the metrics port still answers after stop")
    except httpx.ConnectError:
        pass
    MetricsPort(None, "127.0.0.1").start()  # no port configured: nothing listens, nothing fails


def _state(pid: int) -> str:
    """The process's state letter from /proc (T: stopped by a signal)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]
