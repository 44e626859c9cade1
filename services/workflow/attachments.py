"""Files attached to a request, at most `Settings.attachment_max_bytes` (25 MiB) each, kept by a
`file_store.FileStore`: on disk (`Settings.attachments_dir`, the default) or in an S3-compatible
bucket when configured, under the attachment's id.

The body is streamed to a staging file on disk and counted as it arrives (413 once it passes the
cap, nothing kept). Its content type must be one of `ALLOWED` (no HTML, SVG or script: 415) and agree
with the file's first bytes (a PDF starts with `%PDF-`, a PNG with its signature; text must be
UTF-8), else 422 on `body`. Only then is it stored, whole, and its row written in the same unit of
work: a store that fails writes no row (503), a row that fails (or a transaction that does not
commit) removes the stored file again. Files are served as downloads only
(`Content-Disposition: attachment`, `nosniff`, a sandboxing CSP), never inline.
"""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import insert, select

from services.workflow import deliverables, store, work_requests
from services.workflow.deliverable_states import FINISHED
from services.workflow.file_store import FileStore
from services.workflow.instances import new_id
from services.workflow.models import attachments
from services.workflow.request_schemas import AttachmentOut
from shared.db import utcnow
from shared.errors import Conflict, Forbidden, Invalid, NotFound
from shared.identity import Principal
from shared.uow import UnitOfWork

ZIP = (b"PK\x03\x04",)
OOXML = "application/vnd.openxmlformats-officedocument"
# content type -> the prefixes its file may start with (None: UTF-8 text)
ALLOWED: dict[str, tuple[bytes, ...] | None] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
    "application/zip": ZIP,
    f"{OOXML}.wordprocessingml.document": ZIP,
    f"{OOXML}.spreadsheetml.sheet": ZIP,
    f"{OOXML}.presentationml.presentation": ZIP,
    "video/mp4": None,  # checked by its `ftyp` box below
    "text/plain": None,
    "text/csv": None,
}
TEXT = {"text/plain", "text/csv"}
HEAD = 64
FILENAME = re.compile(r"^[^/\\\x00-\x1f\x7f]{1,255}$")


class TooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"an attachment is at most {limit // (1024 * 1024)} MiB")


@dataclass(frozen=True, slots=True)
class Received:
    path: Path
    size: int
    sha256: str
    head: bytes
    utf8: bool


def media_type(header: str | None) -> str:
    """The content type the caller declared, or 415 (raised by the route) when it is not allowed."""
    return (header or "").split(";", 1)[0].strip().lower()


def check_filename(name: str) -> str:
    name = name.strip()
    if not FILENAME.fullmatch(name) or name in (".", ".."):
        raise Invalid.on("query.filename", "a file name of 1 to 255 characters, without slashes or control characters")
    return name


async def receive(chunks: AsyncIterator[bytes], directory: Path, limit: int) -> Received:
    """Stream the body to a temporary file in `directory`, hashing and counting it; TooLarge past `limit`."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    path = directory / f".upload-{uuid.uuid4()}"
    digest, size, head = hashlib.sha256(), 0, b""
    decoder, utf8 = codecs.getincrementaldecoder("utf-8")(), True
    handle = await asyncio.to_thread(path.open, "wb")
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise TooLarge(limit)
            digest.update(chunk)
            if len(head) < HEAD:
                head += chunk[: HEAD - len(head)]
            if utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
            await asyncio.to_thread(handle.write, chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    except BaseException:
        await asyncio.to_thread(handle.close)
        discard(path)
        raise
    await asyncio.to_thread(handle.close)
    return Received(path, size, digest.hexdigest(), head, utf8)


def check_content(content_type: str, got: Received) -> None:
    """The file's first bytes agree with its declared (allowed) type, else 422 on `body`."""
    if got.size == 0:
        raise Invalid.on("body", "the file is empty")
    prefixes = ALLOWED[content_type]
    if content_type in TEXT:
        ok = got.utf8 and b"\x00" not in got.head
    elif content_type == "video/mp4":
        ok = got.head[4:8] == b"ftyp"
    elif content_type == "image/webp":
        ok = got.head[:4] == b"RIFF" and got.head[8:12] == b"WEBP"
    else:
        ok = any(got.head.startswith(p) for p in prefixes or ())
    if not ok:
        raise Invalid.on("body", f"the file's content is not {content_type}")


def discard(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@dataclass(frozen=True, slots=True)
class Target:
    """What a file is attached to: a request, or one of its deliverables (an assignee's delivery)."""

    request_id: str
    instance_id: str
    deliverable_id: str | None = None


async def request_target(uow: UnitOfWork, who: Principal, ref: str) -> Target:
    """A request the caller sees (404 otherwise)."""
    row = await work_requests.visible_row(uow, who, ref=ref)
    return Target(row["id"], row["instance_id"])


async def deliverable_target(uow: UnitOfWork, who: Principal, deliverable_id: str) -> Target:
    """A deliverable whose assignee the caller is (404 unseen, 403 not the assignee, 409 finished)."""
    row = await deliverables.visible(uow, who, deliverable_id)
    if not deliverables.is_assignee(row, who):
        raise Forbidden("Only the assignee (the owner, or the supplier's principals) attaches its work.")
    if row["status"] in FINISHED:
        raise Conflict(f"The deliverable is {row['status']}; it takes no more files.")
    return Target(row["request_id"], row["instance_id"], row["id"])


async def add(
    uow: UnitOfWork,
    who: Principal,
    *,
    target: Target,
    got: Received,
    filename: str,
    content_type: str,
    files: FileStore,
) -> AttachmentOut:
    """Store the checked file, then its row and history entry; a failed write removes the stored file
    (the caller removes it too if its transaction does not commit)."""
    attachment_id = new_id()
    await files.put(attachment_id, got.path, content_type=content_type, size=got.size)
    try:
        row: dict[str, object] = {
            "id": attachment_id,
            "request_id": target.request_id,
            "deliverable_id": target.deliverable_id,
            "filename": filename,
            "content_type": content_type,
            "size": got.size,
            "sha256": got.sha256,
            "created_at": utcnow(),
            "created_by": who.subject,
        }
        await uow.execute(insert(attachments).values(**row))
        detail: dict[str, object] = {
            "attachment_id": attachment_id,
            "filename": filename,
            "content_type": content_type,
            "size": got.size,
        }
        if target.deliverable_id:
            detail["deliverable_id"] = target.deliverable_id
        await store.record(uow, target.instance_id, who.subject, "attached", detail=detail)
    except BaseException:
        await files.delete(attachment_id)
        raise
    return AttachmentOut.model_validate(row)


async def of_request(uow: UnitOfWork, request_id: str) -> list[AttachmentOut]:
    q = select(attachments).where(attachments.c.request_id == request_id)
    rows = (await uow.execute(q.order_by(attachments.c.created_at, attachments.c.id))).mappings().all()
    return [AttachmentOut.model_validate(dict(r)) for r in rows]


async def one(uow: UnitOfWork, who: Principal, *, ref: str, attachment_id: str) -> AttachmentOut:
    request = await work_requests.visible_row(uow, who, ref=ref)
    q = select(attachments).where(attachments.c.id == attachment_id, attachments.c.request_id == request["id"])
    row = (await uow.execute(q)).mappings().first()
    if row is None:
        raise NotFound(f"No attachment {attachment_id} on request {ref}.")
    return AttachmentOut.model_validate(dict(row))


async def of_deliverable(uow: UnitOfWork, who: Principal, *, deliverable_id: str, attachment_id: str) -> AttachmentOut:
    """A file delivered for a deliverable the caller sees (a supplier: only its own), else 404."""
    await deliverables.visible(uow, who, deliverable_id)
    q = select(attachments).where(attachments.c.id == attachment_id, attachments.c.deliverable_id == deliverable_id)
    row = (await uow.execute(q)).mappings().first()
    if row is None:
        raise NotFound(f"No attachment {attachment_id} on deliverable {deliverable_id}.")
    return AttachmentOut.model_validate(dict(row))
