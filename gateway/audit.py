"""The suite's audit trail: every service's `/v1/audit` and the gateway's own, merged newest first.

Each source pages by its own sequence, so the merged cursor holds one position per source (0: from
its newest entry, n: before its entry n, -1: exhausted). A page asks every source that is not
exhausted for `limit` entries after its position, merges them by time and keeps the newest `limit`;
each source then stands after the last of its entries that was kept. A source that does not answer
fails the page with 503 naming it, rather than showing a trail with a hole nobody sees: the caller can
read the others with `service=`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal, get_args
from urllib.parse import urlencode

import orjson
from pydantic import ValidationError

from gateway.models import infra
from gateway.state import Gateway
from gateway.upstream import UpstreamError
from shared import audit
from shared.audit import Entry, EntryList
from shared.errors import Invalid, Unavailable
from shared.identity import HEADER, Principal
from shared.pagination import decode_cursor, encode_cursor

# Written out for the `service=` parameter's schema; tests/gateway/test_audit_trail.py keeps it whole.
Source = Literal["gateway", "budget", "workflow", "kpi", "registry", "notify"]
SOURCES: tuple[str, ...] = get_args(Source)
START, DONE = 0, -1


@dataclass(frozen=True)
class Filters:
    entity: str | None = None
    entity_id: str | None = None
    actor: str | None = None
    action: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def query(self) -> dict[str, str]:
        """As the services' /v1/audit reads them."""
        return {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in asdict(self).items() if v is not None}


def positions(cursor: str | None, sources: Sequence[str]) -> dict[str, int]:
    """Where each source stands; a cursor from another `service=` selection is refused."""
    values = decode_cursor(cursor, *([int] * len(sources)))
    if values is None:  # no cursor, or an empty one (`?cursor=`): from the newest
        return dict.fromkeys(sources, START)
    if any(v < DONE for v in values):
        raise Invalid.on("query.cursor", "is not a cursor this listing gave out")
    return dict(zip(sources, values, strict=True))


async def page(
    gw: Gateway, who: Principal, sources: Sequence[str], filters: Filters, limit: int, cursor: str | None
) -> EntryList:
    at = positions(cursor, sources)
    fetched: dict[str, EntryList] = {}
    for source in sources:
        if at[source] != DONE:
            fetched[source] = await _read(gw, who, source, filters, limit, at[source])
    merged = sorted(
        ((e, source) for source, got in fetched.items() for e in got.items),
        key=lambda pair: (pair[0].at, pair[1], pair[0].seq),
        reverse=True,
    )[:limit]
    kept: dict[str, list[Entry]] = {}
    for entry, source in merged:
        kept.setdefault(source, []).append(entry)
    for source, got in fetched.items():
        mine = kept.get(source, [])
        if len(mine) == len(got.items) and got.next_cursor is None:
            at[source] = DONE  # everything it has was shown
        elif mine:
            at[source] = mine[-1].seq
    more = any(v != DONE for v in at.values())
    return EntryList(items=[e for e, _ in merged], next_cursor=encode_cursor(*at.values()) if more else None)


async def _read(gw: Gateway, who: Principal, source: str, filters: Filters, limit: int, position: int) -> EntryList:
    after = encode_cursor(position) if position > 0 else None
    if source == "gateway":
        return await audit.page(gw.db, infra.audit, "gateway", limit=limit, cursor=after, **asdict(filters))
    query = {**filters.query(), "limit": str(limit), **({"cursor": after} if after else {})}
    try:
        r = await gw.upstreams.fetch(
            source,
            "GET",
            f"/v1/audit?{urlencode(query)}",
            [(HEADER, gw.minter.mint(who)), ("accept", "application/json")],
        )
        if r.status_code != 200:
            raise UpstreamError(f"answered {r.status_code}")
        return EntryList.model_validate(orjson.loads(r.content))
    except (UpstreamError, TimeoutError, ValueError, ValidationError) as exc:
        raise Unavailable(
            f"The audit trail of {source} cannot be read now ({exc}); read the others with service=."
        ) from exc
