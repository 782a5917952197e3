"""The engine against the real PostgreSQL and Redis: ownership, internal errors, doomed swaps.

Two engines here stand for two workers sharing one database, as after a BullMQ lock
lapsed: the venues are the real mock venues over the real ledger, and one engine's
venue can be held at the moment it is about to send a swap.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from dexecutor.bus.events import EventPublisher
from dexecutor.bus.faults import RedisFaultBoard
from dexecutor.bus.redis import Keys
from dexecutor.domain.order import Order, OrderStatus, OrderType, first_event
from dexecutor.engine.execute import Engine, Policy
from dexecutor.market.simulation import Market, MarketParams
from dexecutor.market.types import VENUES
from dexecutor.market.venue import MarketClock, MockVenue, SubmitRefused, TxRecord
from dexecutor.store.ledger import PgLedger
from dexecutor.store.orders import OrderRepository
from tests.support import drop_namespace, free_port

S = OrderStatus


@pytest.fixture
async def pools(database: str) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    """One pool per engine: two workers never share connections."""
    first = await asyncpg.create_pool(database, min_size=1, max_size=4)
    second = await asyncpg.create_pool(database, min_size=1, max_size=4)
    assert first is not None and second is not None
    yield first, second
    await first.close()
    await second.close()


@pytest.fixture
def market() -> Market:
    """One market for every engine of a test, as in one process."""
    return Market(MarketParams.preset("calm"), seed=7)


@pytest.fixture
async def keys() -> AsyncIterator[Keys]:
    namespace = f"dxe{uuid4().hex[:10]}"
    yield Keys(namespace)
    await drop_namespace(namespace)


class HeldVenue(MockVenue):
    """A mock venue that stops before sending a swap until the test lets it go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.outcome: TxRecord | BaseException | None = None

    async def submit(self, *args: Any, **kwargs: Any) -> TxRecord:
        self.reached.set()
        await self.release.wait()
        try:
            self.outcome = await super().submit(*args, **kwargs)
        except BaseException as err:
            self.outcome = err
            raise
        return self.outcome


@dataclass
class Worker:
    """One engine as a worker process would build it, over its own pool."""

    engine: Engine
    repo: OrderRepository
    venues: dict[str, MockVenue]


def worker(
    pool: asyncpg.Pool,
    redis: Redis,
    keys: Keys,
    market: Market,
    *,
    venue_type: type[MockVenue] = MockVenue,
    max_attempts: int = 3,
    internal_error_limit: int = 5,
) -> Worker:
    repo = OrderRepository(pool)
    ledger = PgLedger(pool)
    board = RedisFaultBoard(redis, keys)
    clock = MarketClock()
    venues: dict[str, MockVenue] = {
        name: venue_type(
            name,
            market,
            clock,
            ledger,
            board,
            seed=7,
            quote_latency_ms=(0, 0),
            swap_latency_ms=(10, 20),
            failure_rate=0.0,
        )
        for name in VENUES
    }
    policy = Policy(
        max_attempts=max_attempts,
        backoff_base_ms=10,
        quote_timeout_s=2.0,
        internal_error_limit=internal_error_limit,
    )
    engine = Engine(repo, EventPublisher(redis, keys.events, keys.wait_events), venues, policy)
    return Worker(engine, repo, venues)


async def new_order(repo: OrderRepository, **fields: Any) -> Order:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "id": uuid4(),
        "user_id": "integrity",
        "type": OrderType.MARKET,
        "token_in": "SOL",
        "token_out": "USDC",
        "amount_in": Decimal(2),
        "slippage_bps": 100,
        "created_at": now,
        "updated_at": now,
        "seq": 1,
    }
    order = Order(**{**values, **fields})
    await repo.create(order, first_event(order))
    return order


async def built(repo: OrderRepository, order: Order, venue: str) -> Order:
    """The order routed and built for `venue`, as a worker would leave it."""
    now = datetime.now(UTC)
    order = await repo.append(order, order.event(S.ROUTING, now))
    return await repo.append(
        order,
        order.event(
            S.BUILDING, now, dex=venue, route=["SOL", "USDC"], quotes={},
            expectedAmountOut=Decimal(190), minAmountOut=Decimal(180),
        ),
    )  # fmt: skip


async def ledger_rows(pool: asyncpg.Pool, order_id: UUID) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT venue, attempt, status FROM mock_ledger WHERE order_id = $1"
            " ORDER BY submitted_at",
            order_id,
        )
    )


async def test_a_worker_that_lost_the_order_cannot_send_a_swap(
    pools: tuple[asyncpg.Pool, asyncpg.Pool], redis: Redis, keys: Keys, market: Market
) -> None:
    stale = worker(pools[0], redis, keys, market, venue_type=HeldVenue)
    owner = worker(pools[1], redis, keys, market, max_attempts=1)
    order = await new_order(stale.repo)

    # The first worker routes and builds, then stalls just before sending the swap.
    first = asyncio.create_task(stale.engine.process(order.id))
    held = [v for v in stale.venues.values() if isinstance(v, HeldVenue)]
    await asyncio.wait_for(
        asyncio.wait(
            [asyncio.create_task(v.reached.wait()) for v in held],
            return_when=asyncio.FIRST_COMPLETED,
        ),
        10,
    )
    building = await owner.repo.get(order.id)
    assert building is not None and building.status is S.BUILDING

    # Its lock lapsed: the second worker takes the order over. Its swap is dropped and,
    # with no attempts left, the order fails.
    board = RedisFaultBoard(redis, keys)
    for venue in VENUES:
        await board.arm(venue, "drop", count=1, duration_ms=None, bps=0)
    assert await owner.engine.process(order.id) is None
    after_owner = await owner.repo.events(order.id)
    assert after_owner[-1].status is S.FAILED

    # The first worker wakes up and tries to send its swap: refused, and it stops.
    for venue in held:
        venue.release.set()
    assert await asyncio.wait_for(first, 10) is None
    refused = [v.outcome for v in held if v.outcome is not None]
    assert len(refused) == 1 and isinstance(refused[0], SubmitRefused), refused
    assert await owner.repo.events(order.id) == after_owner
    rows = await ledger_rows(pools[1], order.id)
    assert [(r["venue"], r["attempt"], r["status"]) for r in rows] == [
        (building.dex_used, 1, "dropped")
    ]
    # The order's dex is the ledger's: the one swap sent, on the venue it was built for.
    assert [e.data["dex"] for e in after_owner if e.status is S.SUBMITTED] == [rows[0]["venue"]]


async def test_the_ledger_refuses_a_swap_that_does_not_match_the_building_event(
    pools: tuple[asyncpg.Pool, asyncpg.Pool], redis: Redis, keys: Keys, market: Market
) -> None:
    pool = pools[0]
    repo = OrderRepository(pool)
    ledger = PgLedger(pool)
    order = await built(repo, await new_order(repo), "raydium")
    now = datetime.now(UTC)
    tx = TxRecord(
        tx_hash=f"tx-{uuid4().hex}",
        venue="raydium",
        order_id=order.id,
        attempt=order.attempts,
        token_in="SOL",
        token_out="USDC",
        amount_in=Decimal(2),
        min_amount_out=Decimal(180),
        status="pending",
        submitted_at=now,
        lands_at=now + timedelta(seconds=1),
    )
    wrongs: list[tuple[dict[str, Any], int]] = [
        ({"venue": "meteora"}, order.seq),  # not the venue the order was built for
        ({"attempt": order.attempts + 1}, order.seq),  # not this attempt
        ({}, order.seq - 1),  # a writer that read the order before it was built
    ]
    for wrong, seq in wrongs:
        with pytest.raises(SubmitRefused):
            await ledger.submit(replace(tx, **wrong), seq)
    assert await ledger_rows(pool, order.id) == []
    sent = await ledger.submit(tx, order.seq)
    # The same attempt asking again (its worker died after sending) gets the same swap.
    again = await ledger.submit(replace(tx, tx_hash=f"tx-{uuid4().hex}"), order.seq)
    assert again.tx_hash == sent.tx_hash == tx.tx_hash
    assert len(await ledger_rows(pool, order.id)) == 1
    moved = await repo.append(order, order.event(S.SUBMITTED, now, dex="raydium", txHash="x"))
    with pytest.raises(SubmitRefused):  # the order moved on: even its own swap is refused
        await ledger.submit(tx, order.seq)
    assert moved.seq == order.seq + 1


async def test_a_quote_the_market_can_no_longer_meet_fails_before_any_swap(
    pools: tuple[asyncpg.Pool, asyncpg.Pool], redis: Redis, keys: Keys, market: Market
) -> None:
    w = worker(pools[0], redis, keys, market, max_attempts=2)
    order = await new_order(
        w.repo,
        quote_id="q-unreachable",
        quote_min_amount_out=Decimal(10) ** 9,
        quote_expires_at=datetime.now(UTC) + timedelta(minutes=5),
    )
    delay = await w.engine.process(order.id)
    assert delay is not None
    assert await w.engine.process(order.id) is None
    events = await w.repo.events(order.id)
    assert [e.status for e in events] == [S.PENDING, S.ROUTING, S.RETRYING, S.ROUTING, S.FAILED]
    assert {e.data["reason"] for e in events[2::2]} == {"slippage_exceeded"}
    assert events[-1].data["retryable"] is True
    assert await ledger_rows(pools[0], order.id) == []


async def test_a_limit_order_whose_floor_is_out_of_reach_sends_no_swap(
    pools: tuple[asyncpg.Pool, asyncpg.Pool], redis: Redis, keys: Keys, market: Market
) -> None:
    w = worker(pools[0], redis, keys, market, max_attempts=1)
    order = await new_order(
        w.repo,
        type=OrderType.LIMIT,
        limit_price=Decimal(10) ** 6,
        expires_at=datetime.now(UTC) + timedelta(minutes=5),
    )
    waiting = await w.repo.append(order, order.event(S.WAITING, datetime.now(UTC)))
    assert waiting.status is S.WAITING
    assert await w.engine.process(order.id) is None
    events = await w.repo.events(order.id)
    assert [e.status for e in events] == [S.PENDING, S.WAITING, S.ROUTING, S.FAILED]
    assert events[-1].data["reason"] == "slippage_exceeded"
    assert await ledger_rows(pools[0], order.id) == []


async def test_a_deterministic_error_fails_the_order_after_the_bound(
    pools: tuple[asyncpg.Pool, asyncpg.Pool], redis: Redis, keys: Keys, market: Market
) -> None:
    w = worker(pools[0], redis, keys, market, internal_error_limit=3)
    order = await new_order(w.repo)
    # A row this deployment cannot process: built for a venue it does not run.
    await built(w.repo, order, "orca")
    for _ in range(2):
        with pytest.raises(KeyError):
            await w.engine.process(order.id)
    assert await w.engine.process(order.id) is None
    stored = await w.repo.get(order.id)
    assert stored is not None
    assert (stored.status, stored.fail_reason) == (S.FAILED, "internal_error")
    count = await pools[0].fetchval("SELECT internal_errors FROM orders WHERE id = $1", order.id)
    assert count == 3
    assert await ledger_rows(pools[0], order.id) == []


async def test_an_unreachable_redis_is_not_counted_against_the_order(
    pools: tuple[asyncpg.Pool, asyncpg.Pool], keys: Keys, market: Market
) -> None:
    # Nothing listens on this port: every publish fails as a Redis outage does.
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}")
    try:
        w = worker(pools[0], dead, keys, market, internal_error_limit=1)
        order = await new_order(w.repo)
        for _ in range(3):
            with pytest.raises(RedisConnectionError):
                await w.engine.process(order.id)
        stored = await w.repo.get(order.id)
        assert stored is not None and not stored.is_terminal
        count = await pools[0].fetchval(
            "SELECT internal_errors FROM orders WHERE id = $1", order.id
        )
        assert count == 0
    finally:
        await dead.aclose()
