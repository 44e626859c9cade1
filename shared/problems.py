"""RFC 9457 problem+json for every error a Pitcrew app returns."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared import errors
from shared.db import CHECK_RULES, is_unique_violation, violated_check
from shared.work import Abandoned

log = structlog.get_logger("pitcrew.problems")

PROBLEM_BASE = "https://pitcrew.dev/problems/"
# SQLSTATEs for text PostgreSQL cannot store (a NUL character in text or in JSON).
UNSTORABLE_TEXT = frozenset({"22021", "22P05"})
MEDIA_TYPE = "application/problem+json"

STATUS_OF: dict[type[errors.DomainError], int] = {
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Invalid: 422,
    errors.TooMuchWork: 422,
    errors.Forbidden: 403,
    errors.Unauthorized: 401,
    errors.PreconditionFailed: 412,
    errors.Unavailable: 503,
}

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    412: "Precondition failed",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Validation failed",
    428: "Precondition required",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    kind: str | None = None,
    errors_: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (kind or _slug(title or _TITLES.get(status, "error"))),
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors_:
        body["errors"] = errors_
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _slug(text: str) -> str:
    return text.lower().replace(" ", "-")


def _loc_to_field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header", "cookie"}:
        source, rest = parts[0], parts[1:]
        if source != "body" and rest:
            return f"{source}.{'.'.join(rest)}"
        parts = rest
    return ".".join(parts) or "body"


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":  # loc is ("body", offset): name the body, keep the offset
            at = err.get("loc", ("body", "?"))[-1]
            reason = (err.get("ctx") or {}).get("error", "malformed")
            out.append(
                {"field": "body", "message": f"is not valid JSON (at character {at}: {reason})", "code": "json_invalid"}
            )
            continue
        msg = err.get("msg", "invalid")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        out.append({"field": _loc_to_field(err.get("loc", ())), "message": msg, "code": err.get("type", "invalid")})
    return out


def install(app: FastAPI) -> None:
    """Register the problem+json handlers on an app."""
    app.exception_handler(errors.DomainError)(_domain)
    app.exception_handler(Abandoned)(_abandoned)
    app.exception_handler(RequestValidationError)(_validation)
    app.exception_handler(StarletteHTTPException)(_http)
    app.exception_handler(DBAPIError)(_database)
    app.exception_handler(Exception)(_unexpected)


async def _domain(request: Request, exc: errors.DomainError) -> JSONResponse:
    status = next((s for cls, s in STATUS_OF.items() if isinstance(exc, cls)), 400)
    return problem(
        status,
        exc.detail,
        title=exc.title,
        kind=exc.kind,
        errors_=[e.as_dict() for e in exc.errors] or None,
        instance=request.url.path,
        **exc.extra,
    )


async def _abandoned(request: Request, exc: Abandoned) -> JSONResponse:
    # The caller disconnected and its computation was stopped; nobody reads this answer
    # (499 is nginx's "client closed request"), and it is not a server fault.
    return problem(
        499,
        "The caller disconnected; the work was stopped.",
        title="Client closed request",
        instance=request.url.path,
    )


async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
    errs = validation_errors(exc)
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errs)
    return problem(422, detail, kind="validation-error", errors_=errs, instance=request.url.path)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return problem(exc.status_code, detail, headers=getattr(exc, "headers", None), instance=request.url.path)


async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
    # PostgreSQL cannot store a NUL character in text or JSON (SQLSTATE 22021, 22P05); the
    # transaction has rolled back, so this is bad input, not a server fault.
    if getattr(exc.orig, "sqlstate", None) in UNSTORABLE_TEXT:
        message = "text may not contain the NUL character (\\u0000)"
        return problem(
            422,
            f"body: {message}",
            kind="validation-error",
            instance=request.url.path,
            errors_=[{"field": "body", "message": message, "code": "nul_character"}],
        )
    if exc.connection_invalidated:
        # The database connection broke (a restart, a network cut); the pool reconnects for the
        # next request. Only a failure during COMMIT leaves the outcome unknown, which an
        # Idempotency-Key on the retry settles.
        log.warning("database_connection_lost", path=request.url.path, error=str(exc.orig))
        return problem(
            503,
            "The database connection was lost while handling this request; retry it "
            "(with the same Idempotency-Key, if it creates something).",
            headers={"Retry-After": "1"},
            instance=request.url.path,
        )
    rule = violated_check(exc)
    if rule is not None:
        # A rule the database keeps (a CHECK constraint): the state this change would reach is
        # not allowed, and the transaction rolled back whole.
        return problem(
            409,
            CHECK_RULES.get(rule, f"This change would break the rule {rule!r}; nothing was written."),
            instance=request.url.path,
        )
    if is_unique_violation(exc):
        # A concurrent request created the same thing (a code, a reference) first; its
        # transaction won and this one rolled back whole.
        return problem(
            409,
            "This conflicts with a change made at the same time (a duplicate key); fetch "
            "the current state and retry if it still applies.",
            instance=request.url.path,
        )
    return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    log.error("unhandled_error", path=request.url.path, request_id=request_id, exc_info=exc)
    return problem(
        500,
        "An unexpected error occurred. It has been logged; quote the request id when reporting it.",
        instance=request.url.path,
        request_id=request_id,
        headers={"X-Request-ID": request_id} if request_id else None,
    )
