"""Redis losing its data, PostgreSQL going away under load, backpressure, restarts."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from redis.asyncio import Redis

from tests.faults.conftest import TERMINAL, Deployment, Progress
from tests.support import Process, drop_namespace, free_port, order_body, redis_url

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]


async def test_redis_loses_everything_mid_run(
    deployment: Deployment, client: httpx.AsyncClient
) -> None:
    """Every key of the deployment vanishes (what FLUSHALL does to it) with orders in flight."""
    user = "flush"
    deployment.start_worker()
    async with Progress(f"{deployment.api.ws_url}/ws/orders?userId={user}") as progress:
        ids = await deployment.submit(client, user, 100)
        await progress.reach("submitted", 30)
        await drop_namespace(deployment.namespace)
        finals = await deployment.all_terminal(ids)
    assert set(finals) <= TERMINAL and len(finals) == 100
    landed = await deployment.landed_per_order(ids)
    assert all(
        landed[i] == (1 if s == "confirmed" else 0) for i, s in zip(ids, finals, strict=True)
    )
    redis = Redis.from_url(redis_url())
    try:  # the global cap was written again by the reconciler
        assert await redis.hget(f"{deployment.namespace}:orders:meta", "concurrency") == b"100"
    finally:
        await redis.aclose()


async def test_postgres_down_for_10s_under_load(
    deployment: Deployment, client: httpx.AsyncClient
) -> None:
    deployment.start_worker()
    accepted: list[str] = []
    statuses: list[int] = []

    async def load(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            response = await client.post("/api/orders/execute", json=order_body(userId="outage"))
            statuses.append(response.status_code)
            if response.status_code == 202:
                accepted.append(response.json()["orderId"])
            else:
                assert response.json()["error"] == "database_unavailable"
                assert "Retry-After" in response.headers
            await asyncio.sleep(0.05)  # pacing of the load generator, not a wait for state

    loader = asyncio.create_task(load(20))
    await asyncio.sleep(4)  # load runs against a healthy database first
    await deployment.proxy.down()
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"] == "ok" and ready.json()["checks"]["postgres"] != "ok"
    await asyncio.sleep(10)  # the outage itself
    await deployment.proxy.up()
    await loader
    assert set(statuses) <= {202, 503} and 503 in statuses and 202 in statuses
    finals = await deployment.all_terminal(accepted)
    assert set(finals) <= TERMINAL and len(finals) == len(accepted)
    assert (await client.get("/readyz")).status_code == 200


async def test_backpressure_answers_429_with_retry_after(deployment: Deployment) -> None:
    env = {**deployment.env, "MAX_QUEUE_DEPTH": "5"}
    api = Process("api", env, port=free_port()).start()
    deployment.workers.append(api)  # stopped with the deployment
    await api.wait_ready()
    async with httpx.AsyncClient(base_url=api.url) as c:  # no worker runs: the queue only grows
        codes = [
            (await c.post("/api/orders/execute", json=order_body(userId="bp"))) for _ in range(8)
        ]
    assert [r.status_code for r in codes] == [202] * 5 + [429] * 3
    assert codes[-1].json()["error"] == "queue_full"
    assert int(codes[-1].headers["Retry-After"]) >= 1


async def test_idempotency_key_survives_an_api_restart(deployment: Deployment) -> None:
    body = order_body(userId="restart")
    headers = {"Idempotency-Key": "survives"}
    async with httpx.AsyncClient(base_url=deployment.api.url) as c:
        first = (await c.post("/api/orders/execute", json=body, headers=headers)).json()
    assert await deployment.api.terminate() is not None  # shut down within the grace period
    deployment.api.start()
    await deployment.api.wait_ready()
    async with httpx.AsyncClient(base_url=deployment.api.url) as c:
        again = (await c.post("/api/orders/execute", json=body, headers=headers)).json()
    assert again["orderId"] == first["orderId"]
