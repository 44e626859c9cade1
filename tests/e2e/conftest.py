"""End-to-end harness: the real launcher's processes, a real NATS, every call through the gateway."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.devtokens import mint_dev_token
from gateway.settings import Settings as GatewaySettings
from pitcrew.launcher import Stack, free_port, start_stack
from pitcrew.topology import PROCESSES
from tests.conftest import NatsServer

WEBHOOK_SECRETS = {"erp": "erp-e2e-secret-0123456789abcdef", "crm": "crm-e2e-secret-0123456789abcdef"}


def wait_for(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (AssertionError, KeyError, IndexError, httpx.HTTPError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"{what or 'condition'} not met within {timeout}s; last: {last!r}")


@dataclass
class Cluster:
    stack: Stack
    urls: dict[str, str]
    nats: Any

    @property
    def gateway(self) -> str:
        return self.urls["gateway"]

    def client(self, sub: str, *roles: str, scopes: tuple[str, ...] = ()) -> httpx.Client:
        token = mint_dev_token(GatewaySettings(), sub, roles, scopes, ttl=3600)
        return httpx.Client(base_url=self.gateway, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def webhook(self, source: str, type_: str, data: dict[str, Any], delivery: str | None = None) -> httpx.Response:
        body = json.dumps({"type": type_, "data": data}).encode()
        ts = str(int(time.time()))
        delivery = delivery or uuid.uuid4().hex
        # Signed over the delivery id, the timestamp and the body (docs/gateway.md).
        signed = f"{delivery}.{ts}.".encode() + body
        sig = hmac.new(WEBHOOK_SECRETS[source].encode(), signed, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Pitcrew-Timestamp": ts,
            "X-Pitcrew-Delivery": delivery,
            "X-Pitcrew-Signature": f"sha256={sig}",
        }
        return httpx.post(f"{self.gateway}/webhooks/{source}", content=body, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def own_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A NATS server for one module's cluster alone.

    A fresh cluster creates its durable consumers with "deliver all": on the session's
    shared server it would also consume the events other tests left in the streams.
    """
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, own_nats: NatsServer) -> Iterator[Cluster]:
    nats_server = own_nats
    var = tmp_path_factory.mktemp("stack")
    env = dict(os.environ)
    env.update({f"PITCREW_{name.upper()}_PORT": str(free_port()) for name in PROCESSES})
    env["PITCREW_GATEWAY_WEBHOOK_SECRETS"] = json.dumps(WEBHOOK_SECRETS)
    env["PITCREW_VAR_DIR"] = str(var)
    stack, urls, _ = start_stack(
        var_dir=Path(var), env=env, nats_url=nats_server.url, echo=lambda *_: None, ready_timeout=180
    )
    try:
        yield Cluster(stack, urls, nats_server)
    finally:
        stack.stop()
