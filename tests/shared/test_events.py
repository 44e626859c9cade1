"""Outbox, relay and idempotent consumer against a real NATS server and a real database."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy import func, insert, select, update

from shared.app import Runtime
from shared.consumer import Consumer
from shared.errors import Invalid
from shared.events import STREAMS, new_event
from shared.settings import BaseServiceSettings
from tests.conftest import eventually
from tests.shared.sample import create_schema, effects, infra, recording_handler, things

pytestmark = pytest.mark.db


@pytest.fixture()
def prefix() -> str:
    p = "t" + uuid.uuid4().hex[:10]
    STREAMS[p.upper()] = [f"{p}.>"]
    return p


async def runtime(name: str, db_url: str, nats_url: str) -> Runtime:
    settings = BaseServiceSettings(service_name=name, database_url=db_url, nats_url=nats_url, outbox_poll_seconds=0.1)
    rt = Runtime(settings, infra)
    await create_schema(rt)
    rt.bus.start()
    assert await rt.bus.wait_connected(10)
    return rt


async def count(rt: Runtime, table, *where) -> int:
    async with rt.transaction(readonly=True) as s:
        return await s.scalar(select(func.count()).select_from(table).where(*where))


async def stop(*rts: Runtime, consumers: tuple[Consumer, ...] = ()) -> None:
    for c in consumers:
        await c.stop()
    for rt in rts:
        await rt.relay.stop()
        await rt.bus.close()
        await rt.db.dispose()


async def test_events_committed_while_nats_is_down_arrive_once_after_restart(new_db, nats_server, prefix):
    producer = await runtime(f"{prefix}p", await new_db("prod"), nats_server.url)
    receiver = await runtime(f"{prefix}c", await new_db("cons"), nats_server.url)
    consumer = Consumer(
        receiver.name, receiver.db, infra.inbox, receiver.bus, {f"{prefix}.thing.created": recording_handler()}
    )
    consumer.start()
    producer.relay.start()
    try:
        nats_server.stop()
        await eventually(lambda: not producer.bus.connected)
        for i in range(100):
            async with producer.transaction() as s:
                await s.execute(insert(things).values(name=f"thing-{i}"))
                await producer.outbox.add(s, f"{prefix}.thing.created", str(i), {"name": f"thing-{i}"})
        await asyncio.sleep(0.5)
        assert await count(producer, infra.outbox, infra.outbox.c.sent_at.is_(None)) == 100
        assert await count(receiver, effects) == 0

        nats_server.start()
        await eventually(lambda: count(receiver, effects), timeout=30)
        await eventually(lambda: _equals(count(receiver, effects), 100), timeout=30)
        assert await count(producer, infra.outbox, infra.outbox.c.sent_at.is_(None)) == 0

        # A relay that crashed after publishing but before marking publishes again: still once.
        async with producer.transaction() as s:
            await s.execute(update(infra.outbox).values(sent_at=None))
        await eventually(lambda: _equals(count(producer, infra.outbox, infra.outbox.c.sent_at.is_(None)), 0))
        await asyncio.sleep(1.0)
        assert await count(receiver, effects) == 100
        async with receiver.transaction(readonly=True) as s:
            names = (await s.scalars(select(effects.c.name))).all()
        assert sorted(names) == sorted(f"thing-{i}" for i in range(100))
    finally:
        if nats_server.proc is None:
            nats_server.start()
        await stop(producer, receiver, consumers=(consumer,))


async def _equals(value, expected) -> bool:
    return (await value) == expected


async def test_a_rolled_back_transaction_publishes_nothing(new_db, nats_server, prefix):
    producer = await runtime(f"{prefix}p", await new_db("prod"), nats_server.url)
    try:
        with pytest.raises(RuntimeError):
            async with producer.transaction() as s:
                await s.execute(insert(things).values(name="never"))
                await producer.outbox.add(s, f"{prefix}.thing.created", "1", {"name": "never"})
                raise RuntimeError("the business rule said no")
        assert await count(producer, infra.outbox) == 0
        assert await count(producer, things) == 0
        assert await producer.relay.drain_once() == 0
        # And a committed one does get through, so the check above could fail.
        async with producer.transaction() as s:
            await producer.outbox.add(s, f"{prefix}.thing.created", "2", {"name": "kept"})
        assert await producer.relay.drain_once() == 1
        info = await producer.bus.js.stream_info(prefix.upper())
        assert info.state.messages == 1
    finally:
        await stop(producer)


async def test_a_consumer_that_crashes_mid_handler_applies_the_effect_once(new_db, nats_server, prefix):
    producer = await runtime(f"{prefix}p", await new_db("prod"), nats_server.url)
    receiver = await runtime(f"{prefix}c", await new_db("cons"), nats_server.url)
    crashes: dict[str, int] = {"times": 2}
    consumer = Consumer(
        receiver.name,
        receiver.db,
        infra.inbox,
        receiver.bus,
        {f"{prefix}.thing.created": recording_handler(crashes)},
        max_deliver=5,
    )
    consumer.start()
    producer.relay.start()
    try:
        async with producer.transaction() as s:
            env = await producer.outbox.add(s, f"{prefix}.thing.created", "1", {"name": "once"})
        await eventually(lambda: count(receiver, effects), timeout=15)
        assert crashes[env.id] == 2  # it crashed twice after writing its effect
        assert await count(receiver, effects) == 1
        assert await count(receiver, infra.inbox, infra.inbox.c.event_id == env.id) == 1
        # Handling the same envelope again is a no-op.
        assert await consumer.handle(env, recording_handler()) is False
        assert await count(receiver, effects) == 1
    finally:
        await stop(producer, receiver, consumers=(consumer,))


async def test_a_message_that_keeps_failing_goes_to_the_dead_letter_subject(new_db, nats_server, prefix):
    producer = await runtime(f"{prefix}p", await new_db("prod"), nats_server.url)
    receiver = await runtime(f"{prefix}c", await new_db("cons"), nats_server.url)
    consumer = Consumer(
        receiver.name,
        receiver.db,
        infra.inbox,
        receiver.bus,
        {f"{prefix}.thing.created": recording_handler({"times": 99})},
        max_deliver=3,
    )
    consumer.start()
    producer.relay.start()
    try:
        async with producer.transaction() as s:
            env = await producer.outbox.add(s, f"{prefix}.thing.created", "1", {"name": "poison"})
        sub = await receiver.bus.js.pull_subscribe(
            f"dlq.{receiver.name}", stream="DLQ", config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        msgs = await sub.fetch(1, timeout=20)
        assert msgs[0].headers["Pitcrew-Original-Subject"] == f"{prefix}.thing.created"
        assert "crash after writing the effect" in msgs[0].headers["Pitcrew-Reason"]
        assert env.id in msgs[0].data.decode()
        assert await count(receiver, effects) == 0
    finally:
        await stop(producer, receiver, consumers=(consumer,))


async def test_a_schema_version_the_consumer_does_not_read_is_dead_lettered_with_the_reason(
    new_db, nats_server, prefix
):
    producer = await runtime(f"{prefix}p", await new_db("prod"), nats_server.url)
    receiver = await runtime(f"{prefix}c", await new_db("cons"), nats_server.url)
    consumer = Consumer(
        receiver.name,
        receiver.db,
        infra.inbox,
        receiver.bus,
        {f"{prefix}.thing.created": recording_handler()},
        majors=lambda subject: frozenset({1}),
    )
    consumer.start()
    producer.relay.start()
    try:
        async with producer.transaction() as s:
            env = new_event(f"{prefix}.thing.created", producer.name, "2", {"name": "from the future"})
            future = dataclasses.replace(env, schema_version=2)
            await producer.outbox.add_envelope(s, future)
            await producer.outbox.add(s, f"{prefix}.thing.created", "1", {"name": "today"})
        sub = await receiver.bus.js.pull_subscribe(
            f"dlq.{receiver.name}", stream="DLQ", config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        msgs = await sub.fetch(1, timeout=20)
        assert "schema_version 2" in msgs[0].headers["Pitcrew-Reason"]
        assert future.id in msgs[0].data.decode()
        await eventually(lambda: _equals(count(receiver, effects), 1))
    finally:
        await stop(producer, receiver, consumers=(consumer,))


async def test_a_batch_applies_each_event_once_in_one_transaction_and_a_bad_one_alone_is_undone(
    new_db, nats_server, prefix
):
    """Events fetched together share one transaction (a savepoint each): a poison event's effect is
    rolled back and dead-lettered, a flaky one is retried, every other one applies exactly once."""
    producer = await runtime(f"{prefix}p", await new_db("prod"), nats_server.url)
    receiver = await runtime(f"{prefix}c", await new_db("cons"), nats_server.url)
    sessions: dict[str, int] = {}
    flaky: dict[str, int] = {}
    record = recording_handler()

    async def handler(uow, env):
        sessions[env.id] = id(uow.session)
        await record(uow, env)  # the effect is written first: a failure must undo it
        if env.data["name"] == "poison":
            raise Invalid("this event can never apply")
        if env.data["name"] == "flaky" and not flaky.get(env.id):
            flaky[env.id] = 1
            raise RuntimeError("a passing failure")

    consumer = Consumer(receiver.name, receiver.db, infra.inbox, receiver.bus, {f"{prefix}.thing.created": handler})
    names = ["ok"] * 12 + ["poison"] + ["ok"] * 6 + ["flaky"] + ["ok"] * 10
    async with producer.transaction() as s:
        envs = [
            await producer.outbox.add(s, f"{prefix}.thing.created", str(i), {"name": n}) for i, n in enumerate(names)
        ]
    producer.relay.start()
    await eventually(lambda: _equals(_stream_has(producer, prefix), len(names)), timeout=15)
    consumer.start()  # everything is in the stream already: the first fetch takes a batch
    try:
        good = [e.id for e, n in zip(envs, names, strict=True) if n != "poison"]
        await eventually(lambda: _equals(count(receiver, infra.inbox), len(good)), timeout=20)
        assert await count(receiver, effects) == len(good)
        for event_id in good:
            assert await count(receiver, effects, effects.c.event_id == event_id) == 1
        poison = envs[names.index("poison")].id
        assert await count(receiver, effects, effects.c.event_id == poison) == 0
        sub = await receiver.bus.js.pull_subscribe(
            f"dlq.{receiver.name}", stream="DLQ", config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        )
        dead = await sub.fetch(1, timeout=10)
        assert poison in dead[0].data.decode() and "can never apply" in dead[0].headers["Pitcrew-Reason"]
        assert len(set(sessions.values())) < len(names) / 2  # they shared transactions
    finally:
        await stop(producer, receiver, consumers=(consumer,))


async def _stream_has(rt: Runtime, prefix: str) -> int:
    info = await rt.bus.js.stream_info(prefix.upper())
    return int(info.state.messages)
