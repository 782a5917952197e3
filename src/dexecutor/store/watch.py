"""Reads of the event hub: what is stored for the orders and users watched right now.

A worker that crashed between commit and publish leaves an event only in PostgreSQL;
these two statements let every API process find such events for its watchers, one
statement per pass however many watchers it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import asyncpg

from dexecutor.domain.order import OrderEvent
from dexecutor.store.orders import event_from_row


class StoredEvents:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def seqs(self, order_ids: Sequence[UUID]) -> dict[UUID, int]:
        """The stored seq of each order (its last event)."""
        rows = await self._pool.fetch(
            "SELECT id, seq FROM orders WHERE id = ANY($1::uuid[])", list(order_ids)
        )
        return {r["id"]: r["seq"] for r in rows}

    async def user_events(
        self, user_ids: Sequence[str], since: datetime
    ) -> list[tuple[str, OrderEvent]]:
        """Events since `since` of these users' orders, in seq order per order."""
        rows = await self._pool.fetch(
            "SELECT o.user_id, e.order_id, e.seq, e.status, e.attempt, e.at, e.data"
            " FROM orders o JOIN order_events e ON e.order_id = o.id"
            " WHERE o.user_id = ANY($1::text[]) AND o.updated_at >= $2 AND e.at >= $2"
            " ORDER BY e.order_id, e.seq",
            list(user_ids),
            since,
        )
        return [(r["user_id"], event_from_row(r)) for r in rows]
