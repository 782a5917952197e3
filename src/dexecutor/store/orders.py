"""The order repository: orders and their events in PostgreSQL, spoken in domain types.

Each status change is one SQL statement that updates the order row *and* appends its
event, guarded by the sequence number the caller last saw. A writer holding a stale
copy (say, a worker that lost its job lock) changes nothing and is told so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from dexecutor import jsoncodec
from dexecutor.domain.order import TERMINAL, Order, OrderEvent, OrderStatus, OrderType


class StaleOrder(Exception):
    """The order moved on since it was read; the caller's step must not be applied."""


class IdempotencyConflict(Exception):
    """The same Idempotency-Key was used before with a different request body."""

    def __init__(self, order_id: UUID) -> None:
        super().__init__(f"idempotency key already used for order {order_id}")
        self.order_id = order_id


_ORDER_COLUMNS = (
    "id, user_id, type, token_in, token_out, amount_in, slippage_bps, limit_price, "
    "expires_at, quote_id, quote_min_amount_out, quote_expires_at, status, seq, attempts, "
    "dex_used, quotes, "
    "expected_amount_out, min_amount_out, tx_hash, executed_price, amount_out, fail_reason, "
    "created_at, updated_at"
)

# Columns a new order sets; the outcome columns start NULL. One statement stores any
# number of orders with their first events (group commit: one round trip and one WAL
# flush for every submission that arrived together).
_NEW_COLUMNS = (
    ("id", "uuid"), ("user_id", "text"), ("type", "text"), ("token_in", "text"),
    ("token_out", "text"), ("amount_in", "numeric"), ("slippage_bps", "int"),
    ("limit_price", "numeric"), ("expires_at", "timestamptz"), ("quote_id", "text"),
    ("quote_min_amount_out", "numeric"), ("quote_expires_at", "timestamptz"),
    ("status", "text"), ("seq", "int"), ("attempts", "int"), ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"), ("idempotency_key", "text"), ("request_hash", "text"),
)  # fmt: skip
_EVENT_COLUMNS = (
    ("order_id", "uuid"), ("seq", "int"), ("status", "text"), ("attempt", "int"),
    ("at", "timestamptz"), ("data", "text"),
)  # fmt: skip


def _unnest(columns: Sequence[tuple[str, str]], first: int) -> str:
    return ", ".join(f"${first + i}::{kind}[]" for i, (_, kind) in enumerate(columns))


_CREATE_MANY = f"""
WITH o AS (
    INSERT INTO orders ({", ".join(name for name, _ in _NEW_COLUMNS)})
    SELECT * FROM unnest({_unnest(_NEW_COLUMNS, 1)})
    ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
)
INSERT INTO order_events (order_id, seq, status, attempt, at, data)
SELECT e.order_id, e.seq, e.status, e.attempt, e.at, e.data::jsonb
FROM unnest({_unnest(_EVENT_COLUMNS, len(_NEW_COLUMNS) + 1)})
    AS e({", ".join(name for name, _ in _EVENT_COLUMNS)})
JOIN o ON o.id = e.order_id
RETURNING order_id
"""


@dataclass(frozen=True, slots=True)
class NewRecord:
    """An order to store with its first event, and the idempotency facts of its request."""

    order: Order
    event: OrderEvent
    idempotency_key: str | None = None
    request_hash: str | None = None


_APPEND = """
WITH u AS (
    UPDATE orders SET status = $3, seq = $4, attempts = $5, dex_used = $6, quotes = $7::jsonb,
        expected_amount_out = $8, min_amount_out = $9, tx_hash = $10, executed_price = $11,
        amount_out = $12, fail_reason = $13, updated_at = $14
    WHERE id = $1 AND seq = $2
    RETURNING id
)
INSERT INTO order_events (order_id, seq, status, attempt, at, data)
SELECT id, $4, $3, $5, $14, $15::jsonb FROM u
RETURNING order_id
"""


def _json(value: Any) -> str | None:
    return None if value is None else jsoncodec.dumps(value).decode()


def order_from_row(row: asyncpg.Record) -> Order:
    quotes = row["quotes"]
    return Order(
        id=row["id"],
        user_id=row["user_id"],
        type=OrderType(row["type"]),
        token_in=row["token_in"],
        token_out=row["token_out"],
        amount_in=row["amount_in"],
        slippage_bps=row["slippage_bps"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        status=OrderStatus(row["status"]),
        seq=row["seq"],
        attempts=row["attempts"],
        limit_price=row["limit_price"],
        expires_at=row["expires_at"],
        quote_id=row["quote_id"],
        quote_min_amount_out=row["quote_min_amount_out"],
        quote_expires_at=row["quote_expires_at"],
        dex_used=row["dex_used"],
        quotes=jsoncodec.loads(quotes) if quotes is not None else None,
        expected_amount_out=row["expected_amount_out"],
        min_amount_out=row["min_amount_out"],
        tx_hash=row["tx_hash"],
        executed_price=row["executed_price"],
        amount_out=row["amount_out"],
        fail_reason=row["fail_reason"],
    )


def event_from_row(row: asyncpg.Record) -> OrderEvent:
    return OrderEvent(
        order_id=row["order_id"],
        seq=row["seq"],
        status=OrderStatus(row["status"]),
        attempt=row["attempt"],
        at=row["at"],
        data=jsoncodec.loads(row["data"]),
    )


class OrderRepository:
    """Orders and events over an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def create(
        self,
        order: Order,
        event: OrderEvent,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> tuple[Order, bool]:
        """Store a new order with its first event in one statement.

        Returns (order, True) when created; (the earlier order, False) when the user
        already used this idempotency key for the same request.
        """
        created = await self.create_many([NewRecord(order, event, idempotency_key, request_hash)])
        if created:
            return order, True
        return await self.replayed(order, idempotency_key, request_hash), False

    async def create_many(self, records: Sequence[NewRecord]) -> set[UUID]:
        """Store new orders and their first events in one statement; return those created.

        An order missing from the answer reused an idempotency key (see `replayed`).
        """
        columns: list[list[Any]] = [[] for _ in range(len(_NEW_COLUMNS) + len(_EVENT_COLUMNS))]
        for r in records:
            o, e = r.order, r.event
            row = (
                o.id, o.user_id, o.type.value, o.token_in, o.token_out, o.amount_in,
                o.slippage_bps, o.limit_price, o.expires_at, o.quote_id,
                o.quote_min_amount_out, o.quote_expires_at, o.status.value, o.seq, o.attempts,
                o.created_at, o.updated_at, r.idempotency_key, r.request_hash,
                o.id, e.seq, e.status.value, e.attempt, e.at, _json(dict(e.data)),
            )  # fmt: skip
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        rows = await self._pool.fetch(_CREATE_MANY, *columns)
        return {row["order_id"] for row in rows}

    async def replayed(
        self, order: Order, idempotency_key: str | None, request_hash: str | None
    ) -> Order:
        """The order an earlier request with this idempotency key created.

        Raises IdempotencyConflict when that request had a different body.
        """
        row = await self._pool.fetchrow(
            f"SELECT {_ORDER_COLUMNS}, request_hash FROM orders"
            " WHERE user_id = $1 AND idempotency_key = $2",
            order.user_id,
            idempotency_key,
        )
        if row is None:  # the key's order vanished between the two statements
            raise IdempotencyConflict(order.id)
        existing = order_from_row(row)
        if row["request_hash"] != request_hash:
            raise IdempotencyConflict(existing.id)
        return existing

    async def get(self, order_id: UUID) -> Order | None:
        row = await self._pool.fetchrow(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE id = $1", order_id
        )
        return order_from_row(row) if row else None

    async def append(self, order: Order, event: OrderEvent) -> Order:
        """Apply `event` to `order` and store both, or raise StaleOrder / IllegalTransition."""
        after = order.apply(event)
        a = after
        stored = await self._pool.fetchval(
            _APPEND,
            order.id, order.seq, a.status.value, a.seq, a.attempts, a.dex_used, _json(a.quotes),
            a.expected_amount_out, a.min_amount_out, a.tx_hash, a.executed_price, a.amount_out,
            a.fail_reason, event.at, _json(dict(event.data)),
        )  # fmt: skip
        if stored is None:
            raise StaleOrder(f"order {order.id} is no longer at seq {order.seq}")
        return after

    async def events(self, order_id: UUID, after_seq: int = 0) -> list[OrderEvent]:
        rows = await self._pool.fetch(
            "SELECT order_id, seq, status, attempt, at, data FROM order_events"
            " WHERE order_id = $1 AND seq > $2 ORDER BY seq",
            order_id,
            after_seq,
        )
        return [event_from_row(r) for r in rows]

    async def history(
        self,
        user_id: str,
        statuses: Sequence[str] | None,
        limit: int,
        before: tuple[datetime, UUID] | None,
    ) -> list[Order]:
        """A user's orders, newest first, after the keyset cursor `before`."""
        clauses = ["user_id = $1"]
        args: list[Any] = [user_id]
        if statuses:
            args.append(list(statuses))
            clauses.append(f"status = ANY(${len(args)}::text[])")
        if before is not None:
            args.extend(before)
            clauses.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
        args.append(limit)
        rows = await self._pool.fetch(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE {' AND '.join(clauses)}"
            f" ORDER BY created_at DESC, id DESC LIMIT ${len(args)}",
            *args,
        )
        return [order_from_row(r) for r in rows]

    async def quiet_unfinished(self, quiet_s: float, limit: int = 1000) -> list[UUID]:
        """Unfinished orders untouched for `quiet_s` seconds: the ones a lost job would strand.

        Waiting limit/sniper orders are not queued, so they are not candidates.
        """
        rows = await self._pool.fetch(
            "SELECT id FROM orders WHERE status <> ALL($1::text[])"
            " AND updated_at < now() - make_interval(secs => $2) ORDER BY updated_at LIMIT $3",
            [s.value for s in TERMINAL] + [OrderStatus.WAITING.value],
            quiet_s,
            limit,
        )
        return [r["id"] for r in rows]

    async def waiting(self) -> list[Order]:
        """Every waiting limit and sniper order (the trigger book's starting point)."""
        rows = await self._pool.fetch(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE status = 'waiting'"
        )
        return [order_from_row(r) for r in rows]
