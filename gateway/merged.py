"""A document merged from every service's part (OpenAPI, AsyncAPI), fetched concurrently and cached.

Each part is fetched from one replica of each service. A service that does not answer
(refused, timed out, 5xx, not JSON) is `unavailable`: the merged document names it
and is kept only briefly, so it comes back soon after the service does. A service
that answers 404 has no such part (a service without events serves no AsyncAPI part):
it is `absent`, which is not a fault.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from gateway.identity import IdentityMinter
from gateway.settings import SERVICE_NAMES, Settings
from gateway.upstream import UpstreamError, Upstreams
from shared.identity import HEADER, service_principal

UNAVAILABLE_TTL_SECONDS = 5.0


@dataclass(frozen=True)
class Part:
    service: str
    state: Literal["ok", "absent", "unavailable"]
    doc: dict[str, Any]


Combine = Callable[[list[Part]], dict[str, Any]]


class MergedDocument:
    def __init__(self, upstreams: Upstreams, path: str, settings: Settings, minter: IdentityMinter):
        self.upstreams = upstreams
        self.minter = minter  # a service's own documents answer only an internal identity
        self.path = path
        self.ttl = settings.openapi_cache_seconds
        self.timeout = settings.health_timeout_seconds
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    async def document(self, combine: Combine) -> dict[str, Any]:
        """`combine(parts)`, from parts at most the cache time old."""
        async with self._lock:
            if self._cached and self._cached[0] > time.monotonic():
                return self._cached[1]
            parts = list(await asyncio.gather(*(self._fetch(svc) for svc in SERVICE_NAMES)))
            doc = combine(parts)
            whole = all(p.state != "unavailable" for p in parts)
            ttl = self.ttl if whole else min(UNAVAILABLE_TTL_SECONDS, self.ttl)
            self._cached = (time.monotonic() + ttl, doc)
            return doc

    async def _fetch(self, service: str) -> Part:
        try:
            async with asyncio.timeout(self.timeout):
                own = [(HEADER, self.minter.mint(service_principal("gateway")))]
                r = await self.upstreams.fetch(service, "GET", self.path, own)
            if r.status_code == 404:
                return Part(service, "absent", {})
            doc = r.json() if r.status_code == 200 else None
        except (UpstreamError, TimeoutError, ValueError):
            doc = None
        if not isinstance(doc, dict):
            return Part(service, "unavailable", {})
        return Part(service, "ok", doc)
