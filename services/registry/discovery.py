"""Discovery from spend: the budget pays vendors no tool in the catalogue matches; they become
candidates to accept (a new tool, its spend attached), merge into a tool (a vendor alias, learned
for the next invoice) or ignore.

Every actual the budget posts with a vendor (`budget.actual.posted`, from an invoice or by hand) is
one `tool_spend` row: attached to the tool whose name, vendor or alias matches the normalised vendor
name, or to the candidate of that name. The discovery run groups the candidates' spend in SQL.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import unicodedata
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update

from services.registry import schemas, stack_schemas, tools
from services.registry.models import DiscoveryCandidate, Tool, ToolSpend, VendorAlias
from shared.db import utcnow
from shared.errors import Conflict, Invalid, NotFound
from shared.identity import Principal, ensure_unscoped
from shared.money import fmt, to_minor
from shared.uow import UnitOfWork

WHAT = "The tool catalogue"
# Legal forms and filler words a vendor name carries on one invoice and not on the next.
NOISE = {
    "inc", "incorporated", "ltd", "limited", "llc", "llp", "gmbh", "ag", "sa", "sas", "sarl", "bv", "nv", "plc",
    "corp", "corporation", "co", "company", "the", "srl", "spa", "oy", "ab", "as", "pty", "kg",
}  # fmt: skip


def normalise(vendor: str) -> str:
    """`ACME, Inc.` and `Acme Inc` and `Acmé` -> `acme`: accents, case, punctuation and legal forms go."""
    text = unicodedata.normalize("NFKD", vendor).encode("ascii", "ignore").decode().lower()
    words = [w for w in re.split(r"[^a-z0-9]+", text) if w and w not in NOISE]
    return " ".join(words)[:200]


# The last key map built per database, with the stamp it was built at: an actual's event reads the
# stamp (two aggregates) instead of every tool, and rebuilds only after a tool or an alias changed.
_KEYS: dict[str, tuple[tuple[Any, ...], dict[str, str]]] = {}


async def tool_keys(uow: UnitOfWork) -> dict[str, str]:
    """Normalised vendor and name of every tool that is not retired, and every alias -> tool id."""
    t: Any = (await uow.execute(select(func.count(), func.max(Tool.updated_at)).select_from(Tool))).one()
    a: Any = (await uow.execute(select(func.count(), func.max(VendorAlias.created_at)).select_from(VendorAlias))).one()
    where, stamp = str(uow.bind.url), (t[0], t[1], a[0], a[1])
    cached = _KEYS.get(where)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    keys = await _build_keys(uow)
    if len(_KEYS) >= 8:
        _KEYS.pop(next(iter(_KEYS)))
    _KEYS[where] = (stamp, keys)
    return keys


async def _build_keys(uow: UnitOfWork) -> dict[str, str]:
    keys: dict[str, str] = {}
    rows = await uow.execute(select(Tool.id, Tool.name, Tool.vendor).where(Tool.lifecycle != "retired"))
    for t in rows:
        for text in (t.name, t.vendor):
            key = normalise(text or "")
            if key:
                keys.setdefault(key, t.id)
    for a in await uow.execute(select(VendorAlias.key, VendorAlias.tool_id)):
        keys[a.key] = a.tool_id
    return keys


async def match(uow: UnitOfWork, key: str) -> str | None:
    alias = await uow.get(VendorAlias, key)
    if alias is not None:
        return alias.tool_id
    return (await tool_keys(uow)).get(key)


async def record_actual(
    uow: UnitOfWork,
    *,
    entry_id: str,
    vendor: str | None,
    amount: Decimal,
    currency: str,
    day: dt.date,
    line_code: str | None,
    external_ref: str | None,
) -> ToolSpend | None:
    """Attach one actual to its tool or its candidate (once per entry)."""
    key = normalise(vendor or "")
    if not key or await uow.get(ToolSpend, entry_id) is not None:
        return None
    spend = ToolSpend(
        entry_id=entry_id,
        vendor_key=key,
        amount_minor=to_minor(amount, currency, "data.amount"),
        currency=currency,
        day=day,
        line_code=line_code,
        external_ref=external_ref,
    )
    spend.tool_id = await match(uow, key)
    if spend.tool_id is None:
        candidate = await uow.scalar(select(DiscoveryCandidate).where(DiscoveryCandidate.vendor_key == key))
        if candidate is None:
            candidate = DiscoveryCandidate(
                id=str(uuid.uuid4()), vendor_key=key, vendor=(vendor or key).strip()[:200], status="open",
                created_at=utcnow(),
            )  # fmt: skip
            uow.add(candidate)
            await uow.flush()
        spend.candidate_id = candidate.id
    uow.add(spend)
    await uow.flush()
    return spend


async def candidates(uow: UnitOfWork, *, status: str | None = "open") -> stack_schemas.Candidates:
    """The discovery run: each candidate with its spend per currency, first and last seen, the lines
    that paid it, and the tools whose name is close; most recently paid first."""
    query = select(DiscoveryCandidate)
    if status:
        query = query.where(DiscoveryCandidate.status == status)
    found = {c.id: c for c in (await uow.scalars(query)).all()}
    s = ToolSpend
    sums = await uow.execute(
        select(s.candidate_id, s.currency, func.sum(s.amount_minor), func.min(s.day), func.max(s.day), func.count())
        .where(s.candidate_id.is_not(None))
        .group_by(s.candidate_id, s.currency)
    )
    spend: dict[str, list[Any]] = defaultdict(list)
    for row in sums:
        if row[0] in found:
            spend[row[0]].append(row)
    codes: dict[str, set[str]] = defaultdict(set)
    lines: list[Any] = list(
        await uow.execute(
            select(s.candidate_id, s.line_code).where(s.candidate_id.is_not(None), s.line_code.is_not(None)).distinct()
        )
    )
    for row in lines:
        if row[0] in found:
            codes[row[0]].add(row[1])
    keys = await tool_keys(uow)
    names: dict[str, str] = {r.id: r.name for r in await uow.execute(select(Tool.id, Tool.name))}
    words = _word_index(keys)
    items = [_view(c, spend[c.id], sorted(codes[c.id]), keys, names, words) for c in found.values()]
    items.sort(key=lambda i: (i.last_seen is None, -(i.last_seen or dt.date.min).toordinal(), i.vendor_key))
    return stack_schemas.Candidates(items=items)


COMMON = 50  # a word more tool keys hold than this ("software", "media") says nothing about a match


def _word_index(keys: dict[str, str]) -> dict[str, set[str]]:
    """Each word (3 letters or more) of the tools' keys -> the keys holding it."""
    index: dict[str, set[str]] = defaultdict(set)
    for key in keys:
        for word in key.split():
            if len(word) >= 3:
                index[word].add(key)
    return index


def _similar(key: str, words: dict[str, set[str]]) -> list[str]:
    """Up to three tool keys sharing a word with `key` and close to it (difflib ratio 0.6 or more):
    compared only with keys that share a word, so a run over thousands of candidates stays cheap."""
    pool = set().union(*(words.get(w, set()) for w in key.split() if len(words.get(w, ())) <= COMMON))
    matcher = difflib.SequenceMatcher(None, "", key)  # the candidate is seq2: difflib caches its analysis
    scored = []
    for other in pool:
        matcher.set_seq1(other)
        if matcher.real_quick_ratio() >= 0.6 and matcher.quick_ratio() >= 0.6 and (r := matcher.ratio()) >= 0.6:
            scored.append((-r, other))
    return [other for _, other in sorted(scored)[:3]]


def _view(
    c: DiscoveryCandidate,
    sums: list[Any],
    codes: list[str],
    keys: dict[str, str],
    names: dict[str, str],
    words: dict[str, set[str]] | None = None,
) -> stack_schemas.CandidateOut:
    close = _similar(c.vendor_key, words) if words is not None and c.status == "open" else []
    similar = list(dict.fromkeys(keys[k] for k in close))
    return stack_schemas.CandidateOut(
        id=c.id,
        vendor=c.vendor,
        vendor_key=c.vendor_key,
        status=c.status,
        spend=[
            stack_schemas.SpendAmount(currency=r[1], amount=fmt(int(r[2]), r[1]))
            for r in sorted(sums, key=lambda r: r[1])
        ],
        first_seen=min((r[3] for r in sums), default=None),
        last_seen=max((r[4] for r in sums), default=None),
        lines=sum(int(r[5]) for r in sums),
        line_codes=codes,
        tool_id=c.tool_id,
        similar_tools=[stack_schemas.SimilarTool(tool_id=t, name=names.get(t, "")) for t in similar],
        decided_by=c.decided_by,
        decided_at=c.decided_at,
    )


def _currency(row: Any) -> str:
    return str(row[1])


async def _open(uow: UnitOfWork, candidate_id: str) -> DiscoveryCandidate:
    query = select(DiscoveryCandidate).where(DiscoveryCandidate.id == candidate_id)
    if uow.dialect != "sqlite":
        query = query.with_for_update()
    c: DiscoveryCandidate | None = await uow.scalar(query)
    if c is None:
        raise NotFound(f"No discovery candidate with id {candidate_id!r}.")
    if c.status != "open":
        raise Conflict(f"The candidate is already {c.status}.", current_status=c.status)
    return c


async def _settle(uow: UnitOfWork, who: Principal, c: DiscoveryCandidate, status: Any, tool_id: str | None) -> None:
    c.status, c.tool_id, c.decided_by, c.decided_at = status, tool_id, who.subject, utcnow()
    if tool_id is not None:
        uow.add(VendorAlias(key=c.vendor_key, alias=c.vendor, tool_id=tool_id, created_by=who.subject,
                            created_at=utcnow()))  # fmt: skip
        await uow.execute(update(ToolSpend).where(ToolSpend.candidate_id == c.id).values(tool_id=tool_id))
    await uow.flush()


async def _one(uow: UnitOfWork, c: DiscoveryCandidate) -> stack_schemas.CandidateOut:
    s = ToolSpend
    sums = list(
        await uow.execute(
            select(s.candidate_id, s.currency, func.sum(s.amount_minor), func.min(s.day), func.max(s.day), func.count())
            .where(s.candidate_id == c.id)
            .group_by(s.candidate_id, s.currency)
        )
    )
    codes = sorted({r[0] for r in await uow.execute(select(s.line_code).where(s.candidate_id == c.id)) if r[0]})
    return _view(c, sums, codes, {}, {})


async def accept(
    uow: UnitOfWork, who: Principal, *, candidate_id: str, body: stack_schemas.AcceptIn
) -> stack_schemas.CandidateOut:
    """The candidate becomes a tool (its vendor the candidate's), with its spend attached."""
    ensure_unscoped(who, WHAT)
    c = await _open(uow, candidate_id)
    fields = body.model_dump(exclude={"name"})
    tool = await tools.create_tool(uow, who, body=schemas.ToolIn(name=body.name or c.vendor, vendor=c.vendor, **fields))
    await _settle(uow, who, c, "accepted", tool.id)
    return await _one(uow, c)


async def merge(
    uow: UnitOfWork, who: Principal, *, candidate_id: str, body: stack_schemas.MergeIn
) -> stack_schemas.CandidateOut:
    """The candidate's vendor is another name of a tool: an alias, used for every later actual."""
    ensure_unscoped(who, WHAT)
    c = await _open(uow, candidate_id)
    tool = await uow.get(Tool, body.tool_id)
    if tool is None or tool.lifecycle == "retired":
        raise Invalid.on("tool_id", f"no tool (not retired) with id {body.tool_id!r}", "unknown_tool")
    await _settle(uow, who, c, "merged", tool.id)
    return await _one(uow, c)


async def ignore(
    uow: UnitOfWork, who: Principal, *, candidate_id: str, body: stack_schemas.IgnoreIn
) -> stack_schemas.CandidateOut:
    """Not a tool (rent, a freelancer): hidden from the open candidates; later spend still adds up."""
    ensure_unscoped(who, WHAT)
    c = await _open(uow, candidate_id)
    await _settle(uow, who, c, "ignored", None)
    await uow.audit("discovery_candidate", c.id, action="discovery.ignored", after={"reason": body.reason})
    return await _one(uow, c)


async def spend_of(uow: UnitOfWork, *, tool_id: str) -> stack_schemas.ToolSpendOut:
    if await uow.get(Tool, tool_id) is None:
        raise NotFound(f"No tool with id {tool_id!r}.")
    s = ToolSpend
    rows: list[Any] = list(
        await uow.execute(
            select(s.currency, func.sum(s.amount_minor), func.min(s.day), func.max(s.day), func.count())
            .where(s.tool_id == tool_id)
            .group_by(s.currency)
            .order_by(s.currency)
        )
    )
    return stack_schemas.ToolSpendOut(
        tool_id=tool_id,
        spend=[stack_schemas.SpendAmount(currency=r[0], amount=fmt(int(r[1]), r[0])) for r in rows],
        lines=sum(int(r[4]) for r in rows),
        first_seen=min((r[2] for r in rows), default=None),
        last_seen=max((r[3] for r in rows), default=None),
    )
