"""PostgreSQL's read-only BI views: decimals and dates as the API shows them; the role reads nothing else."""

from __future__ import annotations

import uuid
from decimal import Decimal

import asyncpg
import pytest

from pitcrew.migrations import upgrade_async

pytestmark = pytest.mark.postgres_only


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def test_the_bi_role_reads_the_views_and_nothing_else(new_db):
    from tests.kpi.conftest import start_kpi

    url = await new_db("kpi")
    await upgrade_async("kpi", url)
    async for kpi in start_kpi(url, "nats://127.0.0.1:1", nats_enabled=False):
        items = [
            {"type": "spend", "value": "12.50", "time": "2027-03-04T10:00:00Z", "dimensions": {"region": "EMEA"}},
            {"type": "spend", "value": "0.25", "time": "2027-03-05T10:00:00Z", "dimensions": {"region": "EMEA"}},
        ]
        assert (await kpi.client.post("/v1/measurements", json={"items": items})).json()["accepted"] == 2
    login = f"bi_reader_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(_dsn(url))
    try:
        await admin.execute(f"CREATE ROLE {login} LOGIN IN ROLE pitcrew_bi")
        reader = await asyncpg.connect(_dsn(url), user=login)
        try:
            row = await reader.fetchrow("SELECT sum(value) AS total, min(time) AS first FROM bi.measurements")
            assert row["total"] == Decimal("12.75")
            monthly = await reader.fetchrow("SELECT month, sum, dimensions FROM bi.monthly WHERE type = 'spend'")
            assert str(monthly["month"]) == "2027-03-01" and monthly["sum"] == Decimal("12.75")
            assert (await reader.fetchval("SELECT count(*) FROM bi.metric_definitions")) > 0
            for table in ("public.measurements", "public.idempotency_keys", "public.audit_log"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await reader.fetch(f"SELECT * FROM {table} LIMIT 1")  # noqa: S608 - fixed names
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await reader.execute("DELETE FROM bi.touchpoints")  # an updatable view: the grant refuses
        finally:
            await reader.close()
    finally:
        await admin.execute(f"DROP ROLE IF EXISTS {login}")
        await admin.close()
