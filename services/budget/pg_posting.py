"""A whole posting as one PostgreSQL statement (the PostgreSQL side of services.budget.writers).

The statement inserts the entries, the commitment row, the outbox events and their audit entries,
then locks the
balance rows of every touched (line, period) in one fixed order (line id, period: the LockRows
sits above the sort, so concurrent postings queue on the rows they share and never deadlock) and
updates them. In the same statement it

- refuses the posting when a checked line's available money over a control period (the month, or
  the fiscal quarter or year containing it: every month of it is among the locked rows, with no
  change where the posting has none) would go negative and fall: the
  `budget_refuse` function (migration c4f1d2a9e8b7) raises SQLSTATE PB001 with the shortfalls
  as JSON, so the statement, and everything it inserted, is undone;
- adds a `budget.line.threshold_crossed` event (and its audit entry, authored as the posting is)
  for each watched (line, period) whose consumption passes 80 % or 100 % of its allocation.

Nothing is left for a second statement, so a posting that is its caller's whole unit of work can
commit by itself: one round trip instead of three (BEGIN, statement, COMMIT).

`guard` lists the line and plan rows a posting was built from when they came from the ledger's
cache: unless each line and its plan are still at those versions, the plan active and the period
open, the statement writes nothing and returns no row, and the posting is built again from a fresh
read. An empty guard always passes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
import orjson
from prometheus_client import Histogram
from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.budget.models import commitments, entries, infra
from shared import audit
from shared.tasks import outlive_cancellation

REFUSED = "PB001"  # SQLSTATE raised by budget_refuse
# Errors that mean the connection is gone or unusable (the server restarted, the backend was terminated,
# or asyncpg found its protocol state broken by that: InternalClientError "another operation is in progress").
_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    OSError,
)

ENTRY_COLS = (
    "id",
    "group_id",
    "plan_id",
    "line_id",
    "period",
    "entry_date",
    "kind",
    "amount_minor",
    "original_amount_minor",
    "original_currency",
    "fx_rate",
    "d_allocated",
    "d_committed",
    "d_pending",
    "d_spent",
    "commitment_id",
    "reverses_group_id",
    "external_ref",
    "vendor",
    "memo",
    "author",
    "created_at",
    "campaign_id",
)
COMMITMENT_COLS = (
    "id",
    "plan_id",
    "line_id",
    "period",
    "entry_date",
    "status",
    "amount_minor",
    "consumed_minor",
    "original_amount_minor",
    "original_currency",
    "fx_rate",
    "reason",
    "external_ref",
    "external_revision",
    "vendor",
    "memo",
    "campaign_id",
    "requested_by",
    "decided_by",
    "version",
    "created_at",
    "updated_at",
)
OUTBOX_COLS = ("id", "subject", "payload", "created_at", "attempts")
AUDIT_COLS = audit.ROW_COLUMNS
# Who a threshold event's audit entry names: the author of the posting that crossed it.
AUTHOR_COLS = ("actor", "actor_kind", "request_id", "method", "path")
DELTA_COLS = ("da", "dc", "dp", "ds", "oa", "oc", "op", "os")
STATEMENT_SECONDS = Histogram(
    "pitcrew_budget_posting_statement_seconds",
    "Time from sending a posting statement that commits alone to its answer (row lock waits and the commit included)",
    buckets=(0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.5),
)
BATCH_POSTINGS = Histogram(
    "pitcrew_budget_posting_batch_postings",
    "Postings written by one statement (group commit)",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def _pg_type(col: Any) -> str:
    name = str(col.type.compile(dialect=_PG))
    return "TIMESTAMPTZ" if name.startswith("TIMESTAMP") else name.split("(")[0]


def _rows_of(param: str, table: Any, cols: Sequence[str]) -> str:
    """Rows handed over as one JSON parameter (cheaper to encode than one array per column)."""
    return (
        f"SELECT * FROM json_to_recordset(CAST(:{param} AS JSON)) AS x("
        + ", ".join(f"{c} {_pg_type(table.c[c])}" for c in cols)
        + ")"
    )


def _money(minor: str) -> str:
    """Minor units as the API's decimal string, in SQL (125000 at scale 2 -> '1250.00')."""
    return f"round(({minor})::numeric / power(10::numeric, CAST(:scale AS INTEGER)), CAST(:scale AS INTEGER))::text"


STATEMENT = text(f"""
WITH g AS (SELECT count(*) = json_array_length(CAST(:guard AS JSON)) AS ok
           FROM json_to_recordset(CAST(:guard AS JSON))
                AS x(line_id VARCHAR, line_version INTEGER, dimensions JSONB, plan_version INTEGER, period VARCHAR)
           JOIN lines ON lines.id = x.line_id AND lines.version = x.line_version AND lines.dimensions = x.dimensions
           JOIN plans ON plans.id = lines.plan_id AND plans.version = x.plan_version AND plans.status = 'active'
           WHERE NOT EXISTS (SELECT 1 FROM closed_periods cp WHERE cp.plan_id = plans.id AND cp.period = x.period)),
e AS (INSERT INTO entries ({", ".join(ENTRY_COLS)})
      {_rows_of("entries", entries, ENTRY_COLS)} WHERE (SELECT ok FROM g)),
c AS (INSERT INTO commitments ({", ".join(COMMITMENT_COLS)})
      {_rows_of("commitments", commitments, COMMITMENT_COLS)} WHERE (SELECT ok FROM g)),
d AS (SELECT * FROM json_to_recordset(CAST(:deltas AS JSON))
      AS d(line_id VARCHAR, period VARCHAR, ctl VARCHAR, {", ".join(f"{c} BIGINT" for c in DELTA_COLS)})
      WHERE (SELECT ok FROM g)),
l AS MATERIALIZED (SELECT b.line_id, b.period FROM balances b JOIN d ON b.line_id = d.line_id AND b.period = d.period
                   ORDER BY b.line_id, b.period FOR UPDATE OF b),
u AS (UPDATE balances SET allocated = balances.allocated + d.da, committed = balances.committed + d.dc,
          pending = balances.pending + d.dp, spent = balances.spent + d.ds,
          own_allocated = balances.own_allocated + d.oa, own_committed = balances.own_committed + d.oc,
          own_pending = balances.own_pending + d.op, own_spent = balances.own_spent + d.os
      FROM l JOIN d ON d.line_id = l.line_id AND d.period = l.period
      WHERE balances.line_id = l.line_id AND balances.period = l.period
      RETURNING balances.line_id, balances.period, balances.allocated, balances.committed, balances.pending,
                balances.spent, balances.committed + balances.pending + balances.spent AS consumed,
                d.dc + d.dp + d.ds AS d_consumed, d.da - d.dc - d.dp - d.ds AS d_available, d.ctl),
s AS (SELECT u.line_id, u.ctl, (array_agg(u.period ORDER BY u.d_available, u.period))[1] AS period,
             sum(u.allocated - u.committed - u.pending - u.spent) AS available, sum(u.d_available) AS d_available
      FROM u WHERE CAST(:check AS BOOLEAN) GROUP BY u.line_id, u.ctl),
crossed AS (SELECT w.tpl, w.author, t.threshold, u.allocated, u.consumed
            FROM json_to_recordset(CAST(:watch AS JSON))
                 AS w(line_id VARCHAR, period VARCHAR, tpl JSONB, author JSONB)
            JOIN u ON u.line_id = w.line_id AND u.period = w.period
            CROSS JOIN unnest(CAST(:thresholds AS INTEGER[])) AS t(threshold)
            WHERE u.allocated > 0 AND (u.consumed - u.d_consumed) * 100 < t.threshold * u.allocated
                  AND t.threshold * u.allocated <= u.consumed * 100),
thr AS (SELECT crossed.threshold, crossed.author, crossed.tpl || jsonb_build_object(
                'id', gen_random_uuid()::text,
                'data', (crossed.tpl -> 'data') || jsonb_build_object(
                    'threshold', crossed.threshold, 'allocated', {_money("crossed.allocated")},
                    'consumed', {_money("crossed.consumed")})) AS tpl
        FROM crossed),
o AS (INSERT INTO outbox ({", ".join(OUTBOX_COLS)})
      SELECT id, subject, payload, created_at, attempts FROM (
          SELECT x.*, 0 AS n FROM ({_rows_of("events", infra.outbox, OUTBOX_COLS)} WHERE (SELECT ok FROM g)) x
          UNION ALL
          SELECT tpl ->> 'id', tpl ->> 'type', tpl::text, CAST(:now AS TIMESTAMPTZ), 0, threshold FROM thr
      ) ev ORDER BY n),
a AS (INSERT INTO audit_log ({", ".join(AUDIT_COLS)})
      {_rows_of("audits", infra.audit, AUDIT_COLS)} WHERE (SELECT ok FROM g)
      UNION ALL
      SELECT gen_random_uuid()::text, CAST(:now AS TIMESTAMPTZ), {", ".join(f"author ->> '{c}'" for c in AUTHOR_COLS)},
             tpl ->> 'type', 'line', tpl ->> 'subject_id', NULL, tpl -> 'data'
      FROM thr)
SELECT u.line_id, u.period, u.allocated, u.committed, u.pending, u.spent,
       (SELECT budget_refuse(json_agg(json_build_object(
                   'line_id', r.line_id, 'line_code', lines.code, 'period', r.period, 'control', r.ctl,
                   'available', r.available, 'd_available', r.d_available)))
        FROM s r JOIN lines ON lines.id = r.line_id
        WHERE r.available < 0 AND r.d_available < 0
        HAVING count(*) > 0) AS refused
FROM u
""")

_COMPILED = STATEMENT.compile(dialect=postgresql.asyncpg.dialect())  # type: ignore[no-untyped-call]
_POSITIONAL_SQL = _COMPILED.string
_POSITIONS = _COMPILED.positiontup or []


def to_json(value: Any) -> str:
    """The statement's JSON parameters, with orjson: dates and datetimes as ISO 8601 (as isoformat()
    writes them); anything else unknown refuses, never silently stringified."""
    return orjson.dumps(value).decode()


def shortfalls(exc: BaseException) -> list[dict[str, Any]] | None:
    """The shortfalls of a posting the statement refused, or None for any other error."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    pg = orig if isinstance(orig, asyncpg.PostgresError) else getattr(orig, "__cause__", None)
    if pg is None or getattr(pg, "sqlstate", None) != REFUSED:
        return None
    found: list[dict[str, Any]] = json.loads(pg.detail)
    return found


def _encode(params: dict[str, Any]) -> dict[str, Any]:
    return {k: (to_json(v) if k in _JSON_PARAMS else v) for k, v in params.items()}


_JSON_PARAMS = frozenset({"entries", "commitments", "events", "audits", "guard", "deltas", "watch"})


async def run(conn: AsyncConnection, params: dict[str, Any], *, may_commit_alone: bool) -> list[Any]:
    """Execute the posting statement; returns its rows (one per touched line and period).

    `params` hold the rows as Python lists (encoded to JSON here). The posting commits by itself only
    when the caller allows it (the posting is its whole unit of work) and nothing has run in the
    transaction yet: then it goes straight to the asyncpg connection, outside any BEGIN (one round
    trip). Otherwise it runs through SQLAlchemy inside the caller's transaction.
    """
    if may_commit_alone:
        raw = (await conn.get_raw_connection()).driver_connection
        if raw is not None and not raw.is_in_transaction():
            return await _alone(conn, raw, _encode(params))
    return list((await conn.execute(STATEMENT, _encode(params))).all())


async def _alone(conn: AsyncConnection, raw: Any, params: dict[str, Any]) -> list[Any]:
    """The statement on the raw connection, committing by itself; errors as SQLAlchemy would raise them."""
    try:
        with STATEMENT_SECONDS.time():
            rows: list[Any] = await raw.fetch(_POSITIONAL_SQL, *(params[name] for name in _POSITIONS))
            return rows
    except _LOST as exc:
        # Bypassing SQLAlchemy's execute means doing its disconnect handling: drop the connection
        # so the pool reconnects, and answer as a lost connection (a 503 to an HTTP caller).
        await conn.invalidate(exc)
        raise DBAPIError(_POSITIONAL_SQL, None, exc, connection_invalidated=True) from exc
    except asyncpg.PostgresError as exc:
        if exc.sqlstate == REFUSED:
            raise
        # Answer as SQLAlchemy's execute would have (problem handlers key on these classes).
        cls = IntegrityError if isinstance(exc, asyncpg.IntegrityConstraintViolationError) else DBAPIError
        raise cls(_POSITIONAL_SQL, None, exc) from exc


class _Pending:
    __slots__ = ("params", "key", "taken", "done", "rows", "error", "alone")

    def __init__(self, params: dict[str, Any]):
        self.params = params
        self.key = (params["check"], params["scale"])
        self.taken = False
        self.done = asyncio.get_running_loop().create_future()
        self.rows: list[Any] = []
        self.error: BaseException | None = None
        self.alone = False


class Batcher:
    """Group commit: postings that arrive while another is being written go out together.

    Each posting that is its caller's whole unit of work costs PostgreSQL a statement, a commit and a
    WAL flush, and the process a round trip. Under concurrency most of that is shared: the postings
    waiting for their turn are merged into one statement (entries, commitments and events
    concatenated, balance deltas summed per line and period), which commits them all at once.

    Only postings that take money away (every delta lowers available) are merged: then the batch
    leaves every balance at or above zero exactly when each posting alone would have, so a batch
    that passes the overspend check is one that sequential postings would all have passed. A batch
    the statement refuses (a shortfall, a stale cached line, any database error) is undone as a
    whole and each of its postings runs again alone, so each gets exactly the answer it would have
    had. A lost connection fails the whole batch (503), as it fails a single posting.
    """

    def __init__(self, *, parallel: int = 2, max_postings: int = 64):
        self.parallel = parallel
        self.max_postings = max_postings
        self._state: dict[Any, tuple[asyncio.Semaphore, list[_Pending]]] = {}

    @staticmethod
    def takes(params: dict[str, Any]) -> bool:
        return all(d["da"] - d["dc"] - d["dp"] - d["ds"] <= 0 for d in params["deltas"])

    def _of_loop(self) -> tuple[asyncio.Semaphore, list[_Pending]]:
        loop = asyncio.get_running_loop()
        state = self._state.get(loop)
        if state is None:
            self._state = {k: v for k, v in self._state.items() if not k.is_closed()}
            state = self._state[loop] = (asyncio.Semaphore(self.parallel), [])
        return state

    async def post(
        self, engine: AsyncEngine, params: dict[str, Any], own_connection: Callable[[], Awaitable[AsyncConnection]]
    ) -> list[Any]:
        """Write a posting that is its caller's whole unit of work and that `takes()`, in a batch.

        The caller's session has run nothing, so it needs no connection: a batch is written on one the
        writer checks out for it. `own_connection` is the caller's, used only to run again alone.
        """
        slots, waiting = self._of_loop()
        me = _Pending(params)
        waiting.append(me)
        try:
            async with slots:
                if not me.taken:
                    batch = [p for p in waiting if p.key == me.key][: self.max_postings]
                    for p in batch:
                        p.taken = True
                        waiting.remove(p)
                    try:
                        async with engine.connect() as conn:
                            raw = (await conn.get_raw_connection()).driver_connection
                            await self._write(conn, raw, batch)
                    except BaseException:
                        # No connection for the batch (or the leader was cancelled before it was sent):
                        # nothing was written, so the others run alone rather than wait forever.
                        for p in batch:
                            if not p.done.done():
                                p.alone = True
                                p.done.set_result(None)
                        raise
            await me.done  # taken into another caller's batch: written when that one is
        finally:
            if not me.taken:  # cancelled while waiting: never posted
                waiting.remove(me)
        if me.error is not None:
            raise me.error
        if me.alone:
            return await run(await own_connection(), params, may_commit_alone=True)
        return me.rows

    async def _write(self, conn: AsyncConnection, raw: Any, batch: list[_Pending]) -> None:
        merged = batch[0].params if len(batch) == 1 else _merge([p.params for p in batch])
        BATCH_POSTINGS.observe(len(batch))
        task = asyncio.ensure_future(_alone(conn, raw, _encode(merged)))
        try:
            # A batch carries other callers' postings: a cancelled leader still waits for it (and keeps
            # its connection) until it is written, and hands out every answer (settled per posting).
            await outlive_cancellation(task)
        finally:
            _settle(batch, task)


def _settle(batch: list[_Pending], task: asyncio.Future[list[Any]]) -> None:
    """Hand each posting of a written batch its rows, its error, or the instruction to run alone."""
    exc = asyncio.CancelledError() if task.cancelled() else task.exception()
    if exc is None:
        rows = task.result()
        if len(batch) > 1 and not rows and any(p.params["guard"] for p in batch):
            for p in batch:  # a stale cached line: the batch wrote nothing; each runs alone, then rebuilds
                p.alone = True
        else:
            by_key = {(r[0], r[1]): r for r in rows}
            for p in batch:
                keys = ((d["line_id"], d["period"]) for d in p.params["deltas"])
                p.rows = [by_key[k] for k in keys if k in by_key]
    elif (
        len(batch) == 1
        or isinstance(exc, asyncio.CancelledError)
        or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
    ):
        for p in batch:  # its own answer; or a lost connection, which fails every posting it carried
            p.error = exc
    else:
        for p in batch:  # refused or failed as a whole: each runs alone for its own answer
            p.alone = True
    for p in batch:
        if not p.done.done():
            p.done.set_result(None)


def _merge(params: list[dict[str, Any]]) -> dict[str, Any]:
    """One statement's parameters for several postings (see Batcher)."""
    deltas: dict[tuple[str, str], dict[str, Any]] = {}
    watch: dict[tuple[str, str], dict[str, Any]] = {}
    for p in params:
        for d in p["deltas"]:
            acc = deltas.get((d["line_id"], d["period"]))
            if acc is None:
                deltas[(d["line_id"], d["period"])] = dict(d)
            else:
                for c in DELTA_COLS:
                    acc[c] += d[c]
        for w in p["watch"]:
            watch.setdefault((w["line_id"], w["period"]), w)
    first = params[0]
    return {
        "entries": [e for p in params for e in p["entries"]],
        "commitments": [c for p in params for c in p["commitments"]],
        "events": [e for p in params for e in p["events"]],
        "audits": [a for p in params for a in p["audits"]],
        "guard": [g for p in params for g in p["guard"]],
        "deltas": list(deltas.values()),
        "watch": list(watch.values()),
        "thresholds": first["thresholds"],
        "now": max(p["now"] for p in params),
        "scale": first["scale"],
        "check": first["check"],
    }
