"""Accepting and cancelling orders: what happens between a valid request and the queue.

Order of operations is the guarantee: the order and its `pending` event are committed
to PostgreSQL first, then the job is queued, then the event is published. A crash
between commit and enqueue leaves an unfinished order that the reconciler queues.
A limit or sniper order is committed already `waiting` (its `pending` and `waiting`
events in the same statement) and gets no job: never `pending` without a trigger, it
cannot be run as a market order by a worker that finds it. The trigger runner finds
it in PostgreSQL even if its events are never published.
Submissions that arrive together share these steps (group commit): one multi-row
insert, one pipelined queue add and one pipelined publish per batch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

import structlog
from redis.exceptions import RedisError

from dexecutor.chain.client import ChainUnreachable
from dexecutor.domain.order import (
    CANCELLABLE,
    Order,
    OrderEvent,
    OrderStatus,
    OrderType,
    first_event,
)
from dexecutor.engine.execute import Publisher
from dexecutor.engine.triggers import trigger_of
from dexecutor.group_commit import GroupCommit, ItemFailed
from dexecutor.market.types import MarketError
from dexecutor.metrics import ORDERS_ACCEPTED
from dexecutor.store.orders import NewRecord, OrderRepository, StaleOrder

log = structlog.get_logger(__name__)


class Enqueuer(Protocol):
    async def enqueue_many(self, order_ids: Sequence[UUID]) -> None: ...


class BatchPublisher(Publisher, Protocol):
    async def publish_many(self, events: Sequence[tuple[OrderEvent, str]]) -> None: ...


class QuoteLookup(Protocol):
    async def get(self, quote_id: str) -> dict[str, Any] | None: ...


class Placement(Protocol):
    """The funds check a limit or sniper order passes before it is stored: it will
    reserve its input, so the wallet must hold it (MarketError insufficient_funds)."""

    async def check_spend(
        self,
        user_id: str,
        token_in: str,
        token_out: str,
        amount_in: Decimal,
        order_id: UUID | None = None,
        idempotency_key: str | None = None,
    ) -> None: ...


class Refused(Exception):
    """A request the service turns down: carries an HTTP-ish status and an error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class NewOrder:
    user_id: str
    type: OrderType
    token_in: str
    token_out: str
    amount_in: Decimal
    slippage_bps: int
    quote_id: str | None = None
    limit_price: Decimal | None = None
    expires_at: datetime | None = None
    routing: Mapping[str, Any] | None = None  # SPEC §10 options; None for the defaults


class Intake:
    def __init__(
        self,
        repo: OrderRepository,
        queue: Enqueuer,
        publisher: BatchPublisher,
        quotes: QuoteLookup,
        funds: Placement | None = None,
    ) -> None:
        self._funds = funds
        self._repo = repo
        self._queue = queue
        self._publisher = publisher
        self._quotes = quotes
        self._commits: GroupCommit[NewRecord, bool] = GroupCommit(self._store_batch)

    async def close(self) -> None:
        """Finish the batches under way: their callers were promised an answer."""
        await self._commits.drain()

    async def accept(
        self, new: NewOrder, idempotency_key: str | None, fingerprint: str | None
    ) -> tuple[Order, bool]:
        """Store, queue and announce an order. Returns (order, created).

        `fingerprint` tells a retry under the same `idempotency_key` from a different
        order; without a key it is not needed.
        """
        if new.type is not OrderType.MARKET and self._funds is not None:
            await self._check_funds(new, idempotency_key)
        now = datetime.now(UTC)
        quote_min = quote_expiry = None
        if new.quote_id is not None:
            quote_min, quote_expiry = await self._check_quote(new)
        order = Order(
            id=new_order_id(),
            user_id=new.user_id,
            type=new.type,
            token_in=new.token_in,
            token_out=new.token_out,
            amount_in=new.amount_in,
            slippage_bps=new.slippage_bps,
            created_at=now,
            updated_at=now,
            seq=1,
            limit_price=new.limit_price,
            expires_at=new.expires_at,
            quote_id=new.quote_id,
            quote_min_amount_out=quote_min,
            quote_expires_at=quote_expiry,
            client_order_id=idempotency_key,
            routing=new.routing,
        )
        record = born(order, idempotency_key, fingerprint)
        if not await self._commits.submit(record):
            return await self._repo.replayed(order, idempotency_key, fingerprint), False
        return record.order, True

    async def _check_funds(self, new: NewOrder, idempotency_key: str | None) -> None:
        """Refuse (422 insufficient_funds, nothing stored) a waiting order the wallet
        cannot cover. Market orders skip it: their check runs in the engine, so the
        submission path stays free of chain calls. A retry under the same key leaves
        its first order's reservation out, so it replays instead of being refused."""
        try:
            await self._funds.check_spend(  # type: ignore[union-attr]
                new.user_id,
                new.token_in,
                new.token_out,
                new.amount_in,
                idempotency_key=idempotency_key,
            )
        except MarketError as err:
            raise Refused(422, err.reason, err.message) from None
        except ChainUnreachable as err:
            raise Refused(
                503, "chain_unavailable", f"the chain service did not answer: {err}"
            ) from None

    async def _store_batch(self, records: list[NewRecord]) -> list[bool | ItemFailed]:
        """Commit a batch of new orders, then queue its market orders and announce all.

        An order PostgreSQL refuses fails its own request only, not its batch's.
        """
        ids, refused = await self._repo.create_each_on_refusal(records)
        ORDERS_ACCEPTED.inc(len(ids))
        created = [r for r in records if r.order.id in ids]
        market = [r.order.id for r in created if r.order.type is OrderType.MARKET]
        if created:
            try:
                if market:
                    await self._queue.enqueue_many(market)
                await self._publisher.publish_many(
                    [(e, r.order.user_id) for r in created for e in r.events]
                )
            except (RedisError, OSError) as err:
                # Committed is accepted: the reconciler queues market orders once Redis
                # is back, and the trigger runner reads waiting ones from PostgreSQL.
                log.warning("orders stored but not yet queued", orders=len(created), error=str(err))
            for r in created:
                log.info("order accepted", order_id=str(r.order.id), user_id=r.order.user_id)
        return [
            ItemFailed(refused[r.order.id]) if r.order.id in refused else r.order.id in ids
            for r in records
        ]

    async def _check_quote(self, new: NewOrder) -> tuple[Decimal, datetime]:
        assert new.quote_id is not None
        quote = await self._quotes.get(new.quote_id)
        if quote is None:
            raise Refused(422, "unknown_quote", f"quote {new.quote_id} does not exist")
        if (quote["tokenIn"], quote["tokenOut"], quote["amountIn"]) != (
            new.token_in,
            new.token_out,
            new.amount_in,
        ):
            raise Refused(
                422,
                "quote_mismatch",
                f"quote {new.quote_id} was for {quote['amountIn']} {quote['tokenIn']} -> "
                f"{quote['tokenOut']}; the order must use the same pair and amount",
            )
        return quote["minAmountOut"], quote["expiresAt"]

    async def cancel(self, order_id: UUID) -> Order:
        """Cancel an order that has not started routing; Refused(409) once it has."""
        for _ in range(5):
            order = await self._repo.get(order_id)
            if order is None:
                raise Refused(404, "not_found", f"order {order_id} does not exist")
            if order.status not in CANCELLABLE:
                raise Refused(
                    409,
                    "not_cancellable",
                    f"order {order_id} is {order.status.value}; only pending or waiting "
                    "orders can be cancelled",
                )
            event = order.event(
                OrderStatus.CANCELLED, datetime.now(UTC), reason="cancelled_by_user"
            )
            try:
                after = await self._repo.append(order, event)
            except StaleOrder:
                continue  # a worker moved it meanwhile: look again
            try:
                await self._publisher.publish(event, order.user_id)
            except (RedisError, OSError) as err:
                # Committed is cancelled: watchers find the event in the store instead.
                log.warning(
                    "cancel stored but not published", order_id=str(order_id), error=str(err)
                )
            return after
        raise Refused(409, "not_cancellable", f"order {order_id} is changing; try again")


_RANDOM_IDS = 256
_random = memoryview(b"")


def new_order_id() -> UUID:
    """A random (version 4) UUID, as `uuid4()` makes, from a buffer of the system's
    random bytes read 256 ids at a time: one system call per 256 orders, not one each."""
    global _random
    if not _random:
        _random = memoryview(os.urandom(16 * _RANDOM_IDS))
    raw, _random = _random[:16], _random[16:]
    return UUID(bytes=bytes(raw), version=4)


def _forget_random() -> None:
    """A forked child must not hand out the ids its parent will."""
    global _random
    _random = memoryview(b"")


os.register_at_fork(after_in_child=_forget_random)


def born(order: Order, idempotency_key: str | None, fingerprint: str | None) -> NewRecord:
    """A new order with the events it is stored with.

    A market order is born `pending` and queued. A limit or sniper order is born
    `waiting` in the same commit: it has no job, and its trigger alone may start it.
    """
    pending = first_event(order)
    if order.type is OrderType.MARKET:
        return NewRecord(order, pending, idempotency_key, fingerprint)
    waiting = order.event(OrderStatus.WAITING, order.created_at, trigger=trigger_of(order))
    return NewRecord(order.apply(waiting), pending, idempotency_key, fingerprint, (waiting,))


def expiry(ttl_seconds: int | None, expires_at: datetime | None) -> datetime | None:
    if expires_at is not None:
        return expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
    if ttl_seconds is not None:
        return datetime.now(UTC) + timedelta(seconds=ttl_seconds)
    return None
