"""The pure rules of notify: quiet hours and holidays, digest times, globs, SMTP URLs, signatures."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway.webhooks import sign_standard
from services.notify.dispatch import digest_time, send_time
from services.notify.hooks import signature
from services.notify.mail import SmtpTarget
from services.notify.models import Person
from services.notify.subscriptions import matches

UTC = dt.UTC


def person(**kw) -> Person:
    return Person(id="p", name="P", timezone=kw.pop("timezone", "Europe/Berlin"), **kw)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def test_outside_quiet_hours_a_message_goes_now():
    p = person(quiet_start="20:00", quiet_end="07:00")
    now = at("2027-03-03T12:00:00+01:00")
    assert send_time(p, now) == now


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2027-03-03T22:30:00+01:00", "2027-03-04T07:00:00+01:00"),  # evening: next morning
        ("2027-03-04T05:00:00+01:00", "2027-03-04T07:00:00+01:00"),  # small hours: this morning
        ("2027-03-27T23:00:00+01:00", "2027-03-28T07:00:00+02:00"),  # across the switch to summer time
    ],
)
def test_quiet_hours_over_midnight_wait_until_they_end_in_the_persons_zone(now, expected):
    p = person(quiet_start="20:00", quiet_end="07:00")
    assert send_time(p, at(now)) == at(expected)


def test_a_public_holiday_of_the_persons_calendar_is_quiet_all_day():
    p = person(calendar="DE", quiet_start="20:00", quiet_end="07:00")
    christmas = at("2027-12-25T10:00:00+01:00")  # and the 26th is one too
    assert send_time(p, christmas) == at("2027-12-27T07:00:00+01:00")
    assert send_time(person(calendar="US"), at("2027-12-25T10:00:00+01:00")) > at("2027-12-25T10:00:00+01:00")


def test_the_digest_goes_at_the_hour_in_the_persons_zone_past_quiet_hours():
    p = person(timezone="America/New_York")
    assert digest_time(p, at("2027-03-03T09:00:00-05:00"), 8) == at("2027-03-04T08:00:00-05:00")
    assert digest_time(p, at("2027-03-03T07:59:00-05:00"), 8) == at("2027-03-03T08:00:00-05:00")
    late_riser = person(timezone="America/New_York", quiet_start="22:00", quiet_end="09:00")
    assert digest_time(late_riser, at("2027-03-03T09:00:00-05:00"), 8) == at("2027-03-04T09:00:00-05:00")


@pytest.mark.parametrize(
    ("pattern", "subject", "hit"),
    [
        ("budget.commitment.*", "budget.commitment.committed", True),
        ("budget.commitment.*", "budget.commitment", False),
        ("budget.commitment.*", "budget.line.threshold_crossed", False),
        ("budget.>", "budget.line.threshold_crossed", True),
        ("budget.**", "budget.plan.activated", True),
        ("*.sla.*", "workflow.sla.breached", True),
        ("workflow.instance.app*", "workflow.instance.approved", True),
        ("kpi.target.at_risk", "kpi.target.at_risk", True),
        ("kpi.>", "kpi", False),
    ],
)
def test_event_type_globs(pattern, subject, hit):
    assert matches(pattern, subject) is hit


def test_smtp_urls():
    t = SmtpTarget.parse("smtp://user%40corp:p%3Ass@mail.example.com:587?starttls=required")
    assert (t.host, t.port, t.use_tls, t.start_tls, t.username, t.password) == (
        "mail.example.com",
        587,
        False,
        True,
        "user@corp",
        "p:ss",
    )
    t = SmtpTarget.parse("smtps://mail.example.com")
    assert (t.port, t.use_tls, t.start_tls) == (465, True, None)
    assert SmtpTarget.parse("smtp://localhost:8025").start_tls is None  # upgrade when offered
    with pytest.raises(ValueError):
        SmtpTarget.parse("http://mail.example.com")


def test_signatures_are_standard_webhooks():
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"type":"budget.commitment.committed"}'
    assert signature(secret, "msg_1", 1700000000, body) == sign_standard(secret, "msg_1", "1700000000", body)
