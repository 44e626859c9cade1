#!/usr/bin/env python3
"""Wait until an app's database is at its latest migration, then exit 0.

Kubernetes runs this as an init container of every app pod, so a pod started
while the migrations Job is still running (or before it ran) waits instead of
serving against an old schema. It only reads `alembic_version`; it never
migrates, so replicas never race on DDL. A database already past this image's
latest migration (an older pod restarting during a rollout) counts as ready:
migrations are expand-then-contract, so the previous release still works.

usage: pitcrew-wait-migrated APP [TIMEOUT_SECONDS]   (reads PITCREW_<APP>_DATABASE_URL)
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import create_async_engine

from pitcrew.launcher import database_url
from pitcrew.migrations import alembic_config
from pitcrew.topology import APPS
from shared.db import async_url


async def current_revisions(url: str) -> set[str]:
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: set(MigrationContext.configure(c).get_current_heads()))
    finally:
        await engine.dispose()


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in APPS:
        print(f"usage: {Path(argv[0]).name} {'|'.join(APPS)} [TIMEOUT_SECONDS]", file=sys.stderr)
        return 64
    app = argv[1]
    timeout = float(argv[2]) if len(argv) > 2 else 600.0
    url = database_url(app, dict(os.environ), Path(os.environ.get("PITCREW_VAR_DIR", "var")))
    script = ScriptDirectory.from_config(alembic_config(app, url))
    heads = set(script.get_heads())
    known = {rev.revision for rev in script.walk_revisions()}
    deadline = time.monotonic() + timeout
    while True:
        try:
            current = asyncio.run(current_revisions(url))
            state = f"at {sorted(current) or 'an empty schema'}"
        except Exception as exc:  # the database may not accept connections yet
            current, state = set(), f"unreachable ({type(exc).__name__}: {exc})"
        if current == heads:
            print(f"{app}: database at the latest migration {sorted(heads)}", flush=True)
            return 0
        if current and not current & known:
            print(f"{app}: database at {sorted(current)}, newer than this image's {sorted(heads)}", flush=True)
            return 0
        if time.monotonic() >= deadline:
            print(f"{app}: gave up after {timeout:.0f}s; database {state}, want {sorted(heads)}", file=sys.stderr)
            return 1
        print(f"{app}: waiting for migrations; database {state}, want {sorted(heads)}", flush=True)
        time.sleep(3)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
