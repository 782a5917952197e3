"""An order that is already executing resumes before the queue's backlog, on the real
PostgreSQL, Redis, BullMQ and chain.

The cap counts orders executing (routing, building, submitted) as PostgreSQL stores
them. One whose attempt was cut short (its job lost with Redis, or its attempt met by
an outage) still executes in that sense: if it waited at the tail of the queue, behind
every order queued meanwhile, new orders would take the free slots and more than the
cap would execute, for as long as that backlog lasted (a chaos run with a backlog of
dropped transactions, each holding its slot until its blockhash expired, saw 12
against a cap of 5 for 50 s).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from bullmq import Worker
from redis.asyncio import Redis

from dexecutor.bus.events import EventPublisher
from dexecutor.bus.redis import Keys
from dexecutor.chain.client import ChainClient, ChainVenue
from dexecutor.chain.rpc import Rpc, RpcUnreachable
from dexecutor.config import load_settings
from dexecutor.domain.order import EXECUTING, Order, OrderEvent, OrderStatus, first_event
from dexecutor.engine.execute import Engine, Policy
from dexecutor.market.types import VENUES
from dexecutor.market.venue import SignedTx
from dexecutor.queue.orders import QUEUE_NAME, OrderQueue
from dexecutor.queue.worker import OrderWorker
from dexecutor.runtime import Services
from dexecutor.store.orders import NewRecord, OrderRepository
from dexecutor.store.outbox import PgOutbox
from dexecutor.wallets import SecretBox, Wallets
from tests.integration.conftest import FUNDING, WALLET_KEY, Chain
from tests.integration.test_store import make_order
from tests.support import drop_namespace, isolated, redis_url

S = OrderStatus


async def taken_in_order(namespace: str, count: int) -> list[str]:
    """The ids of the next `count` jobs, in the order one BullMQ worker takes them."""
    taken: list[str] = []
    all_taken = asyncio.Event()

    async def take(job: Any, token: str) -> None:
        taken.append(job.id)
        if len(taken) == count:
            all_taken.set()

    worker = Worker(
        QUEUE_NAME, take, {"connection": redis_url(), "prefix": namespace, "concurrency": 1}
    )
    try:
        await asyncio.wait_for(all_taken.wait(), 20)
    finally:
        await worker.close()
    return taken


async def test_an_executing_order_whose_job_was_lost_is_requeued_ahead_of_the_backlog() -> None:
    async with isolated("dxf") as iso:
        settings = load_settings(
            database_url=iso.dsn, redis_url=redis_url(), namespace=iso.namespace
        )
        svc = await Services.open(settings, worker=False, watchers=False)
        try:
            start = datetime.now(UTC) - timedelta(minutes=1)
            orders = [
                replace(make_order("resume-user"), created_at=start + timedelta(seconds=i),
                        updated_at=start + timedelta(seconds=i))
                for i in range(5)
            ]  # fmt: skip
            await svc.repo.create_many([NewRecord(o, first_event(o)) for o in orders])
            backlog, (executing, also_executing, lost) = orders[:2], orders[2:]
            await svc.queue.enqueue_many([o.id for o in backlog])
            # Two were routing when Redis lost their jobs; one had not started.
            for order in (executing, also_executing):
                await svc.repo.append(order, order.event(S.ROUTING, datetime.now(UTC)))

            assert await svc.reconcile(quiet_s=0) == 3
            taken = await taken_in_order(iso.namespace, 5)
        finally:
            await svc.close()
    ids = {str(o.id): name for o, name in (
        (backlog[0], "backlog 1"), (backlog[1], "backlog 2"), (executing, "executing"),
        (also_executing, "also executing"), (lost, "lost, not started"),
    )}  # fmt: skip
    assert [ids[i] for i in taken] == [
        "executing",
        "also executing",
        "backlog 1",
        "backlog 2",
        "lost, not started",
    ]


class ChainAwayOnce(ChainVenue):
    """A chain venue (the mock here) whose RPC node does not answer the first build of
    the orders in `away`: the chain gone for a moment while the order was building."""

    def __init__(self, away: set[UUID], *args: Any) -> None:
        super().__init__(*args)
        self.away = away
        self.refused: list[UUID] = []

    async def build(self, order_id: UUID, *args: Any, **kwargs: Any) -> SignedTx:
        if order_id in self.away:
            self.away.discard(order_id)
            self.refused.append(order_id)
            raise RpcUnreachable("the chain did not answer (a test's outage)")
        return await super().build(order_id, *args, **kwargs)


class Steps:
    """Every step the engine takes, in order (the engine's observer hook)."""

    def __init__(self, finished: int) -> None:
        self.seen: list[tuple[UUID, OrderStatus]] = []
        self.terminal: set[UUID] = set()
        self.finished = finished
        self.done = asyncio.Event()

    def event(self, before: Order, event: OrderEvent) -> None:
        self.seen.append((before.id, event.status))
        if event.status in (S.CONFIRMED, S.FAILED):
            self.terminal.add(before.id)
            if len(self.terminal) == self.finished:
                self.done.set()

    def internal_error(self) -> None:
        raise AssertionError("no internal error expected")

    def peak_executing(self) -> int:
        running: set[UUID] = set()
        peak = 0
        for order_id, status in self.seen:
            if status in EXECUTING:
                running.add(order_id)
            else:
                running.discard(order_id)
            peak = max(peak, len(running))
        return peak


@pytest.fixture
async def resources(database: str) -> AsyncIterator[tuple[asyncpg.Pool, Redis, str]]:
    pool = await asyncpg.create_pool(database, min_size=1, max_size=4)
    assert pool is not None
    redis = Redis.from_url(redis_url())
    namespace = f"dxf{uuid4().hex[:10]}"
    yield pool, redis, namespace
    await redis.aclose()
    await pool.close()
    await drop_namespace(namespace)


async def test_an_attempt_met_by_an_outage_keeps_its_slot_and_goes_on_first(
    resources: tuple[asyncpg.Pool, Redis, str], chain: Chain
) -> None:
    pool, redis, namespace = resources
    repo = OrderRepository(pool)
    orders = [make_order(f"slot-user-{i}") for i in range(4)]
    for order in orders:
        await repo.create(order, first_event(order))
    first = orders[0]
    client = ChainClient(chain.url)
    rpc = Rpc(chain.url, poll_s=0.01, rebroadcast_s=0.2)
    wallets = Wallets(pool, client, SecretBox(WALLET_KEY), FUNDING)
    away = {first.id}
    venues = {name: ChainAwayOnce(away, name, client, rpc, wallets) for name in VENUES}
    steps = Steps(finished=len(orders))
    policy = Policy(max_attempts=3, backoff_base_ms=10, quote_timeout_s=2.0, internal_error_limit=5)
    keys = Keys(namespace)
    publisher = EventPublisher(redis, keys.events, keys.wait_events)
    engine = Engine(repo, publisher, venues, PgOutbox(pool), policy, observer=steps)
    queue = OrderQueue(redis_url(), namespace, redis)
    # One slot: the first order is taken first, the other three wait behind it.
    await queue.enqueue_many([o.id for o in orders])
    worker = OrderWorker(
        engine, queue, redis, redis_url(), namespace, concurrency=1, trouble_retry_s=0.05
    )
    await worker.start()
    try:
        await asyncio.wait_for(steps.done.wait(), 60)
    finally:
        await worker.stop()
        await queue.close()
        await rpc.close()
        await client.close()

    assert [r for v in venues.values() for r in v.refused] == [first.id]  # the outage hit
    # It was building when the chain went away; it carried on from there, in its slot,
    # before any other order started.
    assert steps.seen[:4] == [(first.id, S.ROUTING), (first.id, S.BUILDING),
                              (first.id, S.SUBMITTED), (first.id, S.CONFIRMED)]  # fmt: skip
    assert steps.peak_executing() == 1
    stored = [await repo.get(o.id) for o in orders]
    assert all(o is not None and o.status is S.CONFIRMED for o in stored), stored
    assert all(o is not None and o.amount_out and o.amount_out > Decimal(0) for o in stored)
