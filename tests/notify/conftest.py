"""Fixtures of the notify tests: a migrated database, the app in process with a real NATS, a real SMTP
sink (aiosmtpd) and a real HTTP receiver for Slack, Teams and partner webhooks; identities and problem
assertions come from tests/harness.py."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import nats
import pytest
from fastapi import FastAPI

from pitcrew.launcher import free_port
from pitcrew.mailsink import MailSink, controller
from pitcrew.migrations import upgrade_async
from services.notify.container import Notify
from services.notify.main import create_app
from services.notify.settings import Settings
from shared.bus import ensure_streams
from shared.events import Envelope
from tests.conftest import NatsServer
from tests.harness import identity

ADMIN = identity("dana", "admin")


class Smtp:
    """A real aiosmtpd server on a fixed port that a test can stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sink = MailSink(None)
        self.ctl: Any = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.ctl = controller(self.sink, "127.0.0.1", self.port)
        self.ctl.start()

    def stop(self) -> None:
        if self.ctl is not None:
            self.ctl.stop()
            self.ctl = None


class Receiver:
    """A real HTTP server recording each POST (path, headers, body); answers `status` (settable)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                code = receiver.status
                receiver.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                        "status": code,
                    }
                )
                self.send_response(code)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def accepted(self, path: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.requests if 200 <= r["status"] < 300 and (path is None or r["path"] == path)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def nats_url(tmp_path) -> Iterator[str]:
    """A NATS server of this test's own: the notify consumer reads every stream from the start, so a
    server shared with other tests would hand it their events."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server.url
    server.stop()


@pytest.fixture()
def smtp() -> Iterator[Smtp]:
    server = Smtp()
    server.start()
    yield server
    server.stop()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def make_settings(url: str, nats_url: str, smtp_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "nats_url": nats_url,
        "smtp_url": smtp_url,
        "outbox_poll_seconds": 0.05,
        "delivery_poll_seconds": 0.05,
        "retry_base_seconds": 0.2,
        "retry_max_seconds": 1.0,
        "allow_private_urls": True,
        "public_url": "http://gateway.test",
        **overrides,
    }
    return Settings(**values)


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def client(app: FastAPI, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://notify",
        headers=headers if headers is not None else ADMIN,
    )


@pytest.fixture()
async def db_url(new_db) -> str:
    url = await new_db("notify")
    await upgrade_async("notify", url)
    return url


@pytest.fixture()
def overrides() -> dict[str, Any]:
    return {}


@pytest.fixture()
async def app(db_url, nats_url, smtp, overrides) -> AsyncIterator[FastAPI]:
    async with running(make_settings(db_url, nats_url, smtp.url, **overrides)) as application:
        yield application


@pytest.fixture()
async def api(app) -> AsyncIterator[httpx.AsyncClient]:
    async with client(app) as c:
        yield c


def domain(app: FastAPI) -> Notify:
    notify: Notify = app.state.runtime.domain
    return notify


class Publisher:
    """Publishes envelopes on JetStream as the other services' outbox relays do."""

    def __init__(self, nats_url: str):
        self.nats_url = nats_url
        self.nc: Any = None

    async def __aenter__(self) -> Publisher:
        self.nc = await nats.connect(self.nats_url)
        await ensure_streams(self.nc.jetstream())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.nc.close()

    async def publish(
        self, subject: str, data: dict[str, Any], subject_id: str | None = None, event_id: str | None = None
    ) -> Envelope:
        env = Envelope(
            type=subject,
            source=subject.split(".")[0],
            subject_id=subject_id or str(uuid.uuid4()),
            data=data,
            id=event_id or str(uuid.uuid4()),
        )
        await self.nc.jetstream().publish(subject, env.to_json().encode(), headers={"Nats-Msg-Id": env.id})
        return env


@pytest.fixture()
async def bus(nats_url) -> AsyncIterator[Publisher]:
    async with Publisher(nats_url) as p:
        yield p


async def add_person(api: httpx.AsyncClient, person_id: str, **fields: Any) -> dict[str, Any]:
    body = {
        "id": person_id,
        "name": fields.pop("name", person_id.title()),
        "email": f"{person_id}@example.com",
        **fields,
    }
    r = await api.post("/v1/people", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def settle(seconds: float = 0.3) -> None:
    await asyncio.sleep(seconds)
