"""The simulated chain's ledger in PostgreSQL.

It lives beside the orders, not in a worker's memory or in Redis, because it plays
the part of the blockchain: it must outlive a killed worker and a flushed Redis, so
that a retry can ask "did my swap land?" and get the true answer.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from dexecutor.market.venue import SubmitRefused, TxRecord

_COLUMNS = (
    "tx_hash, venue, order_id, attempt, token_in, token_out, amount_in, min_amount_out, "
    "status, submitted_at, lands_at, reason, amount_out, executed_price"
)


def _record(row: asyncpg.Record) -> TxRecord:
    return TxRecord(**{k: v for k, v in row.items() if k != "owned"})


# The fence: a transaction is recorded only while its order is still building this
# attempt for this venue, at the sequence number its sender read, checked in the same
# statement as the insert. FOR SHARE holds the order row until the insert commits, so
# no worker can move the order on between the check and the insert.
_SUBMIT = f"""
WITH owner AS (
    SELECT id FROM orders
    WHERE id = $3 AND seq = $15 AND attempts = $4 AND status = 'building' AND dex_used = $2
    FOR SHARE
), sent AS (
    INSERT INTO mock_ledger ({_COLUMNS})
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 FROM owner
    ON CONFLICT (order_id) WHERE status IN ('pending', 'landed') DO NOTHING
    RETURNING {_COLUMNS}
)
SELECT EXISTS (SELECT 1 FROM owner) AS owned, sent.*
FROM (VALUES (1)) AS one (x) LEFT JOIN sent ON true
"""


class PgLedger:
    """`Ledger` over an asyncpg pool; the unique live-tx index does the deduplication."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def submit(self, tx: TxRecord, seq: int) -> TxRecord:
        row = await self._pool.fetchrow(
            _SUBMIT,
            tx.tx_hash, tx.venue, tx.order_id, tx.attempt, tx.token_in, tx.token_out,
            tx.amount_in, tx.min_amount_out, tx.status, tx.submitted_at, tx.lands_at,
            tx.reason, tx.amount_out, tx.executed_price, seq,
        )  # fmt: skip
        assert row is not None
        if not row["owned"]:
            raise SubmitRefused(
                f"order {tx.order_id} is no longer building attempt {tx.attempt}"
                f" on {tx.venue} at seq {seq}"
            )
        if row["tx_hash"] is not None:
            return _record(row)
        live = await self.live(tx.order_id)
        if live is None:  # finalized between the two statements: try once more
            return await self.submit(tx, seq)
        if (live.venue, live.attempt) != (tx.venue, tx.attempt):
            raise SubmitRefused(
                f"order {tx.order_id} has a live transaction of attempt {live.attempt}"
                f" on {live.venue}, not of attempt {tx.attempt} on {tx.venue}"
            )
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
