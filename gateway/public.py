"""The gateway's public routes (no token): health, the merged OpenAPI and AsyncAPI documents,
the AsyncAPI page and the interactive API docs with their assets served from here.

`/docs` works without the internet: Swagger UI's bundle, stylesheet and icon come from the
`fastapi-swagger` package and are served by the gateway itself; the page names them by
path only (same origin), and Swagger UI's online validator is switched off.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from gateway import asyncapi, openapi
from gateway.health import services_health
from gateway.state import Gateway, gateway_of
from shared.openapi import problems

DOCS_ASSETS = "/docs/assets"
_ASSET_FILES = {
    "swagger-ui-bundle.js": ("swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "swagger-ui.css": ("swagger-ui.css", "text/css; charset=utf-8"),
    "favicon.png": ("favicon-32x32.png", "image/png"),
}
_assets: dict[str, tuple[bytes, str]] = {}


def _asset(name: str) -> tuple[bytes, str]:
    """One of Swagger UI's files from the fastapi-swagger package, read once."""
    if name not in _assets:
        file, media_type = _ASSET_FILES[name]
        _assets[name] = (resources.files("fastapi_swagger.resources").joinpath(file).read_bytes(), media_type)
    return _assets[name]


class ReplicaHealth(BaseModel):
    url: str
    status: str = Field(description="`ready`, `not_ready` (its /ready said no) or `down` (no answer)")
    checks: dict[str, Any] | None = None
    detail: str | None = None


class ServiceHealth(BaseModel):
    status: str = Field(description="`ready` (every replica), `degraded` (some) or `down` (none)")
    replicas: list[ReplicaHealth]


class GatewayHealth(BaseModel):
    status: str = Field(description="`ok` when every service is ready, else `degraded`")
    service: str
    gateway: dict[str, str]
    services: dict[str, ServiceHealth]


router = APIRouter()


@router.get(
    "/health",
    tags=["operations"],
    summary="The gateway and each service's /ready",
    operation_id="gateway_health",
    response_model=GatewayHealth,
    responses=problems(),
)
async def health(gw: Gateway = Depends(gateway_of)) -> GatewayHealth:
    services = await services_health(gw.upstreams, gw.settings.health_timeout_seconds)
    ok = all(v["status"] == "ready" for v in services.values())
    return GatewayHealth.model_validate(
        {"status": "ok" if ok else "degraded", "service": "gateway", "gateway": {"status": "ok"}, "services": services}
    )


@router.get("/openapi.json", include_in_schema=False, response_class=JSONResponse)
async def openapi_document(request: Request, gw: Gateway = Depends(gateway_of)) -> JSONResponse:
    own = request.app.openapi()
    return JSONResponse(await gw.openapi.document(lambda parts: openapi.merge(own, parts)))


@router.get("/asyncapi.json", include_in_schema=False, response_class=JSONResponse)
async def asyncapi_document(gw: Gateway = Depends(gateway_of)) -> JSONResponse:
    return JSONResponse(await gw.asyncapi.document(asyncapi.merged))


@router.get("/asyncapi", include_in_schema=False, response_class=HTMLResponse)
async def asyncapi_page(gw: Gateway = Depends(gateway_of)) -> HTMLResponse:
    return HTMLResponse(asyncapi.page(await gw.asyncapi.document(asyncapi.merged)))


@router.get("/docs", include_in_schema=False, response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
    )


@router.get(DOCS_ASSETS + "/{name}", include_in_schema=False, response_class=Response)
async def swagger_asset(name: str) -> Response:
    if name not in _ASSET_FILES:
        raise HTTPException(404, f"No asset {name!r}; the docs use {', '.join(sorted(_ASSET_FILES))}.")
    content, media_type = _asset(name)
    return Response(content, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})
