"""HTTP details every service reads the same way: JSON bodies and If-Match versions."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

from shared.errors import Invalid

MAX_VERSION = 2**31 - 1  # versions are INTEGER columns


class _OrjsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class JsonRoute(APIRoute):
    """A route whose JSON body is parsed by orjson, as the fast lane parses it. Why: the standard
    library's parser accepts a lone surrogate (`"\\ud800"`) that no database, event or answer can
    encode; orjson refuses it (and NaN, Infinity), and its error is a `json.JSONDecodeError`, so
    FastAPI answers a 422 on the body as for any malformed JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            return await handler(_OrjsonRequest(request.scope, request.receive))

        return route_handler


def parse_if_match(value: str | None, *, required: bool = False, what: str = "resource") -> int | None:
    """`If-Match: "3"` (or W/"3", or 3) -> 3. Without one: None, or a 428 when the write needs it so
    that a stale write is refused instead of overwriting someone else's change."""
    if value is None:
        if required:
            raise HTTPException(
                428,
                f"Send If-Match with the {what}'s version you last read (the ETag of "
                'GET, e.g. If-Match: "3"), so a stale write is refused instead of '
                "overwriting someone else's change.",
            )
        return None
    raw = value.strip().removeprefix("W/").strip('"')
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10 and int(raw) <= MAX_VERSION):
        raise Invalid.on("header.If-Match", f'{value!r} is not a version this API issued (e.g. "3")')
    return int(raw)
