"""The repository and the Redis adapters against the real servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from redis.asyncio import Redis

from dexecutor.bus.events import RESYNC, EventHub, EventPublisher
from dexecutor.bus.redis import Keys
from dexecutor.domain.order import (
    IllegalTransition,
    Order,
    OrderEvent,
    OrderStatus,
    OrderType,
    first_event,
)
from dexecutor.engine.execute import Engine, Policy
from dexecutor.store.orders import (
    _CHANGE_COLUMNS,
    IdempotencyConflict,
    NewRecord,
    OrderRepository,
    StaleOrder,
    _Change,
    _change_row,
)
from dexecutor.store.outbox import PgOutbox


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database, min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()


def make_order(user: str = "store-user") -> Order:
    now = datetime.now(UTC)
    return Order(
        id=uuid4(),
        user_id=user,
        type=OrderType.MARKET,
        token_in="SOL",
        token_out="USDC",
        amount_in=Decimal("2.000000001"),
        slippage_bps=50,
        created_at=now,
        updated_at=now,
        seq=1,
    )


async def test_order_round_trips_with_exact_numeric_amounts(pool: asyncpg.Pool) -> None:
    repo = OrderRepository(pool)
    order = make_order()
    stored, created = await repo.create(order, first_event(order))
    assert created
    assert stored.id == order.id
    loaded = await repo.get(order.id)
    assert loaded is not None
    assert loaded.amount_in == Decimal("2.000000001")
    assert (loaded.status, loaded.seq) == (OrderStatus.PENDING, 1)
    assert [e.status for e in await repo.events(order.id)] == [OrderStatus.PENDING]


async def test_a_stale_writer_changes_nothing(pool: asyncpg.Pool) -> None:
    repo = OrderRepository(pool)
    order = make_order()
    await repo.create(order, first_event(order))
    now = datetime.now(UTC)
    await repo.append(order, order.event(OrderStatus.ROUTING, now))
    with pytest.raises(StaleOrder):
        await repo.append(order, order.event(OrderStatus.CANCELLED, now, reason="late"))
    loaded = await repo.get(order.id)
    assert loaded is not None and loaded.status is OrderStatus.ROUTING
    assert len(await repo.events(order.id)) == 2


async def test_an_illegal_transition_is_refused_before_any_write(pool: asyncpg.Pool) -> None:
    repo = OrderRepository(pool)
    order = make_order()
    await repo.create(order, first_event(order))
    with pytest.raises(IllegalTransition):
        await repo.append(order, order.event(OrderStatus.SUBMITTED, datetime.now(UTC), txHash="x"))
    assert len(await repo.events(order.id)) == 1


async def test_json_columns_are_set_carried_and_cleared_as_the_order_moves(
    pool: asyncpg.Pool,
) -> None:
    """Quotes, route and fill as stored follow every step: set, carried along (a step
    that leaves them sends them no more), cleared by a new attempt, set again."""
    repo = OrderRepository(pool)
    order = make_order()
    await repo.create(order, first_event(order))
    now = datetime.now(UTC)
    S = OrderStatus

    def building(order: Order, out: str) -> Any:
        return order.event(
            S.BUILDING, now, dex="raydium", quotes={"raydium": {"amountOut": Decimal(out)}},
            expectedAmountOut=Decimal(out), minAmountOut=Decimal(1), routePlan=[{"percent": 100}],
        )  # fmt: skip

    steps: list[Callable[[Order], Any]] = [
        lambda o: o.event(S.ROUTING, now),
        lambda o: building(o, "190.5"),
        lambda o: o.event(S.SUBMITTED, now, dex="raydium", txHash="sig-1"),
        lambda o: o.event(
            S.RETRYING,
            now,
            reason="slippage_exceeded",
            message="reverted",
            retryable=True,
            networkFee=Decimal("0.000005"),
            networkFeeDetail={"base": 5000},
        ),
        lambda o: o.event(S.ROUTING, now),
        lambda o: building(o, "188.25"),
    ]
    for step in steps:
        before = order
        order = await repo.append(order, step(order))
        stored = await repo.get(order.id)
        assert stored is not None
        assert (stored.quotes, stored.route, stored.fill) == (order.quotes, order.route, order.fill)
        assert stored.tx_hash == order.tx_hash
        sent = _change_row(_Change(before, order, step(before)))
        for name in ("quotes", "route", "fill"):
            if getattr(order, name) is getattr(before, name):  # carried along: not sent
                assert sent[_column(name)] is None
    assert order.quotes == {"raydium": {"amountOut": Decimal("188.25")}} and order.fill is None


def _column(name: str) -> int:
    return [c for c, _ in _CHANGE_COLUMNS].index(name)


async def test_idempotency_key_is_per_user_and_checks_the_body(pool: asyncpg.Pool) -> None:
    repo = OrderRepository(pool)
    first = make_order("idem-store")
    await repo.create(first, first_event(first), "k1", "hash-a")
    again = make_order("idem-store")
    existing, created = await repo.create(again, first_event(again), "k1", "hash-a")
    assert (existing.id, created) == (first.id, False)
    other = make_order("idem-store")
    with pytest.raises(IdempotencyConflict):
        await repo.create(other, first_event(other), "k1", "hash-b")
    assert await repo.get(again.id) is None


async def test_many_orders_are_stored_in_one_statement_with_their_first_events(
    pool: asyncpg.Pool,
) -> None:
    repo = OrderRepository(pool)
    orders = [make_order("batch-store") for _ in range(3)]
    # Placed with an Idempotency-Key, which the order carries as its client order id.
    keyed = replace(make_order("batch-store"), client_order_id="batch-key")
    same_key = replace(make_order("batch-store"), client_order_id="batch-key")  # one order
    records = [NewRecord(o, first_event(o)) for o in orders] + [
        NewRecord(keyed, first_event(keyed), "batch-key", "hash"),
        NewRecord(same_key, first_event(same_key), "batch-key", "hash"),
    ]
    created = await repo.create_many(records)
    assert created == {o.id for o in orders} | {keyed.id}
    for order in [*orders, keyed]:
        assert await repo.get(order.id) == order
        assert [e.status for e in await repo.events(order.id)] == [OrderStatus.PENDING]
    assert await repo.get(same_key.id) is None
    assert (await repo.replayed(same_key, "batch-key", "hash")).id == keyed.id


async def test_concurrent_status_changes_share_statements_but_stay_guarded(
    pool: asyncpg.Pool,
) -> None:
    repo = OrderRepository(pool)
    orders = [make_order("batch-append") for _ in range(5)]
    await repo.create_many([NewRecord(o, first_event(o)) for o in orders])
    at = datetime.now(UTC)
    moved = await asyncio.gather(
        *(repo.append(o, o.event(OrderStatus.ROUTING, at)) for o in orders)
    )
    assert [m.status for m in moved] == [OrderStatus.ROUTING] * 5
    # Two writers with the same copy of one order, at the same moment: one wins. The
    # first two changes keep both flushes busy, so the contested pair share a batch.
    contested = moved[0]
    *others, first, second = await asyncio.gather(
        *(repo.append(o, o.event(OrderStatus.FAILED, at, reason="no_route")) for o in moved[1:3]),
        repo.append(contested, contested.event(OrderStatus.FAILED, at, reason="no_route")),
        repo.append(contested, contested.event(OrderStatus.FAILED, at, reason="tx_expired")),
        return_exceptions=True,
    )
    assert all(isinstance(o, Order) for o in others)
    outcomes = [first, second]
    assert sum(isinstance(o, StaleOrder) for o in outcomes) == 1, outcomes
    winner = next(o for o in outcomes if isinstance(o, Order))
    assert await repo.get(contested.id) == winner
    events = await repo.events(contested.id)
    assert [e.status for e in events] == [OrderStatus.PENDING, OrderStatus.ROUTING, winner.status]
    assert events[-1].data["reason"] == winner.fail_reason


async def test_hub_fans_out_by_order_and_user(redis: Redis) -> None:
    channel = f"dxi{uuid4().hex[:8]}:events"
    hub = EventHub(redis, channel)
    await hub.start()
    try:
        order = make_order("fan-user")
        with hub.watch_order(str(order.id)) as by_order, hub.watch_user("fan-user") as by_user:
            await EventPublisher(redis, channel).publish(first_event(order), "fan-user")
            a = await asyncio.wait_for(by_order.get(), 5)
            b = await asyncio.wait_for(by_user.get(), 5)
        assert a == b
        assert (a["orderId"], a["seq"], a["status"]) == (str(order.id), 1, "pending")
        assert hub.watchers == 0
    finally:
        await hub.stop()


async def test_the_wait_channel_carries_only_what_a_trigger_book_needs(redis: Redis) -> None:
    keys = Keys(f"dxi{uuid4().hex[:8]}")
    everything, waits = EventHub(redis, keys.events), EventHub(redis, keys.wait_events)
    heard: dict[str, list[str]] = {"all": [], "wait": []}
    done = asyncio.Event()

    def hear(into: str) -> Callable[[dict[str, Any]], None]:
        def listener(message: dict[str, Any]) -> None:
            heard[into].append(message["status"])
            if len(heard["all"]) == 4 and len(heard["wait"]) == 2:
                done.set()

        return listener

    everything.listen(hear("all"))
    waits.listen(hear("wait"))
    await everything.start()
    await waits.start()
    try:
        order = make_order("wait-user")
        at = datetime.now(UTC)
        events = [first_event(order)]
        for status in (OrderStatus.WAITING, OrderStatus.ROUTING, OrderStatus.FAILED):
            events.append(replace(events[-1], seq=events[-1].seq + 1, status=status, at=at))
        publisher = EventPublisher(redis, keys.events, keys.wait_events)
        for event in events:
            await publisher.publish(event, "wait-user")
        await asyncio.wait_for(done.wait(), 5)
    finally:
        await everything.stop()
        await waits.stop()
    assert heard == {
        "all": ["pending", "waiting", "routing", "failed"],
        "wait": ["waiting", "routing"],
    }


async def test_a_full_inbox_turns_into_a_resync() -> None:
    from dexecutor.bus.events import Subscription

    sub = Subscription(maxsize=2)
    for seq in range(5):
        sub.offer({"seq": seq})
    assert [await sub.get(), await sub.get()] == [{"seq": 0}, {"seq": 1}]
    assert await sub.get() is RESYNC


class CheckedPublisher(EventPublisher):
    """The real publisher; each batch is first checked against the store: every event it
    publishes must already be committed."""

    def __init__(self, redis: Redis, channel: str, repo: OrderRepository) -> None:
        super().__init__(redis, channel)
        self.repo = repo
        self.batches: list[list[tuple[OrderStatus, int]]] = []

    async def publish_many(self, events: Sequence[tuple[OrderEvent, str]]) -> None:
        for event, _ in events:
            stored = await self.repo.events(event.order_id, event.seq - 1)
            assert [(e.seq, e.status) for e in stored] == [(event.seq, event.status)]
        self.batches.append([(event.status, event.seq) for event, _ in events])
        await super().publish_many(events)


async def test_the_engine_stores_then_publishes_its_steps_in_batches(
    pool: asyncpg.Pool, redis: Redis
) -> None:
    """Steps taken together: one statement, then one publish of what was stored. A stale
    step is refused alone, and neither published nor in the way of the others."""
    repo = OrderRepository(pool)
    publisher = CheckedPublisher(redis, f"dxi{uuid4().hex[:8]}:events", repo)
    policy = Policy(max_attempts=3, backoff_base_ms=10, quote_timeout_s=1, internal_error_limit=5)
    engine = Engine(repo, publisher, {}, PgOutbox(pool), policy)
    orders = [make_order("batch-user") for _ in range(6)]
    for order in orders:
        await repo.create(order, first_event(order))
    stale = orders[0]
    await repo.append(stale, stale.event(OrderStatus.ROUTING, datetime.now(UTC)))
    results = await asyncio.gather(
        *(engine._step(order, OrderStatus.ROUTING) for order in orders), return_exceptions=True
    )
    assert isinstance(results[0], StaleOrder)
    assert [r.status for r in results[1:] if isinstance(r, Order)] == [OrderStatus.ROUTING] * 5
    published = [step for batch in publisher.batches for step in batch]
    assert published == [(OrderStatus.ROUTING, 2)] * 5
    assert len(publisher.batches) < 5  # they shared publishes (and statements)
