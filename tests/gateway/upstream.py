"""A stand-in service for the gateway tests: a real shared-library app that records what it got.

It enforces X-Pitcrew-Identity exactly like the real services (the shared
`current_principal` dependency) and echoes the request, so a test can see the
identity, path, query, headers and body the gateway forwarded. It also honours
Idempotency-Key through the shared idempotency table, like budget and KPI will.
`fail_next` makes it answer `fail_status` (503: a service that is down) that many times;
`answer` (status, body) makes every echo answer that instead (KPI's 200 with refused items).
Budget, KPI and registry have a small event catalogue (served at /asyncapi.json, merged by
the gateway); workflow has none, as a service without events.
"""

from __future__ import annotations

import asyncio
import os

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, StreamingResponse
from pydantic import Field

from shared.app import ServiceSpec, create_service_app, get_runtime
from shared.contracts import Catalogue, Consumed, EventData, EventSpec
from shared.db import make_metadata
from shared.identity import Principal, current_principal
from shared.settings import BaseServiceSettings
from shared.tables import attach

metadata = make_metadata()
infra = attach(metadata)


class ThingHappened(EventData):
    thing_id: str = Field(description="The thing")
    amount: str
    region: str | None = None


class ToolAdded(EventData):
    tool_id: str
    seats: int


CATALOGUES = {
    "budget": Catalogue(
        "budget",
        publishes=(EventSpec("budget.thing.happened", ThingHappened, "A thing happened in the budget"),),
        consumes=(Consumed("registry.tool.added", "Reserve money for the new tool"),),
    ),
    "kpi": Catalogue("kpi", publishes=(), consumes=(Consumed("budget.>", "Every budget event becomes measurements"),)),
    "registry": Catalogue(
        "registry", publishes=(EventSpec("registry.tool.added", ToolAdded, "A tool joined the stack", major=2),)
    ),
}


def make_upstream(name: str, database_url: str) -> FastAPI:
    received: list[dict] = []
    control: dict = {"fail_next": 0, "fail_status": 503, "answer": None}
    router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)])

    @router.get("/items", summary="A cheap list (what the benchmark reads)")
    async def items(limit: int = 20) -> dict:
        return {"items": [{"id": str(i), "name": f"item {i}"} for i in range(min(limit, 100))], "next_cursor": None}

    @router.get("/slow")
    async def slow(seconds: float = 1.0) -> dict:
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    @router.get("/stall")
    async def stall(seconds: float = 1.0) -> StreamingResponse:
        """The head at once, the body only after `seconds`."""

        async def body():
            await asyncio.sleep(seconds)
            yield b"late"

        return StreamingResponse(body(), media_type="text/plain")

    @router.get("/text")
    async def text() -> PlainTextResponse:
        return PlainTextResponse("flowchart LR\n  a --> b\n")

    @router.get("/moved")
    async def moved(to: str) -> RedirectResponse:
        """A redirect to `to` as given (a path in the service's own space, or an absolute URL)."""
        return RedirectResponse(to, status_code=303)

    @router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def echo(
        path: str, request: Request, p: Principal = Depends(current_principal), rt=Depends(get_runtime)
    ) -> JSONResponse:
        if control["fail_next"] > 0:
            control["fail_next"] -= 1
            return JSONResponse({"title": "down"}, status_code=control["fail_status"])
        if control["answer"] is not None:
            return JSONResponse(control["answer"][1], status_code=control["answer"][0])
        body = await request.body()
        record = {
            "service": name,
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "principal": {
                "subject": p.subject,
                "roles": sorted(p.roles),
                "scopes": sorted(p.scopes),
                "kind": p.kind,
                "request_id": p.request_id,
            },
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body.decode() if body else None,
        }

        async def action(_session):
            received.append(record)
            return record

        if request.method == "POST" and request.headers.get("idempotency-key"):
            return await rt.idempotent(request, p, action, status_code=200)
        received.append(record)
        return JSONResponse(record)

    # No catch-all here: `/v2/items/` matches nothing, so the app redirects it to `/v2/items`
    # (Starlette's redirect_slashes, with an absolute URL on the address it was called at).
    plain = APIRouter(prefix="/v2", dependencies=[Depends(current_principal)])

    @plain.get("/items")
    async def plain_items() -> dict:
        return {"items": []}

    settings = BaseServiceSettings(service_name=name, database_url=database_url, nats_enabled=False)
    spec = ServiceSpec(
        name=name,
        title=f"Fake {name}",
        description=f"stand-in for {name}",
        infra=infra,
        routers=[router, plain],
        uses_nats=False,
        on_startup=_create_schema,
        catalogue=CATALOGUES.get(name),
    )
    app = create_service_app(spec, settings)
    app.state.received = received
    app.state.control = control
    return app


async def _create_schema(runtime) -> None:
    async with runtime.db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


def __getattr__(attr: str) -> FastAPI:
    """`uvicorn tests.gateway.upstream:app` with PITCREW_FAKE_NAME / PITCREW_FAKE_DATABASE_URL (real-process tests)."""
    if attr == "app":
        globals()["app"] = application = make_upstream(
            os.environ.get("PITCREW_FAKE_NAME", "registry"),
            os.environ.get("PITCREW_FAKE_DATABASE_URL", "sqlite:///./var/fake-upstream.db"),
        )
        return application
    raise AttributeError(attr)
