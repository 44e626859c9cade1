"""One OpenAPI document for the whole suite, and a health view of every service.

Each service's spec is fetched from the service, its paths prefixed with the
service name (as the gateway exposes them), its schema names prefixed too so two
services' `PlanIn`s cannot collide. A service that is down is left out and named
in `x-pitcrew-unavailable`; the document is cached briefly.
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import TYPE_CHECKING, Any

from gateway.settings import SERVICE_NAMES
from gateway.upstream import UpstreamError

if TYPE_CHECKING:
    from gateway.main import Gateway

OPS_PATHS = {"/health", "/ready", "/metrics"}
REF_PREFIX = "#/components/schemas/"


class OpenAPIMerger:
    def __init__(self, gateway: Gateway):
        self.gw = gateway
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    async def document(self, own: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            if self._cached and self._cached[0] > time.monotonic():
                return self._cached[1]
            specs = await asyncio.gather(*(self._fetch(svc) for svc in SERVICE_NAMES))
            doc = merge(own, dict(zip(SERVICE_NAMES, specs, strict=True)))
            cache = self.gw.settings.openapi_cache_seconds
            ttl = cache if all(specs) else min(5.0, cache)
            self._cached = (time.monotonic() + ttl, doc)
            return doc

    async def _fetch(self, service: str) -> dict[str, Any] | None:
        try:
            async with asyncio.timeout(self.gw.settings.health_timeout_seconds):
                r = await self.gw.upstreams.send(service, "GET", "/openapi.json", [], stream=False)
            return r.json() if r.status_code == 200 else None
        except (UpstreamError, TimeoutError, ValueError):
            return None


def merge(own: dict[str, Any], services: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    doc = copy.deepcopy(own)
    doc.setdefault("paths", {})
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    doc["security"] = [{"bearer": []}, {"apiKey": []}]
    tags = doc.setdefault("tags", [])
    unavailable = []
    for service, spec in services.items():
        if not spec:
            unavailable.append(service)
            continue
        prefix = service.capitalize() + "_"
        names = {name: prefix + name for name in (spec.get("components", {}).get("schemas") or {})}
        spec = _rename_refs(spec, names)
        for name, schema in (spec.get("components", {}).get("schemas") or {}).items():
            schemas[names[name]] = schema
        for path, item in (spec.get("paths") or {}).items():
            if path in OPS_PATHS:
                continue
            for op in item.values():
                if isinstance(op, dict) and "responses" in op:
                    op["tags"] = [service] + [t for t in op.get("tags", []) if t != service]
                    if "operationId" in op:
                        op["operationId"] = f"{service}_{op['operationId']}"
            doc["paths"][f"/{service}{path}"] = item
        tags.append({"name": service, "description": spec.get("info", {}).get("description", "")})
    if unavailable:
        doc["x-pitcrew-unavailable"] = unavailable
    return doc


def _rename_refs(node: Any, names: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith(REF_PREFIX):
                name = v[len(REF_PREFIX) :]
                out[k] = REF_PREFIX + names.get(name, name)
            else:
                out[k] = _rename_refs(v, names)
        return out
    if isinstance(node, list):
        return [_rename_refs(v, names) for v in node]
    return node


async def services_health(gw: Gateway) -> dict[str, Any]:
    """Each replica's /ready, checked concurrently with a short timeout."""

    async def probe(url: str) -> dict[str, Any]:
        try:
            r = await gw.upstreams.get_url(url + "/ready", timeout=gw.settings.health_timeout_seconds)
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            return {
                "url": url,
                "status": "ready" if r.status_code == 200 else "not_ready",
                "checks": body.get("checks"),
            }
        except UpstreamError as exc:
            cause = exc.__cause__ or exc
            return {"url": url, "status": "down", "detail": type(cause).__name__}

    pools = gw.upstreams.pools
    results = await asyncio.gather(*(probe(url) for svc in SERVICE_NAMES for url in pools[svc].urls))
    out: dict[str, Any] = {}
    i = 0
    for svc in SERVICE_NAMES:
        replicas = results[i : i + len(pools[svc].urls)]
        i += len(replicas)
        ready = sum(r["status"] == "ready" for r in replicas)
        out[svc] = {
            "status": "ready" if ready == len(replicas) else "degraded" if ready else "down",
            "replicas": replicas,
        }
    return out
