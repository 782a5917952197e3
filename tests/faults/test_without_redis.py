"""Redis away: a committed cancel is still a cancel, and what needs Redis is a 503, not a 500."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support import (
    PrivateRedis,
    Process,
    chain_process,
    free_port,
    isolated,
    order_body,
    serving,
    wait_terminal,
)

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


async def test_a_process_started_before_its_redis_waits_for_it() -> None:
    """A deployment coming up (or a process manager restarting a worker mid-outage) may
    start a process before Redis answers: it waits, up to STARTUP_WAIT_S, then works."""
    redis = PrivateRedis()
    async with isolated("dxw") as iso:
        api = Process("up", iso.env(REDIS_URL=redis.url, STARTUP_WAIT_S="30"), port=free_port())
        api.start()
        try:
            await _logged(api, "waiting for a backend")
            await redis.start()
            await api.wait_ready()
            async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
                accepted = await client.post("/api/orders/execute", json=order_body())
                assert accepted.status_code == 202, accepted.text
                assert (await wait_terminal(client, accepted.json()["orderId"]))[
                    "status"
                ] == "confirmed"
        finally:
            await api.terminate()
            await redis.stop()


async def test_a_redis_that_never_answers_stops_start_up_naming_it() -> None:
    never = PrivateRedis()  # a free port nobody listens on
    async with isolated("dxn") as iso:
        worker = Process("worker", iso.env(REDIS_URL=never.url, STARTUP_WAIT_S="1")).start()
        assert worker.proc is not None
        code = await asyncio.to_thread(worker.proc.wait, 30)
        assert code == 3
        assert f"Redis (configured) at {never.url} is unreachable" in worker.log_path.read_text()


async def _logged(proc: Process, event: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while event not in (proc.log_path.read_text() if proc.log_path.exists() else ""):
        assert time.monotonic() < deadline, f"no {event!r} in {proc.log_path}"
        await asyncio.sleep(0.05)


async def test_the_chain_starts_while_redis_is_down() -> None:
    """The chain keeps its state in PostgreSQL and never uses Redis: a chain restarted
    during a Redis outage serves at once, instead of waiting (or giving up) for a server
    it does not need."""
    never = PrivateRedis()  # a free port nobody listens on
    async with isolated("dxr") as iso:
        chain = chain_process(iso.env(REDIS_URL=never.url, STARTUP_WAIT_S="60")).start()
        try:
            await chain.wait_ready(20)
            assert "waiting for a backend" not in chain.log_path.read_text()
        finally:
            await chain.terminate()
