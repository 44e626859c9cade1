"""The two ways a posting is written, behind `postings.Writer`: the only place the ledger knows
which database it runs on (chosen once, by the container).

PostgreSQL: one statement (services.budget.pg_posting) inserts the entries, the commitment row, the
events and their audit entries, locks and updates the balance rows in (line id, period) order,
refuses a shortfall and adds threshold events; a posting that is its request's whole unit of work
commits by itself, and concurrent ones share statements (group commit). Lines of active plans may
come from the cache: the statement checks they are current.

SQLite: the BEGIN IMMEDIATE of shared.db (behind its fair write queue) already serializes writers;
the same writes run as one batch on the database thread (shared.sqlite_driver.on_thread: one hop,
where a statement each made five), and the shortfall and threshold rules are applied there, on the
figures the update returns, by the same rules (services.budget.figures). Lines of active plans may
come from the cache here too: the batch first checks they are current (the guard). A posting that is
its request's whole unit of work commits in the same batch, so a commitment on a cached line is one
hop to the database thread in all: BEGIN (deferred to the first statement), guard, rows, balances,
rules, COMMIT. The write lock is held for that hop, not for four.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, cast

from sqlalchemy import text

from services.budget import events, pg_posting
from services.budget.figures import THRESHOLDS, Figures, refuses, thresholds_crossed
from services.budget.models import commitments, entries
from services.budget.postings import STATEMENTS, Key, Posting, Refused, Stale
from services.budget.sqlite_posting import ALONE, STALE, GroupCommit
from shared import audit
from shared.db import SINGLE_ACTION, has_run_anything, pending_changes
from shared.events import new_event
from shared.money import exponent, fmt
from shared.outbox import Outbox
from shared.sqlite_driver import Inserts, on_thread
from shared.uow import UnitOfWork

# SQLite: every (line, period)'s deltas in one JSON parameter, applied by one UPDATE ... FROM that
# returns the new figures (SQLite 3.35+): one round trip to the database thread instead of two.
_ADD_TO_BALANCES = text(f"""
UPDATE balances SET allocated = balances.allocated + d.da, committed = balances.committed + d.dc,
    pending = balances.pending + d.dp, spent = balances.spent + d.ds,
    own_allocated = balances.own_allocated + d.oa, own_committed = balances.own_committed + d.oc,
    own_pending = balances.own_pending + d.op, own_spent = balances.own_spent + d.os
FROM (SELECT json_extract(value, '$.line_id') AS line_id, json_extract(value, '$.period') AS period,
             {", ".join(f"json_extract(value, '$.{c}') AS {c}" for c in pg_posting.DELTA_COLS)}
      FROM json_each(:deltas)) AS d
WHERE balances.line_id = d.line_id AND balances.period = d.period
RETURNING balances.line_id, balances.period, balances.allocated, balances.committed, balances.pending, balances.spent
""")


# SQLite: a cached line and its plan as they are now, to check a guard against (see _current).
_GUARD = """SELECT lines.version, lines.dimensions, plans.version, plans.status,
    EXISTS (SELECT 1 FROM closed_periods cp WHERE cp.plan_id = plans.id AND cp.period = ?)
FROM lines JOIN plans ON plans.id = lines.plan_id WHERE lines.id = ?"""


def _current(db: sqlite3.Connection, guard: list[dict[str, Any]]) -> bool:
    """Whether the cached lines and plans a posting was built from are unchanged, active and open (the
    PostgreSQL statement's guard, on the database thread)."""
    for g in guard:
        row = db.execute(_GUARD, (g["period"], g["line_id"])).fetchone()
        if row is None:
            return False
        version, dimensions, plan_version, status, closed = row
        if (version, plan_version, status, closed) != (g["line_version"], g["plan_version"], "active", 0):
            return False
        if json.loads(dimensions) != g["dimensions"]:
            return False
    return True


def _deltas(posting: Posting) -> list[dict[str, Any]]:
    return [
        dict(
            line_id=k[0],
            period=k[1],
            ctl=posting.control.get(k, k[1]),
            **dict(zip(pg_posting.DELTA_COLS, d, strict=True)),
        )
        for k, d in zip(posting.keys, posting.deltas(), strict=True)
    ]


def _after(posting: Posting, rows: Any) -> dict[Key, Figures]:
    after = {(r[0], r[1]): Figures(*r[2:6]) for r in rows}
    if len(after) != len(posting.keys):
        raise RuntimeError(f"balance rows missing for {sorted(set(posting.keys) - set(after))}")
    return after


def _shortfalls(posting: Posting, after: dict[Key, Figures]) -> list[dict[str, Any]]:
    """The (line, control period)s the posting leaves below zero available and lower than before (the
    same rule as the PostgreSQL statement's): summed over the control period's months, named by the
    month whose available money the posting lowered most."""
    scopes: dict[tuple[str, str], tuple[Figures, Figures, list[tuple[int, str]]]] = {}
    for key in posting.keys:
        b, a, months = scopes.setdefault((key[0], posting.control.get(key, key[1])), (Figures(), Figures(), []))
        before = after[key].minus(posting.subtree[key])
        b.add(before)
        a.add(after[key])
        months.append((after[key].available - before.available, key[1]))
    found = []
    for (line_id, ctl), (before, now, months) in scopes.items():
        if refuses(before, now):
            found.append(
                {
                    "line_id": line_id,
                    "line_code": None,
                    "period": min(months)[1],
                    "control": ctl,
                    "available": now.available,
                    "d_available": now.available - before.available,
                }
            )
    return found


class _Refusal:
    """A posting a batch rolled back to its savepoint: the shortfalls that refused it."""

    __slots__ = ("found",)
    undo = True

    def __init__(self, found: list[dict[str, Any]]):
        self.found = found


class SqliteWriter:
    caches_lines = True

    def __init__(self, outbox: Outbox):
        self.outbox = outbox
        self._inserts: Inserts | None = None
        self.group = GroupCommit(on_commit=self._wake_relay)

    async def write(self, uow: UnitOfWork, posting: Posting) -> dict[Key, Figures]:
        inserts = self._inserts or Inserts(uow.bind.dialect)
        self._inserts = inserts
        batch = [inserts(entries, posting.rows)]
        if posting.commitment:
            batch.append(inserts(commitments, [posting.commitment]))
        if posting.events:  # each with its audit entry, as Outbox.add writes them
            batch.append(inserts(self.outbox.table, [Outbox.row(env, posting.now) for env in posting.events]))
            if self.outbox.audit is not None:
                batch.append(inserts(self.outbox.audit, [Outbox.audit_row(env, posting.now) for env in posting.events]))
        deltas = {"deltas": pg_posting.to_json(_deltas(posting))}
        uow.state[STATEMENTS] = uow.state.get(STATEMENTS, 0) + 1

        def apply(db: sqlite3.Connection) -> tuple[dict[Key, Figures], list[dict[str, Any]]] | None:
            if posting.guard and not _current(db, posting.guard):
                return None
            for sql, params in batch:
                db.executemany(sql, params)
            after = _after(posting, db.execute(_ADD_TO_BALANCES.text, deltas).fetchall())
            return after, _shortfalls(posting, after) if posting.check else []

        # The caller writes nothing after this and has nothing pending: the posting is the whole unit of work.
        alone = posting.last and bool(uow.info.get(SINGLE_ACTION, False)) and not pending_changes(uow.session)
        if alone and not has_run_anything(uow.session):
            outcome = await self.group.post(uow.bind, lambda db: self._in_batch(posting, apply(db)))
            if outcome is STALE:
                raise Stale()
            if isinstance(outcome, _Refusal):
                raise Refused(outcome.found)
            if outcome is not ALONE:
                return cast(dict[Key, Figures], outcome)

        def apply_and_commit(db: sqlite3.Connection) -> tuple[dict[Key, Figures], list[dict[str, Any]]] | None:
            done = apply(db)
            if alone and done is not None and not done[1] and not self._crossed(posting, done[0]):
                db.commit()  # the session's COMMIT then finds nothing to do (sqlite_driver: _idle)
            return done

        if posting.events:
            self.outbox.wake_after_commit(uow.session)
        done = await on_thread(await uow.connection(), apply_and_commit)  # the whole posting: one hop
        if done is None:
            raise Stale()  # nothing was written
        after, found = done
        if found:
            # Raising rolls the whole transaction back: nothing above is ever committed.
            raise Refused(found)
        if posting.watch is not None:
            await self._thresholds(uow, posting, after)
        return after

    def _wake_relay(self) -> None:
        """A batch committed events: have the relay publish them now (the relay is attached at startup)."""
        if self.outbox.relay is not None:
            self.outbox.relay.notify()

    def _in_batch(self, posting: Posting, done: tuple[dict[Key, Figures], list[dict[str, Any]]] | None) -> Any:
        """A posting's answer inside a group commit (see sqlite_posting): its figures, or why not."""
        if done is None:
            return STALE
        after, found = done
        if found:
            return _Refusal(found)
        if self._crossed(posting, after):
            return ALONE  # a threshold event to build and publish: written on the caller's connection
        return after

    @staticmethod
    def _crossed(posting: Posting, after: dict[Key, Figures]) -> bool:
        """Whether the posting takes its watched line past a threshold (an event to publish after it)."""
        if posting.watch is None:
            return False
        key = (posting.watch[0].id, posting.watch[1])
        now = after.get(key)
        return now is not None and bool(thresholds_crossed(now.minus(posting.subtree[key]), now))

    async def _thresholds(self, uow: UnitOfWork, posting: Posting, after: dict[Key, Figures]) -> None:
        assert posting.watch is not None
        ln, period = posting.watch
        now = after.get((ln.id, period))
        if now is None:
            return
        cur = posting.plan.currency
        for t in thresholds_crossed(now.minus(posting.subtree[(ln.id, period)]), now):
            data = events.BudgetLineThresholdCrossed(
                line_id=ln.id,
                line_code=ln.code,
                period=period,
                threshold=t,
                allocated=fmt(now.allocated, cur),
                consumed=fmt(now.consumed, cur),
                currency=cur,
            )
            await uow.publish(events.THRESHOLD_CROSSED, ln.id, data)


class PgWriter:
    caches_lines = True

    def __init__(self, outbox: Outbox, *, group_commit: int = 2):
        self.outbox = outbox
        # Concurrent single-action postings written together, `group_commit` statements in flight at
        # once (see pg_posting.Batcher); 0: each posting is its own statement.
        self.batcher = pg_posting.Batcher(parallel=group_commit) if group_commit > 0 else None

    def params(self, posting: Posting) -> dict[str, Any]:
        """The statement's parameters (rows as Python lists; pg_posting encodes them)."""
        now = posting.now
        return {
            "entries": posting.rows,
            "commitments": [posting.commitment] if posting.commitment else [],
            "events": [Outbox.row(env, now) for env in posting.events],
            "audits": [Outbox.audit_row(env, now) for env in posting.events] if self.outbox.audit is not None else [],
            "guard": posting.guard,
            "deltas": _deltas(posting),
            "watch": [] if posting.watch is None else [self._watch(posting)],
            "thresholds": list(THRESHOLDS),
            "now": now,
            "scale": exponent(posting.plan.currency),
            "check": posting.check,
        }

    def _watch(self, posting: Posting) -> dict[str, Any]:
        """The threshold event as a template the statement completes (threshold, allocated, consumed)."""
        assert posting.watch is not None
        ln, period = posting.watch
        cur = posting.plan.currency
        data = events.BudgetLineThresholdCrossed(
            line_id=ln.id, line_code=ln.code, period=period, threshold=0, allocated="0", consumed="0", currency=cur
        )
        spec = events.THRESHOLD_CROSSED
        env = new_event(spec.subject, self.outbox.source, ln.id, spec.dump(data)).body()
        author = audit.row("", "", "", None, None, now=posting.now)
        return {
            "line_id": ln.id,
            "period": period,
            "tpl": env,
            "author": {c: author[c] for c in pg_posting.AUTHOR_COLS} if self.outbox.audit is not None else None,
        }

    async def write(self, uow: UnitOfWork, posting: Posting) -> dict[Key, Figures]:
        params = self.params(posting)
        uow.state[STATEMENTS] = uow.state.get(STATEMENTS, 0) + 1
        session = uow.session
        try:
            alone = posting.last and bool(uow.info.get(SINGLE_ACTION, False))
            if alone and self.batcher is not None and not has_run_anything(session) and self.batcher.takes(params):
                rows = await self.batcher.post(uow.bind, params, uow.connection)
            else:
                rows = await pg_posting.run(await uow.connection(), params, may_commit_alone=alone)
        except Exception as exc:
            found = pg_posting.shortfalls(exc)
            if found is None:
                raise
            raise Refused(found) from None
        if not rows and posting.guard:
            raise Stale()  # nothing was written
        if posting.events:
            self.outbox.wake_after_commit(session)
        return _after(posting, rows)
