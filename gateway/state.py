"""What a running gateway holds: built once at start-up, shared by the front door and the routes.

The app (gateway.main), the ASGI layers (gateway.proxy, gateway.front) and the routes
(gateway.api, gateway.public) all read the one `Gateway` through a `Slot`; nothing here
imports them, so the gateway's modules form no import loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from gateway.auth import Authenticator
from gateway.delivery import Forwarder
from gateway.identity import IdentityMinter
from gateway.merged import MergedDocument
from gateway.policy import Policy
from gateway.ratelimit import RateLimiter
from gateway.settings import Settings
from gateway.upstream import Upstreams
from shared.db import Database


@dataclass
class Gateway:
    settings: Settings
    db: Database
    policy: Policy
    upstreams: Upstreams
    auth: Authenticator
    limiter: RateLimiter
    forwarder: Forwarder
    minter: IdentityMinter
    openapi: MergedDocument
    asyncapi: MergedDocument

    @classmethod
    def build(cls, settings: Settings, db: Database, policy: Policy) -> Gateway:
        upstreams = Upstreams(settings)
        minter = IdentityMinter(settings.identity_secret, settings.identity_ttl_seconds)
        return cls(
            settings=settings,
            db=db,
            policy=policy,
            upstreams=upstreams,
            auth=Authenticator(settings, db),
            limiter=RateLimiter(settings),
            forwarder=Forwarder(settings, db, upstreams),
            minter=minter,
            openapi=MergedDocument(upstreams, "/openapi.json", settings, minter),
            asyncapi=MergedDocument(upstreams, "/asyncapi.json", settings, minter),
        )

    async def aclose(self) -> None:
        await self.forwarder.stop()
        await self.upstreams.aclose()
        await self.auth.aclose()


class Slot:
    """The running `Gateway`, set on start-up and cleared on shutdown (one per app)."""

    def __init__(self) -> None:
        self.current: Gateway | None = None

    def get(self) -> Gateway:
        if self.current is None:
            raise RuntimeError("the gateway has not started (its lifespan has not run)")
        return self.current


def gateway_of(conn: HTTPConnection) -> Gateway:
    """The running gateway of the app serving `conn` (a FastAPI dependency too)."""
    slot: Slot = conn.app.state.gateway
    return slot.get()
