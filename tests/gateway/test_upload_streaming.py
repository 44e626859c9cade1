"""Uploads go through the gateway as they arrive: bounded by the upload cap whatever Content-Length
says, byte-identical at the service, never forwarded before authentication, and never held whole.

The workflow service here is a small fake on a real port (uvicorn) that records each body as it
arrives: when its first bytes come, and whether the body came whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pitcrew.launcher import free_port
from tests.gateway.conftest import bearer, gateway_settings, running_gateway
from tests.gateway.network import _Server
from tests.harness import assert_problem

pytestmark = pytest.mark.db

KIB = 1024
MIB = 1024 * KIB
UPLOAD = "/workflow/v1/requests/r1/attachments"


@dataclass
class Received:
    """What the fake workflow service saw of each upload."""

    first_bytes: asyncio.Event = field(default_factory=asyncio.Event)
    bodies: list[bytes] = field(default_factory=list)  # whole bodies only
    cut: int = 0  # bodies that broke off before their end
    headers: list[dict[str, str]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def fake_workflow() -> AsyncIterator[tuple[str, Received]]:
    seen = Received()

    async def upload(request: Request) -> JSONResponse:
        if request.headers.get("x-fake-keep") == "no":  # hashed as it comes, nothing kept
            digest, size = hashlib.sha256(), 0
            async for chunk in request.stream():
                digest.update(chunk)
                size += len(chunk)
            return JSONResponse({"size": size, "sha256": digest.hexdigest()}, status_code=201)
        seen.headers.append(dict(request.headers))
        pieces = []
        try:
            async for chunk in request.stream():
                if chunk:
                    seen.first_bytes.set()
                    pieces.append(chunk)
        except ClientDisconnect:
            seen.cut += 1
            return JSONResponse({"cut": True}, status_code=400)
        body = b"".join(pieces)
        seen.bodies.append(body)
        return JSONResponse({"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}, status_code=201)

    async def refuse_unread(request: Request) -> JSONResponse:
        seen.headers.append(dict(request.headers))
        problem = {"type": "about:blank", "title": "Conflict", "status": 409, "detail": "closed"}
        return JSONResponse(problem, status_code=409, media_type="application/problem+json")

    port = free_port()
    app = Starlette(
        routes=[
            Route("/v1/requests/{ref}/attachments", upload, methods=["POST"]),
            Route("/v1/deliverables/{ref}/attachments", refuse_unread, methods=["POST"]),
        ]
    )
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def gateway_before(new_db, workflow_url: str, cap: int, **more):
    settings = gateway_settings(
        await new_db("gateway"),
        workflow_url=workflow_url,
        max_request_body_bytes=MIB,
        upload_max_body_bytes=cap,
        **more,
    )
    async with running_gateway(settings) as gw:
        yield gw


class Pieces:
    """A request body sent piece by piece (no Content-Length: chunked), counting what was taken."""

    def __init__(self, data: bytes, piece: int = 256 * KIB):
        self.data, self.piece, self.taken = data, piece, 0

    async def __aiter__(self):
        for at in range(0, len(self.data), self.piece):
            chunk = self.data[at : at + self.piece]
            self.taken += len(chunk)
            yield chunk


async def test_an_upload_under_the_cap_arrives_byte_identical(new_db, net, token):
    data = os.urandom(3 * MIB + 12345)
    async with fake_workflow() as (url, seen), gateway_before(new_db, url, cap=4 * MIB) as gw:
        headers = {**bearer(token("marketer")), "Content-Type": "application/octet-stream"}
        # With a Content-Length, and streamed without one (chunked).
        for content in (data, Pieces(data), Pieces(data, piece=1000)):
            r = await gw.post(UPLOAD, content=content, headers=headers)
            assert r.status_code == 201, r.text
            assert r.json() == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        assert seen.bodies == [data, data, data] and seen.cut == 0
        # A small body still goes in one piece, with its length.
        r = await gw.post(UPLOAD, content=b"small file", headers=headers)
        assert r.status_code == 201 and seen.bodies[-1] == b"small file"
        assert seen.headers[-1].get("content-length") == "10"
        assert seen.headers[0].get("content-type") == "application/octet-stream"


async def test_an_upload_over_the_cap_is_413_whatever_its_content_length_says(new_db, net, token):
    cap = 2 * MIB
    data = os.urandom(5 * MIB)
    async with fake_workflow() as (url, seen), gateway_before(new_db, url, cap=cap) as gw:
        auth = bearer(token("marketer"))
        # A truthful Content-Length over the cap: refused unread.
        r = await gw.post(UPLOAD, content=data, headers={**auth, "Content-Length": str(len(data))})
        assert "2,097,152" in assert_problem(r, 413)["detail"]
        assert seen.headers == []
        # No Content-Length: refused once the count passes the cap, the rest never read.
        body = Pieces(data)
        r = await gw.post(UPLOAD, content=body, headers=auth)
        assert "2,097,152" in assert_problem(r, 413)["detail"]
        assert cap < body.taken <= cap + 2 * body.piece
        # A Content-Length under the cap that the body does not keep to: the count decides.
        body = Pieces(data)
        r = await gw.post(UPLOAD, content=body, headers={**auth, "Content-Length": "1000"})
        assert "2,097,152" in assert_problem(r, 413)["detail"]
        assert body.taken <= cap + 2 * body.piece
        # The service never took a cut body for a whole one.
        for _ in range(100):
            if seen.cut == len(seen.headers):
                break
            await asyncio.sleep(0.02)
        assert seen.bodies == [] and seen.cut == len(seen.headers) <= 2
        # Exactly the cap passes.
        r = await gw.post(UPLOAD, content=Pieces(data[:cap]), headers=auth)
        assert r.status_code == 201 and seen.bodies == [data[:cap]]


async def test_an_upload_is_never_forwarded_before_authentication(new_db, net, token):
    async with fake_workflow() as (url, seen), gateway_before(new_db, url, cap=4 * MIB) as gw:
        body = Pieces(os.urandom(3 * MIB))
        assert_problem(await gw.post(UPLOAD, content=body), 401)
        assert body.taken <= body.piece  # nothing past what the transport holds was read
        body = Pieces(os.urandom(3 * MIB))
        assert_problem(await gw.post(UPLOAD, content=body, headers=bearer(token("analyst"))), 403)
        assert body.taken <= body.piece
        assert seen.headers == []


async def test_the_gateway_forwards_an_upload_before_the_whole_of_it_has_arrived(new_db, net, token):
    """A slow client: the first piece, then nothing until the service has seen bytes of it. A gateway
    that read the whole body first would never forward that piece, and the wait would time out."""
    data = os.urandom(6 * MIB)
    first, rest = data[: 256 * KIB], data[256 * KIB :]
    forwarded_early: list[bool] = []
    async with fake_workflow() as (url, seen), gateway_before(new_db, url, cap=8 * MIB) as gw:

        async def slow_client():
            yield first
            try:
                await asyncio.wait_for(seen.first_bytes.wait(), timeout=5)
                forwarded_early.append(True)
            except TimeoutError:
                forwarded_early.append(False)
            for at in range(0, len(rest), 512 * KIB):
                yield rest[at : at + 512 * KIB]

        r = await gw.post(UPLOAD, content=slow_client(), headers=bearer(token("marketer")))
        assert r.status_code == 201, r.text
        assert forwarded_early == [True], "the service saw nothing until the client had sent the whole body"
        assert seen.bodies == [data]


async def test_a_service_answering_before_the_whole_upload_is_relayed(new_db, net, token):
    """The service refuses without reading (a closed deliverable): its answer reaches the client, the
    upstream request is broken off (the connection is not pooled half-written) and the next one works."""
    async with fake_workflow() as (url, seen), gateway_before(new_db, url, cap=8 * MIB) as gw:
        body = Pieces(os.urandom(6 * MIB))
        r = await gw.post("/workflow/v1/deliverables/d1/attachments", content=body, headers=bearer(token("marketer")))
        assert_problem(r, 409)
        # The gateway answered and then the next upload goes through as usual.
        data = os.urandom(MIB)
        r = await gw.post(UPLOAD, content=Pieces(data), headers=bearer(token("marketer")))
        assert r.status_code == 201 and seen.bodies == [data]


async def test_an_upload_that_stops_arriving_is_408_not_a_service_timeout(new_db, net, token):
    async with (
        fake_workflow() as (url, seen),
        gateway_before(new_db, url, cap=8 * MIB, upstream_timeout_seconds=0.5) as gw,
    ):

        async def stalls():
            yield os.urandom(256 * KIB)
            await asyncio.sleep(1.5)
            yield os.urandom(256 * KIB)

        r = await gw.post(UPLOAD, content=stalls(), headers=bearer(token("marketer")))
        assert "stopped arriving" in assert_problem(r, 408)["detail"]

        # A slow upload that keeps arriving is not cut by the timeout: each piece moves it on.
        async def slow_but_steady():
            for _ in range(8):
                yield os.urandom(128 * KIB)
                await asyncio.sleep(0.2)

        r = await gw.post(UPLOAD, content=slow_but_steady(), headers=bearer(token("marketer")))
        assert r.status_code == 201 and r.json()["size"] == 8 * 128 * KIB


class Same:
    """A large body of one repeated piece (nothing held but the piece)."""

    def __init__(self, size: int, piece: int = 256 * KIB):
        self.size, self.piece = size, piece

    async def __aiter__(self):
        chunk = b"y" * self.piece
        for _ in range(self.size // self.piece):
            yield chunk


async def test_a_24_mib_upload_takes_a_few_mib_of_memory_not_24(new_db, net, token):
    """Every allocation of the process (client, gateway, fake service) traced while 24 MiB go through:
    a gateway holding the body whole peaks at over 48 MiB (measured: 68 MiB); streaming, under 2 MiB."""
    async with fake_workflow() as (url, _), gateway_before(new_db, url, cap=25 * MIB) as gw:
        auth = {**bearer(token("marketer")), "X-Fake-Keep": "no"}
        assert (await gw.post(UPLOAD, content=Same(MIB), headers=auth)).status_code == 201  # warm up
        tracemalloc.start()
        try:
            r = await gw.post(UPLOAD, content=Same(24 * MIB), headers=auth)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert r.status_code == 201 and r.json()["size"] == 24 * MIB
        assert r.json()["sha256"] == hashlib.sha256(b"y" * (24 * MIB)).hexdigest()
        assert peak < 8 * MIB, f"{peak / MIB:.1f} MiB allocated at the peak of a 24 MiB upload"
