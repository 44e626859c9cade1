"""The health view of every service: each replica's /ready, checked concurrently with a short timeout."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.settings import SERVICE_NAMES
from gateway.upstream import UpstreamError, Upstreams


async def services_health(upstreams: Upstreams, timeout: float) -> dict[str, Any]:
    async def probe(url: str) -> dict[str, Any]:
        try:
            r = await upstreams.get_url(url + "/ready", timeout=timeout)
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            return {
                "url": url,
                "status": "ready" if r.status_code == 200 else "not_ready",
                "checks": body.get("checks"),
            }
        except UpstreamError as exc:
            cause = exc.__cause__ or exc
            return {"url": url, "status": "down", "detail": type(cause).__name__}

    pools = upstreams.pools
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
