"""Per-request context that outlives the router: the correlation id events carry."""

from __future__ import annotations

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("pitcrew_request_id", default=None)
