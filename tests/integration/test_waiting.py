"""Waiting limit and sniper orders never strand: the trigger runner against real servers.

The runner works on the real repository (PostgreSQL), the real BullMQ queue and the
real event publisher (Redis) of a namespace of its own. A failed step is a fault
injected into the real repository: the call raises once, as a dropped connection does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from bullmq import Queue, Worker
from redis.asyncio import Redis

from dexecutor.bus.events import EventPublisher
from dexecutor.bus.redis import Keys
from dexecutor.chain.client import ChainClient
from dexecutor.domain.order import Order, OrderEvent, OrderStatus, OrderType, first_event
from dexecutor.engine.execute import Engine, Policy
from dexecutor.engine.triggers import TriggerRunner, trigger_of
from dexecutor.queue.orders import QUEUE_NAME, OrderQueue, queue_options
from dexecutor.store.orders import NewRecord, OrderRepository
from dexecutor.store.outbox import PgOutbox
from tests.integration.conftest import Chain, Wired, wired
from tests.support import isolated, redis_url

# Long enough that a test sees the runner's own recovery, not the periodic reconcile.
NEVER_S = 3600.0


@dataclass
class World:
    pool: asyncpg.Pool
    repo: OrderRepository
    redis: Redis
    namespace: str
    queue: OrderQueue
    publisher: EventPublisher
    chain: Chain
    wired: Wired

    @property
    def client(self) -> ChainClient:
        return self.wired.client

    def runner(self, repo: Any = None, reconcile_s: float = NEVER_S) -> TriggerRunner:
        return TriggerRunner(
            repo or self.repo,
            self.queue,
            self.publisher,
            self.client,
            0.05,
            reconcile_s=reconcile_s,
        )


@pytest.fixture
async def world(chain: Chain) -> AsyncIterator[World]:
    """A database and namespace of its own: the book sees only this test's orders."""
    async with isolated("dxw") as iso:
        pool = await asyncpg.create_pool(iso.dsn, min_size=1, max_size=4)
        assert pool is not None
        redis = Redis.from_url(redis_url())
        keys = Keys(iso.namespace)
        queue = OrderQueue(redis_url(), iso.namespace, redis)
        made = wired(chain, pool)
        try:
            yield World(
                pool,
                OrderRepository(pool),
                redis,
                iso.namespace,
                queue,
                EventPublisher(redis, keys.events, keys.wait_events),
                chain,
                made,
            )
        finally:
            await made.close()
            await queue.close()
            await redis.aclose()
            await pool.close()


class FailsOnce:
    """The real repository, except that one named call raises as a lost connection does."""

    def __init__(self, repo: OrderRepository, method: str) -> None:
        self._repo = repo
        self._method = method
        self.failed = False

    def _trip(self, method: str) -> None:
        if method == self._method and not self.failed:
            self.failed = True
            raise ConnectionResetError(f"injected: {method} lost its connection")

    async def get(self, order_id: UUID) -> Order | None:
        self._trip("get")
        return await self._repo.get(order_id)

    async def waiting(self, order_ids: Sequence[UUID] | None = None) -> list[Order]:
        self._trip("waiting")
        return await self._repo.waiting(order_ids)

    async def append(self, order: Order, event: OrderEvent) -> Order:
        self._trip("append")
        return await self._repo.append(order, event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._repo, name)


def limit_order(limit: Decimal, expires_at: datetime | None = None) -> Order:
    now = datetime.now(UTC)
    return Order(
        id=uuid4(),
        user_id="waiting-user",
        type=OrderType.LIMIT,
        token_in="SOL",
        token_out="USDC",
        amount_in=Decimal(1),
        slippage_bps=100,
        created_at=now,
        updated_at=now,
        seq=1,
        limit_price=limit,
        expires_at=expires_at,
    )


MARKETABLE = Decimal("0.01")  # any venue quotes SOL at more USDC than this
FAR = Decimal(1_000_000)  # no venue ever does


async def stored_waiting(repo: OrderRepository, order: Order) -> Order:
    """A waiting order committed the way intake commits it, with no event published."""
    await repo.create(order, first_event(order))
    return await repo.append(
        order, order.event(OrderStatus.WAITING, datetime.now(UTC), trigger=trigger_of(order))
    )


async def status_of(repo: OrderRepository, order_id: UUID) -> OrderStatus:
    order = await repo.get(order_id)
    assert order is not None
    return order.status


async def test_an_arrival_whose_read_failed_is_read_again(world: World) -> None:
    flaky = FailsOnce(world.repo, "waiting")
    runner = world.runner(flaky)
    await runner.tick()  # the start-up load: nothing waits yet
    assert not flaky.failed
    order = await stored_waiting(world.repo, limit_order(FAR))
    runner.on_event({"orderId": str(order.id), "status": "waiting"})
    with pytest.raises(ConnectionResetError):
        await runner.tick()
    assert flaky.failed
    await runner.tick()
    assert order.id in runner.book


async def test_a_load_that_failed_is_tried_again(world: World) -> None:
    order = await stored_waiting(world.repo, limit_order(FAR))
    flaky = FailsOnce(world.repo, "waiting")
    runner = world.runner(flaky)
    with pytest.raises(ConnectionResetError):
        await runner.tick()
    await runner.tick()
    assert order.id in runner.book


@pytest.mark.parametrize("method", ["get", "append"])
async def test_an_expiry_that_failed_is_tried_again(world: World, method: str) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    order = await stored_waiting(world.repo, limit_order(FAR, expires_at=past))
    flaky = FailsOnce(world.repo, method)
    runner = world.runner(flaky)
    with pytest.raises(ConnectionResetError):
        await runner.tick()
    assert await status_of(world.repo, order.id) is OrderStatus.WAITING
    await runner.tick()
    assert await status_of(world.repo, order.id) is OrderStatus.EXPIRED
    assert order.id not in runner.book


async def test_the_book_is_reconciled_with_postgresql(world: World) -> None:
    """Waiting orders whose events were never heard are fired or expired all the same."""
    runner = world.runner(reconcile_s=0)
    await runner.tick()
    gone = await stored_waiting(world.repo, limit_order(FAR))
    await runner.tick()
    assert gone.id in runner.book
    # Lost events, both ways: a cancel the book never heard, and orders it never saw.
    await world.repo.append(
        gone, gone.event(OrderStatus.CANCELLED, datetime.now(UTC), reason="cancelled_by_user")
    )
    fires = await stored_waiting(world.repo, limit_order(MARKETABLE))
    past = datetime.now(UTC) - timedelta(seconds=1)
    lapses = await stored_waiting(world.repo, limit_order(FAR, expires_at=past))
    await runner.tick()
    assert gone.id not in runner.book
    assert await world.queue.missing([fires.id]) == []
    assert await status_of(world.repo, lapses.id) is OrderStatus.EXPIRED


async def test_a_failed_job_does_not_block_a_refire(world: World) -> None:
    order = await stored_waiting(world.repo, limit_order(MARKETABLE))
    # A job of this order that BullMQ gave up on (its attempts exhausted).
    opts = queue_options(redis_url(), world.namespace)
    queue = Queue(QUEUE_NAME, opts)

    async def broken(job: Any, token: str) -> None:
        raise RuntimeError("the engine could not reach PostgreSQL")

    worker = Worker(QUEUE_NAME, broken, {**opts, "drainDelay": 0.2})
    try:
        await queue.add("execute", {"orderId": str(order.id)}, {"jobId": str(order.id)})
        deadline = time.monotonic() + 10
        while await queue.getJobState(str(order.id)) != "failed":
            assert time.monotonic() < deadline, "the job never failed"
            await asyncio.sleep(0.05)
    finally:
        await worker.close()
    runner = world.runner()
    await runner.tick()
    assert await queue.getJobState(str(order.id)) == "waiting"
    await queue.close()


async def test_a_refire_of_an_order_already_running_is_a_no_op(world: World) -> None:
    """The book may hold a stale copy of an order a worker already took: its job stays."""
    order = await stored_waiting(world.repo, limit_order(MARKETABLE))
    opts = queue_options(redis_url(), world.namespace)
    queue = Queue(QUEUE_NAME, opts)
    taken, release = asyncio.Event(), asyncio.Event()

    async def running(job: Any, token: str) -> None:
        taken.set()
        await release.wait()

    worker = Worker(QUEUE_NAME, running, {**opts, "drainDelay": 0.2})
    try:
        await world.queue.requeue(order.id)  # the first fire
        await asyncio.wait_for(taken.wait(), 10)
        await world.repo.append(order, order.event(OrderStatus.ROUTING, datetime.now(UTC)))
        runner = world.runner()
        runner.book.add(order)  # the stale copy: the book has not heard of `routing` yet
        await runner.tick()
        assert order.id not in runner.book  # the start-up check found it left waiting
        runner.book.add(order)
        await runner.tick()  # fires it: marketable, and no longer marked as fired
        assert await queue.getJobState(str(order.id)) == "active"
        assert (await queue.getJobCounts("waiting"))["waiting"] == 0
    finally:
        release.set()
        await worker.close()
        await queue.close()


def engine_of(world: World) -> Engine:
    venues = world.wired.venues
    policy = Policy(max_attempts=3, backoff_base_ms=10, quote_timeout_s=1.0, internal_error_limit=5)
    return Engine(world.repo, world.publisher, venues, PgOutbox(world.pool), policy)


async def swaps_of(world: World, order_id: UUID) -> int:
    """How many transactions the chain received for the order."""
    conn = await asyncpg.connect(world.chain.dsn)
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM chain_txs WHERE order_id = $1", order_id)
        )
    finally:
        await conn.close()


async def test_an_order_picked_up_after_its_expiry_expires_instead_of_running(
    world: World,
) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    order = await stored_waiting(world.repo, limit_order(MARKETABLE, expires_at=past))
    engine = engine_of(world)
    assert await engine.process(order.id) is None
    assert await status_of(world.repo, order.id) is OrderStatus.EXPIRED
    assert await swaps_of(world, order.id) == 0


async def test_a_limit_order_left_pending_waits_instead_of_running(
    world: World,
) -> None:
    """One stored before limit orders were born waiting, picked up by the reconciler."""
    order = limit_order(MARKETABLE)
    await world.repo.create(order, first_event(order))
    engine = engine_of(world)
    assert await engine.process(order.id) is None
    assert [e.status for e in await world.repo.events(order.id)] == [
        OrderStatus.PENDING,
        OrderStatus.WAITING,
    ]
    assert await swaps_of(world, order.id) == 0


async def test_a_waiting_order_is_stored_with_both_events_in_one_transaction(
    world: World,
) -> None:
    born = limit_order(FAR)
    pending = first_event(born)
    waiting = born.event(OrderStatus.WAITING, datetime.now(UTC), trigger=trigger_of(born))
    order = born.apply(waiting)
    market = limit_order(FAR)  # in the same batch, a plain one-event record
    created = await world.repo.create_many(
        [NewRecord(order, pending, more=(waiting,)), NewRecord(market, first_event(market))]
    )
    assert created == {order.id, market.id}
    assert await world.repo.get(order.id) == order
    assert [e.status for e in await world.repo.events(order.id)] == [
        OrderStatus.PENDING,
        OrderStatus.WAITING,
    ]
    assert len(await world.repo.events(market.id)) == 1
    writers = await world.pool.fetchval(
        "SELECT count(DISTINCT xmin::text) FROM order_events WHERE order_id = ANY($1::uuid[])",
        [order.id, market.id],
    )
    assert writers == 1
