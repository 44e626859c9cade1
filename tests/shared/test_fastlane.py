"""The fast lane's exception handling matches Starlette's: status-code handlers, class handlers by MRO,
and anything unhandled left to the server-error middleware."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from shared.fastlane import FastLaneMiddleware


class Tea(BaseModel):
    kind: str


class Spilled(LookupError):
    pass


async def who(request: Request) -> str:
    return request.headers.get("x-who", "nobody")


def make_app(lane: bool) -> FastAPI:
    router = APIRouter()

    @router.post("/brew")
    async def brew(body: Tea, request: Request, by: str = Depends(who)) -> Response:
        if body.kind == "teapot":
            raise HTTPException(418, "I am a teapot")
        if body.kind == "spill":
            raise Spilled("on the floor")
        if body.kind == "boom":
            raise RuntimeError("unhandled")
        return JSONResponse({"kind": body.kind, "by": by, "path": request.url.path}, status_code=201)

    app = FastAPI()
    app.include_router(router)

    @app.exception_handler(418)
    async def teapot(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"status": 418, "said": exc.detail}, status_code=418)

    @app.exception_handler(LookupError)
    async def lookup(request: Request, exc: LookupError) -> JSONResponse:
        return JSONResponse({"status": 404, "missing": str(exc)}, status_code=404)

    if lane:
        app.add_middleware(FastLaneMiddleware, owner=app, routers=[router])
    return app


async def answers(app: FastAPI) -> list[tuple[int, str]]:
    out = []
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        for kind in ("green", "teapot", "spill", "boom"):
            r = await c.post("/brew", json={"kind": kind}, headers={"x-who": "ana"})
            out.append((r.status_code, r.text))
        r = await c.post("/brew", json={"sort": "green"})
        out.append((r.status_code, r.text))
    return out


async def test_the_lane_handles_errors_as_starlette_does():
    laned, plain = await answers(make_app(True)), await answers(make_app(False))
    assert [status for status, _ in laned] == [201, 418, 404, 500, 422]
    assert laned == plain
    assert '"by":"ana"' in laned[0][1] and "I am a teapot" in laned[1][1]
