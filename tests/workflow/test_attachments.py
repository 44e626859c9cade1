"""Attachments: streamed to disk up to 25 MiB, the content type allowed and matching the bytes,
served only as downloads; nothing stored on any refusal."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.workflow.conftest import ANALYST, APPROVER_US, MARKETER
from tests.workflow.test_deliverables import a_request
from tests.workflow.test_suppliers import supplier, two_suppliers

pytestmark = pytest.mark.db

PDF = b"%PDF-1.7\n" + b"x" * 5000 + b"\n%%EOF\n"


def stored(wf) -> list[str]:
    return sorted(os.listdir(Path(wf.runtime.settings.attachments_dir)))


async def upload(wf, req, body: bytes, content_type: str, filename: str = "brief.pdf", as_=MARKETER):
    return await wf.call_raw(
        "POST",
        f"/v1/requests/{req['id']}/attachments",
        as_,
        content=body,
        headers={"Content-Type": content_type},
        params={"filename": filename},
    )


async def test_a_pdf_is_stored_listed_and_served_only_as_a_download(wf):
    req = await a_request(wf)
    r = await upload(wf, req, PDF, "application/pdf", "Brief (final).pdf")
    assert r.status_code == 201, r.text
    att = r.json()
    assert att["size"] == len(PDF) and att["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert stored(wf) == [att["id"]]
    listed = await wf.ok("GET", f"/v1/requests/{req['number']}/attachments", MARKETER)
    assert [a["filename"] for a in listed["items"]] == ["Brief (final).pdf"]
    page = await wf.ok("GET", f"/v1/requests/{req['id']}", MARKETER)
    assert [a["id"] for a in page["attachments"]] == [att["id"]]
    assert "attached" in [h["action"] for h in page["history"]]
    got = await wf.call("GET", f"/v1/requests/{req['id']}/attachments/{att['id']}", MARKETER)
    assert got.status_code == 200 and got.content == PDF
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["content-disposition"].startswith("attachment;")
    assert got.headers["x-content-type-options"] == "nosniff" and "sandbox" in got.headers["content-security-policy"]
    assert (await wf.call("GET", f"/v1/requests/{req['id']}/attachments/{att['id']}", APPROVER_US)).status_code == 404
    assert (await wf.call("GET", f"/v1/requests/{req['id']}/attachments/nope", MARKETER)).status_code == 404


@pytest.mark.parametrize(
    ("body", "content_type", "filename", "status", "field"),
    [
        (b"<html><script>alert(1)</script></html>", "text/html", "x.html", 415, None),
        (b"<svg onload='alert(1)'/>", "image/svg+xml", "x.svg", 415, None),
        (PDF, "", "x.pdf", 415, None),
        (PDF, "image/png", "x.png", 422, "body"),  # the bytes are a PDF's
        (b"\xff\xfe\x00bad", "text/plain", "x.txt", 422, "body"),  # not UTF-8
        (b"", "application/pdf", "x.pdf", 422, "body"),
        (PDF, "application/pdf", "../etc/passwd", 422, "query.filename"),
    ],
)
async def test_a_refused_file_names_why_and_leaves_nothing(wf, body, content_type, filename, status, field):
    req = await a_request(wf)
    r = await upload(wf, req, body, content_type, filename)
    assert r.status_code == status and r.headers["content-type"] == "application/problem+json", r.text
    if field:
        assert field in {e["field"] for e in r.json()["errors"]}, r.text
    assert stored(wf) == []
    assert (await wf.ok("GET", f"/v1/requests/{req['id']}/attachments", MARKETER))["items"] == []


async def test_over_25_mib_is_413_and_nothing_is_kept(wf):
    req = await a_request(wf)
    big = b"%PDF-1.7\n" + b"0" * (25 * 1024 * 1024)
    r = await upload(wf, req, big, "application/pdf")
    assert r.status_code == 413 and r.json()["errors"][0]["field"] == "body", r.text
    assert stored(wf) == []
    ok = await upload(wf, req, b"a,b\n1,2\n", "text/csv; charset=utf-8", "figures.csv")
    assert ok.status_code == 201 and ok.json()["content_type"] == "text/csv", ok.text


async def test_only_those_who_see_the_request_and_may_write_attach(wf):
    req = await a_request(wf)
    assert (await upload(wf, req, PDF, "application/pdf", as_=APPROVER_US)).status_code == 404
    assert (await upload(wf, req, PDF, "application/pdf", as_=ANALYST)).status_code == 403
    assert stored(wf) == []


async def test_a_supplier_delivers_a_file_only_on_its_own_work(wf):
    acme, other = await two_suppliers(wf)
    req = await a_request(wf)
    path = f"/v1/requests/{req['id']}/deliverables"
    mine = await wf.ok(
        "POST", path, MARKETER, {"name": "A", "supplier_id": acme["id"], "business_hours": "8"}, status=201
    )
    theirs = await wf.ok(
        "POST", path, MARKETER, {"name": "B", "supplier_id": other["id"], "business_hours": "8"}, status=201
    )
    acme_key = supplier(acme["id"])

    async def put(deliverable_id, as_=acme_key):
        return await wf.call_raw(
            "POST",
            f"/v1/deliverables/{deliverable_id}/attachments",
            as_,
            content=PDF,
            headers={"Content-Type": "application/pdf"},
            params={"filename": "print.pdf"},
        )

    assert (await put(theirs["id"])).status_code == 404  # another supplier's: not found, nothing stored
    assert (await put(mine["id"], MARKETER)).status_code == 403  # the requester is not the assignee
    assert stored(wf) == []
    r = await put(mine["id"])
    assert r.status_code == 201, r.text
    att = r.json()
    assert att["deliverable_id"] == mine["id"] and att["request_id"] == req["id"]
    await wf.ok("POST", f"/v1/deliverables/{mine['id']}/start", acme_key, {})
    r = await wf.call("POST", f"/v1/deliverables/{mine['id']}/deliver", acme_key, {"attachment_id": "nope"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "attachment_id", r.text
    delivered = await wf.ok("POST", f"/v1/deliverables/{mine['id']}/deliver", acme_key, {"attachment_id": att["id"]})
    assert delivered["attachment_id"] == att["id"] and delivered["status"] == "delivered"
    event = (await wf.events("workflow.deliverable.delivered"))[0]["data"]
    assert event["attachment_id"] == att["id"]
    # The requester and the supplier download it; the other supplier cannot, nor through the other id.
    url = f"/v1/deliverables/{mine['id']}/attachments/{att['id']}"
    for who_ in (MARKETER, acme_key):
        got = await wf.call("GET", url, who_)
        assert got.status_code == 200 and got.content == PDF
        assert got.headers["content-disposition"].startswith("attachment;")
    assert (await wf.call("GET", url, supplier(other["id"]))).status_code == 404
    assert (
        await wf.call("GET", f"/v1/deliverables/{theirs['id']}/attachments/{att['id']}", MARKETER)
    ).status_code == 404
    page = await wf.ok("GET", f"/v1/requests/{req['id']}", MARKETER)
    assert [a["deliverable_id"] for a in page["attachments"]] == [mine["id"]]
    await wf.ok("POST", f"/v1/deliverables/{mine['id']}/approve", MARKETER, {})
    assert (await put(mine["id"])).status_code == 409  # done: no more files
