"""Limit and sniper orders while they wait: when to fire them, when they expire.

`TriggerBook` is pure: it holds the waiting orders, sorted so that a tick only looks
at limit orders the market could possibly fill (limit price at or below the best mid
price; a quote is never better than its venue's mid). `TriggerRunner` is the edge: it
keeps the book in step with PostgreSQL and the event stream, evaluates it against the
chain's market every tick (and at once on a launch or price move) with one read of
every mid and tradability it needs, and one more for the sizes it must price, queues
fired orders for execution and writes expiries. Waiting orders hold no worker slot.

PostgreSQL is the truth and the book a cache of it. Events make the book quick; they
can be lost (a publish that failed, a read that failed after the event was taken), so
every few seconds the runner checks the book against PostgreSQL's waiting orders and
mends it: it adds the ones it lacks, drops the ones no longer waiting, and re-arms the
expiry of any whose time has passed. A step that fails puts back what it took, and a
fired order's job that BullMQ gave up on is replaced, never mistaken for a duplicate.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import heapq
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

import structlog

from dexecutor import jsoncodec
from dexecutor.background import cancel_and_wait
from dexecutor.domain.order import Order, OrderStatus, OrderType
from dexecutor.market.venue import MarketSnapshot, MarketView
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

    def ids(self) -> list[UUID]:
        return list(self._orders)

    def expired(self, now: datetime) -> list[Order]:
        """Take the orders due to expire off the expiry heap (`rearm` puts one back)."""
        out: dict[UUID, Order] = {}
        while self._expiries and self._expiries[0][0] <= now:
            _, key = heapq.heappop(self._expiries)
            order = self._orders.get(UUID(key))
            if order is not None:
                out[order.id] = order
        return list(out.values())

    def rearm(self, order_id: UUID) -> None:
        """Put an order's expiry back on the heap: its expiry was taken but not written."""
        order = self._orders.get(order_id)
        if order is not None and order.expires_at is not None:
            heapq.heappush(self._expiries, (order.expires_at, str(order.id)))

    def pairs(self) -> list[Pair]:
        """The pairs some waiting limit order is on."""
        return [pair for pair, book in self._limits.items() if book]

    def sniper_tokens(self) -> list[str]:
        return [token for token, ids in self._snipers.items() if ids]

    def candidates(self, mids: Callable[[str, str], Decimal | None], now: float) -> list[Order]:
        """Limit orders the market might fill now (limit at or below the best mid)."""
        found: list[Order] = []
        for (token_in, token_out), book in self._limits.items():
            mid = mids(token_in, token_out) if book else None
            if mid is None:
                continue
            for limit, key in book:
                if limit > mid:
                    break
                order = self._orders[UUID(key)]
                if self._may_fire(order.id, now):
                    found.append(order)
        return found

    def due(
        self,
        mids: Callable[[str, str], Decimal | None],
        best_price: Callable[[Order], Decimal | None],
        tradable: Callable[[str], bool],
        now: float,
    ) -> list[Fired]:
        """Orders whose trigger is met now: limits quoted at or better, snipers' pools open."""
        fired: list[Fired] = []
        for order in self.candidates(mids, now):
            price = best_price(order)
            if price is not None and order.limit_price is not None and price >= order.limit_price:
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
    async def waiting(self, order_ids: Sequence[UUID] | None = None) -> list[Order]: ...
    async def waiting_ids(self) -> list[tuple[UUID, bool]]: ...
    async def append(self, order: Order, event: Any) -> Order: ...


class Enqueue(Protocol):
    async def requeue(self, order_id: UUID) -> bool: ...


class Publish(Protocol):
    async def publish(self, event: Any, user_id: str) -> None: ...


class TriggerRunner:
    def __init__(
        self,
        repo: WaitingStore,
        queue: Enqueue,
        publisher: Publish,
        market: MarketView,
        interval_s: float,
        reconcile_s: float = 5.0,
    ) -> None:
        self._repo = repo
        self._queue = queue
        self._publisher = publisher
        self._market = market
        self._interval = interval_s
        self._reconcile_s = reconcile_s
        self.book = TriggerBook()
        self._wake = asyncio.Event()
        self._next_reconcile = 0.0  # time.monotonic() of the next check against PostgreSQL
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
        """Events were missed: check the book against PostgreSQL at once."""
        self._next_reconcile = 0.0
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
        await self._take_arrivals()
        if time.monotonic() >= self._next_reconcile:
            await self.reconcile()
            self._next_reconcile = time.monotonic() + self._reconcile_s
        now = time.monotonic()
        expired = self.book.expired(datetime.now(UTC))
        written = 0
        try:
            for order in expired:
                await self._expire(order)
                written += 1
        finally:
            for order in expired[written:]:
                self.book.rearm(order.id)
        started = time.perf_counter()
        fired = await self._due(now)
        for f in fired:
            log.info(
                "trigger met", order_id=str(f.order.id), price=str(f.price) if f.price else None
            )
            # Replaces a job BullMQ gave up on; a live one (the order is already
            # routing, or queued) is left alone, so a refire is a no-op.
            await self._queue.requeue(f.order.id)
        if len(self.book) > 1000:
            log.debug(
                "trigger pass", waiting=len(self.book), ms=(time.perf_counter() - started) * 1000
            )

    async def _take_arrivals(self) -> None:
        """Read the orders announced as waiting; if the read fails, they stay announced."""
        taken: list[UUID] = []
        while not self._arrived.empty():
            taken.append(self._arrived.get_nowait())
        if not taken:
            return
        try:
            for arrived in await self._repo.waiting(taken):
                self.book.add(arrived)
            taken = []
        finally:
            for order_id in taken:
                self._arrived.put_nowait(order_id)

    async def reconcile(self) -> None:
        """Make the book hold exactly PostgreSQL's waiting orders, and no expiry overdue.

        Two narrow columns of every waiting order, then full rows only of those the
        book lacks: at the start that is all of them, later only those whose events
        were lost. An order is only ever added or dropped here, never half-changed.
        """
        stored = dict(await self._repo.waiting_ids())
        for order_id in self.book.ids():
            if order_id not in stored:
                self.book.remove(order_id)  # it left waiting and the book missed it
        missing = [order_id for order_id in stored if order_id not in self.book]
        if missing:
            for order in await self._repo.waiting(missing):
                self.book.add(order)
            log.info("trigger book mended from PostgreSQL", added=len(missing))
        for order_id, due in stored.items():
            if due:
                self.book.rearm(order_id)

    async def _expire(self, order: Order) -> None:
        current = await self._repo.get(order.id)
        if current is None or current.status is not OrderStatus.WAITING:
            self.book.remove(order.id)
            return
        event = current.event(OrderStatus.EXPIRED, datetime.now(UTC), **expired_because(order))
        try:
            await self._repo.append(current, event)
        except StaleOrder:
            self.book.remove(order.id)
            return  # fired or cancelled meanwhile
        self.book.remove(order.id)
        await self._publisher.publish(event, current.user_id)

    async def _due(self, now: float) -> list[Fired]:
        """Evaluate the book against the chain: the mids first, then the sizes to price."""
        pairs, tokens = self.book.pairs(), self.book.sniper_tokens()
        if not pairs and not tokens:
            return []
        snap = await self._market.snapshot(pairs, [], tokens)
        sizes = sorted(
            {
                (o.token_in, o.token_out, o.amount_in)
                for o in self.book.candidates(snap.best_mid, now)
            }
        )
        priced = await self._market.snapshot([], sizes, []) if sizes else snap
        return self.book.due(
            snap.best_mid,
            lambda order: _price(priced, order),
            lambda token: snap.tradable.get(token, False),
            now,
        )


def _price(snap: MarketSnapshot, order: Order) -> Decimal | None:
    return snap.prices.get((order.token_in, order.token_out, order.amount_in))


def _iso(at: datetime | None) -> str:
    return jsoncodec.iso(at) if at is not None else "-"


def expired_because(order: Order) -> dict[str, Any]:
    """The fields of an `expired` event, whoever writes it (the trigger runner, a worker)."""
    return {
        "reason": "expired",
        "message": f"the order expired at {_iso(order.expires_at)} before its trigger was met",
    }


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
