"""The engine's write-ahead record of the swaps it sends.

A transaction is recorded here before it is sent, in one statement fenced by the
order's sequence number: only a sender that still owns the order (the order is
building this attempt, for this venue, at the seq the sender read) gets its record
in. Whoever resumes the order later sends the *recorded* transaction again, with the
same signature, and the chain runs a signature once: an order never swaps twice.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from dexecutor.market.venue import SignedTx, SubmitRefused

# FOR SHARE holds the order row until the insert commits, so no worker can move the
# order on between the check and the insert.
_RECORD = """
WITH owner AS (
    SELECT id FROM orders
    WHERE id = $2 AND seq = $6 AND attempts = $3 AND status = 'building' AND dex_used = $4
    FOR SHARE
), recorded AS (
    INSERT INTO order_txs (signature, order_id, attempt, venue, payload, last_valid_block_height)
    SELECT $1, $2, $3, $4, $5, $7 FROM owner
    ON CONFLICT (order_id, attempt) DO NOTHING
    RETURNING signature, venue, payload, last_valid_block_height
)
SELECT EXISTS (SELECT 1 FROM owner) AS owned, recorded.*
FROM (VALUES (1)) AS one (x) LEFT JOIN recorded ON true
"""


class PgOutbox:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, order_id: UUID, attempt: int, seq: int, tx: SignedTx) -> SignedTx:
        """The transaction to send for this attempt: `tx`, or the one recorded before.

        Raises SubmitRefused when the sender's copy of the order is stale.
        """
        row = await self._pool.fetchrow(
            _RECORD,
            tx.signature,
            order_id,
            attempt,
            tx.venue,
            tx.payload,
            seq,
            tx.last_valid_block_height,
        )
        assert row is not None
        if not row["owned"]:
            raise SubmitRefused(
                f"order {order_id} is no longer building attempt {attempt}"
                f" on {tx.venue} at seq {seq}"
            )
        if row["signature"] is not None:
            return _signed(row)
        earlier = await self.recorded(order_id, attempt)
        assert earlier is not None, f"order {order_id}: attempt {attempt}'s record vanished"
        if earlier.venue != tx.venue:
            raise SubmitRefused(
                f"order {order_id}'s attempt {attempt} was recorded for {earlier.venue}"
            )
        return earlier

    async def recorded(self, order_id: UUID, attempt: int) -> SignedTx | None:
        row = await self._pool.fetchrow(
            "SELECT signature, venue, payload, last_valid_block_height FROM order_txs"
            " WHERE order_id = $1 AND attempt = $2",
            order_id,
            attempt,
        )
        return _signed(row) if row else None


def _signed(row: asyncpg.Record) -> SignedTx:
    return SignedTx(row["signature"], row["venue"], row["payload"], row["last_valid_block_height"])
