"""Per-principal rate limits by route class (read, write, webhook), with the `limits` library.

Memory storage by default (per gateway process); a Redis URL shares the counters
between replicas. If the storage is unreachable the gateway lets requests through
and logs it: a broken Redis must not take the whole API down.
"""

from __future__ import annotations

import math
import time

import structlog
from limits import RateLimitItem, parse
from limits.aio.strategies import FixedWindowRateLimiter
from limits.storage import storage_from_string

from gateway.settings import Settings

log = structlog.get_logger("pitcrew.gateway.ratelimit")

ROUTE_CLASSES = ("read", "write", "webhook")


class RateLimiter:
    def __init__(self, settings: Settings):
        url = settings.rate_limit_storage_url
        if not url.startswith("async+"):
            url = "async+" + url
        self.storage = storage_from_string(url)
        self.limiter = FixedWindowRateLimiter(self.storage)
        self.items: dict[str, RateLimitItem] = {
            "read": parse(settings.rate_limit_read),
            "write": parse(settings.rate_limit_write),
            "webhook": parse(settings.rate_limit_webhook),
        }

    async def check(self, route_class: str, key: str) -> float | None:
        """None when the request may pass; otherwise seconds until it may retry."""
        item = self.items[route_class]
        try:
            if await self.limiter.hit(item, route_class, key):
                return None
            reset, _remaining = await self.limiter.get_window_stats(item, route_class, key)
        except Exception as exc:  # noqa: BLE001 - fail open on a storage outage, loudly
            log.warning("rate_limit_storage_error", error=str(exc))
            return None
        return max(1.0, math.ceil(reset - time.time()))

    def describe(self, route_class: str) -> str:
        return str(self.items[route_class])
