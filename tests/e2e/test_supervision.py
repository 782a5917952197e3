"""A background loop that dies is logged, restarted, and reported by /readyz.

The event hub's loop is killed for real: in a test deployment a message on its
crash channel makes the loop raise, as a bug in a message handler would.
"""

from __future__ import annotations

import asyncio
import time

import httpx
from redis.asyncio import Redis

from dexecutor.bus.redis import Keys
from tests.e2e.test_lifecycle import HAPPY
from tests.support import Process, free_port, isolated, order_body, redis_url, serving, watch


async def hub_subscribed(redis: Redis, channel: str, timeout: float = 10) -> None:
    """Wait until the process's event hub listens on `channel` (again)."""
    deadline = time.monotonic() + timeout
    while (await redis.pubsub_numsub(channel))[0][1] != 1:
        assert time.monotonic() < deadline, "the event hub did not come back"
        await asyncio.sleep(0.05)


async def deaths_logged(proc: Process, count: int, timeout: float = 10) -> str:
    """Wait until the process has logged `count` loop deaths; return its log."""
    deadline = time.monotonic() + timeout
    while (log := proc.log_path.read_text()).count("background loop died") < count:
        assert time.monotonic() < deadline, "the loop's death was not logged"
        await asyncio.sleep(0.05)
    return log


async def test_a_dying_event_hub_restarts_and_readyz_names_it() -> None:
    async with isolated("dxs") as iso:
        proc = Process("up", iso.env(), port=free_port())
        keys = Keys(iso.namespace)
        async with (
            serving(proc),
            httpx.AsyncClient(base_url=proc.url, timeout=30) as client,
            Redis.from_url(redis_url()) as redis,
        ):
            await hub_subscribed(redis, keys.crash_hub)
            assert await redis.publish(keys.crash_hub, b'{"n": 1}') == 1
            log = await deaths_logged(proc, 1)
            assert "event hub crash requested" in log and "Traceback" in log
            await hub_subscribed(redis, keys.events)  # restarted, and listening again
            # Live events flow through the restarted hub.
            response = await client.post("/api/orders/execute", json=order_body())
            stream = await watch(f"{proc.ws_url}/ws/orders/{response.json()['orderId']}")
            assert (stream.statuses, stream.close_code) == (HAPPY, 1000)
            assert (await client.get("/readyz")).status_code == 200  # one death is no trend

            for n in range(2, 5):
                await hub_subscribed(redis, keys.crash_hub)
                assert await redis.publish(keys.crash_hub, b'{"n": %d}' % n) == 1
                await deaths_logged(proc, n)
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["loop:event-hub"].startswith("dying: 4 deaths")
