"""API keys for partner integrations: issue, list, revoke, authenticate.

The secret is 32 random bytes shown once; only its SHA-256 is stored (a fast hash
is right for a high-entropy secret: there is nothing to brute-force). Nothing is
cached, so a revoked or expired key is refused on its very next request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from typing import Any

from sqlalchemy import and_, or_, select, update

from gateway.models import ApiKey, infra
from shared import audit
from shared.db import Database, utcnow
from shared.errors import Errors, NotFound, Unauthorized
from shared.identity import ROLES, Principal

KEY_PREFIX = "pck_"
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)  # write last_used_at at most once a minute per key


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def principal_of(row: ApiKey) -> Principal:
    return Principal(
        subject=f"api_key:{row.id}", roles=frozenset(row.roles), scopes=frozenset(row.scopes), kind="api_key"
    )


async def create(
    db: Database,
    *,
    name: str,
    roles: list[str],
    scopes: list[str],
    expires_at: dt.datetime | None,
    created_by: str,
) -> tuple[ApiKey, str]:
    """A new key and its secret (the only time the secret exists outside the caller)."""
    errors = Errors()
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        errors.add("roles", f"unknown role(s) {', '.join(unknown)}; choose from {', '.join(ROLES)}")
    if not roles:
        errors.add("roles", "give at least one role")
    if "supplier" in roles and not any(sc.startswith("supplier:") and len(sc) > len("supplier:") for sc in scopes):
        errors.add("scopes", "a supplier's key needs the supplier:<id> scope of the supplier it acts for")
    if expires_at is not None and expires_at <= utcnow():
        errors.add("expires_at", "must be in the future")
    errors.raise_if_any()
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id=str(uuid.uuid4()),
        name=name,
        key_hash=hash_key(secret),
        prefix=secret[:10],
        roles=sorted(set(roles)),
        scopes=sorted(set(scopes)),
        created_by=created_by,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    async with db.transaction() as s:
        s.add(row)
        await audit.record(
            s, infra.audit, action="gateway.api_key.created", entity="api_key", entity_id=row.id, after=_shown(row)
        )
    return row, secret


async def list_keys(
    db: Database,
    *,
    include_revoked: bool = False,
    limit: int = 50,
    after: list[Any] | None = None,
) -> list[ApiKey]:
    """Up to limit+1 keys, oldest first, after the (created_at, id) key of a cursor."""
    q = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id).limit(limit + 1)
    if not include_revoked:
        q = q.where(ApiKey.revoked_at.is_(None))
    if after:
        created, last_id = after  # (datetime, id): decoded by the caller (shared.pagination.decode_cursor)
        q = q.where(or_(ApiKey.created_at > created, and_(ApiKey.created_at == created, ApiKey.id > last_id)))
    async with db.transaction(readonly=True) as s:
        return list((await s.scalars(q)).all())


async def get(db: Database, key_id: str) -> ApiKey:
    async with db.transaction(readonly=True) as s:
        row = await s.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"No API key {key_id}.")
    return row


async def revoke(db: Database, key_id: str) -> None:
    async with db.transaction() as s:
        row = await s.get(ApiKey, key_id)
        if row is None:
            raise NotFound(f"No API key {key_id}.")
        if row.revoked_at is None:
            before = _shown(row)
            row.revoked_at = utcnow()
            await audit.record(
                s,
                infra.audit,
                action="gateway.api_key.revoked",
                entity="api_key",
                entity_id=row.id,
                before=before,
                after=_shown(row),
            )


def _shown(row: ApiKey) -> dict[str, Any]:
    """What the trail keeps of a key: never its hash."""
    return {
        "name": row.name,
        "prefix": row.prefix,
        "roles": list(row.roles),
        "scopes": list(row.scopes),
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


async def authenticate(db: Database, key: str) -> Principal:
    if not key.startswith(KEY_PREFIX):
        raise Unauthorized("The API key is not valid.")
    digest = hash_key(key)
    async with db.transaction(readonly=True) as s:
        row = await s.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    now = utcnow()
    if row is None:
        raise Unauthorized("The API key is not valid.")
    if row.revoked_at is not None:
        raise Unauthorized("The API key has been revoked.")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthorized("The API key has expired.")
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        async with db.transaction() as s:
            await s.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
    return principal_of(row)
