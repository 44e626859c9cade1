"""Per-request (or per-event) context that outlives the router: the correlation id events carry, and
who is acting (the author the audit trail records)."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

request_id_var: ContextVar[str | None] = ContextVar("pitcrew_request_id", default=None)


@dataclass(frozen=True)
class Actor:
    subject: str
    kind: str  # user | api_key | service
    request_id: str | None = None
    method: str | None = None  # the HTTP method, EVENT or TIMER
    path: str | None = None  # the request path, the event's subject or the timer's kind


actor_var: ContextVar[Actor | None] = ContextVar("pitcrew_actor", default=None)
