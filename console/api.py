"""The gateway's public REST API, called server side with the signed-in person's own token.

The console holds no authority of its own: every read and write goes through the gateway,
whose policy and the services' checks decide. A refusal comes back as `ApiProblem`, carrying
the problem+json the gateway answered, so pages can show it in plain words.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class ApiProblem(Exception):
    """A problem+json answer (or a transport failure, status 503) from the API."""

    status: int
    title: str
    detail: str
    errors: list[dict[str, Any]] = field(default_factory=list)
    part: str | None = None  # which part of Pitcrew answered (budget, workflow, ...)
    request_id: str | None = None

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"

    @classmethod
    def from_response(cls, r: httpx.Response, part: str | None) -> ApiProblem:
        try:
            body = r.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        return cls(
            status=r.status_code,
            title=str(body.get("title") or r.reason_phrase or "Error"),
            detail=str(body.get("detail") or r.text[:300] or "The request was refused."),
            errors=list(body.get("errors") or []),
            part=part,
            request_id=r.headers.get("x-request-id"),
        )


@dataclass
class Timing:
    """API time spent while building one page (the benchmark compares it with the page's own time).

    Calls made at once (asyncio.gather) overlap: `seconds` is the time at least one call was waiting."""

    calls: int = 0
    spans: list[tuple[float, float]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        total, reach = 0.0, float("-inf")
        for start, end in sorted(self.spans):
            if end > reach:
                total += end - max(start, reach)
                reach = end
        return total


class Api:
    """One person's view of the API for one request."""

    def __init__(self, client: httpx.AsyncClient, token: str | None, timing: Timing | None = None):
        self.client = client
        self.token = token
        self.timing = timing or Timing()

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    async def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        part = path.strip("/").split("/", 1)[0] or None
        started = time.perf_counter()
        try:
            r = await self.client.request(method, path, headers=self._headers(headers), **kw)
        except httpx.HTTPError as exc:
            raise ApiProblem(
                503,
                "Service unavailable",
                f"The {part or 'API'} part of Pitcrew cannot be reached right now ({type(exc).__name__}). "
                "Try again in a moment.",
                part=part,
            ) from exc
        finally:
            self.timing.calls += 1
            self.timing.spans.append((started, time.perf_counter()))
        if r.status_code >= 400:
            raise ApiProblem.from_response(r, part)
        return r

    async def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v not in (None, "")}
        return (await self.request("GET", path, params=clean)).json()

    async def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        r = await self.request("POST", path, json=body if body is not None else {}, **kw)
        return r.json() if r.content else None

    async def items(self, path: str, limit: int = 200, pages: int = 20, **params: Any) -> list[dict[str, Any]]:
        """Every item of a cursor-paginated list (bounded, so a huge list cannot stall a page)."""
        out: list[dict[str, Any]] = []
        cursor = None
        for _ in range(pages):
            page = await self.get(path, limit=limit, cursor=cursor, **params)
            out.extend(page.get("items", []))
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return out
