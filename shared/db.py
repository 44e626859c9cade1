"""Async engines and sessions for SQLite (dev) and PostgreSQL (production).

SQLite gets WAL, foreign keys and a busy timeout on every connection, and its
write transactions start with BEGIN IMMEDIATE so two writers queue on the
database lock instead of failing later with SQLITE_BUSY on lock upgrade.
Read-only work can ask for a deferred transaction (`readonly=True`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeDecorator

from shared import sqlite_driver  # registers sqlite+pitcrew://

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class JSONType(TypeDecorator[Any]):
    """JSON documents: JSONB on PostgreSQL, JSON text on SQLite."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        return dialect.type_descriptor(JSONB() if dialect.name == "postgresql" else JSON())


def make_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite keeps no offset)."""

    impl = DateTime
    cache_ok = True

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs["timezone"] = True
        super().__init__(*args, **kwargs)

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; Pitcrew stores timezone-aware UTC only")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def is_unique_violation(exc: BaseException) -> bool:
    """Whether a database error is a duplicate key: a concurrent request inserted the same thing
    first (PostgreSQL SQLSTATE 23505, SQLite's UNIQUE or PRIMARY KEY constraint)."""
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "sqlstate", None) == "23505":
        return True
    cause = getattr(orig, "__cause__", None)  # asyncpg's error behind SQLAlchemy's adapted one
    if getattr(cause, "sqlstate", None) == "23505":
        return True
    return getattr(orig, "sqlite_errorname", None) in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")


# What each named CHECK constraint means, in words for the caller (filled by the services' models).
CHECK_RULES: dict[str, str] = {}


def describe_check(name: str, text: str) -> None:
    CHECK_RULES[name] = text


def violated_check(exc: BaseException) -> str | None:
    """The name of the CHECK constraint a database error reports (PostgreSQL SQLSTATE 23514,
    SQLite's CHECK constraint), or None for any other error."""
    orig = getattr(exc, "orig", exc)
    for err in (getattr(orig, "__cause__", None), orig):  # asyncpg's own error names the constraint
        if getattr(err, "sqlstate", None) == "23514":
            return getattr(err, "constraint_name", None) or ""
    if getattr(orig, "sqlite_errorname", None) == "SQLITE_CONSTRAINT_CHECK":
        return str(orig).rpartition("CHECK constraint failed: ")[2]
    return None


def insert_ignore(dialect: str, table: Table, keys: Sequence[str]) -> Insert:
    """INSERT ... ON CONFLICT (`keys`) DO NOTHING for `dialect` (`sqlite` or `postgresql`)."""
    make = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return make(table).on_conflict_do_nothing(index_elements=list(keys))


def driver_sql(paramstyle: str, sql: str) -> str:
    """Hand-written SQL with `?` placeholders in the driver's style (asyncpg numbers them: $1, $2, ...)."""
    if paramstyle != "numeric_dollar":
        return sql
    parts = sql.split("?")
    return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def async_url(url: str) -> str:
    """Accept plain `postgresql://` and `sqlite:///` URLs and pick the async drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    if url.startswith("sqlite:///"):
        return f"sqlite+{sqlite_driver.NAME}:///" + url[len("sqlite:///") :]
    return url


def is_sqlite(url_or_engine: str | AsyncEngine) -> bool:
    if isinstance(url_or_engine, AsyncEngine):
        return url_or_engine.dialect.name == "sqlite"
    return async_url(url_or_engine).startswith("sqlite")


# Session flag: the session's owner runs exactly one domain action in it and writes nothing after it, so a
# write that is the action's only statement may commit by itself (set by `Database.transaction(single_action=)`).
SINGLE_ACTION = "pitcrew.single_action"


class _Session(Session):
    """The sync session under every AsyncSession here; notes when it first takes a connection."""


_CONNECTED = "pitcrew.connected"


@event.listens_for(_Session, "after_begin")
def _note_connected(session: Session, _transaction: Any, _connection: Any) -> None:
    session.info[_CONNECTED] = True


def pending_changes(session: AsyncSession) -> bool:
    """Whether `session` holds ORM changes not yet flushed (its commit would still write them)."""
    return bool(session.new or session.dirty or session.deleted)


def has_run_anything(session: AsyncSession) -> bool:
    """Whether `session` has taken a connection yet (so whether anything ran in its transaction):
    a single-action posting in a session that has not may be written on another connection."""
    return bool(session.info.get(_CONNECTED))


# A pooled PostgreSQL connection idle longer than this is pinged before use (see _ping_when_idle).
PING_AFTER_IDLE_SECONDS = 5.0


def create_engine(
    url: str,
    *,
    pool_size: int = 10,
    echo: bool = False,
    ping_after_idle: float = PING_AFTER_IDLE_SECONDS,
    server_settings: dict[str, str] | None = None,
) -> AsyncEngine:
    url = async_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, echo=echo, json_serializer=_dumps, connect_args={"timeout": 30}, pool_size=pool_size
        )
        _configure_sqlite(engine)
        return engine
    engine = create_async_engine(
        url,
        echo=echo,
        json_serializer=_dumps,
        pool_size=pool_size,
        max_overflow=pool_size * 2,
        connect_args={"server_settings": dict(server_settings)} if server_settings else {},
    )
    _ping_when_idle(engine, ping_after_idle)
    return engine


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Ping a pooled connection before use only when it sat idle for a while.

    SQLAlchemy's pool_pre_ping pings on every checkout, and with asyncpg a ping is three round
    trips (BEGIN, a query, ROLLBACK): more than the posting it guards. A connection handed back
    moments ago is as alive as the ping would show; one that sat idle (a database restart, a
    firewall dropping quiet connections) is checked, and a dead one is replaced before the
    caller sees it. A connection that dies while in use fails its statement, and SQLAlchemy
    then invalidates the pool so the next checkouts reconnect.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle_seconds:
            return  # new, or back in the pool moments ago
        try:
            dbapi_connection.ping()
        except Exception as exc:  # any failure means: do not hand this one out
            raise DisconnectionError("pooled connection failed its ping") from exc


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" event below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        adapted = conn.connection.dbapi_connection
        if isinstance(adapted, sqlite_driver.OneHopConnection):
            adapted.defer_begin(mode)  # sent with the transaction's first statement
        else:
            conn.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """One engine plus session factories for writing and for reading."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        ping_after_idle: float = PING_AFTER_IDLE_SECONDS,
        server_settings: dict[str, str] | None = None,
        write_queue: bool = True,
    ):
        self.url = url
        self.engine = create_engine(
            url, pool_size=pool_size, ping_after_idle=ping_after_idle, server_settings=server_settings
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, sync_session_class=_Session)
        read_bind = self.engine.execution_options(sqlite_begin="DEFERRED") if self.is_sqlite else self.engine
        self.read_sessions = async_sessionmaker(read_bind, expire_on_commit=False, sync_session_class=_Session)
        # SQLite allows one writer at a time. Without a queue, concurrent writers of this process each
        # take BEGIN IMMEDIATE and the losers sleep in SQLite's busy handler (backing off up to 100 ms
        # a try): unfair and slow under load. With it, writers wait their turn here, first come first
        # served, and each BEGIN IMMEDIATE finds the database free (other processes still meet the
        # busy timeout). asyncio.Lock wakes its waiters in FIFO order.
        self.writer: asyncio.Lock | None = asyncio.Lock() if self.is_sqlite and write_queue else None
        if self.writer is not None:
            # Each connection takes its turn at its transaction's first statement (shared.sqlite_driver).
            @event.listens_for(self.engine.sync_engine, "connect")
            def _queue(dbapi_connection: Any, _record: Any) -> None:
                if isinstance(dbapi_connection, sqlite_driver.OneHopConnection):
                    dbapi_connection.write_lock = self.writer

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def transaction(self, *, readonly: bool = False, single_action: bool = False) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on any error.

        `single_action`: the caller runs one domain action and writes nothing after it, which lets
        an action whose whole effect is one statement skip BEGIN and COMMIT (see SINGLE_ACTION).
        """
        factory = self.read_sessions if readonly else self.sessions
        if not single_action:
            async with factory() as session, session.begin():
                yield session
            return
        async with factory() as session:  # begun by its first statement: a group-committed posting runs none
            session.info[SINGLE_ACTION] = True
            yield session
            if session.in_transaction():
                await session.commit()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()
