"""Fuzzer findings: input at the edges (dates, business time, nesting, integers) is a 4xx naming the
field, never a 500 or a walk over centuries of days, and nothing is written."""

from __future__ import annotations

import datetime as dt
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from services.workflow import conditions
from services.workflow import handlers as wf_handlers
from services.workflow.calendars import BusinessCalendar
from services.workflow.models import calendars, definitions, history, infra, instances, tasks
from shared.consumer import Consumer
from shared.db import utcnow
from shared.errors import Invalid
from shared.events import Envelope
from shared.identity import HEADER, mint
from shared.settings import DEV_IDENTITY_SECRET
from tests.workflow.conftest import ADMIN, APPROVER_ALL, MARKETER, MOPS

H = dt.timedelta(hours=1)

pytestmark = pytest.mark.db

SUBJECT = {"type": "commitment", "id": "c-1", "service": "budget"}


async def counts(wf) -> dict[str, int]:
    out = {}
    async with wf.runtime.transaction(readonly=True) as s:
        for t in (calendars, definitions, instances, tasks, history, infra.outbox, infra.timers):
            out[t.name] = await s.scalar(select(func.count()).select_from(t))
    return out


def problem(r, status: int, field: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert field in {e["field"] for e in body["errors"]}, body
    return body


async def deadline_definition(wf, key: str = "renewal") -> None:
    await wf.ok(
        "POST",
        "/v1/definitions",
        ADMIN,
        {
            "key": key,
            "name": key,
            "stages": [
                {"name": "Review", "assignees": {"roles": ["approver"]}, "sla": {"deadline_from_context": "due"}}
            ],
        },
        status=201,
    )


def start_body(key: str, context: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"definition_key": key, "subject": SUBJECT, "context": context, **kw}


def nest(levels: int) -> dict[str, Any]:
    """An object `levels` objects deep (the outermost counts as one)."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


# ------------------------------------------------------------------ 1. context deadlines


@pytest.mark.parametrize(
    "due",
    [
        "9999-12-31",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-01:00",  # overflowed
        "3000-01-01",
        "0001-01-01",  # outside shared.bounds (walked centuries)
        "2999-12-31",
        "1900-01-01",
        "2999-12-31T23:59:59-01:00",  # inside the bounds, but decades away
    ],
)
async def test_a_context_deadline_out_of_range_or_decades_away_is_a_422(wf, due):
    await deadline_definition(wf)
    before = await counts(wf)
    r = await wf.call("POST", "/v1/instances", MARKETER, start_body("renewal", {"due": due, "region": "EMEA"}))
    body = problem(r, 422, "context.due")
    assert due in body["detail"]
    assert await counts(wf) == before


async def test_a_deadline_within_ten_years_works_and_shows_in_the_inbox(wf):
    await deadline_definition(wf)
    far = (dt.date.today() + dt.timedelta(days=9 * 365)).isoformat()
    past = (dt.date.today() - dt.timedelta(days=9 * 365)).isoformat()
    for i in range(20):
        await wf.start("renewal", context={"due": far if i % 2 else past, "region": "EMEA"}, subject_id=f"c-{i}")
    inbox = await wf.ok("GET", "/v1/tasks", APPROVER_ALL, params={"limit": 500})
    assert len(inbox["items"]) == 20
    assert {t["sla_state"] for t in inbox["items"]} == {"breached", "on_track"}


async def test_resubmitting_a_deadline_out_of_range_is_a_422_and_changes_nothing(wf):
    await deadline_definition(wf)
    due = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    inst = await wf.start("renewal", context={"due": due, "region": "EMEA"})
    paused = await wf.ok("POST", f"/v1/tasks/{inst['tasks'][0]['id']}/request-changes", APPROVER_ALL, {})
    before = await counts(wf)
    for bad in ("9999-12-31", "0001-01-01T00:00:00+14:00", "3000-01-01"):
        r = await wf.call("POST", f"/v1/instances/{inst['id']}/resubmit", MARKETER, {"context": {"due": bad}})
        problem(r, 422, "context.due")
    assert await counts(wf) == before
    again = await wf.ok("GET", f"/v1/instances/{inst['id']}", MARKETER)
    assert again["status"] == "changes_requested" and again["version"] == paused["version"]
    assert again["context"]["due"] == due


# --------------------------------------------------- 2. business time a calendar cannot give


async def sparse_calendar(wf) -> None:
    await wf.ok(
        "POST",
        "/v1/calendars",
        ADMIN,
        {"key": "sparse", "timezone": "UTC", "hours": {"mon": ["00:00", "00:01"]}},
        status=201,
    )


@pytest.mark.parametrize("hours", ["100000", "5E+4", "1e5", 8761])
async def test_business_hours_above_a_year_are_a_422(wf, hours):
    before = await counts(wf)
    r = await wf.call(
        "POST",
        "/v1/definitions",
        ADMIN,
        {
            "key": "slow",
            "name": "slow",
            "stages": [{"name": "Review", "assignees": {"roles": ["approver"]}, "sla": {"business_hours": hours}}],
        },
    )
    problem(r, 422, "stages.0.sla.business_hours")
    assert await counts(wf) == before


async def test_an_sla_the_calendar_cannot_give_within_ten_years_is_refused_at_definition_time(wf):
    await sparse_calendar(wf)  # one minute a week: 100 hours take 115 years
    before = await counts(wf)
    r = await wf.call(
        "POST",
        "/v1/definitions",
        ADMIN,
        {
            "key": "slow",
            "name": "slow",
            "calendar": "sparse",
            "stages": [{"name": "Review", "assignees": {"roles": ["approver"]}, "sla": {"business_hours": "100"}}],
        },
    )
    body = problem(r, 422, "stages[0].sla.business_hours")
    assert "10 years" in body["detail"]
    assert await counts(wf) == before
    # One that fits is fine.
    await wf.ok(
        "POST",
        "/v1/definitions",
        ADMIN,
        {
            "key": "slow",
            "name": "slow",
            "calendar": "sparse",
            "stages": [{"name": "Review", "assignees": {"roles": ["approver"]}, "sla": {"business_hours": "1"}}],
        },
        status=201,
    )


async def test_a_calendar_closed_for_years_is_a_422(wf):
    first_sunday = dt.date(2027, 1, 3)
    body = {
        "key": "sundays",
        "timezone": "UTC",
        "hours": {"sun": ["09:00", "17:00"]},
        "closed_dates": [(first_sunday + dt.timedelta(weeks=i)).isoformat() for i in range(1000)],
    }
    before = await counts(wf)
    r = await wf.call("POST", "/v1/calendars", ADMIN, body)
    assert "from 2026-12-28 to 2046-03-03" in problem(r, 422, "closed_dates")["detail"]  # Monday to Saturday
    r = await wf.call(
        "POST", "/v1/calendars", ADMIN, {**body, "closed_dates": ["0001-01-01", "2027-01-03", "9999-12-31"]}
    )
    assert {e["field"] for e in problem(r, 422, "closed_dates[0]")["errors"]} == {"closed_dates[0]", "closed_dates[2]"}
    fullwidth = {**body, "closed_dates": [], "hours": {"sun": ["０９:00", "17:00"]}}
    problem(await wf.call("POST", "/v1/calendars", ADMIN, fullwidth), 422, "hours.sun[0]")
    assert await counts(wf) == before
    # A year of closed Sundays is still a calendar (a long refurbishment, say).
    await wf.ok("POST", "/v1/calendars", ADMIN, {**body, "closed_dates": body["closed_dates"][:50]}, status=201)


async def test_a_stored_definition_its_calendar_cannot_serve_is_a_409_and_writes_nothing(wf):
    """Definitions published before the check (or on a calendar stored before it) fail as a conflict."""
    await sparse_calendar(wf)
    async with wf.runtime.transaction() as s:
        this_sunday = dt.date.today() + dt.timedelta(days=6 - dt.date.today().weekday())
        sundays = [(this_sunday + dt.timedelta(weeks=i)).isoformat() for i in range(1000)]
        await s.execute(
            insert(calendars).values(
                id=str(uuid.uuid4()),
                key="sundays",
                timezone="UTC",
                hours={"sun": ["09:00", "17:00"]},
                holidays={},
                closed_dates=sundays,
                version=1,
                created_at=utcnow(),
                created_by="legacy",
            )
        )
        for key, cal, hours in (("legacy-sparse", "sparse", "100000"), ("legacy-sundays", "sundays", "8")):
            await s.execute(
                insert(definitions).values(
                    id=str(uuid.uuid4()),
                    key=key,
                    version=1,
                    name=key,
                    description=None,
                    trigger=None,
                    trigger_event=None,
                    priority=0,
                    calendar=cal,
                    created_at=utcnow(),
                    created_by="legacy",
                    stages=[
                        {
                            "name": "Review",
                            "mode": "any",
                            "quorum": None,
                            "escalation": None,
                            "auto_approve": None,
                            "assignees": {"roles": ["approver"], "users": [], "scope_from_context": []},
                            "sla": {
                                "business_hours": hours,
                                "deadline_from_context": None,
                                "calendar": cal,
                                "warn_at": "0.75",
                            },
                        }
                    ],
                )
            )
    before = await counts(wf)
    for key in ("legacy-sparse", "legacy-sundays"):
        r = await wf.call("POST", "/v1/instances", MARKETER, start_body(key, {"region": "EMEA"}))
        problem(r, 409, "stages[0].sla")
    assert await counts(wf) == before


# ------------------------------------------------------------------------ 3. deep context


async def test_deeply_nested_json_is_a_422_naming_the_field(wf):
    before = await counts(wf)
    for levels in (33, 500):
        r = await wf.call("POST", "/v1/instances", MARKETER, start_body("budget-approval", nest(levels)))
        problem(r, 422, "context")
    r = await wf.call(
        "POST",
        "/v1/definitions",
        ADMIN,
        {
            "key": "deep",
            "name": "deep",
            "stages": [
                {
                    "name": "A",
                    "assignees": {"roles": ["approver"]},
                    "auto_approve": {"field": "x", "op": "eq", "value": nest(300)},
                }
            ],
        },
    )
    problem(r, 422, "stages.0.auto_approve")
    r = await wf.call(
        "POST",
        "/v1/definitions",
        ADMIN,
        {
            "key": "deep",
            "name": "deep",
            "stages": [{"name": "A", "assignees": {"roles": ["approver"]}}],
            "trigger": {"event": "e", "conditions": [{"field": "x", "op": "in", "value": [nest(300)]}]},
        },
    )
    problem(r, 422, "trigger.conditions")
    assert await counts(wf) == before
    # 32 levels is allowed, and published with the instance.
    inst = await wf.start("budget-approval", context={**nest(32), "region": "EMEA"})
    paused = await wf.ok("POST", f"/v1/tasks/{inst['tasks'][0]['id']}/request-changes", APPROVER_ALL, {})
    before = await counts(wf)
    r = await wf.call("POST", f"/v1/instances/{inst['id']}/resubmit", MARKETER, {"context": nest(500)})
    problem(r, 422, "context")
    assert await counts(wf) == before
    assert (await wf.ok("GET", f"/v1/instances/{inst['id']}", MARKETER))["version"] == paused["version"]


# ------------------------------------------------------------------------- 4. report window


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"to": "9999-12-31"}, "query.to"),
        ({"from": "0001-01-01T00:00:00+01:00"}, "query.from"),
        ({"from": "9999-12-31T23:59:59-01:00"}, "query.from"),
        ({"from": "1899-12-31"}, "query.from"),
        ({"to": "3000-01-01T00:00:00"}, "query.to"),
    ],
)
async def test_a_report_window_outside_the_date_range_is_a_422(wf, params, field):
    problem(await wf.call("GET", "/v1/reports/sla", MOPS, params=params), 422, field)


async def test_a_report_window_at_the_edges_of_the_range_works(wf):
    report = await wf.ok(
        "GET", "/v1/reports/sla", MOPS, params={"from": "1900-01-01T00:00:00+14:00", "to": "2999-12-31"}
    )
    assert report["count"] == 0 and report["to"] == "3000-01-01T00:00:00+00:00"
    report = await wf.ok("GET", "/v1/reports/sla", MOPS, params={"to": "2999-12-31T23:59:59-01:00"})
    assert report["count"] == 0 and report["to"] == "2999-12-31T23:59:59-01:00"


# ------------------------------------------------------------------------------ 5. versions


@pytest.mark.parametrize("version", [2**31, 9223372036854775808, 2**64, 10**30])
async def test_oversized_versions_are_a_422(wf, version):
    r = await wf.call("GET", "/v1/definitions/budget-approval", MOPS, params={"version": version})
    problem(r, 422, "query.version")
    before = await counts(wf)
    r = await wf.call(
        "POST", "/v1/instances", MARKETER, start_body("budget-approval", {"region": "EMEA"}, definition_version=version)
    )
    problem(r, 422, "definition_version")
    assert await counts(wf) == before


async def test_the_largest_version_is_simply_not_found(wf):
    r = await wf.call("GET", "/v1/definitions/budget-approval", MOPS, params={"version": 2**31 - 1})
    assert r.status_code == 404
    r = await wf.call(
        "POST",
        "/v1/instances",
        MARKETER,
        start_body("budget-approval", {"region": "EMEA"}, definition_version=2**31 - 1),
    )
    problem(r, 422, "definition_key")


# ------------------------------------------------------------------------- the inbox cursor


async def test_the_inbox_pages_past_tasks_without_an_sla(wf):
    """Tasks without an SLA sort last under a sentinel due time; its cursor must pass the bounds."""
    await wf.ok(
        "POST",
        "/v1/definitions",
        ADMIN,
        {
            "key": "plain",
            "name": "plain",
            "stages": [{"name": "Review", "assignees": {"roles": ["approver"]}}],
        },
        status=201,
    )
    ids = {(await wf.start("plain", subject_id=f"c-{i}"))["tasks"][0]["id"] for i in range(3)}
    seen, cursor = set(), None
    for _ in range(3):
        page = await wf.ok(
            "GET", "/v1/tasks", APPROVER_ALL, params={"limit": 1, **({"cursor": cursor} if cursor else {})}
        )
        seen |= {t["id"] for t in page["items"]}
        cursor = page["next_cursor"]
    assert seen == ids and cursor is None


async def test_a_user_longer_than_its_column_is_a_422(wf):
    """task_seats.value is VARCHAR(200): PostgreSQL refused a longer user only when an instance started."""
    before = await counts(wf)
    r = await wf.call(
        "POST",
        "/v1/definitions",
        ADMIN,
        {
            "key": "long",
            "name": "long",
            "stages": [{"name": "A", "assignees": {"users": ["u" * 201]}}],
        },
    )
    problem(r, 422, "stages.0.assignees.users.0")
    assert await counts(wf) == before


# ----------------------------------------------- 6. numbers JSON cannot carry exactly (round 2)


@pytest.mark.parametrize("raw", [b"1e20", b"123456789012345678901234567890", b"-9007199254740992", b"1.5e300"])
async def test_a_context_number_beyond_2_53_is_a_422_naming_it(wf, raw):
    """orjson reads 1e20 as a float, JSONB kept it exact and handed back an int orjson cannot encode (a 500)."""
    before = await counts(wf)
    body = (
        b'{"definition_key":"budget-approval","subject":{"type":"t","id":"i","service":"s"},'
        b'"context":{"region":"EMEA","n":' + raw + b',"deep":[1,{"m":' + raw + b"}]}}"
    )
    r = await wf.client.post(
        "/v1/instances",
        content=body,
        headers={"content-type": "application/json", HEADER: mint(MARKETER, DEV_IDENTITY_SECRET)},
    )
    fields = {e["field"] for e in problem(r, 422, "context.n")["errors"]}
    assert fields == {"context.n", "context.deep.1.m"}
    r = await wf.call(
        "POST",
        "/v1/definitions",
        ADMIN,
        {
            "key": "big",
            "name": "big",
            "stages": [
                {
                    "name": "A",
                    "assignees": {"roles": ["approver"]},
                    "auto_approve": {"field": "x", "op": "eq", "value": 1e20},
                }
            ],
        },
    )
    problem(r, 422, "stages.0.auto_approve.value")
    assert await counts(wf) == before
    # Up to 2**53 - 1 (and any fraction below it) is stored and read back as sent.
    inst = await wf.start("budget-approval", context={"region": "EMEA", "n": 2**53 - 1, "f": -1.5e15, "t": 1e-300})
    got = await wf.ok("GET", f"/v1/instances/{inst['id']}", MARKETER)
    assert got["context"]["n"] == 2**53 - 1 and got["context"]["f"] == -1.5e15 and got["context"]["t"] == 1e-300
    paused = await wf.ok("POST", f"/v1/tasks/{inst['tasks'][0]['id']}/request-changes", APPROVER_ALL, {})
    before = await counts(wf)
    r = await wf.call("POST", f"/v1/instances/{inst['id']}/resubmit", MARKETER, {"context": {"n": 2**64}})
    problem(r, 422, "context.n")
    assert await counts(wf) == before
    assert (await wf.ok("GET", f"/v1/instances/{inst['id']}", MARKETER))["version"] == paused["version"]


def test_non_finite_numbers_order_nothing_in_conditions():
    """A NaN amount raised decimal.InvalidOperation in evaluate (the event crashed and was redelivered)."""
    for bad in (float("nan"), float("inf"), float("-inf")):
        assert conditions._number(bad) is None
        assert not conditions.evaluate({"field": "amount", "op": "gte", "value": "10000"}, {"amount": bad})
        assert not conditions.evaluate({"field": "amount", "op": "lt", "value": 1}, {"amount": bad})
    assert conditions.evaluate({"field": "amount", "op": "gte", "value": "10000"}, {"amount": 25000.5})


# ------------------------------------------- 7. event data the handlers cannot use: dead-lettered

GOOD = {
    "commitment_id": "c1",
    "amount": "25000.00",
    "currency": "EUR",
    "requested_by": "mia",
    "dimensions": {"region": "EMEA", "channel": "events"},
}


def commitment(data: Any, **env: Any) -> Envelope:
    return Envelope(**{"type": "budget.commitment.requested", "source": "budget", "subject_id": "c1", **env}, data=data)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([1], "data"),
        ("s", "data"),
        (None, "data"),
        ({**GOOD, "dimensions": [1, 2]}, "data.dimensions"),
        ({**GOOD, "dimensions": "EMEA"}, "data.dimensions"),
        ({**GOOD, "dimensions": 5}, "data.dimensions"),
        ({**GOOD, "amount": float("nan")}, "data.amount"),
        ({**GOOD, "amount": float("inf")}, "data.amount"),
        ({**GOOD, "amount": 10**30}, "data.amount"),
        ({**GOOD, "amount": 10**4000}, "data.amount"),
        ({**GOOD, "dimensions": {"region": "EMEA", "weight": 1e20}}, "data.dimensions.weight"),
        ({**GOOD, "n": nest(300)}, "data"),
        ({**GOOD, "n": nest(33)}, "data"),
        ({**GOOD, "requested_by": "\ud800"}, "data.requested_by"),
        ({**GOOD, "requested_by": "x" * 201}, "data.requested_by"),
        ({**GOOD, "requested_by": "a\nb"}, "data.requested_by"),
        ({**GOOD, "requested_by": {"a": 1}}, "data.requested_by"),
        ({**GOOD, "commitment_id": "x" * 500}, "data.commitment_id"),
        ({**GOOD, "commitment_id": ["a"]}, "data.commitment_id"),
        ({**GOOD, "memo": "\u0000"}, "data.memo"),
        ({**GOOD, "dimensions": {"\u0000": "x"}}, "data.dimensions"),
    ],
)
async def test_event_data_a_handler_cannot_use_is_refused_at_once(wf, data, field):
    """Each was an AttributeError, TypeError, InvalidOperation or database error: retried, then dead-lettered."""
    rt = wf.runtime
    consumer = Consumer("workflow", rt.db, rt.infra.inbox, None, wf_handlers.handlers(rt), outbox=rt.outbox)
    env = commitment(data)
    before = await counts(wf)
    with pytest.raises(Invalid) as err:
        await consumer.handle(env, consumer.handler_for(env.type))
    assert field in {e.field for e in err.value.errors}, err.value.errors
    assert await counts(wf) == before


async def test_a_bad_event_goes_to_the_dead_letter_queue_on_its_first_delivery(wf):
    rt = wf.runtime
    published: list[tuple[str, dict[str, str]]] = []

    class Js:
        async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
            published.append((subject, headers))

    class Msg:
        subject = "budget.commitment.requested"
        metadata = SimpleNamespace(num_delivered=1)
        acked = naked = False

        def __init__(self, data: bytes):
            self.data = data

        async def ack(self) -> None:
            self.acked = True

        async def nak(self, delay: float = 0) -> None:
            self.naked = True

    consumer = Consumer(
        "workflow", rt.db, rt.infra.inbox, SimpleNamespace(js=Js()), wf_handlers.handlers(rt), outbox=rt.outbox
    )
    msg = Msg(commitment({**GOOD, "dimensions": [1, 2]}).to_json().encode())
    await consumer._process(msg)
    assert msg.acked and not msg.naked
    assert [s for s, _ in published] == ["dlq.workflow"]
    assert "data.dimensions" in published[0][1]["Pitcrew-Reason"]
    # A good one still starts an instance; empty requested_by and commitment_id fall back as before.
    env = commitment({**GOOD, "requested_by": "", "commitment_id": None, "n": 2**53 - 1}, subject_id="c2")
    assert await consumer.handle(env, consumer.handler_for(env.type))
    async with rt.transaction(readonly=True) as s:
        row = (await s.execute(select(instances.c.subject_id, instances.c.requester))).one()
    assert tuple(row) == ("c2", "service:budget")


# ---------------------------------------------------- 8. calendars with many short periods


async def test_a_weekday_with_more_than_eight_periods_is_a_422(wf):
    """1,440 one-minute periods a day made a 10-year span walk 5 million intervals (31 s, 1 GB)."""
    minutes = [[f"{h:02d}:{m:02d}", f"{h:02d}:{m + 1:02d}"] for h in range(24) for m in range(0, 59, 2)]
    before = await counts(wf)
    for spans in (minutes, minutes[:9]):
        r = await wf.call(
            "POST",
            "/v1/calendars",
            ADMIN,
            {"key": "tiny", "timezone": "UTC", "hours": {"mon": ["09:00", "17:00"], "tue": spans}},
        )
        assert "at most 8" in problem(r, 422, "hours.tue")["detail"]
    assert await counts(wf) == before
    created = await wf.ok(
        "POST", "/v1/calendars", ADMIN, {"key": "tiny", "timezone": "UTC", "hours": {"tue": minutes[:8]}}, status=201
    )
    assert created["hours"]["tue"] == minutes[:8]


def test_touching_and_overlapping_periods_are_merged():
    cal = BusinessCalendar.build(
        "UTC",
        {
            "mon": [["13:00", "17:00"], ["09:00", "12:00"], ["12:00", "13:30"]],
            "tue": [["09:00", "12:00"], ["10:00", "11:00"], ["11:30", "14:00"]],
        },
    )
    assert cal.hours == {0: [(9 * H, 17 * H)], 1: [(9 * H, 14 * H)]}
    monday = dt.datetime(2027, 2, 1, tzinfo=dt.UTC)
    assert len(cal.intervals_on(monday.date())) == 1
    assert cal.between(monday, monday + dt.timedelta(days=2)) == 13 * H


def test_a_calendars_day_cache_is_bounded_by_intervals():
    """Eight periods a day over ten years: the cache drops what it holds instead of growing past the bound."""
    from services.workflow.calendars import _CACHE_INTERVALS as CACHE_INTERVALS

    eight = [[f"{h:02d}:00", f"{h:02d}:30"] for h in range(8, 16)]
    cal = BusinessCalendar.build("Europe/Berlin", {d: eight for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")})
    start = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    days = 3653
    assert cal.between(start, start + dt.timedelta(days=days)) == days * 4 * H
    for _ in range(3):
        cal.between(start + dt.timedelta(days=days), start + dt.timedelta(days=4 * days))
        held = sum(len(v) for v in cal._days.values())
        assert len(cal._days) + held <= CACHE_INTERVALS and held == cal._cached[0]
