"""The engine's write-ahead record of the swaps it sends.

A transaction is recorded here before it is sent, in one statement fenced by the
order's sequence number: only a sender that still owns the order (the order is
building this attempt, for this venue, at the seq the sender read) gets its record
in. Whoever resumes the order later sends the *recorded* transaction again, with the
same signature, and the chain runs a signature once: an order never swaps twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from dexecutor.group_commit import GroupCommit, ItemFailed, one_per_key
from dexecutor.market.venue import SignedTx, SubmitRefused
from dexecutor.store.orders import ROW_REFUSED

# Many orders' records in one statement (group commit: the swaps a worker carrying a
# hundred orders builds together share one round trip). Each row goes in only if its
# order is building this attempt, for this venue, at the seq its sender read; FOR SHARE
# holds those order rows until the insert commits, so no worker can move an order on
# between the check and the insert. One answer row per record asked for.
_RECORD_MANY = """
WITH r AS (
    SELECT * FROM unnest($1::text[], $2::uuid[], $3::int[], $4::text[], $5::text[],
        $6::int[], $7::bigint[])
        AS r (signature, order_id, attempt, venue, payload, seq, last_valid_block_height)
), owner AS (
    SELECT o.id FROM orders o JOIN r ON o.id = r.order_id
    WHERE o.seq = r.seq AND o.attempts = r.attempt AND o.status = 'building'
        AND o.dex_used = r.venue
    FOR SHARE OF o
), recorded AS (
    INSERT INTO order_txs (signature, order_id, attempt, venue, payload, last_valid_block_height)
    SELECT r.signature, r.order_id, r.attempt, r.venue, r.payload, r.last_valid_block_height
    FROM r JOIN owner ON owner.id = r.order_id
    ON CONFLICT (order_id, attempt) DO NOTHING
    RETURNING order_id, signature, venue, payload, last_valid_block_height
)
SELECT r.order_id, owner.id IS NOT NULL AS owned, recorded.signature, recorded.venue,
    recorded.payload, recorded.last_valid_block_height
FROM r LEFT JOIN owner ON owner.id = r.order_id
    LEFT JOIN recorded ON recorded.order_id = r.order_id
"""


@dataclass(frozen=True, slots=True)
class _Record:
    order_id: UUID
    attempt: int
    seq: int
    tx: SignedTx


# A batch PostgreSQL refused as a whole (a deadlock with another writer, or one row it
# cannot take): its records are run again one by one, each getting its own answer.
_ONE_BY_ONE: tuple[type[Exception], ...] = (asyncpg.DeadlockDetectedError, *ROW_REFUSED)

# What the statement answered for one record: whether its sender still owns the order,
# and the transaction stored by this statement (None: refused, or recorded before).
_Answer = tuple[bool, SignedTx | None]


class PgOutbox:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        # One statement at a time, as for status changes (store/orders.py): the records
        # arriving meanwhile go together in the next.
        self._records: GroupCommit[_Record, _Answer] = GroupCommit(
            self._record_batch, max_flushes=1
        )

    async def record(self, order_id: UUID, attempt: int, seq: int, tx: SignedTx) -> SignedTx:
        """The transaction to send for this attempt: `tx`, or the one recorded before.

        Raises SubmitRefused when the sender's copy of the order is stale.
        """
        owned, stored = await self._records.submit(_Record(order_id, attempt, seq, tx))
        if not owned:
            raise SubmitRefused(
                f"order {order_id} is no longer building attempt {attempt}"
                f" on {tx.venue} at seq {seq}"
            )
        if stored is not None:
            return stored
        earlier = await self.recorded(order_id, attempt)
        assert earlier is not None, f"order {order_id}: attempt {attempt}'s record vanished"
        if earlier.venue != tx.venue:
            raise SubmitRefused(
                f"order {order_id}'s attempt {attempt} was recorded for {earlier.venue}"
            )
        return earlier

    async def _record_batch(self, records: list[_Record]) -> list[_Answer | ItemFailed]:
        """One statement for the batch; records it cannot share are run one by one.

        Two records of one order go in separate statements (the second must see the
        first), and so does every record of a batch PostgreSQL refused as a whole: each
        caller then gets its own answer or its own error.
        """
        together, alone = one_per_key([r.order_id for r in records])
        answers: list[_Answer | ItemFailed | None] = [None] * len(records)
        try:
            found = await self._apply([records[i] for i in together])
            for i in together:
                answers[i] = found[records[i].order_id]
        except _ONE_BY_ONE:
            alone.extend(together)
        for i in sorted(alone):
            try:
                answers[i] = (await self._apply([records[i]]))[records[i].order_id]
            except _ONE_BY_ONE as err:
                answers[i] = ItemFailed(err)
        return [a for a in answers if a is not None]

    async def _apply(self, records: Sequence[_Record]) -> dict[UUID, _Answer]:
        rows = await self._pool.fetch(
            _RECORD_MANY,
            [r.tx.signature for r in records],
            [r.order_id for r in records],
            [r.attempt for r in records],
            [r.tx.venue for r in records],
            [r.tx.payload for r in records],
            [r.seq for r in records],
            [r.tx.last_valid_block_height for r in records],
        )
        return {
            row["order_id"]: (row["owned"], _signed(row) if row["signature"] else None)
            for row in rows
        }

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
