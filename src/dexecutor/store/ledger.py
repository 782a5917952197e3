"""The simulated chain's ledger in PostgreSQL.

It lives beside the orders, not in a worker's memory or in Redis, because it plays
the part of the blockchain: it must outlive a killed worker and a flushed Redis, so
that a retry can ask "did my swap land?" and get the true answer.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from dexecutor.market.venue import TxRecord

_COLUMNS = (
    "tx_hash, venue, order_id, attempt, token_in, token_out, amount_in, min_amount_out, "
    "status, submitted_at, lands_at, reason, amount_out, executed_price"
)


def _record(row: asyncpg.Record) -> TxRecord:
    return TxRecord(**dict(row))


class PgLedger:
    """`Ledger` over an asyncpg pool; the unique live-tx index does the deduplication."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def submit(self, tx: TxRecord) -> TxRecord:
        row = await self._pool.fetchrow(
            f"INSERT INTO mock_ledger ({_COLUMNS})"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            " ON CONFLICT (order_id) WHERE status IN ('pending', 'landed') DO NOTHING"
            f" RETURNING {_COLUMNS}",
            tx.tx_hash, tx.venue, tx.order_id, tx.attempt, tx.token_in, tx.token_out,
            tx.amount_in, tx.min_amount_out, tx.status, tx.submitted_at, tx.lands_at,
            tx.reason, tx.amount_out, tx.executed_price,
        )  # fmt: skip
        if row is not None:
            return _record(row)
        live = await self.live(tx.order_id)
        if live is None:  # finalized between the two statements: try once more
            return await self.submit(tx)
        return live

    async def get(self, tx_hash: str) -> TxRecord | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM mock_ledger WHERE tx_hash = $1", tx_hash
        )
        return _record(row) if row else None

    async def live(self, order_id: UUID) -> TxRecord | None:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS} FROM mock_ledger"
            " WHERE order_id = $1 AND status IN ('pending', 'landed')",
            order_id,
        )
        return _record(row) if row else None

    async def finalize(self, tx: TxRecord) -> TxRecord:
        row = await self._pool.fetchrow(
            "UPDATE mock_ledger SET status = $2, reason = $3, amount_out = $4,"
            " executed_price = $5, finalized_at = now()"
            f" WHERE tx_hash = $1 AND status = 'pending' RETURNING {_COLUMNS}",
            tx.tx_hash,
            tx.status,
            tx.reason,
            tx.amount_out,
            tx.executed_price,
        )
        if row is not None:
            return _record(row)
        current = await self.get(tx.tx_hash)
        assert current is not None, f"transaction {tx.tx_hash} vanished from the ledger"
        return current

    async def landed_count(self, order_id: UUID) -> int:
        """How many swaps of this order executed: the number that must never exceed 1."""
        count = await self._pool.fetchval(
            "SELECT count(*) FROM mock_ledger WHERE order_id = $1 AND status = 'landed'",
            order_id,
        )
        return int(count)
