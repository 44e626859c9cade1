"""Chaos: parts of the running system die in the middle of a stream of writes, and come back.

Each test streams writes through the gateway (commitments that need approval, so each starts a
workflow; ERP invoices, each an actual and a KPI spend measurement; allocations), breaks something
while the stream runs, lets it recover, and then checks that every effect happened exactly once
and nothing is half-written: one workflow instance per commitment, KPI spend equal to the invoices,
each request's entry in the ledger once, and the line's balance equal to the sum of its entries.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from decimal import Decimal

import pytest

from tests.chaos.conftest import ChaosCluster, in_parallel, persist, terminate_connections
from tests.e2e.conftest import wait_for
from tests.e2e.test_faults import invoice
from tests.e2e.test_flows import balance, series_total, setup_plan

pytestmark = [pytest.mark.chaos, pytest.mark.postgres_only]

DOWN_SECONDS = float(os.environ.get("PITCREW_CHAOS_DOWN_SECONDS", "120"))


def entries(admin, line_id: str) -> list[dict]:
    out, cursor = [], None
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        # A read as a client makes it: a 503 while the pool replaces a terminated connection is retried.
        page = persist(lambda p=params: admin.get(f"/budget/v1/lines/{line_id}/entries", params=p)).json()
        out.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return out


def assert_ledger_whole(admin, line_id: str, period: str) -> dict:
    """The balance is the sum of the line's entries, bucket by bucket, and available what is left."""
    rows = [e for e in entries(admin, line_id) if e["period"] == period]
    sums = {
        b: sum((Decimal(e["effect"][b]) for e in rows), Decimal(0))
        for b in ("allocated", "committed", "pending", "spent")
    }
    b = balance(admin, line_id, period)
    for bucket, total in sums.items():
        assert Decimal(b[bucket]) == total, (bucket, b, total)
    assert Decimal(b["available"]) == sums["allocated"] - sums["committed"] - sums["pending"] - sums["spent"]
    return b


def one_instance_each(admin, commitment_ids: list[str]) -> bool:
    for cid in commitment_ids:
        items = admin.get("/workflow/v1/instances", params={"subject_id": cid}).json()["items"]
        assert len(items) <= 1, f"commitment {cid} started {len(items)} workflows"
        if len(items) != 1:
            return False
    return True


def stream(cluster: ChaosCluster, admin, line_id: str, code: str, year: int, period: str, n: int, tag: str):
    """n commitments needing approval and n invoices, each request retried until answered (same key)."""

    def commit(i: int) -> str:
        r = persist(
            lambda: admin.post(
                "/budget/v1/commitments",
                headers={"Idempotency-Key": f"{tag}-c-{i}"},
                json={
                    "line_id": line_id,
                    "period": period,
                    "amount": "15000.00",
                    "currency": "EUR",
                    "external_ref": f"{tag}-PO-{i}",
                },
            )
        )
        assert r.json()["status"] == "pending_approval", r.text
        return r.json()["id"]

    def bill(i: int) -> None:
        persist(
            lambda: cluster.webhook(
                "erp", "invoice.posted", invoice(code, year, period, f"{tag}-INV-{i}", "10.00"), delivery=f"{tag}-d-{i}"
            )
        )

    ids = in_parallel(n, commit)
    in_parallel(n, bill)
    return ids


def converge(cluster: ChaosCluster, admin, line_id: str, channel: str, period: str, ids: list[str], n: int) -> None:
    wait_for(lambda: one_instance_each(admin, ids), timeout=120, what="one workflow instance per commitment")
    wait_for(lambda: balance(admin, line_id, period)["spent"] == f"{10 * n}.00", timeout=120, what="invoices posted")
    start, end = f"{period}-01", f"{period}-28"
    assert wait_for(
        lambda: series_total(admin, "spend", start, end, filter=f"channel:{channel}") == Decimal(10 * n),
        timeout=120,
        what="spend counted once in KPI",
    )
    time.sleep(2)  # anything doubled by a redelivery would show up now
    assert series_total(admin, "spend", start, end, filter=f"channel:{channel}") == Decimal(10 * n)
    assert one_instance_each(admin, ids)
    b = assert_ledger_whole(admin, line_id, period)
    assert b["pending"] == f"{15000 * n}.00" and b["spent"] == f"{10 * n}.00"
    refs = [e["external_ref"] for e in entries(admin, line_id) if e["kind"] in ("commitment", "actual")]
    assert len(refs) == len(set(refs)) == 2 * n, "a request's entry was written twice or not at all"


def fresh_line(admin, year: int, period: str) -> tuple[str, str, str]:
    code = f"X-{uuid.uuid4().hex[:6].upper()}"
    channel = f"ch{code[-5:].lower()}"
    ids = setup_plan(
        admin,
        year,
        [{"code": code, "name": "Chaos", "dimensions": {"region": "EMEA", "channel": channel}}],
        {code: "10000000.00"},
        period,
    )
    return ids[code], code, channel


def test_nats_killed_and_restarted_during_writes(chaos: ChaosCluster):
    admin = chaos.client("ada", "admin")
    year, period, n = 2051, "2051-03", 24
    line, code, channel = fresh_line(admin, year, period)

    def crash() -> None:
        time.sleep(1.0)
        chaos.kill_nats()
        time.sleep(5.0)
        chaos.nats.start()

    killer = threading.Thread(target=crash)
    killer.start()
    ids = stream(chaos, admin, line, code, year, period, n, "nats")
    killer.join()
    converge(chaos, admin, line, channel, period, ids, n)


def test_services_sigkilled_mid_stream_and_restarted(chaos: ChaosCluster):
    admin = chaos.client("ada", "admin")
    year, period, n = 2052, "2052-03", 24
    line, code, channel = fresh_line(admin, year, period)

    def crash() -> None:
        time.sleep(0.5)
        chaos.stack.kill("workflow")
        time.sleep(0.5)
        chaos.stack.kill("kpi")
        time.sleep(0.5)
        chaos.stack.kill("budget")
        time.sleep(2.0)
        chaos.stack.restart("budget", timeout=180)
        chaos.stack.restart("workflow", timeout=180)
        chaos.stack.restart("kpi", timeout=180)

    killer = threading.Thread(target=crash)
    killer.start()
    ids = stream(chaos, admin, line, code, year, period, n, "kill")
    killer.join()
    converge(chaos, admin, line, channel, period, ids, n)


def test_postgres_connections_terminated_mid_transaction(chaos: ChaosCluster):
    admin = chaos.client("ada", "admin")
    year, period, n = 2053, "2053-03", 60
    line, _, _ = fresh_line(admin, year, period)
    stop = threading.Event()
    terminated = []

    def terminator() -> None:
        while not stop.is_set():
            terminated.append(terminate_connections(chaos.databases["budget"]))
            time.sleep(0.3)

    killer = threading.Thread(target=terminator)
    killer.start()
    try:

        def write(i: int) -> None:
            if i % 2:
                body = {
                    "line_id": line,
                    "period": period,
                    "amount": "5.00",
                    "currency": "EUR",
                    "external_ref": f"pg-{i}",
                }
                persist(lambda: admin.post("/budget/v1/commitments", headers={"Idempotency-Key": f"pg-{i}"}, json=body))
            else:
                body = {
                    "line_id": line,
                    "period": period,
                    "amount": "7.00",
                    "currency": "EUR",
                    "external_ref": f"pg-{i}",
                }
                persist(lambda: admin.post("/budget/v1/allocations", headers={"Idempotency-Key": f"pg-{i}"}, json=body))

        in_parallel(n, write)
    finally:
        stop.set()
        killer.join()
    assert sum(terminated) > 0, "no connection was terminated: the test proved nothing"
    b = wait_for(lambda: assert_ledger_whole(admin, line, period), timeout=60, what="ledger readable again")
    refs = [e["external_ref"] for e in entries(admin, line) if (e["external_ref"] or "").startswith("pg-")]
    assert sorted(refs) == sorted(f"pg-{i}" for i in range(n)), "each write exactly once"
    assert b["committed"] == f"{5 * (n // 2)}.00"


def test_a_webhook_target_down_for_minutes_gets_every_delivery_once(chaos: ChaosCluster):
    admin = chaos.client("ada", "admin")
    year, period, n = 2054, "2054-03", 20
    line, code, channel = fresh_line(admin, year, period)
    chaos.stack.kill("budget")
    started = time.monotonic()
    try:
        for i in range(n):
            r = chaos.webhook(
                "erp", "invoice.posted", invoice(code, year, period, f"down-INV-{i}", "10.00"), delivery=f"down-{i}"
            )
            assert r.status_code == 202, r.text
        # A retried delivery (same id) while the target is away is recorded once.
        assert chaos.webhook(
            "erp", "invoice.posted", invoice(code, year, period, "down-INV-0", "10.00"), delivery="down-0"
        ).status_code in (200, 202)
        time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - started)))
    finally:
        chaos.stack.restart("budget", timeout=180)
    wait_for(lambda: balance(admin, line, period)["spent"] == f"{10 * n}.00", timeout=180, what="every invoice posted")
    start, end = f"{period}-01", f"{period}-28"
    assert wait_for(
        lambda: series_total(admin, "spend", start, end, filter=f"channel:{channel}") == Decimal(10 * n),
        timeout=120,
        what="spend in KPI",
    )
    time.sleep(2)
    assert balance(admin, line, period)["spent"] == f"{10 * n}.00"
    assert_ledger_whole(admin, line, period)
