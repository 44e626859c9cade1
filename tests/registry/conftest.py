"""Fixtures of the registry tests: a migrated database, the app in process, clients per role (identities
and problem assertions come from tests/harness.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import nats
import pytest
from fastapi import FastAPI
from nats.js.api import DeliverPolicy
from sqlalchemy import select

from pitcrew.migrations import upgrade_async
from services.registry.main import create_app
from services.registry.settings import Settings
from shared.events import Envelope
from tests.harness import identity

ADMIN = identity("dana", "admin")
MOPS = identity("maria", "mops")
FINANCE = identity("fin", "finance")
ANALYST = identity("ana", "analyst")
PARTNER = identity("okta-sync", "partner")


def make_settings(url: str, nats_url: str, **overrides: Any) -> Settings:
    return Settings(database_url=url, nats_url=nats_url, outbox_poll_seconds=0.05, **overrides)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://registry", headers=ADMIN
    )


@pytest.fixture()
async def db_url(new_db) -> str:
    url = await new_db("registry")
    await upgrade_async("registry", url)
    return url


@pytest.fixture()
async def app(db_url, nats_url) -> AsyncIterator[FastAPI]:
    async with running(make_settings(db_url, nats_url)) as application:
        yield application


@pytest.fixture()
async def api(app) -> AsyncIterator[httpx.AsyncClient]:
    async with client(app) as c:
        yield c


async def make_tool(c: httpx.AsyncClient, name: str, **extra: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "vendor": extra.pop("vendor", name.split()[0]),
        "category": "data",
        "owner": {"team": "mops", "person": "dana"},
        "lifecycle": "active",
        **extra,
    }
    r = await c.post("/v1/tools", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def make_contract(c: httpx.AsyncClient, tool_id: str, **extra: Any) -> dict[str, Any]:
    body = {
        "tool_id": tool_id,
        "start": "2027-01-01",
        "end": "2027-12-31",
        "billing_period": "annual",
        "cost": "12000.00",
        "currency": "EUR",
        "seats": 50,
        "auto_renew": True,
        "notice_days": 60,
        "budget_line_code": "MARTECH",
        **extra,
    }
    r = await c.post("/v1/contracts", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def days(n: int) -> str:
    return (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=n)).isoformat()


async def published(nats_url: str, subject: str, subject_id: str | None = None, quiet: float = 0.5) -> list[Envelope]:
    """Every event on `subject` in the REGISTRY stream (optionally of one entity), read from NATS itself."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
        out: list[Envelope] = []
        while True:
            try:
                msg = await sub.next_msg(timeout=quiet)
            except nats.errors.TimeoutError:
                break
            env = Envelope.from_json(msg.data)
            if subject_id is None or env.subject_id == subject_id:
                out.append(env)
        await sub.unsubscribe()
        return out
    finally:
        await nc.close()


async def outbox_rows(app: FastAPI, subject: str, subject_id: str) -> list[dict[str, Any]]:
    rt = app.state.runtime
    t = rt.infra.outbox
    async with rt.transaction(readonly=True) as s:
        rows = (await s.execute(select(t.c.payload, t.c.sent_at).where(t.c.subject == subject))).all()
    payloads = [json.loads(r.payload) | {"_sent": r.sent_at is not None} for r in rows]
    return [p for p in payloads if p["subject_id"] == subject_id]
