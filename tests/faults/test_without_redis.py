"""Redis away: a committed cancel is still a cancel, and what needs Redis is a 503, not a 500."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support import PrivateRedis, Process, free_port, isolated, order_body, serving

pytestmark = pytest.mark.faults


@pytest.fixture
async def private_redis() -> AsyncIterator[PrivateRedis]:
    """A redis-server of this test's own: it is killed, which the shared one must never be."""
    redis = PrivateRedis()
    await redis.start()
    yield redis
    await redis.stop()


async def test_cancel_that_cannot_be_published_answers_the_cancelled_order(
    private_redis: PrivateRedis,
) -> None:
    async with isolated("dxc") as iso:
        api = Process("up", iso.env(REDIS_URL=private_redis.url), port=free_port())
        async with serving(api), httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            body = order_body(type="limit", amountIn=1, limitPrice=1_000_000)
            order_id = (await client.post("/api/orders/execute", json=body)).json()["orderId"]
            deadline = time.monotonic() + 10
            while (await client.get(f"/api/orders/{order_id}")).json()["status"] != "waiting":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            await private_redis.kill()
            response = await client.delete(f"/api/orders/{order_id}")
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "cancelled"
            stored = (await client.get(f"/api/orders/{order_id}")).json()
            assert stored["status"] == "cancelled"


async def test_a_mock_control_that_needs_redis_answers_503_without_it(
    private_redis: PrivateRedis,
) -> None:
    """Moving a price on every process needs Redis: without it the answer is a 503 that
    says so, never a 500."""
    async with isolated("dxm") as iso:
        api = Process("up", iso.env(REDIS_URL=private_redis.url), port=free_port())
        async with serving(api), httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            await private_redis.kill()
            response = await client.post(
                "/api/mock/price", json={"token": "SOL", "venue": "raydium", "bps": 50}
            )
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "redis_unavailable"
            assert response.headers["Retry-After"] == "1"
