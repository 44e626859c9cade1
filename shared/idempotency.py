"""`Idempotency-Key` for creating POSTs.

The stored answer is written in the same transaction as the effect, so a
retry after a crash either finds both or neither. Same key and body: the first
answer again. Same key, other body: 409.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError

from shared.db import Database, utcnow
from shared.errors import Conflict, Invalid
from shared.identity import Principal
from shared.money import decimal_text
from shared.uow import UnitOfWork

if TYPE_CHECKING:
    from shared.outbox import Outbox

HEADER = "Idempotency-Key"
REPLAY_HEADER = "Idempotent-Replayed"

Action = Callable[[UnitOfWork], Awaitable[Any]]


async def run(
    request: Request,
    principal: Principal,
    db: Database,
    table: Table,
    action: Action,
    *,
    status_code: int = 201,
    headers: Callable[[Any], dict[str, str]] | None = None,
    outbox: Outbox | None = None,
) -> Response:
    """Run `action` in one transaction, honouring the request's Idempotency-Key."""
    key = request.headers.get(HEADER)
    fingerprint = scope = ""
    if key is not None:
        if not (1 <= len(key) <= 200):
            raise Invalid.on("header.Idempotency-Key", "must be 1 to 200 characters")
        fingerprint = hashlib.sha256(await request.body()).hexdigest()
        scope = f"{principal.subject}:{request.method}:{request.url.path}"
    try:
        # Without a key the action is the whole unit of work: nothing is written after it.
        async with db.transaction(single_action=key is None) as session:
            s = UnitOfWork(session, outbox)
            if key is not None:
                replay = await _stored(s, table, scope, key, fingerprint)
                if replay is not None:
                    return replay
            result = await action(s)
            payload = encode(result)
            if key is not None:
                await s.execute(
                    insert(table).values(
                        scope=scope,
                        key=key,
                        fingerprint=fingerprint,
                        status_code=status_code,
                        response=payload.decode(),
                        created_at=utcnow(),
                    )
                )
    except IntegrityError:
        if key is None:
            raise
        # Another request with the same key committed first: answer as it did.
        async with db.transaction(readonly=True) as session:
            replay = await _stored(UnitOfWork(session), table, scope, key, fingerprint)
        if replay is None:
            raise
        return replay
    return Response(
        payload, status_code=status_code, headers=headers(result) if headers else None, media_type="application/json"
    )


def encode(result: Any) -> bytes:
    """A domain answer as JSON: orjson for what it knows (dicts, lists, strings, numbers, dates and
    datetimes as ISO 8601, UUIDs), Decimal as its string, anything else as FastAPI would encode it."""
    try:
        return orjson.dumps(result, default=_fallback, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # an integer past 64 bits (JSONB gives back exactly what it stored): exact, slower
        exact = jsonable_encoder(result, custom_encoder={Decimal: decimal_text})
        return json.dumps(exact, separators=(",", ":")).encode()


def _fallback(value: Any) -> Any:
    if isinstance(value, Decimal):
        return decimal_text(value)
    return jsonable_encoder(value, custom_encoder={Decimal: decimal_text})


async def _stored(s: UnitOfWork, table: Table, scope: str, key: str, fingerprint: str) -> Response | None:
    row = (await s.execute(select(table).where(table.c.scope == scope, table.c.key == key))).first()
    if row is None:
        return None
    if row.fingerprint != fingerprint:
        raise Conflict(
            f"Idempotency-Key {key!r} was already used with a different request body.",
        )
    return JSONResponse(json.loads(row.response), status_code=row.status_code, headers={REPLAY_HEADER: "true"})
