"""The notify service's domain objects, built once per process from its settings (`ServiceSpec.build`).

Routes reach them through the `domain` dependency, event handlers and the delivery loops through
`runtime.domain`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from fastapi import Request

from services.notify import mail
from services.notify.compose import Composer
from services.notify.decisions import Decider
from services.notify.dispatch import Rules
from services.notify.hooks import HookPolicy, Hooks
from services.notify.links import Links
from services.notify.outbound import Outbound, Policy
from services.notify.settings import Settings
from shared.app import Runtime


@dataclass(frozen=True)
class Notify:
    settings: Settings
    composer: Composer
    links: Links
    outbound: Outbound
    hooks: Hooks
    decider: Decider


def build(runtime: Runtime) -> Notify:
    s = runtime.settings
    assert isinstance(s, Settings)
    rules = Rules(
        rate_limit_count=s.rate_limit_count,
        rate_limit_window=dt.timedelta(seconds=s.rate_limit_window_seconds),
        digest_hour=s.digest_hour,
        action_link_ttl=dt.timedelta(hours=s.action_link_hours),
    )
    links = Links(s.link_secret, s.public_url)
    policy = Policy(
        batch=s.delivery_batch,
        concurrency=s.delivery_concurrency,
        retry_base=s.retry_base_seconds,
        retry_max=s.retry_max_seconds,
        max_attempts=s.max_attempts,
        allow_private_urls=s.allow_private_urls,
        mail_from=s.mail_from,
    )
    hook_policy = HookPolicy(
        batch=s.delivery_batch,
        retry_base=s.retry_base_seconds,
        retry_max=s.retry_max_seconds,
        retry_window=dt.timedelta(seconds=s.subscription_retry_seconds),
        timeout=s.subscription_timeout_seconds,
        allow_private_urls=s.allow_private_urls,
    )
    return Notify(
        settings=s,
        composer=Composer(
            rules,
            s.public_url,
            tuple(s.line_owner_roles),
            tuple(s.metric_owner_roles),
            tuple(s.tool_owner_roles),
            tuple(s.request_owner_roles),
        ),
        links=links,
        outbound=Outbound(
            runtime.db, policy, links, mail.Mailer(s.smtp_url, s.smtp_timeout_seconds), s.delivery_poll_seconds
        ),
        hooks=Hooks(runtime.db, hook_policy, rules, s.delivery_poll_seconds),
        decider=Decider(s.workflow_url, s.identity_secret),
    )


async def domain(request: Request) -> Notify:
    """FastAPI dependency: the notify service's domain objects."""
    notify: Notify = request.app.state.runtime.domain
    return notify
