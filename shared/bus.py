"""The NATS connection: connects in the background and keeps retrying, never blocks start-up.

A service must start and serve reads while NATS is down; its outbox simply
waits. `/ready` reports the connection state.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import nats
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from shared.events import STREAMS
from shared.tasks import cancel_and_wait

log = structlog.get_logger("pitcrew.bus")


class Bus:
    def __init__(self, url: str, name: str, *, enabled: bool = True, stream_replicas: int = 1):
        self.url = url
        self.stream_replicas = stream_replicas
        self.name = name
        self.enabled = enabled
        self.nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return bool(self.nc and self.nc.is_connected and self._ready.is_set())

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("NATS is not connected")
        return self._js

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._connect_loop(), name=f"{self.name}-nats-connect")

    async def wait_connected(self, timeout: float | None = None) -> bool:
        """True once connected, False after `timeout` seconds.

        It always sleeps while NATS is down. `_ready` stays set across a reconnect, so
        waiting on it alone would return at once, and a caller looping on this (the
        outbox relay, the consumers) would spin and starve the event loop.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self.connected:
            step = 0.05 if deadline is None else min(0.05, deadline - loop.time())
            if step <= 0:
                return False
            await asyncio.sleep(step)
        return True

    async def _connect_loop(self) -> None:
        delay = 0.2
        while True:
            try:
                self.nc = await nats.connect(
                    servers=[self.url],
                    name=self.name,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnect,
                    reconnected_cb=self._on_reconnect,
                )
                self._js = self.nc.jetstream(timeout=5)
                await ensure_streams(self._js, replicas=self.stream_replicas)
                self._ready.set()
                log.info("nats_connected", url=self.url)
                return
            except Exception as exc:  # noqa: BLE001 - any failure means: try again later
                log.warning("nats_connect_failed", url=self.url, error=str(exc), retry_in=delay)
                if self.nc is not None:
                    with contextlib.suppress(Exception):
                        await self.nc.close()
                    self.nc = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def ping(self, timeout: float = 1.0) -> tuple[bool, str]:
        """A PING/PONG round trip: a frozen server keeps the TCP connection (and `connected`) for a while,
        only an answer within `timeout` shows it is there."""
        if not self.enabled:
            return True, "disabled"
        nc = self.nc
        if nc is None or not self.connected:
            return False, "not connected"
        started = time.perf_counter()
        try:
            await nc.flush(timeout=timeout)  # type: ignore[arg-type]  # a float works (asyncio.wait_for)
        except Exception as exc:  # noqa: BLE001 - a failed round trip is the answer
            return False, f"no PONG within {timeout:g} s ({type(exc).__name__})"
        return True, f"round trip {(time.perf_counter() - started) * 1000:.1f} ms"

    async def _on_error(self, exc: Exception) -> None:
        log.debug("nats_error", error=str(exc))

    async def _on_disconnect(self) -> None:
        log.warning("nats_disconnected", url=self.url)

    async def _on_reconnect(self) -> None:
        log.info("nats_reconnected", url=self.url)
        if self._js is not None:
            with contextlib.suppress(Exception):
                await ensure_streams(self._js, replicas=self.stream_replicas)

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        self._ready.clear()


async def ensure_streams(js: JetStreamContext, names: list[str] | None = None, replicas: int = 1) -> None:
    """Create the Pitcrew streams that do not exist yet (file storage, 2-minute dedupe window).

    `replicas` is 3 on a 3-node JetStream cluster, so a stream survives losing a node.
    """
    for name in names or list(STREAMS):
        try:
            await js.stream_info(name)
        except NotFoundError:
            await js.add_stream(
                StreamConfig(
                    name=name,
                    subjects=STREAMS[name],
                    duplicate_window=120.0,
                    max_age=30 * 86400.0,
                    num_replicas=replicas,
                )
            )
