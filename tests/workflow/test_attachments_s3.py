"""Attachments on S3-compatible storage (`PITCREW_WORKFLOW_ATTACHMENTS_STORAGE=s3`), against a real
S3 server the test starts (moto's, over HTTP, SigV4-signed): the object is stored whole with its
content type, served back only as a download, the size cap holds, and nothing is half-written when
the store or the row fails."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import text

from services.workflow.main import create_app
from services.workflow.settings import Settings
from tests.workflow.conftest import MARKETER, Harness, settings_for
from tests.workflow.test_deliverables import a_request

pytestmark = pytest.mark.db

PDF = b"%PDF-1.7\n" + b"y" * 70_000 + b"\n%%EOF\n"  # more than one 64 KiB chunk
KEYS = {"aws_access_key_id": "pitcrew-test", "aws_secret_access_key": "pitcrew-test-secret"}


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def s3(url: str) -> Any:
    return boto3.client("s3", endpoint_url=url, region_name="eu-central-1", **KEYS)


def objects(url: str, bucket: str) -> dict[str, bytes]:
    client = s3(url)
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


async def app_on(db_url: str, endpoint: str, bucket: str) -> AsyncIterator[Harness]:
    base = settings_for(db_url)
    settings = Settings(
        **{
            **base.model_dump(),
            "attachments_storage": "s3",
            "s3_endpoint_url": endpoint,
            "s3_bucket": bucket,
            "s3_region": "eu-central-1",
            "s3_access_key_id": KEYS["aws_access_key_id"],
            "s3_secret_access_key": KEYS["aws_secret_access_key"],
            "s3_path_style": True,
            "s3_prefix": "att/",
        }
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        h = Harness(app, db_url)
        yield h
        await h.client.aclose()


@pytest.fixture()
def bucket(s3_url: str) -> str:
    name = f"pitcrew-{uuid.uuid4().hex[:12]}"
    s3(s3_url).create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    return name


@pytest.fixture()
async def wf3(db_url: str, s3_url: str, bucket: str) -> AsyncIterator[Harness]:
    async for h in app_on(db_url, s3_url, bucket):
        yield h


def staged(h: Harness) -> list[str]:
    return sorted(os.listdir(Path(h.runtime.settings.attachments_dir)))


async def upload(h: Harness, req: dict, body: bytes, content_type: str, filename: str = "brief.pdf") -> Any:
    return await h.call_raw(
        "POST",
        f"/v1/requests/{req['id']}/attachments",
        MARKETER,
        content=body,
        headers={"Content-Type": content_type},
        params={"filename": filename},
    )


async def listed(h: Harness, req: dict) -> list[dict]:
    return (await h.ok("GET", f"/v1/requests/{req['id']}/attachments", MARKETER))["items"]


async def test_a_file_is_an_object_with_its_type_and_comes_back_only_as_a_download(wf3, s3_url, bucket):
    req = await a_request(wf3)
    r = await upload(wf3, req, PDF, "application/pdf", "Brief (final).pdf")
    assert r.status_code == 201, r.text
    att = r.json()
    assert objects(s3_url, bucket) == {f"att/{att['id']}": PDF}
    head = s3(s3_url).head_object(Bucket=bucket, Key=f"att/{att['id']}")
    assert head["ContentType"] == "application/pdf" and head["ContentLength"] == len(PDF)
    assert staged(wf3) == []  # the staging file is gone
    got = await wf3.call("GET", f"/v1/requests/{req['id']}/attachments/{att['id']}", MARKETER)
    assert got.status_code == 200 and got.content == PDF
    assert hashlib.sha256(got.content).hexdigest() == att["sha256"]
    assert got.headers["content-type"] == "application/pdf"
    assert got.headers["content-length"] == str(len(PDF))
    assert got.headers["content-disposition"] == "attachment; filename*=utf-8''Brief%20%28final%29.pdf"
    assert got.headers["x-content-type-options"] == "nosniff" and "sandbox" in got.headers["content-security-policy"]
    # Text with a name that is not ASCII: still an attachment, named per RFC 6266.
    r = await upload(wf3, req, "région,montant\nEMEA,1\n".encode(), "text/csv", "chiffres é.csv")
    assert r.status_code == 201, r.text
    got = await wf3.call("GET", f"/v1/requests/{req['id']}/attachments/{r.json()['id']}", MARKETER)
    assert got.headers["content-type"].startswith("text/csv")
    assert got.headers["content-disposition"] == "attachment; filename*=utf-8''chiffres%20%C3%A9.csv"


async def test_html_is_refused_and_over_the_cap_is_413_with_nothing_stored(wf3, s3_url, bucket):
    req = await a_request(wf3)
    r = await upload(wf3, req, b"<html><script>alert(1)</script></html>", "text/html", "x.html")
    assert r.status_code == 415, r.text
    big = b"%PDF-1.7\n" + b"0" * (25 * 1024 * 1024)
    r = await upload(wf3, req, big, "application/pdf")
    assert r.status_code == 413 and r.json()["errors"][0]["field"] == "body", r.text
    assert objects(s3_url, bucket) == {} and staged(wf3) == [] and await listed(wf3, req) == []


async def test_a_store_that_fails_writes_no_row_and_leaves_no_file(db_url, s3_url):
    # A bucket that does not exist: the PUT is refused by the server.
    async for h in app_on(db_url, s3_url, f"missing-{uuid.uuid4().hex[:8]}"):
        req = await a_request(h)
        r = await upload(h, req, PDF, "application/pdf")
        assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json", r.text
        assert "NoSuchBucket" in r.json()["detail"]
        assert await listed(h, req) == [] and staged(h) == []
        page = await h.ok("GET", f"/v1/requests/{req['id']}", MARKETER)
        assert "attached" not in [e["action"] for e in page["history"]]


async def test_an_unreachable_store_is_503_on_upload_and_download(db_url):
    async for h in app_on(db_url, "http://127.0.0.1:9", "pitcrew"):
        req = await a_request(h)
        r = await upload(h, req, PDF, "application/pdf")
        assert r.status_code == 503, r.text
        assert await listed(h, req) == [] and staged(h) == []


async def test_a_row_that_fails_after_the_put_removes_the_object(wf3, s3_url, bucket):
    """The database refuses the attachment's row (a trigger stands in for any failure after the PUT):
    the object already stored is deleted again, so no file exists without its row."""
    req = await a_request(wf3)
    async with wf3.runtime.transaction() as s:
        if s.bind.dialect.name == "sqlite":
            await s.execute(
                text(
                    "CREATE TRIGGER refuse_attachment BEFORE INSERT ON attachments "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                )
            )
        else:
            await s.execute(
                text(
                    "CREATE FUNCTION refuse_attachment() RETURNS trigger AS $$ "
                    "BEGIN RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql"
                )
            )
            await s.execute(
                text(
                    "CREATE TRIGGER refuse_attachment BEFORE INSERT ON attachments "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_attachment()"
                )
            )
    r = await upload(wf3, req, PDF, "application/pdf")
    assert r.status_code == 500, r.text
    assert objects(s3_url, bucket) == {} and staged(wf3) == []
    assert await listed(wf3, req) == []


async def test_an_object_missing_from_the_bucket_is_404_not_500(wf3, s3_url, bucket):
    req = await a_request(wf3)
    att = (await upload(wf3, req, PDF, "application/pdf")).json()
    s3(s3_url).delete_object(Bucket=bucket, Key=f"att/{att['id']}")
    r = await wf3.call("GET", f"/v1/requests/{req['id']}/attachments/{att['id']}", MARKETER)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json", r.text


def test_s3_settings_are_complete_or_the_service_does_not_start():
    with pytest.raises(ValueError, match="S3_BUCKET is required"):
        Settings(attachments_storage="s3")
    with pytest.raises(ValueError, match="give both"):
        Settings(attachments_storage="s3", s3_bucket="b", s3_access_key_id="k")
    assert Settings().attachments_storage == "disk"  # the default: disk
    assert Settings(attachments_storage="s3", s3_bucket="b").s3_secret_access_key is None  # the usual chain
