"""Sessions note whether anything ran in them."""

from __future__ import annotations

from sqlalchemy import text

from shared.db import Database, has_run_anything


async def test_a_session_knows_whether_anything_ran_in_it(tmp_path):
    # The budget ledger writes a single-action posting on another connection only when nothing ran yet.
    db = Database(f"sqlite:///{tmp_path}/s.db")
    try:
        async with db.transaction() as s:
            assert not has_run_anything(s)
            await s.execute(text("SELECT 1"))
            assert has_run_anything(s)
        async with db.transaction(readonly=True) as s:
            assert not has_run_anything(s)
    finally:
        await db.dispose()
