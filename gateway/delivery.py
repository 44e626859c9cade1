"""The webhook forwarder: hands recorded deliveries to their services until they land.

Each call carries `Idempotency-Key: <delivery id>`, so a retry after a lost
answer is a replay at the service, not a second effect. A service that is down
(connection refused, 5xx, 408/425/429, timeout) is retried with exponential
backoff; a 4xx means the service will never take this payload and the delivery
is marked `rejected` with the service's answer for an operator to read, and so
is a 2xx that lists refused items (KPI's ingest: `rejected: [...]`). After
`webhook_max_attempts` a delivery is `dead` (still in the table, never dropped).

Several gateway replicas can run this loop: a delivery is leased (`locked_until`)
with a conditional UPDATE before it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from typing import Any, cast

import structlog
from sqlalchemy import CursorResult, or_, select, update

from gateway import webhooks
from gateway.models import WebhookDelivery
from gateway.settings import Settings
from gateway.upstream import Buffered, UpstreamError, Upstreams
from shared.db import Database, utcnow
from shared.identity import HEADER, mint
from shared.tasks import cancel_and_wait

log = structlog.get_logger("pitcrew.gateway.webhooks")

LEASE = dt.timedelta(seconds=60)
RETRYABLE = {408, 425, 429}


class Forwarder:
    def __init__(self, settings: Settings, db: Database, upstreams: Upstreams):
        self.settings = settings
        self.db = db
        self.upstreams = upstreams
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="gateway-webhook-forwarder")

    async def stop(self, grace: float = 10.0) -> None:
        """Let the current delivery finish (a lease is never left half-settled), then end the loop."""
        if self._task:
            self._stopping = True
            self._wake.set()
            _done, pending = await asyncio.wait({self._task}, timeout=grace)
            if pending:
                await cancel_and_wait(self._task)
            self._task = None

    def kick(self) -> None:
        """A delivery was just recorded: forward it now rather than at the next poll."""
        self._wake.set()

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                busy = await self.run_once()
            except Exception as exc:  # noqa: BLE001 - the loop must survive a database hiccup
                log.warning("webhook_forwarder_error", error=str(exc))
                busy = 0
            if busy or self._stopping:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.webhook_poll_seconds):  # wait_for may swallow a cancel
                    await self._wake.wait()

    async def run_once(self, batch: int = 20) -> int:
        """Forward the deliveries that are due; returns how many were attempted."""
        now = utcnow()
        async with self.db.transaction(readonly=True) as s:
            ids = (
                await s.scalars(
                    select(WebhookDelivery.id)
                    .where(
                        WebhookDelivery.status == "pending",
                        WebhookDelivery.next_attempt_at <= now,
                        or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now),
                    )
                    .order_by(WebhookDelivery.received_at)
                    .limit(batch)
                )
            ).all()
        done = 0
        for delivery_id in ids:
            if self._stopping:
                break
            row = await self._claim(delivery_id)
            if row is not None:
                await self._forward(row)
                done += 1
        return done

    async def _claim(self, row_id: str) -> WebhookDelivery | None:
        now = utcnow()
        async with self.db.transaction() as s:
            claimed = cast(  # an UPDATE's result is a CursorResult (it has a rowcount)
                CursorResult[Any],
                await s.execute(
                    update(WebhookDelivery)
                    .where(
                        WebhookDelivery.id == row_id,
                        WebhookDelivery.status == "pending",
                        or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now),
                    )
                    .values(locked_until=now + LEASE)
                ),
            )
            if claimed.rowcount != 1:
                return None
            return await s.get(WebhookDelivery, row_id)

    async def _forward(self, row: WebhookDelivery) -> None:
        s = self.settings
        identity = mint(
            webhooks.principal_for(row.source, request_id=f"webhook-{row.id}"),
            s.identity_secret,
            s.identity_ttl_seconds,
        )
        outcome, status, error = "delivered", None, None
        for index, call in enumerate(row.requests):
            key = row.delivery_id if index == 0 else f"{row.delivery_id}:{index}"
            headers = {
                HEADER: identity,
                "Idempotency-Key": key,
                "X-Request-ID": f"webhook-{row.id}",
                "Content-Type": "application/json",
            }
            try:
                r = await self.upstreams.fetch(
                    call["service"], "POST", call["path"], list(headers.items()), content=_json(call["body"])
                )
            except UpstreamError as exc:
                outcome, error = "retry", f"{type(exc).__name__}: {exc}"
                break
            status = r.status_code
            if r.is_success:
                refused = refused_items(r)
                if refused is None:
                    continue
                outcome, error = "rejected", refused
                break
            error = r.text[:2000]
            outcome = "retry" if status >= 500 or status in RETRYABLE else "rejected"
            break
        await self._settle(row, outcome, status, error)

    async def _settle(self, row: WebhookDelivery, outcome: str, status: int | None, error: str | None) -> None:
        s = self.settings
        now = utcnow()
        attempts = row.attempts + 1
        values: dict = {"attempts": attempts, "locked_until": None, "last_status": status, "last_error": error}
        if outcome == "delivered":
            values.update(status="delivered", delivered_at=now)
        elif outcome == "rejected":
            values.update(status="rejected")
        elif attempts >= s.webhook_max_attempts:
            values.update(status="dead")
        else:
            values.update(
                next_attempt_at=now
                + webhooks.backoff(attempts, s.webhook_retry_base_seconds, s.webhook_retry_max_seconds)
            )
        async with self.db.transaction() as session:
            await session.execute(update(WebhookDelivery).where(WebhookDelivery.id == row.id).values(**values))
        log_fn = log.info if outcome == "delivered" else log.warning
        log_fn(
            "webhook_forwarded",
            source=row.source,
            delivery=row.delivery_id,
            outcome=values.get("status", outcome),
            attempts=attempts,
            upstream_status=status,
        )


def refused_items(r: Buffered) -> str | None:
    """The answer's text when a service took the call but refused items of it (KPI's ingest answers 200
    with `rejected`: [{index, reason}]): the delivery did not land whole, so it is not `delivered`."""
    if not r.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        answer = r.json()
    except ValueError:
        return None
    if isinstance(answer, dict) and isinstance(answer.get("rejected"), list) and answer["rejected"]:
        return r.text[:2000]
    return None


def _json(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()
