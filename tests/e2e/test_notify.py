"""Notify end to end, between the launcher's real processes: a commitment above the approval threshold
becomes an e-mail to the approver in the local SMTP sink (./var/mail), whose signed link decides the
task through the workflow service under the approver's identity, and the money is committed."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Cluster, wait_for
from tests.e2e.test_flows import balance, setup_plan

pytestmark = pytest.mark.e2e


def mailbox(cluster: Cluster) -> Path:
    args = cluster.stack.get("mail").proc.args
    return Path(args[args.index("--dir") + 1])


def mails_to(cluster: Cluster, address: str) -> list[EmailMessage]:
    out = []
    for f in sorted(mailbox(cluster).glob("*.eml")):
        m = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        if address in str(m["To"]):
            out.append(m)  # type: ignore[arg-type]
    return out


def test_a_commitment_above_the_threshold_is_approved_from_the_approvers_e_mail(cluster: Cluster):
    admin = cluster.client("ada", "admin")
    for person in (
        {"id": "erik", "name": "Erik", "email": "erik@example.com", "roles": ["approver"], "scopes": ["region:EMEA"]},
        {
            "id": "akira",
            "name": "Akira",
            "email": "akira@example.com",
            "roles": ["approver"],
            "scopes": ["region:APAC"],
        },
        {
            "id": "maria",
            "name": "Maria",
            "email": "maria@example.com",
            "roles": ["marketer"],
            "scopes": ["region:EMEA"],
        },
    ):
        r = admin.post("/notify/v1/people", json=person)
        assert r.status_code == 201, r.text
    ids = setup_plan(
        admin,
        2032,
        [{"code": "EMEA-FAIRS", "name": "EMEA fairs", "dimensions": {"region": "EMEA", "channel": "events"}}],
        {"EMEA-FAIRS": "50000.00"},
        "2032-03",
    )
    line = ids["EMEA-FAIRS"]
    marketer = cluster.client("maria", "marketer", scopes=("region:EMEA",))
    r = marketer.post(
        "/budget/v1/commitments",
        json={"line_id": line, "period": "2032-03", "amount": "25000.00", "currency": "EUR", "memo": "Fair booth 2032"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "pending_approval"

    (mail,) = wait_for(lambda: mails_to(cluster, "erik@example.com"), timeout=60, what="the approver's e-mail")
    text = mail.get_body(("plain",)).get_content()
    assert "Fair booth 2032" in mail["Subject"] and "25000.00 EUR" in text and "EMEA-FAIRS" in text
    assert mails_to(cluster, "akira@example.com") == []  # another region's approver is not asked
    approve = re.search(r"Approve: (\S+)", text).group(1)
    assert approve.startswith(f"{cluster.gateway}/notify/v1/actions/")

    page = httpx.get(approve, timeout=30)  # no sign-in: the signed link is the proof
    assert page.status_code == 200 and "Approve now" in page.text
    assert balance(marketer, line, "2032-03")["pending"] == "25000.00"  # opening the link decided nothing
    tampered = approve[:-3] + ("abc" if not approve.endswith("abc") else "xyz")
    assert httpx.get(tampered, timeout=30).status_code == 404

    done = httpx.post(approve, timeout=30)
    assert done.status_code == 200 and "Approved" in done.text, done.text
    wait_for(lambda: balance(marketer, line, "2032-03")["committed"] == "25000.00", timeout=30, what="money committed")
    assert httpx.post(approve, timeout=30).status_code == 410  # single use
    reject = re.search(r"Reject:\s+(\S+)", text).group(1)
    assert httpx.post(reject, timeout=30).status_code == 410  # one decision per message

    told = wait_for(
        lambda: [m for m in mails_to(cluster, "maria@example.com") if "committed" in m["Subject"]],
        timeout=30,
        what="the requester told",
    )
    assert "25000.00 EUR" in told[0].get_body(("plain",)).get_content()
