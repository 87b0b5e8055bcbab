import asyncio
from dataclasses import dataclass

from core.bus import DomainEvent, EventBus


@dataclass(frozen=True)
class ThingHappened(DomainEvent):
    type = "thing.happened"
    name: str
    count: int


async def _take(sub, n, limit_s=5.0):
    out = []

    async def run():
        async for ev in sub:
            out.append(ev)
            if len(out) == n:
                return

    await asyncio.wait_for(run(), limit_s)
    return out


async def test_typed_events_get_increasing_ids_and_persist(bus, store):
    a = await bus.publish(ThingHappened("a", 1))
    b = await bus.publish("other.thing", {"x": 2})
    assert (a.type, a.data) == ("thing.happened", {"name": "a", "count": 1})
    assert b.id > a.id
    rows = await store.fetchall("SELECT id, type FROM events ORDER BY id")
    assert [(r[0], r[1]) for r in rows] == [(a.id, "thing.happened"), (b.id, "other.thing")]


async def test_live_subscriber_gets_only_new_events_in_order(bus):
    await bus.publish("old", {})
    sub = bus.subscribe()
    for i in range(5):
        await bus.publish("new", {"i": i})
    got = await _take(sub, 5)
    assert [e.data["i"] for e in got] == [0, 1, 2, 3, 4]
    sub.close()


async def test_replay_from_an_id_then_live_without_gaps_or_duplicates(bus):
    first = [await bus.publish("e", {"i": i}) for i in range(1200)]  # more than one replay page
    sub = bus.subscribe(after_id=first[99].id)

    async def publish_more():
        for i in range(1200, 1300):
            await bus.publish("e", {"i": i})

    consumer = asyncio.create_task(_take(sub, 1200))
    await publish_more()
    got = await consumer
    assert [e.data["i"] for e in got] == list(range(100, 1300))
    sub.close()


async def test_slow_subscriber_never_stalls_publishers_and_loses_nothing(bus):
    slow = bus.subscribe(queue_size=4)
    # Publish far more than the queue holds while nobody reads: must not block.
    await asyncio.wait_for(asyncio.gather(*(bus.publish("e", {"i": i}) for i in range(50))), 5)
    assert slow.lagged_count >= 1
    got = await _take(slow, 50)
    assert sorted(e.data["i"] for e in got) == list(range(50))
    assert [e.id for e in got] == sorted(e.id for e in got)
    slow.close()


async def test_type_filter(bus):
    sub = bus.subscribe(types=["keep"])
    await bus.publish("drop", {})
    await bus.publish("keep", {"n": 1})
    await bus.publish("drop", {})
    await bus.publish("keep", {"n": 2})
    got = await _take(sub, 2)
    assert [e.data["n"] for e in got] == [1, 2]


async def test_close_ends_a_waiting_iterator(bus):
    sub = bus.subscribe()

    async def drain():
        return [e async for e in sub]

    task = asyncio.create_task(drain())
    await asyncio.sleep(0.05)
    bus.close()
    assert await asyncio.wait_for(task, 2) == []


async def test_last_id_survives_restart(store):
    b1 = EventBus(store)
    await b1.start()
    ev = await b1.publish("x", {})
    b2 = EventBus(store)
    await b2.start()
    assert b2.last_id == ev.id


async def test_prune_keeps_the_newest(bus, store):
    for i in range(10):
        await bus.publish("e", {"i": i})
    assert await bus.prune(3) == 7
    rows = await store.fetchall("SELECT data FROM events ORDER BY id")
    assert [r[0] for r in rows] == ['{"i":7}', '{"i":8}', '{"i":9}']


async def test_read_up_to_now_ends_at_the_newest_event_of_the_call(bus):
    # More than one page after the id, of two types; events published after the call are not included.
    for i in range(1100):
        await bus.publish("a" if i % 2 else "b", {"i": i})
    got = [e.data["i"] async for e in bus.read_up_to_now(after_id=0, types=None, newest=20)]
    assert got == list(range(1100))
    reader = bus.read_up_to_now(after_id=0, types=["a"], newest=20)
    first = await reader.__anext__()
    await bus.publish("a", {"i": 9999})  # after the call: not part of "now"
    rest = [e.data["i"] async for e in reader]
    assert [first.data["i"], *rest] == list(range(1, 1100, 2))
    newest = [e.data["i"] async for e in bus.read_up_to_now(after_id=None, types=["b"], newest=3)]
    assert newest == [1094, 1096, 1098]
    assert [e async for e in bus.read_up_to_now(after_id=bus.last_id, types=None, newest=3)] == []
