"""Limit and sniper orders while they wait: when to fire them, when they expire.

`TriggerBook` is pure: it holds the waiting orders, sorted so that a tick only looks
at limit orders the market could possibly fill (limit price at or below the best mid
price; a quote is never better than its venue's mid). `TriggerRunner` is the edge: it
keeps the book in step with PostgreSQL and the event stream, evaluates it whenever
the market moves (each market tick, and at once on a launch or price move), queues
fired orders for execution and writes expiries. Waiting orders hold no worker slot.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import heapq
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

import structlog

from dexecutor import jsoncodec
from dexecutor.background import cancel_and_wait
from dexecutor.domain.order import Order, OrderStatus, OrderType
from dexecutor.market.simulation import Market
from dexecutor.market.types import VENUES, MarketError
from dexecutor.store.orders import StaleOrder

log = structlog.get_logger(__name__)

Pair = tuple[str, str]
# A fired order is fired again only if it is still waiting this much later.
REFIRE_AFTER_S = 10.0


@dataclass(frozen=True, slots=True)
class Fired:
    order: Order
    price: Decimal | None  # the quote that met the limit (None for a launch)


class TriggerBook:
    """Waiting orders indexed for cheap evaluation. No I/O."""

    def __init__(self) -> None:
        self._orders: dict[UUID, Order] = {}
        self._limits: dict[Pair, list[tuple[Decimal, str]]] = defaultdict(list)
        self._snipers: dict[str, set[UUID]] = defaultdict(set)
        self._expiries: list[tuple[datetime, str]] = []
        self._fired: dict[UUID, float] = {}

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, order_id: UUID) -> bool:
        return order_id in self._orders

    def add(self, order: Order) -> None:
        if order.id in self._orders or order.status is not OrderStatus.WAITING:
            return
        self._orders[order.id] = order
        if order.type is OrderType.LIMIT and order.limit_price is not None:
            bisect.insort(
                self._limits[(order.token_in, order.token_out)], (order.limit_price, str(order.id))
            )
        elif order.type is OrderType.SNIPER:
            self._snipers[order.token_out].add(order.id)
        if order.expires_at is not None:
            heapq.heappush(self._expiries, (order.expires_at, str(order.id)))

    def remove(self, order_id: UUID) -> None:
        order = self._orders.pop(order_id, None)
        self._fired.pop(order_id, None)
        if order is None:
            return
        if order.type is OrderType.LIMIT and order.limit_price is not None:
            book = self._limits[(order.token_in, order.token_out)]
            i = bisect.bisect_left(book, (order.limit_price, str(order.id)))
            if i < len(book) and book[i][1] == str(order.id):
                del book[i]
        elif order.type is OrderType.SNIPER:
            self._snipers[order.token_out].discard(order.id)
        # expiry heap entries of removed orders are skipped lazily

    def expired(self, now: datetime) -> list[Order]:
        out = []
        while self._expiries and self._expiries[0][0] <= now:
            _, key = heapq.heappop(self._expiries)
            order = self._orders.get(UUID(key))
            if order is not None:
                out.append(order)
        return out

    def due(
        self,
        mids: Callable[[str, str], Decimal | None],
        best_price: Callable[[Order], Decimal | None],
        tradable: Callable[[str], bool],
        now: float,
    ) -> list[Fired]:
        """Orders whose trigger is met now: limits quoted at or better, snipers' pools open."""
        fired: list[Fired] = []
        for (token_in, token_out), book in self._limits.items():
            if not book:
                continue
            mid = mids(token_in, token_out)
            if mid is None:
                continue
            for limit, key in book:
                if limit > mid:
                    break  # sorted: every later order wants even more
                order = self._orders[UUID(key)]
                if not self._may_fire(order.id, now):
                    continue
                price = best_price(order)
                if price is not None and price >= limit:
                    fired.append(Fired(order, price))
        for token, ids in self._snipers.items():
            if ids and tradable(token):
                for order_id in ids:
                    if self._may_fire(order_id, now):
                        fired.append(Fired(self._orders[order_id], None))
        for f in fired:
            self._fired[f.order.id] = now
        return fired

    def _may_fire(self, order_id: UUID, now: float) -> bool:
        at = self._fired.get(order_id)
        return at is None or now - at >= REFIRE_AFTER_S


class WaitingStore(Protocol):
    async def get(self, order_id: UUID) -> Order | None: ...
    async def waiting(self) -> list[Order]: ...
    async def append(self, order: Order, event: Any) -> Order: ...


class Enqueue(Protocol):
    async def enqueue(self, order_id: UUID) -> None: ...


class Publish(Protocol):
    async def publish(self, event: Any, user_id: str) -> None: ...


class TriggerRunner:
    def __init__(
        self,
        repo: WaitingStore,
        queue: Enqueue,
        publisher: Publish,
        market: Market,
        clock: Callable[[], float],
        interval_s: float,
    ) -> None:
        self._repo = repo
        self._queue = queue
        self._publisher = publisher
        self._market = market
        self._clock = clock
        self._interval = interval_s
        self.book = TriggerBook()
        self._wake = asyncio.Event()
        self._reload = True
        self._arrived: asyncio.Queue[UUID] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    # -- hooks for the event hub (synchronous, called on each message) --
    def on_event(self, message: dict[str, Any]) -> None:
        order_id = UUID(message["orderId"])
        if message["status"] == OrderStatus.WAITING.value:
            self._arrived.put_nowait(order_id)
            self._wake.set()
        elif order_id in self.book:
            self.book.remove(order_id)

    def on_resync(self) -> None:
        self._reload = True
        self._wake.set()

    def poke(self) -> None:
        """The market changed (a launch, a price move): evaluate now."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="triggers")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            try:
                await self.tick()
            except (OSError, ConnectionError) as err:
                log.warning("trigger pass skipped", error=str(err))
            except Exception as err:  # the loop must outlive one bad pass; log it loudly
                log.exception("trigger pass failed", error=repr(err))

    async def tick(self) -> None:
        if self._reload:
            self._reload = False
            fresh = TriggerBook()
            for order in await self._repo.waiting():
                fresh.add(order)
            self.book = fresh
        while not self._arrived.empty():
            arrived = await self._repo.get(self._arrived.get_nowait())
            if arrived is not None:
                self.book.add(arrived)
        now = self._clock()
        self._market.advance(now)
        for order in self.book.expired(datetime.now(UTC)):
            await self._expire(order)
        started = time.perf_counter()
        fired = self.book.due(self._best_mid, self._best_price, self._tradable, now)
        for f in fired:
            log.info(
                "trigger met", order_id=str(f.order.id), price=str(f.price) if f.price else None
            )
            await self._queue.enqueue(f.order.id)
        if len(self.book) > 1000:
            log.debug(
                "trigger pass", waiting=len(self.book), ms=(time.perf_counter() - started) * 1000
            )

    async def _expire(self, order: Order) -> None:
        current = await self._repo.get(order.id)
        self.book.remove(order.id)
        if current is None or current.status is not OrderStatus.WAITING:
            return
        event = current.event(
            OrderStatus.EXPIRED,
            datetime.now(UTC),
            reason="expired",
            message=f"the order expired at {_iso(order.expires_at)} before its trigger was met",
        )
        try:
            await self._repo.append(current, event)
        except StaleOrder:
            return  # fired or cancelled meanwhile
        await self._publisher.publish(event, current.user_id)

    def _best_mid(self, token_in: str, token_out: str) -> Decimal | None:
        best: Decimal | None = None
        for venue in VENUES:
            try:
                mid = self._market.mid_price(venue, token_in, token_out, self._clock())
            except MarketError:
                continue
            best = mid if best is None else max(best, mid)
        return best

    def _best_price(self, order: Order) -> Decimal | None:
        best: Decimal | None = None
        for venue in VENUES:
            try:
                q = self._market.quote(
                    venue, order.token_in, order.token_out, order.amount_in, self._clock()
                )
            except MarketError:
                continue
            best = q.price if best is None else max(best, q.price)
        return best

    def _tradable(self, token: str) -> bool:
        return self._market.is_tradable(token)


def _iso(at: datetime | None) -> str:
    return jsoncodec.iso(at) if at is not None else "-"


def trigger_of(order: Order) -> dict[str, Any]:
    """What a waiting order waits for, as the `waiting` event shows it."""
    trigger: dict[str, Any]
    if order.type is OrderType.LIMIT:
        trigger = {
            "kind": "limit_price",
            "limitPrice": order.limit_price,
            "description": (
                f"a quote of at least {order.limit_price} {order.token_out} per {order.token_in}"
            ),
        }
    else:
        trigger = {
            "kind": "pool_launch",
            "token": order.token_out,
            "description": f"a pool for {order.token_out} with liquidity",
        }
    if order.expires_at is not None:
        trigger["expiresAt"] = order.expires_at
    return trigger
