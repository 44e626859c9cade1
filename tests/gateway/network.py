"""Real local ports for the gateway tests: each fake service served by uvicorn behind a TCP front door.

The gateway reaches the services exactly as in production: its aiohttp pool opens
real TCP connections to a uvicorn server. Between the two sits a `FrontDoor`, a
byte relay on its own port, so a test can do to the network what happens to a
real service:

- `down()`: the service is gone: the port refuses connections and every open
  connection (pooled keep-alive ones included) is closed; `up()` listens again on
  the same port.
- `close_reused(n)`: the next `n` requests that arrive on an already used
  keep-alive connection find it closed by the service (the race a keep-alive
  timeout causes): the connection is closed without the request reaching the
  service.

Requests that reach a service are counted per host (`hits`) by a thin ASGI layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn


class _Server(uvicorn.Server):
    """uvicorn in this process and event loop, leaving the test runner's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


class _Counting:
    def __init__(self, app, hits: dict[str, int], host: str):
        self.app, self.hits, self.host = app, hits, host

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            self.hits[self.host] = self.hits.get(self.host, 0) + 1
        await self.app(scope, receive, send)


class FrontDoor:
    """A TCP relay to 127.0.0.1:`target_port` that can refuse connections or close reused ones."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = 0
        self.server: asyncio.Server | None = None
        self.accepted = 0  # connections accepted since the last reset
        self.dropped = 0  # requests that met a connection closed by `close_reused`
        self._close_reused = 0
        self._open: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        if self.server is not None:
            return
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def close_reused(self, n: int) -> None:
        self._close_reused = n

    def reset(self) -> None:
        self.accepted = self.dropped = self._close_reused = 0

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            service_r, service_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        self._open.update((client_w, service_w))
        answered = False

        async def to_service() -> None:
            while data := await client_r.read(65536):
                if answered and self._close_reused > 0:
                    # A request on a reused connection: the service has just closed it.
                    self._close_reused -= 1
                    self.dropped += 1
                    return
                service_w.write(data)
                await service_w.drain()

        async def to_client() -> None:
            nonlocal answered
            while data := await service_r.read(65536):
                answered = True
                client_w.write(data)
                await client_w.drain()

        tasks = [asyncio.ensure_future(to_service()), asyncio.ensure_future(to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except (ConnectionError, OSError):
            pass
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in (client_w, service_w):
                self._open.discard(w)
                w.close()


class ServiceHost:
    """One fake service: uvicorn on a real port, reached through its front door."""

    def __init__(self, name: str, app, hits: dict[str, int]):
        self.name = name
        self.app = app
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._sock = sock
        self.service_port = sock.getsockname()[1]
        config = uvicorn.Config(
            _Counting(app, hits, name), lifespan="off", log_config=None, access_log=False, log_level="warning"
        )
        self.server = _Server(config)
        self.door = FrontDoor(self.service_port)
        self._task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.door.port}"

    @property
    def direct_url(self) -> str:
        """The service's own port, without the front door."""
        return f"http://127.0.0.1:{self.service_port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self.server.serve(sockets=[self._sock]))
        while not self.server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.005)
        await self.door.up()

    async def stop(self) -> None:
        await self.door.down()
        self.server.should_exit = True
        if self._task is not None:
            await self._task


class Network:
    """Every fake service by host name; `down`/`up` and per-host request counts."""

    def __init__(self, hosts: dict[str, ServiceHost], hits: dict[str, int]):
        self.hosts = hosts
        self.hits = hits

    def url(self, host: str) -> str:
        return self.hosts[host].url

    def door(self, host: str) -> FrontDoor:
        return self.hosts[host].door

    async def down(self, host: str) -> None:
        await self.hosts[host].door.down()

    async def up(self, host: str) -> None:
        await self.hosts[host].door.up()

    async def reset(self) -> None:
        self.hits.clear()
        for host in self.hosts.values():
            await host.door.up()
            host.door.reset()
