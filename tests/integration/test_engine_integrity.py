"""The engine against the real PostgreSQL, Redis and chain: ownership, internal errors,
doomed swaps.

Two engines here stand for two workers sharing one database, as after a BullMQ lock
lapsed: the venues are the real chain venues (over HTTP, to a chain served from this
test), the outbox is the real write-ahead record, and one engine's outbox can be held
at the moment it is about to record (and so send) a swap.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast
from uuid import UUID, uuid4

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from dexecutor.bus.events import EventPublisher
from dexecutor.bus.redis import Keys
from dexecutor.domain.order import Order, OrderStatus, OrderType, first_event
from dexecutor.engine.execute import Engine, Policy
from dexecutor.market.types import VENUES
from dexecutor.market.venue import SignedTx, SubmitRefused
from dexecutor.store.orders import OrderRepository
from dexecutor.store.outbox import PgOutbox
from tests.integration.conftest import Chain, Wired, wired
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
async def keys() -> AsyncIterator[Keys]:
    namespace = f"dxe{uuid4().hex[:10]}"
    yield Keys(namespace)
    await drop_namespace(namespace)


class HeldOutbox(PgOutbox):
    """The real outbox, except that it stops before recording a swap until the test lets
    it go: the worker holding it has routed and built, and is about to send."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.outcome: SignedTx | BaseException | None = None

    async def record(self, order_id: UUID, attempt: int, seq: int, tx: SignedTx) -> SignedTx:
        self.reached.set()
        await self.release.wait()
        try:
            self.outcome = await super().record(order_id, attempt, seq, tx)
        except BaseException as err:
            self.outcome = err
            raise
        return self.outcome


@dataclass
class Worker:
    """One engine as a worker process would build it, over its own pool and chain client."""

    engine: Engine
    repo: OrderRepository
    outbox: PgOutbox
    chain: Wired


@pytest.fixture
async def clients() -> AsyncIterator[list[Wired]]:
    made: list[Wired] = []
    yield made
    for client in made:
        await client.close()


def worker(
    pool: asyncpg.Pool,
    redis: Redis,
    keys: Keys,
    chain: Chain,
    clients: list[Wired],
    *,
    outbox: PgOutbox | None = None,
    max_attempts: int = 3,
    internal_error_limit: int = 5,
) -> Worker:
    repo = OrderRepository(pool)
    made = wired(chain, pool)
    clients.append(made)
    venues = made.venues
    outbox = outbox or PgOutbox(pool)
    policy = Policy(
        max_attempts=max_attempts,
        backoff_base_ms=10,
        quote_timeout_s=2.0,
        internal_error_limit=internal_error_limit,
    )
    engine = Engine(
        repo, EventPublisher(redis, keys.events, keys.wait_events), venues, outbox, policy
    )
    return Worker(engine, repo, outbox, made)


async def new_order(repo: OrderRepository, **fields: Any) -> Order:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "id": uuid4(),
        # A wallet of its own: each test has a fresh chain, where older wallets hold nothing.
        "user_id": f"integrity-{uuid4().hex[:8]}",
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


async def ledger_rows(chain: Chain, order_id: UUID) -> list[asyncpg.Record]:
    """The order's transactions on the chain, in the order they were received."""
    conn = await asyncpg.connect(chain.dsn)
    try:
        return list(
            await conn.fetch(
                "SELECT venue, attempt, status FROM chain_txs WHERE order_id = $1"
                " ORDER BY received_at",
                order_id,
            )
        )
    finally:
        await conn.close()


async def test_a_worker_that_lost_the_order_cannot_send_a_swap(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
    redis: Redis,
    keys: Keys,
    chain: Chain,
    clients: list[Wired],
) -> None:
    held = HeldOutbox(pools[0])
    stale = worker(pools[0], redis, keys, chain, clients, outbox=held)
    owner = worker(pools[1], redis, keys, chain, clients, max_attempts=1)
    order = await new_order(stale.repo)

    # The first worker routes and builds, then stalls just before recording its swap.
    first = asyncio.create_task(stale.engine.process(order.id))
    await asyncio.wait_for(held.reached.wait(), 10)
    building = await owner.repo.get(order.id)
    assert building is not None and building.status is S.BUILDING

    # Its lock lapsed: the second worker takes the order over. Its swap is dropped and,
    # with no attempts left, the order fails.
    for venue in VENUES:
        chain.cluster.faults.arm(venue, "drop", count=1, duration_ms=None, bps=0)
    assert await owner.engine.process(order.id) is None
    after_owner = await owner.repo.events(order.id)
    assert after_owner[-1].status is S.FAILED

    # The first worker wakes up and tries to record its swap: refused, and it stops.
    held.release.set()
    assert await asyncio.wait_for(first, 10) is None
    assert isinstance(held.outcome, SubmitRefused), held.outcome
    assert await owner.repo.events(order.id) == after_owner
    rows = await ledger_rows(chain, order.id)
    assert [(r["venue"], r["attempt"], r["status"]) for r in rows] == [
        (building.dex_used, 1, "dropped")
    ]
    # The order's dex is the ledger's: the one swap sent, on the venue it was built for.
    assert [e.data["dex"] for e in after_owner if e.status is S.SUBMITTED] == [rows[0]["venue"]]


async def test_the_outbox_refuses_a_swap_that_does_not_match_the_building_event(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    pool = pools[0]
    repo = OrderRepository(pool)
    outbox = PgOutbox(pool)
    order = await built(repo, await new_order(repo), "raydium")
    tx = SignedTx(f"sig-{uuid4().hex}", "raydium", "payload")
    wrongs: list[tuple[SignedTx, int, int]] = [
        (SignedTx(tx.signature, "meteora", "p"), order.attempts, order.seq),  # another venue
        (tx, order.attempts + 1, order.seq),  # not this attempt
        (tx, order.attempts, order.seq - 1),  # a writer that read the order before it was built
    ]
    for wrong, attempt, seq in wrongs:
        with pytest.raises(SubmitRefused):
            await outbox.record(order.id, attempt, seq, wrong)
    assert await outbox.recorded(order.id, order.attempts) is None
    sent = await outbox.record(order.id, order.attempts, order.seq, tx)
    # The same attempt asking again (its worker died after recording) gets the same swap.
    again = await outbox.record(
        order.id, order.attempts, order.seq, SignedTx(f"sig-{uuid4().hex}", "raydium", "other")
    )
    assert again == sent == tx
    now = datetime.now(UTC)
    moved = await repo.append(order, order.event(S.SUBMITTED, now, dex="raydium", txHash="x"))
    with pytest.raises(SubmitRefused):  # the order moved on: even its own swap is refused
        await outbox.record(order.id, order.attempts, order.seq, tx)
    assert moved.seq == order.seq + 1


async def test_records_sent_together_share_a_statement_and_each_gets_its_own_answer(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
) -> None:
    """Swaps recorded at once share statements; each sender still gets its own answer:
    its record, the swap recorded before, a refusal, or PostgreSQL's error for its row."""
    pool = pools[0]
    repo = OrderRepository(pool)
    counted = CountedPool(pool)
    outbox = PgOutbox(cast(asyncpg.Pool, counted))
    orders = [await built(repo, await new_order(repo), "raydium") for _ in range(5)]
    fresh, stale, earlier, clash, also_fresh = orders
    first = SignedTx(f"sig-{uuid4().hex}", "raydium", "first", 77)
    assert await outbox.record(earlier.id, earlier.attempts, earlier.seq, first) == first
    together = [await built(repo, await new_order(repo), "raydium") for _ in range(6)]
    counted.fetches = 0
    txs = [SignedTx(f"sig-{uuid4().hex}", "raydium", f"p{i}", 100 + i) for i in range(6)]
    sent = await asyncio.gather(
        *(outbox.record(o.id, o.attempts, o.seq, tx) for o, tx in zip(together, txs, strict=True))
    )
    assert sent == txs
    assert counted.fetches < len(together)  # they shared statements
    txs = [SignedTx(f"sig-{uuid4().hex}", "raydium", f"q{i}", 200 + i) for i in range(5)]
    answers = await asyncio.gather(
        outbox.record(fresh.id, fresh.attempts, fresh.seq, txs[0]),
        outbox.record(stale.id, stale.attempts, stale.seq - 1, txs[1]),
        outbox.record(earlier.id, earlier.attempts, earlier.seq, txs[2]),
        # Another order's signature: PostgreSQL refuses this row, and only this one.
        outbox.record(
            clash.id, clash.attempts, clash.seq, SignedTx(first.signature, "raydium", "x")
        ),
        outbox.record(also_fresh.id, also_fresh.attempts, also_fresh.seq, txs[4]),
        return_exceptions=True,
    )
    assert answers[0] == txs[0] and answers[4] == txs[4]
    assert isinstance(answers[1], SubmitRefused)
    assert answers[2] == first  # the swap recorded before, not the new one
    assert isinstance(answers[3], asyncpg.UniqueViolationError)
    for order, tx in ((fresh, txs[0]), (earlier, first), (also_fresh, txs[4])):
        assert await outbox.recorded(order.id, order.attempts) == tx
    for order in (stale, clash):
        assert await outbox.recorded(order.id, order.attempts) is None


class CountedPool:
    """A pool that counts the statements sent through it (reads of one row included)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.fetches = 0

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        self.fetches += 1
        return await self.pool.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        self.fetches += 1
        return await self.pool.fetchrow(query, *args)


async def test_a_resumed_order_sends_its_recorded_swap_again_and_it_runs_once(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
    redis: Redis,
    keys: Keys,
    chain: Chain,
    clients: list[Wired],
) -> None:
    """A worker died after recording and sending, before writing `submitted`: the next
    one sends the recorded bytes again; the chain runs the signature once."""
    first = worker(pools[0], redis, keys, chain, clients)
    second = worker(pools[1], redis, keys, chain, clients)
    order = await built(first.repo, await new_order(first.repo), "raydium")
    venue = first.chain.venues["raydium"]
    tx = await venue.build(
        order.id, order.attempts, order.user_id, "SOL", "USDC", Decimal(2), Decimal(180)
    )
    recorded = await first.outbox.record(order.id, order.attempts, order.seq, tx)
    await venue.send(recorded)  # and the worker dies here
    assert await second.engine.process(order.id) is None
    done = await second.repo.get(order.id)
    assert done is not None and done.status is S.CONFIRMED
    assert done.tx_hash == tx.signature
    rows = await ledger_rows(chain, order.id)
    assert [(r["attempt"], r["status"]) for r in rows] == [(1, "landed")]


async def test_a_quote_the_market_can_no_longer_meet_fails_before_any_swap(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
    redis: Redis,
    keys: Keys,
    chain: Chain,
    clients: list[Wired],
) -> None:
    w = worker(pools[0], redis, keys, chain, clients, max_attempts=2)
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
    assert await ledger_rows(chain, order.id) == []


async def test_a_limit_order_whose_floor_is_out_of_reach_sends_no_swap(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
    redis: Redis,
    keys: Keys,
    chain: Chain,
    clients: list[Wired],
) -> None:
    w = worker(pools[0], redis, keys, chain, clients, max_attempts=1)
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
    assert await ledger_rows(chain, order.id) == []


async def test_a_deterministic_error_fails_the_order_after_the_bound(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
    redis: Redis,
    keys: Keys,
    chain: Chain,
    clients: list[Wired],
) -> None:
    w = worker(pools[0], redis, keys, chain, clients, internal_error_limit=3)
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
    assert await ledger_rows(chain, order.id) == []


async def test_an_unreachable_redis_is_not_counted_against_the_order(
    pools: tuple[asyncpg.Pool, asyncpg.Pool],
    keys: Keys,
    chain: Chain,
    clients: list[Wired],
) -> None:
    # Nothing listens on this port: every publish fails as a Redis outage does.
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}")
    try:
        w = worker(pools[0], dead, keys, chain, clients, internal_error_limit=1)
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
