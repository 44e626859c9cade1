"""Sending partner deliveries: Standard Webhooks signatures, in order per subject, backoff, disabling.

Each pass takes the oldest pending delivery of each (subscription, subject) that is due, so a later
event about the same subject never overtakes an earlier one; sends it signed (`webhook-id`,
`webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`); logs the attempt with its
status and latency. A failure waits an exponentially growing time; after `retry_window` of failing
(three days by default) the delivery fails, the subscription is disabled and its owner told.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass

import httpx
import structlog
from sqlalchemy import select, update

from services.notify import dispatch, urls
from services.notify.dispatch import Message, Rules
from services.notify.models import Delivery, DeliveryAttempt, Person, Subscription
from shared.db import Database, utcnow
from shared.errors import Invalid
from shared.tasks import cancel_and_wait
from shared.uow import UnitOfWork

log = structlog.get_logger("pitcrew.notify.hooks")
LEASE = dt.timedelta(seconds=120)


@dataclass(frozen=True)
class HookPolicy:
    batch: int
    retry_base: float
    retry_max: float
    retry_window: dt.timedelta
    timeout: float
    allow_private_urls: bool


def key_of(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(key_of(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


@dataclass
class Outcome:
    status_code: int | None
    latency_ms: float
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class Hooks:
    def __init__(self, db: Database, policy: HookPolicy, rules: Rules, poll_seconds: float):
        self.db = db
        self.policy = policy
        self.rules = rules
        self.poll_seconds = poll_seconds
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.http: httpx.AsyncClient | None = None

    def start(self) -> None:
        self.http = httpx.AsyncClient(timeout=self.policy.timeout, follow_redirects=False)
        self._task = asyncio.create_task(self._run(), name="notify-hooks")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self.http is not None:
            await self.http.aclose()

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                sent = await self.pass_once()
                if not sent:
                    self._wake.clear()
                    try:
                        async with asyncio.timeout(self.poll_seconds):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep delivering; the rows wait for their lease
                log.warning("notify_hooks_error", error=repr(exc))
                await asyncio.sleep(1.0)

    async def _claim(self, now: dt.datetime) -> list[tuple[Delivery, Subscription]]:
        """The oldest pending delivery per (subscription, subject), if it is due, leased to this pass."""
        d = Delivery
        query = (
            select(d, Subscription)
            .join(Subscription, Subscription.id == d.subscription_id)
            .where(d.status == "pending", Subscription.status == "active")
            .order_by(d.seq)
            .limit(self.policy.batch * 10)
        )
        if not self.db.is_sqlite:
            query = query.with_for_update(of=d, skip_locked=True)
        chosen: list[tuple[Delivery, Subscription]] = []
        async with self.db.transaction() as s:
            seen: set[tuple[str, str]] = set()
            for row, sub in (await s.execute(query)).all():
                key = (row.subscription_id, row.subject_id)
                if key in seen:
                    continue  # an earlier one for this subject is still on its way
                seen.add(key)
                if row.next_attempt_at <= now and len(chosen) < self.policy.batch:
                    chosen.append((row, sub))
            if chosen:
                await s.execute(
                    update(d).where(d.id.in_([c.id for c, _ in chosen])).values(next_attempt_at=now + LEASE)
                )
        return chosen

    async def pass_once(self, now: dt.datetime | None = None) -> int:
        chosen = await self._claim(now or utcnow())
        if not chosen:
            return 0
        outcomes = await asyncio.gather(*(self._send(d, sub) for d, sub in chosen))
        await self._record([(d.id, sub.id, o) for (d, sub), o in zip(chosen, outcomes, strict=True)])
        return len(chosen)

    async def _send(self, d: Delivery, sub: Subscription) -> Outcome:
        started = time.perf_counter()
        try:
            await urls.check(sub.url, "url", allow_private=self.policy.allow_private_urls)
        except Invalid as exc:
            return Outcome(None, 0.0, exc.detail)
        body = d.payload.encode()
        ts = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": d.id,
            "webhook-timestamp": str(ts),
            "webhook-signature": signature(sub.secret, d.id, ts, body),
            "user-agent": "Pitcrew-Webhooks/1",
        }
        assert self.http is not None
        try:
            r = await self.http.post(sub.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Outcome(None, (time.perf_counter() - started) * 1000, f"{type(exc).__name__}: {exc}"[:500])
        elapsed = (time.perf_counter() - started) * 1000
        return Outcome(r.status_code, elapsed, None if r.is_success else r.text[:500])

    async def _record(self, results: list[tuple[str, str, Outcome]]) -> None:
        now = utcnow()
        async with self.db.transaction() as session:
            uow = UnitOfWork(session)
            for delivery_id, sub_id, o in results:
                uow.add(
                    DeliveryAttempt(
                        delivery_id=delivery_id,
                        at=now,
                        status_code=o.status_code,
                        latency_ms=o.latency_ms,
                        error=o.error,
                    )
                )
                row = await uow.scalar(select(Delivery).where(Delivery.id == delivery_id))
                if row is None:
                    continue
                row.attempts += 1
                row.last_status, row.last_error = o.status_code, o.error
                if o.ok:
                    row.status, row.delivered_at = "delivered", now
                    continue
                row.first_failed_at = row.first_failed_at or now
                if now - row.first_failed_at >= self.policy.retry_window:
                    row.status = "failed"
                    await self._disable(uow, sub_id, f"delivery {row.id} failed for {self.policy.retry_window}", now)
                else:
                    wait = min(self.policy.retry_base * 2 ** (row.attempts - 1), self.policy.retry_max)
                    row.next_attempt_at = now + dt.timedelta(seconds=wait)
            await uow.flush()

    async def _disable(self, uow: UnitOfWork, sub_id: str, reason: str, now: dt.datetime) -> None:
        sub = await uow.get(Subscription, sub_id)
        if sub is None or sub.status != "active":
            return
        sub.status, sub.disabled_at, sub.disabled_reason = "disabled", now, reason
        log.warning("notify_subscription_disabled", subscription=sub_id, reason=reason)
        owner = await uow.get(Person, sub.owner)
        if owner is None or not owner.active:
            return
        m = Message(
            "subscription_disabled",
            f"Your event subscription to {sub.url} was disabled",
            [
                ("Subscription", sub.id),
                ("Why", reason),
                ("Turn it on again", "POST /notify/v1/subscriptions/{id}/redeliver"),
            ],
        )
        await dispatch.notify(
            uow, self.rules, owner, m, event_id=str(uuid.uuid4()), dedupe_key=f"disabled:{sub.id}:{now.isoformat()}"
        )
