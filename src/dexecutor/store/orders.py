"""The order repository: orders and their events in PostgreSQL, spoken in domain types.

Each status change is one SQL statement that updates the order row *and* appends its
event, guarded by the sequence number the caller last saw. A writer holding a stale
copy (say, a worker that lost its job lock) changes nothing and is told so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from dexecutor import jsoncodec
from dexecutor.domain.order import (
    TERMINAL,
    IllegalTransition,
    Order,
    OrderEvent,
    OrderStatus,
    OrderType,
)
from dexecutor.group_commit import GroupCommit, ItemFailed, one_per_key

# What PostgreSQL answers for a row whose content it refuses (a value it cannot store,
# a violated constraint), as opposed to a lost connection.
ROW_REFUSED: tuple[type[Exception], ...] = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
)


class StaleOrder(Exception):
    """The order moved on since it was read; the caller's step must not be applied."""


def _stale(order: Order) -> StaleOrder:
    return StaleOrder(f"order {order.id} is no longer at seq {order.seq}")


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
    "fill, created_at, updated_at, idempotency_key, routing, route"
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
    ("routing", "jsonb"),
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
"""  # one row per stored event: an order born waiting answers twice


# Orders a queue job should exist for: unfinished and not waiting for a trigger. Written
# out rather than passed as a parameter, so that the planner matches the partial index
# `orders_queued_by_age` (migration 0006), whose predicate this is.
_QUEUED = "status NOT IN ({})".format(
    ", ".join(f"'{s.value}'" for s in sorted([*TERMINAL, OrderStatus.WAITING]))
)


@dataclass(frozen=True, slots=True)
class NewRecord:
    """An order to store with its first event, and the idempotency facts of its request.

    `more` are events the order is born with after its first: a limit or sniper order
    is stored already `waiting` (seq 2), so it is never `pending` without a trigger.
    `order` is then the order after all of them.
    """

    order: Order
    event: OrderEvent
    idempotency_key: str | None = None
    request_hash: str | None = None
    more: tuple[OrderEvent, ...] = ()

    @property
    def events(self) -> tuple[OrderEvent, ...]:
        return (self.event, *self.more)


# Status changes of many orders in one statement: each row applies only if the order
# is still at the sequence number its writer read, and only applied rows get their
# event. The engine's steps from a hundred concurrent orders share one round trip.
# `kept` marks the JSON columns a change leaves as they are (bits _KEEP_*): they are
# neither encoded again nor parsed again, though most steps carry the route's quotes
# and plan along unchanged.
_CHANGE_COLUMNS = (
    ("id", "uuid"), ("prev_seq", "int"), ("status", "text"), ("seq", "int"),
    ("attempts", "int"), ("dex_used", "text"), ("quotes", "text"),
    ("expected_amount_out", "numeric"), ("min_amount_out", "numeric"), ("tx_hash", "text"),
    ("executed_price", "numeric"), ("amount_out", "numeric"), ("fail_reason", "text"),
    ("fill", "text"), ("at", "timestamptz"), ("data", "text"), ("route", "text"),
    ("kept", "int"),
)  # fmt: skip
_KEEP_QUOTES, _KEEP_FILL, _KEEP_ROUTE = 1, 2, 4

_APPEND_MANY = f"""
WITH c AS (
    SELECT * FROM unnest({_unnest(_CHANGE_COLUMNS, 1)})
        AS c({", ".join(name for name, _ in _CHANGE_COLUMNS)})
), u AS (
    UPDATE orders o SET status = c.status, seq = c.seq, attempts = c.attempts,
        dex_used = c.dex_used,
        quotes = CASE WHEN c.kept & {_KEEP_QUOTES} = 0 THEN c.quotes::jsonb ELSE o.quotes END,
        expected_amount_out = c.expected_amount_out, min_amount_out = c.min_amount_out,
        tx_hash = c.tx_hash, executed_price = c.executed_price, amount_out = c.amount_out,
        fail_reason = c.fail_reason,
        fill = CASE WHEN c.kept & {_KEEP_FILL} = 0 THEN c.fill::jsonb ELSE o.fill END,
        updated_at = c.at,
        route = CASE WHEN c.kept & {_KEEP_ROUTE} = 0 THEN c.route::jsonb ELSE o.route END
    FROM c WHERE o.id = c.id AND o.seq = c.prev_seq
    RETURNING o.id
)
INSERT INTO order_events (order_id, seq, status, attempt, at, data)
SELECT c.id, c.seq, c.status, c.attempts, c.at, c.data::jsonb FROM c JOIN u ON u.id = c.id
RETURNING order_id
"""


@dataclass(frozen=True, slots=True)
class _Change:
    before: Order
    after: Order
    event: OrderEvent


def _as_columns(rows: Iterable[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows turned into one list per column: the arrays an `unnest` statement takes."""
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


def _new_row(r: NewRecord) -> tuple[Any, ...]:
    """A new order, in the order of _NEW_COLUMNS."""
    o = r.order
    return (
        o.id, o.user_id, o.type.value, o.token_in, o.token_out, o.amount_in, o.slippage_bps,
        o.limit_price, o.expires_at, o.quote_id, o.quote_min_amount_out, o.quote_expires_at,
        o.status.value, o.seq, o.attempts, o.created_at, o.updated_at, r.idempotency_key,
        r.request_hash, _json(o.routing),
    )  # fmt: skip


def _event_row(e: OrderEvent) -> tuple[Any, ...]:
    """An event, in the order of _EVENT_COLUMNS."""
    return (e.order_id, e.seq, e.status.value, e.attempt, e.at, _json(dict(e.data)))


def _change_row(c: _Change) -> tuple[Any, ...]:
    """A status change, in the order of _CHANGE_COLUMNS.

    A JSON column the change did not touch (`Order.apply` keeps the very same object)
    is sent as NULL and marked kept: the row at the fenced seq already holds it.
    """
    a, b = c.after, c.before
    kept = (
        (_KEEP_QUOTES if a.quotes is b.quotes else 0)
        | (_KEEP_FILL if a.fill is b.fill else 0)
        | (_KEEP_ROUTE if a.route is b.route else 0)
    )
    return (
        a.id, b.seq, a.status.value, a.seq, a.attempts, a.dex_used,
        None if kept & _KEEP_QUOTES else _json(a.quotes),
        a.expected_amount_out, a.min_amount_out, a.tx_hash, a.executed_price, a.amount_out,
        a.fail_reason, None if kept & _KEEP_FILL else _json(a.fill), c.event.at,
        _json(dict(c.event.data)), None if kept & _KEEP_ROUTE else _json(a.route), kept,
    )  # fmt: skip


def _json(value: Any) -> str | None:
    return None if value is None else jsoncodec.dumps(value).decode()


def order_from_row(row: asyncpg.Record) -> Order:
    quotes, fill = row["quotes"], row["fill"]
    routing, route = row["routing"], row["route"]
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
        client_order_id=row["idempotency_key"],
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
        fill=jsoncodec.loads(fill) if fill is not None else None,
        routing=jsoncodec.loads(routing) if routing is not None else None,
        route=jsoncodec.loads(route) if route is not None else None,
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
        # One statement of status changes at a time: the changes of a worker's hundred
        # orders then gather in batches twice as large, and PostgreSQL's per-statement
        # cost (and the worker's, per round trip) is paid half as often.
        self._changes: GroupCommit[_Change, bool] = GroupCommit(self._append_batch, max_flushes=1)
        self._reads: GroupCommit[UUID, Order | None] = GroupCommit(self._get_batch)

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
        """Store new orders and the events they are born with in one statement.

        Returns the ids of the orders created; one missing from the answer reused an
        idempotency key (see `replayed`).
        """
        orders = _as_columns(map(_new_row, records), len(_NEW_COLUMNS))
        events = _as_columns(
            (_event_row(e) for r in records for e in r.events), len(_EVENT_COLUMNS)
        )
        stored = await self._pool.fetch(_CREATE_MANY, *orders, *events)
        return {row["order_id"] for row in stored}

    async def create_each_on_refusal(
        self, records: Sequence[NewRecord]
    ) -> tuple[set[UUID], dict[UUID, Exception]]:
        """`create_many`, falling back to one statement per order if the batch is refused.

        PostgreSQL refuses a whole statement for one row it cannot take; retried row by
        row, only that row's order is refused. Returns (created, refused by order id).
        A lost connection is no refusal: it is raised, for every caller to see.
        """
        try:
            return await self.create_many(records), {}
        except ROW_REFUSED:
            if len(records) == 1:
                raise
        created: set[UUID] = set()
        refused: dict[UUID, Exception] = {}
        for record in records:
            try:
                created |= await self.create_many([record])
            except ROW_REFUSED as err:
                refused[record.order.id] = err
        return created, refused

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
        """The order as stored now; concurrent reads share one statement."""
        return await self._reads.submit(order_id)

    async def _get_batch(self, order_ids: list[UUID]) -> list[Order | None]:
        rows = await self._pool.fetch(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE id = ANY($1::uuid[])", order_ids
        )
        found = {row["id"]: order_from_row(row) for row in rows}
        return [found.get(order_id) for order_id in order_ids]

    async def append(self, order: Order, event: OrderEvent) -> Order:
        """Apply `event` to `order` and store both, or raise StaleOrder / IllegalTransition."""
        after = order.apply(event)
        if not await self._changes.submit(_Change(order, after, event)):
            raise _stale(order)
        return after

    async def append_many(
        self, steps: Sequence[tuple[Order, OrderEvent]]
    ) -> list[Order | ItemFailed]:
        """`append` for many orders at once, in one statement: for a caller that gathers
        its own batches (the engine publishes a batch's events together once stored).

        Each answer is the order after its event, or ItemFailed with its own error:
        StaleOrder (the order moved on) or IllegalTransition (refused before any write).
        """
        answers: list[Order | ItemFailed] = []
        changes: list[tuple[int, _Change]] = []
        for order, event in steps:
            try:
                after = order.apply(event)
            except (IllegalTransition, ValueError) as err:
                answers.append(ItemFailed(err))
                continue
            changes.append((len(answers), _Change(order, after, event)))
            answers.append(after)
        applied = await self._append_batch([change for _, change in changes]) if changes else []
        for (i, change), ok in zip(changes, applied, strict=True):
            if not ok:
                answers[i] = ItemFailed(_stale(change.before))
        return answers

    async def _append_batch(self, changes: list[_Change]) -> list[bool]:
        """Store a batch of status changes; which of them applied (the rest were stale).

        Two changes of one order never share a statement (one UPDATE applies only one of
        them), and a batch that deadlocks with another writer's is retried one by one.
        """
        together, alone = one_per_key([change.before.id for change in changes])
        applied = [False] * len(changes)
        try:
            stored = await self._apply([changes[i] for i in together])
            for i in together:
                applied[i] = changes[i].before.id in stored
        except asyncpg.DeadlockDetectedError:
            alone.extend(together)
        for i in sorted(alone):
            applied[i] = bool(await self._apply([changes[i]]))
        return applied

    async def _apply(self, changes: Sequence[_Change]) -> set[UUID]:
        columns = _as_columns(map(_change_row, changes), len(_CHANGE_COLUMNS))
        stored = await self._pool.fetch(_APPEND_MANY, *columns)
        return {row["order_id"] for row in stored}

    async def count_internal_error(self, order_id: UUID) -> int | None:
        """Add one to the order's internal-error count and return it (None: no such order).

        Kept in PostgreSQL, not in the job: the bound must hold across worker restarts
        and a lost Redis. Neither seq nor updated_at moves; no status changed.
        """
        count = await self._pool.fetchval(
            "UPDATE orders SET internal_errors = internal_errors + 1 WHERE id = $1"
            " RETURNING internal_errors",
            order_id,
        )
        return None if count is None else int(count)

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
        client_order_id: str | None = None,
    ) -> list[Order]:
        """A user's orders, newest first, after the keyset cursor `before`.

        `client_order_id` (the Idempotency-Key the order was placed with) narrows it to
        that one order, through the unique (user_id, idempotency_key) index.
        """
        clauses = ["user_id = $1"]
        args: list[Any] = [user_id]
        if client_order_id is not None:
            args.append(client_order_id)
            clauses.append(f"idempotency_key = ${len(args)}")
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

    async def quiet_unfinished(
        self, quiet_s: float, limit: int = 1000, after: tuple[datetime, UUID] | None = None
    ) -> list[tuple[datetime, UUID, OrderStatus]]:
        """Unfinished orders untouched for `quiet_s` seconds: the ones a lost job would strand.

        One page of (created_at, id, status), by (created_at, id), after the keyset
        cursor `after` (a row's first two):
        paging on a key that does not move lets a caller look at every such order, not
        the same first page again and again. Waiting limit/sniper orders are not
        queued, so they are not candidates: the trigger runner checks them against
        PostgreSQL itself (`waiting_ids`).
        """
        args: list[Any] = [quiet_s]
        page = ""
        if after is not None:
            args.extend(after)
            page = " AND (created_at, id) > ($2, $3)"
        args.append(limit)
        rows = await self._pool.fetch(
            f"SELECT created_at, id, status FROM orders WHERE {_QUEUED}"
            f" AND updated_at < now() - make_interval(secs => $1){page}"
            f" ORDER BY created_at, id LIMIT ${len(args)}",
            *args,
        )
        return [(r["created_at"], r["id"], OrderStatus(r["status"])) for r in rows]

    async def waiting(self, order_ids: Sequence[UUID] | None = None) -> list[Order]:
        """Every waiting limit and sniper order, or those of `order_ids` still waiting."""
        if order_ids is None:
            rows = await self._pool.fetch(
                f"SELECT {_ORDER_COLUMNS} FROM orders WHERE status = 'waiting'"
            )
        else:
            rows = await self._pool.fetch(
                f"SELECT {_ORDER_COLUMNS} FROM orders"
                " WHERE status = 'waiting' AND id = ANY($1::uuid[])",
                order_ids,
            )
        return [order_from_row(r) for r in rows]

    async def waiting_ids(self) -> list[tuple[UUID, bool]]:
        """Every waiting order's id, and whether its expiry has passed.

        What the trigger book checks itself against every few seconds: two narrow
        columns, cheap at thousands of waiting orders, and the orders are read in full
        only when the book lacks them.
        """
        rows = await self._pool.fetch(
            "SELECT id, coalesce(expires_at <= now(), false) AS due FROM orders"
            " WHERE status = 'waiting'"
        )
        return [(r["id"], r["due"]) for r in rows]
