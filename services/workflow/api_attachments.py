"""Routes of attachments: on a request (by the writers who see it) and on a deliverable (by its
assignee: the file it delivers). The body is the file itself (its type in Content-Type, its name in
`?filename=`) streamed to a staging file, never parsed as JSON (so not a `JsonRoute`), then kept by
the file store (disk or S3-compatible, `file_store`); downloads are streamed back from it, always
as attachments, never rendered inline (`attachments`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.exceptions import HTTPException

from services.workflow import attachments, work_requests
from services.workflow.api import answer, movers, writers
from services.workflow.container import Workflow, domain
from services.workflow.request_schemas import AttachmentOut, AttachmentPage
from services.workflow.settings import Settings
from shared.app import Runtime, get_runtime
from shared.identity import Principal, current_principal
from shared.openapi import problems
from shared.problems import problem
from shared.uow import UnitOfWork

router = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)])

BINARY = {"schema": {"type": "string", "format": "binary"}}
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {t: BINARY for t in attachments.ALLOWED},
        "description": "the file itself (at most 25 MiB); its type in Content-Type, one of these",
    }
}
DOWNLOAD: dict[int | str, dict[str, Any]] = {
    200: {"description": "the file, as a download", "content": {"application/octet-stream": BINARY}}
}
FileName = Query(..., min_length=1, max_length=255, description="the file's name, shown on download")
Locate = Callable[[UnitOfWork], Awaitable[attachments.Target]]


def _settings(rt: Runtime) -> Settings:
    settings = rt.settings
    assert isinstance(settings, Settings)
    return settings


async def _upload(request: Request, rt: Runtime, wf: Workflow, p: Principal, filename: str, locate: Locate) -> Response:
    """Check name, type and target before a byte is stored; stream to staging; check the bytes; store
    the file and write its row (neither without the other)."""
    name = attachments.check_filename(filename)
    content_type = attachments.media_type(request.headers.get("content-type"))
    if content_type not in attachments.ALLOWED:
        raise HTTPException(
            415, f"An attachment may be {', '.join(attachments.ALLOWED)}; not {content_type or 'nothing'}."
        )
    async with rt.unit_of_work(readonly=True) as uow:
        await locate(uow)
    settings = _settings(rt)
    staging = Path(settings.attachments_dir)
    try:
        got = await attachments.receive(request.stream(), staging, settings.attachment_max_bytes)
    except attachments.TooLarge as exc:
        errors = [{"field": "body", "message": str(exc), "code": "too_large"}]
        return problem(413, f"body: {exc}", instance=request.url.path, errors_=errors)
    out = None
    try:
        attachments.check_content(content_type, got)
        async with rt.unit_of_work() as uow:
            target = await locate(uow)
            out = await attachments.add(
                uow, p, target=target, got=got, filename=name, content_type=content_type, files=wf.files
            )
        return answer(out, 201)
    except BaseException:
        if out is not None:  # stored and recorded, but the transaction did not commit
            await wf.files.delete(out.id)
        raise
    finally:
        attachments.discard(got.path)


def content_disposition(filename: str) -> str:
    """`attachment` with the file's name (RFC 6266: `filename*` when it is not plain ASCII)."""
    quoted = quote(filename)
    if quoted != filename:
        return f"attachment; filename*=utf-8''{quoted}"
    return f'attachment; filename="{filename}"'


async def _download(wf: Workflow, att: AttachmentOut) -> Response:
    opened = await wf.files.open(att.id)
    return StreamingResponse(
        opened.chunks,
        media_type=att.content_type,
        headers={
            "Content-Length": str(opened.size),
            "Content-Disposition": content_disposition(att.filename),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, no-store",
        },
    )


@router.post(
    "/requests/{ref}/attachments",
    status_code=201,
    response_model=AttachmentOut,
    responses=problems(404, 413, 415, 503),
    openapi_extra=UPLOAD_BODY,
)
async def attach(
    ref: str,
    request: Request,
    filename: str = FileName,
    p: Principal = Depends(writers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    """Attach a file to a request the caller sees: streamed, its type checked against its bytes, stored."""
    return await _upload(request, rt, wf, p, filename, lambda uow: attachments.request_target(uow, p, ref))


@router.get("/requests/{ref}/attachments", response_model=AttachmentPage, responses=problems(404))
async def list_attachments(
    ref: str, p: Principal = Depends(current_principal), rt: Runtime = Depends(get_runtime)
) -> Response:
    async with rt.unit_of_work(readonly=True) as uow:
        req = await work_requests.visible_row(uow, p, ref=ref)
        return answer(AttachmentPage(items=await attachments.of_request(uow, req["id"]), next_cursor=None))


@router.get(
    "/requests/{ref}/attachments/{attachment_id}",
    response_class=Response,
    responses={**problems(404, 503), **DOWNLOAD},
)
async def download_attachment(
    ref: str,
    attachment_id: str,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    """The file as a download (Content-Disposition: attachment, nosniff, a sandboxing CSP): never inline."""
    async with rt.unit_of_work(readonly=True) as uow:
        att = await attachments.one(uow, p, ref=ref, attachment_id=attachment_id)
    return await _download(wf, att)


@router.post(
    "/deliverables/{deliverable_id}/attachments",
    status_code=201,
    response_model=AttachmentOut,
    responses=problems(404, 409, 413, 415, 503),
    openapi_extra=UPLOAD_BODY,
)
async def attach_to_deliverable(
    deliverable_id: str,
    request: Request,
    filename: str = FileName,
    p: Principal = Depends(movers),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    """The assignee uploads its work (then delivers it with `attachment_id`); checked as any attachment."""
    return await _upload(
        request, rt, wf, p, filename, lambda uow: attachments.deliverable_target(uow, p, deliverable_id)
    )


@router.get(
    "/deliverables/{deliverable_id}/attachments/{attachment_id}",
    response_class=Response,
    responses={**problems(404, 503), **DOWNLOAD},
)
async def download_delivered_file(
    deliverable_id: str,
    attachment_id: str,
    p: Principal = Depends(current_principal),
    rt: Runtime = Depends(get_runtime),
    wf: Workflow = Depends(domain),
) -> Response:
    """A delivered file, for whoever sees the deliverable (a supplier: only its own), as a download."""
    async with rt.unit_of_work(readonly=True) as uow:
        att = await attachments.of_deliverable(uow, p, deliverable_id=deliverable_id, attachment_id=attachment_id)
    return await _download(wf, att)
