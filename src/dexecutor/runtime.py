"""Wiring: turn Settings into live connections and the objects that use them.

Built in the app's lifespan or the worker's start-up, never at import time, and
closed in reverse order. Every process holds the event hub (WebSocket fan-out, market
announcements) and a client of the chain (CHAIN_URL), where the one market lives; a
worker process also runs the queue worker, the trigger book and the reconciler.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncpg
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from dexecutor.background import Loops, cancel_and_wait
from dexecutor.bus.events import EventHub, EventPublisher
from dexecutor.bus.market_control import MarketControl
from dexecutor.bus.quotes import QuoteBook
from dexecutor.bus.redis import Keys, connect
from dexecutor.chain.client import ChainClient, ChainVenue
from dexecutor.chain.rpc import Rpc
from dexecutor.config import Settings
from dexecutor.domain.order import EXECUTING
from dexecutor.engine.execute import Engine, Policy
from dexecutor.engine.triggers import TriggerRunner
from dexecutor.heap import HeapKeeper
from dexecutor.market.types import VENUES
from dexecutor.metrics import EngineMetrics
from dexecutor.queue.orders import OrderQueue
from dexecutor.queue.worker import OrderWorker
from dexecutor.store.db import create_pool
from dexecutor.store.orders import OrderRepository
from dexecutor.store.outbox import PgOutbox
from dexecutor.store.watch import StoredEvents
from dexecutor.wallets import Funds, Wallets, funds_of

log = structlog.get_logger(__name__)

RECONCILE_PAGE = 1000
# A worker's young collections: every 10,000 new container objects instead of every 700
# (heap.py). In the overhead benchmark the worker's time in the collector fell from
# about 0.4 s to 0.06 s per 1,500 orders.
WORKER_YOUNG_GC_THRESHOLD = 10_000


@dataclass
class Services:
    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    keys: Keys
    repo: OrderRepository
    quotes: QuoteBook
    queue: OrderQueue
    chain: ChainClient
    rpc: Rpc
    venues: dict[str, ChainVenue]
    engine: Engine
    hub: EventHub
    control: MarketControl
    publisher: EventPublisher
    wallets: Wallets
    funds: Funds
    worker: OrderWorker | None = None
    triggers: TriggerRunner | None = None
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    # Thousands of watchers (API) or in-flight orders (worker) are long-lived objects
    # that full garbage collections would otherwise walk again and again.
    heap: HeapKeeper = field(default_factory=HeapKeeper)
    # Every long-lived loop of the process runs under it; /readyz reads its deaths.
    loops: Loops = field(default_factory=Loops)

    @classmethod
    async def open(cls, settings: Settings, *, worker: bool, watchers: bool = True) -> Services:
        pool = await create_pool(settings.dsn(), max_size=settings.pg_pool_size)
        redis = connect(settings.redis)
        keys = Keys(settings.namespace)
        repo = OrderRepository(pool)
        # Generous: a quote is bounded by QUOTE_TIMEOUT_MS around it, a confirmation
        # by its own wait; this only ends requests to a chain that stopped answering.
        timeout_s = max(10.0, settings.quote_timeout_ms / 500)
        chain = ChainClient(settings.chain, timeout_s=timeout_s)
        rpc = Rpc(
            settings.chain,
            timeout_s=timeout_s,
            rebroadcast_s=settings.rebroadcast_s,
            fee_percentile=settings.priority_fee_percentile,
            fee_cap=settings.priority_fee_max_microlamports,
            slot_s=settings.slot_s,
        )
        publisher = EventPublisher(redis, keys.events, keys.wait_events)
        wallets, funds = funds_of(settings, pool, chain)
        venues = {name: ChainVenue(name, chain, rpc, wallets) for name in VENUES}
        engine = Engine(
            repo,
            publisher,
            venues,
            PgOutbox(pool),
            Policy(
                max_attempts=settings.max_attempts,
                backoff_base_ms=settings.backoff_base_ms,
                quote_timeout_s=settings.quote_timeout_ms / 1000,
                internal_error_limit=settings.internal_error_limit,
            ),
            observer=EngineMetrics(),
            funds=funds,
            router=chain,
        )
        queue = OrderQueue(settings.redis, settings.namespace, redis)
        # A process that serves watchers hears every event; a worker alone only what
        # its trigger book needs.
        loops = Loops()
        hub = EventHub(redis, keys.events if watchers else keys.wait_events, loops)
        if watchers:
            hub.reread_from(StoredEvents(pool))
        if settings.env == "test":
            hub.on_channel(keys.crash_hub, _crash_hub)
        control = MarketControl(redis, keys, chain)
        hub.on_channel(keys.market, control.receive)
        services = cls(
            settings, pool, redis, keys, repo, QuoteBook(redis, keys), queue, chain, rpc, venues,
            engine, hub, control, publisher, wallets, funds, loops=loops,
        )  # fmt: skip
        if worker:
            # The trigger book checks itself against PostgreSQL as often as the
            # reconciler checks the queue: waiting orders are its to recover.
            triggers = TriggerRunner(
                repo, queue, publisher, chain,
                settings.trigger_interval_ms / 1000,
                reconcile_s=settings.reconcile_interval_ms / 1000,
            )  # fmt: skip
            hub.listen(triggers.on_event)
            hub.on_resync(triggers.on_resync)
            control.on_change(triggers.poke)
            services.triggers = triggers
        if worker:
            services.heap = HeapKeeper(young_threshold=WORKER_YOUNG_GC_THRESHOLD)
        services.heap.start()
        await hub.start()
        if services.triggers is not None:
            await services.triggers.start()
        if worker:
            services.worker = OrderWorker(
                engine,
                queue,
                redis,
                settings.redis,
                settings.namespace,
                settings.max_concurrent_orders,
                loops,
            )
            await services.worker.start()
            requeued = await services.reconcile(quiet_s=0)
            log.info("worker started", chain=settings.chain, requeued=requeued)
            services.tasks["reconciler"] = loops.start("reconciler", services._reconcile_forever)
        return services

    async def reconcile(self, quiet_s: float) -> int:
        """Queue again the unfinished orders PostgreSQL holds but the queue has lost.

        Orders that were executing (routing, building, submitted) when their job was
        lost go to the head of the queue: they still hold a place under the cap.
        Also rewrites the global concurrency cap: it lives in Redis and would be gone
        after a flush, leaving workers uncapped.
        """
        await self.queue.set_global_concurrency(self.settings.max_concurrent_orders)
        total = 0
        cursor = None
        while True:  # every unfinished order, a page at a time, oldest first
            page = await self.repo.quiet_unfinished(quiet_s, RECONCILE_PAGE, after=cursor)
            lost = await self.queue.requeue_missing(
                [order_id for _, order_id, _ in page],
                resumed={order_id for _, order_id, status in page if status in EXECUTING},
            )
            total += len(lost)
            if lost:
                log.warning("requeued orders the queue had lost", count=len(lost))
            if len(page) < RECONCILE_PAGE:
                return total
            cursor = page[-1][:2]

    async def _reconcile_forever(self) -> None:
        interval = self.settings.reconcile_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reconcile(quiet_s=interval)
            except (RedisError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                log.warning("reconcile pass skipped", error=str(err))

    async def close(self) -> None:
        for task in self.tasks.values():
            await cancel_and_wait(task)
        if self.triggers is not None:
            await self.triggers.stop()
        if self.worker is not None:
            await self.worker.stop()
        await self.hub.stop()
        await self.heap.stop()
        await self.queue.close()
        await self.rpc.close()
        await self.chain.close()
        await self.redis.aclose()
        await self.pool.close()


def _crash_hub(message: dict[str, object]) -> None:
    """Test-only: a message on the crash channel kills the event hub's loop for real."""
    raise RuntimeError(f"event hub crash requested by a test: {message}")
