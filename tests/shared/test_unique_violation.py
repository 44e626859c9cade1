"""A duplicate key is told apart from other integrity errors, on both backends: it is a 409 (a
concurrent request won), where any other database error stays a 500."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from shared.db import Database, is_unique_violation

pytestmark = pytest.mark.db


async def test_duplicate_keys_are_unique_violations_and_other_integrity_errors_are_not(new_db) -> None:
    db = Database(await new_db("unique"), pool_size=1)
    try:
        async with db.transaction() as s:
            await s.execute(
                text("CREATE TABLE t (id VARCHAR(10) PRIMARY KEY, code VARCHAR(10) UNIQUE, name VARCHAR(10) NOT NULL)")
            )
            await s.execute(text("INSERT INTO t VALUES ('a', 'x', 'n')"))
        for sql, unique in (
            ("INSERT INTO t VALUES ('a', 'y', 'n')", True),  # primary key
            ("INSERT INTO t VALUES ('b', 'x', 'n')", True),  # unique column
            ("INSERT INTO t VALUES ('c', 'z', NULL)", False),
        ):  # NOT NULL
            with pytest.raises(IntegrityError) as caught:
                async with db.transaction() as s:
                    await s.execute(text(sql))
            assert is_unique_violation(caught.value) is unique, sql
        assert not is_unique_violation(ValueError("not a database error"))
    finally:
        await db.dispose()
