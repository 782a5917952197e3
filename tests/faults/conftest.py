"""A deployment the fault tests can break: a chain, an API, workers, PostgreSQL behind a
proxy, and a Redis of the test's own that it may kill and restart (the chain reaches
PostgreSQL directly: an outage of the engine's database is not one of the chain's)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect

from dexecutor import jsoncodec
from tests.support import (
    PrivateRedis,
    Process,
    TcpProxy,
    chain_process,
    create_database,
    drop_database,
    free_port,
    order_body,
    server_dsn,
    service_env,
    via_proxy,
    watch,
)

pytestmark = pytest.mark.faults

TERMINAL = {"confirmed", "failed", "cancelled", "expired"}
# Recoveries measured take about 11 s; a generous bound still catches one that waits
# for something slow (a lock that never lapses, a reconciler that never runs).
RECOVERY_BOUND_S = 60


@dataclass
class Deployment:
    dsn: str
    namespace: str
    proxy: TcpProxy
    redis: PrivateRedis
    env: dict[str, str]
    api: Process
    chain: Process
    workers: list[Process] = field(default_factory=list)

    def start_worker(self) -> Process:
        worker = Process("worker", self.env).start()
        self.workers.append(worker)
        return worker

    def kill(self, proc: Process) -> None:
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait()

    async def submit(self, client: httpx.AsyncClient, user: str, n: int) -> list[str]:
        responses = await asyncio.gather(
            *(client.post("/api/orders/execute", json=order_body(userId=user)) for _ in range(n))
        )
        assert [r.status_code for r in responses] == [202] * n
        return [r.json()["orderId"] for r in responses]

    async def all_terminal(self, ids: list[str], timeout: float = 150) -> list[str]:
        streams = await asyncio.gather(
            *(watch(f"{self.api.ws_url}/ws/orders/{i}", timeout=timeout) for i in ids)
        )
        for s in streams:
            assert s.statuses, f"a stream closed {s.close_code} with no status: {s.messages}"
        return [s.statuses[-1] for s in streams]

    async def landed_per_order(self, ids: list[str]) -> dict[str, int]:
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch(
                "SELECT o.id::text AS id, count(l.*) FILTER (WHERE l.status = 'landed') AS landed"
                " FROM orders o LEFT JOIN chain_txs l ON l.order_id = o.id"
                " WHERE o.id = ANY($1::uuid[]) GROUP BY o.id",
                ids,
            )
        finally:
            await conn.close()
        return {r["id"]: int(r["landed"]) for r in rows}

    async def assert_exactly_once(self, ids: list[str], finals: list[str]) -> None:
        """Each confirmed order has exactly one landed swap; every other order none."""
        landed = await self.landed_per_order(ids)
        expected = {i: 1 if s == "confirmed" else 0 for i, s in zip(ids, finals, strict=True)}
        assert landed == expected, {i: (landed.get(i), s) for i, s in zip(ids, finals, strict=True)
                                    if landed.get(i) != expected[i]}  # fmt: skip


class Progress:
    """Counts one user's events live, so a test can act at a given point of the run."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.counts: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Progress:
        ready = asyncio.Event()

        async def follow() -> None:
            async with connect(self.url) as ws:
                ready.set()
                async for raw in ws:
                    status = jsoncodec.loads(raw).get("status")
                    if status:
                        self.counts[status] = self.counts.get(status, 0) + 1
                        self._changed.set()

        self._task = asyncio.create_task(follow())
        await asyncio.wait_for(ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def reach(self, status: str, count: int, timeout: float = 60) -> None:
        async with asyncio.timeout(timeout):
            while self.counts.get(status, 0) < count:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def deployment() -> AsyncIterator[Deployment]:
    dsn = await create_database()
    target = urlsplit(server_dsn())
    host = target.hostname or parse_qs(target.query).get("host", [""])[0]
    port = target.port or 5432
    # An embedded server listens on a unix socket only; the proxy listens on TCP.
    proxy = TcpProxy(f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port))
    redis = PrivateRedis()
    dep: Deployment | None = None
    try:
        await proxy.up()
        await redis.start()
        ns = f"dxk{uuid4().hex[:10]}"
        env = service_env(
            via_proxy(dsn, proxy.port),
            ns,
            REDIS_URL=redis.url,
            MAX_CONCURRENT_ORDERS="100",
            MOCK_SWAP_LATENCY_MS="1000-2000",
            MOCK_QUOTE_LATENCY_MS="0-50",
            BACKOFF_BASE_MS="100",
            RECONCILE_INTERVAL_MS="1000",
        )
        chain = chain_process({**env, "DATABASE_URL": dsn}).start()
        env["CHAIN_URL"] = chain.url
        dep = Deployment(dsn, ns, proxy, redis, env, Process("api", env, port=free_port()), chain)
        await chain.wait_ready()
        dep.api.start()
        await dep.api.wait_ready()
        yield dep
    finally:
        for p in (dep.api, *dep.workers, dep.chain) if dep else ():
            p.stop(signal.SIGKILL)
        await proxy.down()
        await redis.stop()
        await drop_database(dsn)


@pytest.fixture
async def client(deployment: Deployment) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=deployment.api.url, timeout=30) as c:
        yield c
