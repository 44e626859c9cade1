"""A tiny service built on the shared library, so the plumbing is tested without a real domain."""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, Field
from sqlalchemy import Column, Integer, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.app import Runtime, ServiceSpec, create_service_app, get_runtime
from shared.db import make_metadata
from shared.events import Envelope
from shared.identity import Principal, current_principal, require_roles
from shared.settings import BaseServiceSettings
from shared.tables import attach

metadata = make_metadata()
infra = attach(metadata)
things = Table(
    "things",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
)
effects = Table(
    "effects",
    metadata,
    Column("event_id", String(36), primary_key=True),
    Column("name", String(100), nullable=False),
)


class ThingIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    amount: Decimal = Field(gt=0)


router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)])


@router.post("/things", status_code=201)
async def create_thing(
    body: ThingIn, request: Request, p: Principal = Depends(current_principal), rt: Runtime = Depends(get_runtime)
):
    async def action(s: AsyncSession) -> dict:
        await s.execute(insert(things).values(name=body.name))
        count = await s.scalar(select(things.c.id).order_by(things.c.id.desc()).limit(1))
        await rt.outbox.add(s, "sample.thing.created", str(count), {"name": body.name, "amount": body.amount})
        return {"id": count, "name": body.name, "amount": body.amount}

    return await rt.idempotent(request, p, action)


@router.get("/admin-only")
async def admin_only(p: Principal = Depends(require_roles("finance"))):
    return {"subject": p.subject}


@router.get("/boom")
async def boom():
    raise RuntimeError("secret internals: password=hunter2")


def make_app(database_url: str, nats_url: str, handlers=None) -> FastAPI:
    settings = BaseServiceSettings(
        service_name="sample", database_url=database_url, nats_url=nats_url, outbox_poll_seconds=0.1
    )
    spec = ServiceSpec(
        name="sample", title="Sample", description="test", infra=infra, routers=[router], handlers=handlers
    )
    return create_service_app(spec, settings)


async def create_schema(runtime: Runtime) -> None:
    async with runtime.db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


def recording_handler(fail_first: dict[str, int] | None = None):
    """A handler that records its effect, and can crash after writing it (rolled back)."""

    async def handle(s: AsyncSession, env: Envelope) -> None:
        await s.execute(insert(effects).values(event_id=env.id, name=env.data.get("name", "")))
        if fail_first is not None and fail_first.get(env.id, 0) < fail_first.get("times", 0):
            fail_first[env.id] = fail_first.get(env.id, 0) + 1
            raise RuntimeError("crash after writing the effect")

    return handle
