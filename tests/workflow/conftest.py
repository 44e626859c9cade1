"""Workflow test harness: a migrated database, the real app in-process, identities per call."""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from pitcrew.migrations import upgrade_async
from services.workflow.main import create_app
from services.workflow.models import infra
from services.workflow.settings import Settings
from shared.identity import HEADER, Principal, mint
from shared.settings import DEV_IDENTITY_SECRET

ALWAYS_OPEN = {d: ["00:00", "24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def who(subject: str, *roles: str, scopes: tuple[str, ...] = ()) -> Principal:
    return Principal(subject=subject, roles=frozenset(roles), scopes=frozenset(scopes))


ADMIN = who("ada", "admin")
MOPS = who("mo", "mops")
MARKETER = who("mia", "marketer", scopes=("region:EMEA",))
APPROVER_EMEA = who("emil", "approver", scopes=("region:EMEA",))
APPROVER_US = who("uma", "approver", scopes=("region:NA",))
APPROVER_ALL = who("gus", "approver")
ANALYST = who("ann", "analyst")


class Harness:
    """One running workflow app and a client that signs each call as a given principal."""

    def __init__(self, app: Any, url: str):
        self.app = app
        self.url = url
        self.runtime = app.state.runtime
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")

    async def call(
        self,
        method: str,
        path: str,
        as_: Principal,
        json: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        h = {HEADER: mint(as_, DEV_IDENTITY_SECRET), **(headers or {})}
        return await self.client.request(method, path, json=json, headers=h, params=params)

    async def call_raw(
        self, method: str, path: str, as_: Principal, *, content: bytes, headers: dict[str, str], params: Any = None
    ) -> httpx.Response:
        h = {HEADER: mint(as_, DEV_IDENTITY_SECRET), **headers}
        return await self.client.request(method, path, content=content, headers=h, params=params)

    async def ok(self, method: str, path: str, as_: Principal, json: Any = None, status: int = 200, **kw: Any) -> Any:
        r = await self.call(method, path, as_, json, **kw)
        assert r.status_code == status, r.text
        return r.json()

    async def events(self, subject: str | None = None) -> list[dict[str, Any]]:
        """What the service wrote to its outbox, oldest first (the envelopes as published)."""
        import json

        t = infra.outbox
        q = select(t.c.payload).order_by(t.c.seq)
        if subject:
            q = q.where(t.c.subject == subject)
        async with self.runtime.transaction(readonly=True) as s:
            return [json.loads(p) for p in (await s.scalars(q)).all()]

    async def timer_counts(self) -> dict[str, int]:
        t = infra.timers
        async with self.runtime.transaction(readonly=True) as s:
            rows = (await s.execute(select(t.c.status, func.count()).group_by(t.c.status))).all()
        return {status: n for status, n in rows}

    async def short_sla_definition(
        self, key: str, seconds: float, *, warn_at: str = "0.5", escalation: dict | None = None, **stage: Any
    ) -> dict[str, Any]:
        """A definition on an always-open calendar whose SLA lasts `seconds` of wall time."""
        await self.ensure_always_open()
        body = {
            "key": key,
            "name": key,
            "calendar": "always",
            "stages": [
                {
                    "name": "Review",
                    "assignees": stage.pop("assignees", {"roles": ["approver"]}),
                    "sla": {"business_hours": str(round(seconds / 3600, 8)), "calendar": "always", "warn_at": warn_at},
                    "escalation": escalation if escalation is not None else {"reassign_to_role": "mops"},
                    **stage,
                }
            ],
        }
        return await self.ok("POST", "/v1/definitions", ADMIN, body, status=201)

    async def ensure_always_open(self) -> None:
        r = await self.call("GET", "/v1/calendars/always", ADMIN)
        if r.status_code == 404:
            await self.ok(
                "POST", "/v1/calendars", ADMIN, {"key": "always", "timezone": "UTC", "hours": ALWAYS_OPEN}, status=201
            )

    async def start(
        self, key: str, as_: Principal = MARKETER, context: dict | None = None, subject_id: str = "c-1"
    ) -> dict[str, Any]:
        body = {
            "definition_key": key,
            "subject": {"type": "commitment", "id": subject_id, "service": "budget"},
            "context": context if context is not None else {"amount": "25000.00", "region": "EMEA"},
        }
        return await self.ok("POST", "/v1/instances", as_, body, status=201)


def settings_for(url: str, nats_url: str | None = None) -> Settings:
    return Settings(
        database_url=url,
        nats_url=nats_url or "nats://127.0.0.1:1",
        nats_enabled=nats_url is not None,
        outbox_poll_seconds=0.1,
        log_json=False,
        attachments_dir=tempfile.mkdtemp(prefix="pitcrew-wf-attachments-"),
    )


@pytest.fixture()
async def db_url(new_db) -> str:
    url = await new_db("wf")
    await upgrade_async("workflow", url)
    return url


@pytest.fixture()
async def wf(db_url: str) -> AsyncIterator[Harness]:
    app = create_app(settings_for(db_url))
    async with app.router.lifespan_context(app):
        h = Harness(app, db_url)
        yield h
        await h.client.aclose()


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)
