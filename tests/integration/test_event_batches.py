"""Events committed together are published as one Redis message (bus/events.py): each
subscribed process parses one pub/sub message per batch instead of one per event. The
hub must still hand every event to its watchers and listeners, in commit order, each
with its own JSON text (what watchers forward as it is)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from dexecutor import jsoncodec
from dexecutor.bus.events import RAW, EventHub, EventPublisher
from dexecutor.bus.redis import Keys
from dexecutor.domain.order import WAIT_BOUNDARY, OrderEvent, OrderStatus
from tests.support import drop_namespace, redis_url


@pytest.fixture
async def keys() -> AsyncIterator[Keys]:
    ns = f"dxeb{uuid4().hex[:10]}"
    yield Keys(ns)
    await drop_namespace(ns)


def event(order_id: Any, seq: int, status: OrderStatus) -> OrderEvent:
    return OrderEvent(order_id, seq, status, 1, datetime.now(UTC), {"note": f"n{seq}"})


async def messages(pubsub: Any, quiet_s: float = 0.5) -> dict[str, list[bytes]]:
    """What arrives, by channel, until nothing more has come for `quiet_s`."""
    found: dict[str, list[bytes]] = {}
    loop = asyncio.get_running_loop()
    last = loop.time()
    while loop.time() - last < quiet_s:
        msg = await pubsub.get_message(timeout=0.05)
        if msg is not None and msg["type"] == "message":
            found.setdefault(msg["channel"].decode(), []).append(msg["data"])
            last = loop.time()
    return found


async def test_a_batch_is_one_message_and_each_event_reaches_its_watchers(keys: Keys) -> None:
    redis = Redis.from_url(redis_url())
    hub = EventHub(redis, keys.events)
    heard: list[dict[str, Any]] = []
    hub.listen(heard.append)
    await hub.start()
    raw = redis.pubsub(ignore_subscribe_messages=True)
    await raw.subscribe(keys.events, keys.wait_events)
    a, b = uuid4(), uuid4()
    batch = [
        event(a, 1, OrderStatus.PENDING),
        event(b, 1, OrderStatus.PENDING),
        event(b, 2, OrderStatus.WAITING),
        event(a, 2, OrderStatus.ROUTING),
    ]
    try:
        with hub.watch_user("u") as user_stream, hub.watch_order(str(b)) as order_stream:
            await EventPublisher(redis, keys.events, keys.wait_events).publish_many(
                [(e, "u") for e in batch]
            )
            got = [await asyncio.wait_for(user_stream.get(), 10) for _ in batch]
            of_b = [await asyncio.wait_for(order_stream.get(), 10) for _ in range(2)]
        assert [(m["orderId"], m["seq"]) for m in got] == [(str(e.order_id), e.seq) for e in batch]
        assert [m["seq"] for m in of_b] == [1, 2] and {m["orderId"] for m in of_b} == {str(b)}
        assert [(m["orderId"], m["seq"]) for m in heard] == [(m["orderId"], m["seq"]) for m in got]
        for m in got:  # each event keeps its own text, which decodes to itself
            assert jsoncodec.loads(m[RAW]) == {k: v for k, v in m.items() if k != RAW}
        arrived = await messages(raw)
        assert len(arrived[keys.events]) == 1  # the whole batch, one message
        (waits,) = arrived[keys.wait_events]
        boundary = [e.status.value for e in batch if e.status in WAIT_BOUNDARY]
        assert len(boundary) == 2  # waiting, and the routing a trigger would start
        assert [jsoncodec.loads(t)["status"] for t in waits.split(b"\n")] == boundary
    finally:
        await raw.aclose()  # type: ignore[no-untyped-call]
        await hub.stop()
        await redis.aclose()
