"""Strict edges (issue 24): path tricks, authentication before bodies, bounded bodies, no internal address out."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from gateway.webhooks import sign
from tests.gateway.conftest import WEBHOOK_SECRETS, bearer, gateway_settings, running_gateway
from tests.harness import assert_problem

pytestmark = pytest.mark.db

MIB = 1024 * 1024


class Counted:
    """A request body streamed in 1 MiB chunks that counts how much of it the server pulled."""

    def __init__(self, mib: int):
        self.mib = mib
        self.pulled = 0

    async def __aiter__(self):
        chunk = b"x" * MIB
        for _ in range(self.mib):
            self.pulled += 1
            yield chunk


async def test_an_encoded_service_prefix_is_routed_once_decoded_and_never_unauthenticated(gw, net, token):
    # Percent-encoded letters in the prefix decode to the service: authenticated like any request.
    assert_problem(await gw.get("/%62udget/v1/things/1"), 401)
    assert_problem(await gw.get("/%6bpi/v1/things/1"), 401)
    assert net.hits == {}
    r = await gw.get("/%62udget/v1/things/1", headers=bearer(token("admin")))
    assert r.status_code == 200, r.text
    assert r.json()["service"] == "budget" and r.json()["path"] == "/v1/things/1"
    r = await gw.get("/%6bpi/v1/%74hings/2", headers=bearer(token("analyst")))
    assert r.status_code == 200 and r.json()["service"] == "kpi" and r.json()["path"] == "/v1/things/2"
    # An encoded slash would make the service see other segments than the policy judged: refused.
    before = dict(net.hits)
    for path in ("/budget%2fv1%2fplans", "/budget%2Fv1%2Fplans", "/budget/v1/erp/x%2Fplans"):
        assert_problem(await gw.get(path), 401)
        body = assert_problem(await gw.get(path, headers=bearer(token("admin"))), 400)
        assert "%2F" in body["detail"]
    # Dot segments, plain or encoded, reach nobody either.
    for path in ("/budget/%2e%2e/kpi/v1/things", "/budget/v1/%2E/things", "/budget/v1/erp/x%2F..%2F..%2Fplans"):
        assert_problem(await gw.get(path, headers=bearer(token("admin"))), 403)
    assert net.hits == before


async def test_an_anonymous_webhook_is_refused_before_its_body_is_read(gw):
    body = Counted(100)
    r = await gw.post("/webhooks/erp", content=body, headers={"Content-Type": "application/json"})
    assert_problem(r, 401)
    assert body.pulled <= 1  # nothing of the 100 MiB was read (the transport may hold one chunk)
    # Well-formed headers but a wrong secret: the body is read, at most up to the webhook limit.
    ts = str(int(time.time()))
    headers = {"X-Pitcrew-Timestamp": ts, "X-Pitcrew-Delivery": "big", "X-Pitcrew-Signature": "sha256=" + "0" * 64}
    body = Counted(100)
    assert_problem(await gw.post("/webhooks/erp", content=body, headers=headers), 413)
    assert body.pulled <= 2
    # A declared length over the limit is refused without reading.
    r = await gw.post("/webhooks/erp", content=b"x" * (MIB + 1), headers={**headers, "Content-Length": str(MIB + 1)})
    assert "1,048,576" in assert_problem(r, 413)["detail"]
    # Stale timestamp, malformed signature, unknown source: all before the body.
    for bad in (
        {**headers, "X-Pitcrew-Timestamp": str(int(time.time()) - 3600)},
        {**headers, "X-Pitcrew-Signature": "sha256=nothex"},
        {"webhook-id": "w1", "webhook-timestamp": ts, "webhook-signature": "v1,not base64!"},
    ):
        body = Counted(100)
        assert_problem(await gw.post("/webhooks/erp", content=body, headers=bad), 401)
        assert body.pulled <= 1
    body = Counted(100)
    assert_problem(await gw.post("/webhooks/nope", content=body, headers=headers), 404)
    assert body.pulled <= 1


async def test_the_gateway_api_authenticates_before_it_reads_or_validates_a_body(gw, token):
    # Before: 422 (the body was parsed and validated first).
    assert_problem(await gw.post("/gateway/v1/api-keys", content=b"{not json"), 401)
    assert_problem(await gw.post("/gateway/v1/api-keys", json={"name": ""}), 401)
    body = Counted(100)
    assert_problem(await gw.post("/gateway/v1/api-keys", content=body), 401)
    assert body.pulled <= 1
    # A role the policy does not let in: 403, still unread.
    body = Counted(100)
    assert_problem(await gw.post("/gateway/v1/api-keys", content=body, headers=bearer(token("mops"))), 403)
    assert body.pulled <= 1
    # Admitted: the body is bounded (64 KiB) and then validated.
    admin = bearer(token("admin"))
    body = Counted(100)
    r = await gw.post("/gateway/v1/api-keys", content=body, headers={**admin, "Content-Type": "application/json"})
    assert "65,536" in assert_problem(r, 413)["detail"]
    assert body.pulled <= 2
    assert_problem(await gw.post("/gateway/v1/api-keys", content=b"{not json", headers=admin), 422)
    big = {"name": "x", "roles": ["partner"], "scopes": ["s" * 70_000]}
    assert_problem(await gw.post("/gateway/v1/api-keys", json=big, headers=admin), 413)
    r = await gw.post("/gateway/v1/api-keys", json={"name": "ok", "roles": ["partner"]}, headers=admin)
    assert r.status_code == 201, r.text


async def test_a_proxied_body_is_bounded_and_refused_unread_when_it_says_it_is_too_big(new_db, net, token, upstreams):
    settings = gateway_settings(await new_db("gateway"), max_request_body_bytes=2 * MIB)
    async with running_gateway(settings) as gw:
        admin = bearer(token("admin"))
        body = Counted(100)
        assert_problem(await gw.post("/kpi/v1/measurements", content=body), 401)
        assert body.pulled <= 1
        body = Counted(100)
        assert_problem(await gw.post("/kpi/v1/measurements", content=body, headers=admin), 413)
        assert body.pulled <= 3
        r = await gw.post(
            "/kpi/v1/measurements", content=b"x" * (3 * MIB), headers={**admin, "Content-Length": str(3 * MIB)}
        )
        assert "2,097,152" in assert_problem(r, 413)["detail"]
        assert upstreams["kpi.test"].state.received == []
        assert (await gw.post("/kpi/v1/measurements", content=b"x" * MIB, headers=admin)).status_code == 200


async def test_an_attachment_upload_takes_the_larger_upload_cap(new_db, net, token, upstreams):
    settings = gateway_settings(await new_db("gateway"), max_request_body_bytes=MIB, upload_max_body_bytes=3 * MIB)
    async with running_gateway(settings) as gw:
        admin = bearer(token("admin"))
        path = "/workflow/v1/requests/r1/attachments"
        assert (await gw.post(path, content=b"x" * (2 * MIB), headers=admin)).status_code == 200
        assert (
            "3,145,728" in assert_problem(await gw.post(path, content=b"x" * (4 * MIB), headers=admin), 413)["detail"]
        )
        delivered = "/workflow/v1/deliverables/d1/attachments"
        assert (await gw.post(delivered, content=b"x" * (2 * MIB), headers=admin)).status_code == 200
        # Every other route keeps the general cap, the same service's JSON routes included.
        r = await gw.post("/workflow/v1/requests", content=b"x" * (2 * MIB), headers=admin)
        assert "1,048,576" in assert_problem(r, 413)["detail"]


async def test_no_internal_address_leaves_in_a_location(gw, net, token):
    admin = bearer(token("admin"))
    internal = net.url("registry.test").removeprefix("http://")
    # A trailing slash: the service redirects to its own address (built from the Host it was sent).
    r = await gw.get("/registry/v2/items/", headers=admin)
    assert r.status_code == 307, r.text
    assert r.headers["location"] == "/registry/v2/items"
    assert internal not in str(r.headers) and "127.0.0.1" not in str(r.headers)
    r = await gw.get("/registry/v2/items/?limit=2", headers=admin)
    assert r.headers["location"] == "/registry/v2/items?limit=2"
    # A path in the service's own space gets the service's prefix; another site's URL passes as it is.
    for to, expected in (
        ("/v1/things/1", "/budget/v1/things/1"),
        (f"{net.url('budget.test')}/v1/things/2#x", "/budget/v1/things/2#x"),
        (f"{net.url('kpi.test')}/v1/metrics", "/kpi/v1/metrics"),  # another service's address: its prefix
        ("https://example.com/elsewhere", "https://example.com/elsewhere"),
        ("relative/path", "relative/path"),
    ):
        r = await gw.get("/budget/v1/moved", params={"to": to}, headers=admin)
        assert r.status_code == 303 and r.headers["location"] == expected, (to, r.headers)
    # The gateway's own routes do not redirect a trailing slash at all (no address built from Host).
    r = await gw.get("/gateway/v1/api-keys/", headers=admin)
    assert r.status_code == 404 and "location" not in r.headers
    r = await gw.get("/health/", headers={"Host": "evil.example"})
    assert r.status_code == 404 and "location" not in r.headers


async def test_a_webhook_body_within_the_limit_still_lands(gw, upstreams):
    data = {"id": "L-big", "time": "2027-03-04T10:00:00Z", "campaign": "c" * 150}
    body = json.dumps({"type": "lead.created", "data": data, "padding": "p" * 500_000}).encode()
    ts = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Pitcrew-Timestamp": ts,
        "X-Pitcrew-Delivery": "within",
        "X-Pitcrew-Signature": sign(WEBHOOK_SECRETS["crm"], "within", ts, body),
    }
    assert (await gw.post("/webhooks/crm", content=body, headers=headers)).status_code == 202


def test_locations_are_judged_without_a_request():
    from gateway.proxy import public_location

    at = {"10.0.0.7:8001": "budget", "budget.internal:8001": "budget"}
    assert public_location(b"http://10.0.0.7:8001/v1/x?y=1", "budget", at) == b"/budget/v1/x?y=1"
    assert public_location(b"HTTP://Budget.Internal:8001/v1/x", "kpi", at) == b"/budget/v1/x"
    assert public_location(b"//10.0.0.7:8001/v1/x", "budget", at) == b"/budget/v1/x"
    assert public_location(b"/budget/v1/x", "budget", at) == b"/budget/v1/x"  # already public
    assert public_location(b"https://partner.example/cb", "budget", at) == b"https://partner.example/cb"


async def test_httpx_sends_these_paths_raw():
    """The tests above rely on httpx keeping encoded paths as written."""
    assert httpx.Request("GET", "http://g/%62udget/v1").url.raw_path == b"/%62udget/v1"
    assert httpx.Request("GET", "http://g/budget%2fv1").url.raw_path == b"/budget%2fv1"
