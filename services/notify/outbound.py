"""The delivery queue: notifications due now go out by e-mail, Slack or Teams; failures wait and retry.

The queue is the `notifications` table, so nothing is lost while a channel is down: a pass claims
due rows by moving their due time a lease ahead (so another replica, or the next pass, leaves them
alone while they are being sent), sends them (e-mail over a few SMTP connections at once), and
records each outcome: sent, or tried again after an exponential backoff. A crash mid-pass leaves
the rows to be claimed again when the lease ends. Bundles (summaries and digests) are rendered
from the rows they hold when they go out.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from email.message import Message
from typing import Any

import httpx
import jinja2
import structlog
from prometheus_client import Counter, Histogram
from sqlalchemy import select, update

from services.notify import chat, mail, urls
from services.notify.links import Links
from services.notify.models import ActionLink, Notification, Person, Team
from services.notify.preferences import REQUIRED
from shared.db import Database, utcnow
from shared.errors import Invalid
from shared.tasks import cancel_and_wait

log = structlog.get_logger("pitcrew.notify.outbound")

SENT = Counter("pitcrew_notify_sent_total", "Notifications delivered", ["channel", "outcome"])
EVENT_TO_SENT = Histogram(
    "pitcrew_notify_latency_seconds",
    "From the notification's creation to its delivery",
    ["channel"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
)
LEASE = dt.timedelta(seconds=120)


@dataclass(frozen=True)
class Policy:
    batch: int
    concurrency: int
    retry_base: float
    retry_max: float
    max_attempts: int
    allow_private_urls: bool
    mail_from: str


@dataclass
class Outgoing:
    row: Notification
    person: Person
    context: dict[str, Any]
    url: str | None = None  # chat webhook


def backoff(policy: Policy, attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(policy.retry_base * 2 ** max(0, attempts - 1), policy.retry_max))


class Outbound:
    def __init__(self, db: Database, policy: Policy, links: Links, mailer: mail.Mailer, poll_seconds: float):
        self.db = db
        self.policy = policy
        self.links = links
        self.mailer = mailer
        self.poll_seconds = poll_seconds
        self.templates: jinja2.Environment = mail.environment()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.http: httpx.AsyncClient | None = None

    def start(self) -> None:
        self.http = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        self._task = asyncio.create_task(self._run(), name="notify-outbound")

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
                done = await self.pass_once()
                if done < self.policy.batch:
                    self._wake.clear()
                    try:
                        async with asyncio.timeout(self.poll_seconds):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the queue keeps going; the rows wait for their lease
                log.warning("notify_outbound_error", error=repr(exc))
                await asyncio.sleep(1.0)

    async def _claim(self, now: dt.datetime) -> list[str]:
        n = Notification
        query = (
            select(n.id)
            .where(n.status == "pending", n.due_at <= now, n.channel != "in_app")
            .order_by(n.due_at)
            .limit(self.policy.batch)
        )
        if not self.db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        async with self.db.transaction() as s:
            ids = list((await s.scalars(query)).all())
            if ids:
                await s.execute(update(n).where(n.id.in_(ids)).values(due_at=now + LEASE))
        return ids

    async def pass_once(self, now: dt.datetime | None = None) -> int:
        """Send what is due; returns how many rows were tried."""
        ids = await self._claim(now or utcnow())
        if not ids:
            return 0
        outgoing, skipped = await self._prepare(ids)
        results: dict[str, str | None] = dict.fromkeys(skipped)
        emails = [o for o in outgoing if o.row.channel == "email"]
        chats = [o for o in outgoing if o.row.channel != "email"]
        results.update(await self._send_emails(emails))
        results.update(await self._send_chats(chats))
        await self._record(results)
        return len(ids)

    async def _prepare(self, ids: list[str]) -> tuple[list[Outgoing], list[str]]:
        async with self.db.transaction(readonly=True) as s:
            rows = list((await s.scalars(select(Notification).where(Notification.id.in_(ids)))).all())
            persons = {
                p.id: p
                for p in (await s.scalars(select(Person).where(Person.id.in_({r.person_id for r in rows})))).all()
            }
            team_names = {p.team for p in persons.values() if p.team}
            teams = {t.name: t for t in (await s.scalars(select(Team).where(Team.name.in_(team_names)))).all()}
            members: dict[str, list[Notification]] = defaultdict(list)
            bundles = [r.id for r in rows if r.kind in ("summary", "digest")]
            if bundles:
                for m in (
                    await s.scalars(
                        select(Notification)
                        .where(Notification.bundle_id.in_(bundles))
                        .order_by(Notification.created_at)
                    )
                ).all():
                    members[m.bundle_id or ""].append(m)
            actions: dict[str, dict[str, str]] = defaultdict(dict)
            for a in (await s.scalars(select(ActionLink).where(ActionLink.notification_id.in_(ids)))).all():
                actions[a.notification_id or ""][a.decision] = self.links.action(a.id)
                actions[a.notification_id or ""]["expires"] = f"{a.expires_at:%Y-%m-%d %H:%M} UTC"
        out, skipped = [], []
        for r in rows:
            p = persons.get(r.person_id)
            if p is None or (r.kind in ("summary", "digest") and not members[r.id]):
                skipped.append(r.id)  # nobody to tell, or an empty bundle: done
                continue
            ctx = self._context(r, members.get(r.id, []), actions.get(r.id, {}))
            url = None
            if r.channel in ("slack", "teams"):
                team = teams.get(p.team or "")
                url = getattr(p, f"{r.channel}_webhook_url") or (
                    getattr(team, f"{r.channel}_webhook_url") if team else None
                )
            out.append(Outgoing(r, p, ctx, url))
        return out, skipped

    def _context(self, r: Notification, members: list[Notification], actions: dict[str, str]) -> dict[str, Any]:
        if r.kind in ("summary", "digest"):
            title = (
                f"Your Pitcrew digest: {len(members)} notification(s)"
                if r.kind == "digest"
                else f"{len(members)} more Pitcrew notification(s), folded into one message"
            )
            items = [{"title": m.title, "link": m.link} for m in members]
            facts: list[Any] = []
            unsubscribe: str | None = self.links.unsubscribe(r.person_id, "*")
        else:
            title, items, facts = r.title, [], r.facts
            unsubscribe = None if r.kind in REQUIRED else self.links.unsubscribe(r.person_id, r.kind)
        return {
            "title": title,
            "facts": facts,
            "link": r.link,
            "items": items,
            "repeats": r.repeats,
            "approve": actions.get("approve"),
            "reject": actions.get("reject"),
            "expires": actions.get("expires"),
            "unsubscribe": unsubscribe,
        }

    async def _send_emails(self, emails: list[Outgoing]) -> dict[str, str | None]:
        if not emails:
            return {}
        built: list[tuple[str, Message]] = []
        for o in emails:
            built.append(
                (
                    o.row.id,
                    mail.compose(
                        self.templates,
                        sender=self.policy.mail_from,
                        to=o.person.email or "",
                        name=o.person.name,
                        message_id=o.row.id,
                        context=o.context,
                        event_id=o.row.event_id,
                    ),
                )
            )
        groups = [built[i :: self.policy.concurrency] for i in range(min(self.policy.concurrency, len(built)))]
        answers = await asyncio.gather(*(self.mailer.send([m for _, m in g]) for g in groups))
        return {
            row_id: error for g, a in zip(groups, answers, strict=True) for (row_id, _), error in zip(g, a, strict=True)
        }

    async def _send_chats(self, chats: list[Outgoing]) -> dict[str, str | None]:
        assert self.http is not None or not chats
        sem = asyncio.Semaphore(self.policy.concurrency)

        async def one(o: Outgoing) -> tuple[str, str | None]:
            if not o.url:
                return o.row.id, f"no {o.row.channel} webhook for {o.person.id} or their team"
            try:
                await urls.check(o.url, f"{o.row.channel}_webhook_url", allow_private=self.policy.allow_private_urls)
            except Invalid as exc:
                return o.row.id, exc.detail
            c = o.context
            items = [(i["title"], i["link"] or "") for i in c["items"]]
            build = chat.slack_body if o.row.channel == "slack" else chat.teams_body
            async with sem:
                assert self.http is not None
                return o.row.id, await chat.post(self.http, o.url, build(c["title"], c["facts"] or items, c["link"]))

        return dict(await asyncio.gather(*(one(o) for o in chats)))

    async def _record(self, results: dict[str, str | None]) -> None:
        now = utcnow()
        async with self.db.transaction() as s:
            rows = (await s.scalars(select(Notification).where(Notification.id.in_(list(results))))).all()
            for r in rows:
                error = results[r.id]
                if error is None:
                    r.status, r.sent_at, r.last_error = "sent", now, None
                    SENT.labels(r.channel, "sent").inc()
                    EVENT_TO_SENT.labels(r.channel).observe(max(0.0, (now - r.created_at).total_seconds()))
                    continue
                r.attempts += 1
                r.last_error = error[:2000]
                if r.attempts >= self.policy.max_attempts:
                    r.status = "failed"
                    SENT.labels(r.channel, "failed").inc()
                else:
                    r.due_at = now + backoff(self.policy, r.attempts)
                    SENT.labels(r.channel, "retry").inc()
