"""The e-mail as a receiver parses it: both alternatives, non-ASCII headers, no header injection."""

from __future__ import annotations

import email
import email.policy

from services.notify import mail


def parsed(**context: object) -> email.message.EmailMessage:
    ctx = {"title": "t", "facts": [], "link": "http://gateway.test/x", "unsubscribe": "http://gateway.test/u"}
    ctx.update(context)
    msg = mail.compose(
        mail.environment(),
        sender="pitcrew@example.com",
        to="zoe@example.com",
        name="Zoë Ünal",
        message_id="m1",
        context=ctx,
        event_id="e1",
    )
    return email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)  # type: ignore[return-value]


def test_plain_and_html_alternatives_carry_the_title_and_non_ascii_headers_decode():
    m = parsed(title="Budget über 100 % — €5,000")
    assert m["Subject"] == "Budget über 100 % — €5,000"
    assert m["To"].addresses[0].display_name == "Zoë Ünal"
    assert m["X-Pitcrew-Event-Id"] == "e1"
    assert m["List-Unsubscribe"] == "<http://gateway.test/u>"
    assert "Budget über 100 % — €5,000" in m.get_body(("plain",)).get_content()
    assert "Budget über 100 % — €5,000" in m.get_body(("html",)).get_content()


def test_a_title_with_line_breaks_cannot_add_a_header():
    m = parsed(title="Renewal due\r\nBcc: attacker@example.net\nX-Evil: 1")
    assert m["Bcc"] is None and m["X-Evil"] is None
    assert m["Subject"] == "Renewal due Bcc: attacker@example.net X-Evil: 1"
