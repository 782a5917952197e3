"""The global cap with several processes: one API, two workers, default venue latencies.

40 orders submitted at once must all confirm with at most MAX_CONCURRENT_ORDERS (10)
executing at any moment across both workers, and the cap must actually be reached.
The stream is watched on the API process, which executes nothing itself: events
reach it through Redis. Throughput is printed, not asserted (it is measured in bench/).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import asyncpg
import httpx
import pytest

from dexecutor.bench import peak_executing
from tests.support import (
    Isolated,
    Process,
    chained,
    connected,
    free_port,
    isolated,
    order_body,
    serving,
    watch,
)

METRICS_PORTS = (free_port(), free_port())


@pytest.fixture(scope="module")
async def cluster_env() -> AsyncIterator[Isolated]:
    async with isolated("dxc") as iso:
        yield iso


@pytest.fixture
async def db(cluster_env: Isolated) -> AsyncIterator[asyncpg.Connection]:
    async with connected(cluster_env.dsn) as conn:
        yield conn


@pytest.fixture(scope="module")
async def cluster(cluster_env: Isolated) -> AsyncIterator[Process]:
    env = cluster_env.env(
        MOCK_QUOTE_LATENCY_MS="150-250", MOCK_SWAP_LATENCY_MS="2000-3000", QUOTE_TIMEOUT_MS="1500"
    )
    chain, env = chained(env)
    api = Process("api", env, port=free_port())
    workers = [Process("worker", {**env, "METRICS_PORT": str(port)}) for port in METRICS_PORTS]
    async with serving(chain, api, *workers):
        yield api


async def test_forty_orders_two_workers_peak_exactly_ten(
    cluster: Process, db: asyncpg.Connection
) -> None:
    user = f"cap-{uuid4().hex[:6]}"
    async with httpx.AsyncClient(base_url=cluster.url, timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post("/api/orders/execute", json=order_body(userId=user)) for _ in range(40))
        )
    ids = [r.json()["orderId"] for r in responses]
    assert all(r.status_code == 202 for r in responses)
    streams = await asyncio.gather(
        *(watch(f"{cluster.ws_url}/ws/orders/{i}", timeout=120) for i in ids)
    )
    assert all(s.statuses[-1] == "confirmed" for s in streams), [s.statuses for s in streams]
    events = await db.fetch(
        "SELECT e.order_id, e.seq, e.status, e.at FROM order_events e"
        " JOIN orders o ON o.id = e.order_id WHERE o.user_id = $1",
        user,
    )
    assert peak_executing(events) == 10
    first = min(e["at"] for e in events if e["status"] == "routing")
    last = max(e["at"] for e in events if e["status"] == "confirmed")
    per_minute = 40 / (last - first).total_seconds() * 60
    confirmed = 0.0
    async with httpx.AsyncClient() as client:
        for port in METRICS_PORTS:  # each worker serves its own metrics
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            confirmed += sum(
                float(line.split()[-1]) for line in metrics.splitlines()
                if line.startswith('dexecutor_order_events_total{status="confirmed"}')
            )  # fmt: skip
    assert confirmed == 40
    print(f"\n40 orders, 2 workers, cap 10: {per_minute:.0f} orders/minute")


async def test_several_api_processes_share_one_port() -> None:
    """API_PROCESSES=2: uvicorn runs two processes on the port; orders placed and watched
    through either of them execute and stream (events reach both through Redis)."""
    async with isolated("dxp") as iso:
        up = Process("up", iso.env(API_PROCESSES="2"), port=free_port())
        async with serving(up), httpx.AsyncClient(base_url=up.url, timeout=30) as client:
            responses = await asyncio.gather(
                *(
                    client.post("/api/orders/execute", json=order_body(userId="multi"))
                    for _ in range(6)
                )
            )
            ids = [r.json()["orderId"] for r in responses]
            streams = await asyncio.gather(*(watch(f"{up.ws_url}/ws/orders/{i}") for i in ids))
    assert all(s.statuses[-1] == "confirmed" and s.close_code == 1000 for s in streams)
