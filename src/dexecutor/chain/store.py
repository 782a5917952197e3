"""The chain's state in PostgreSQL: genesis, slot, the action log and the ledger.

Written in batches by one flusher (group commit): every change the market saw is
appended in the order it was applied, so replaying the log on a fresh market rebuilds
exactly the market that was, fills and all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from dexecutor.chain.records import Action, ChainTx

_TX_COLUMNS = (
    "signature, venue, order_id, attempt, token_in, token_out, amount_in, min_amount_out,"
    " status, received_slot, lands_in_ms, payload, slot, reason, amount_out,"
    " owner, fee, last_valid, lands_at, fault, meta"
)


@dataclass(frozen=True, slots=True)
class Genesis:
    seed: int
    preset: str
    genesis: str
    slot: int  # the last slot saved (the chain resumes after it)


def _tx(row: asyncpg.Record) -> ChainTx:
    values = dict(row.items())
    if values["meta"] is not None:
        values["meta"] = json.loads(values["meta"])
    return ChainTx(**values)


class ChainStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def genesis(self, seed: int, preset: str, genesis: str) -> Genesis:
        """The chain's genesis: the stored one, or these values on first start."""
        await self._pool.execute(
            "INSERT INTO chain_state (id, seed, preset, genesis, slot) VALUES (1, $1, $2, $3, 0)"
            " ON CONFLICT (id) DO NOTHING",
            seed,
            preset,
            genesis,
        )
        row = await self._pool.fetchrow(
            "SELECT seed, preset, genesis, greatest(slot, coalesce("
            " (SELECT max(slot) FROM chain_actions), 0)) AS slot FROM chain_state WHERE id = 1"
        )
        assert row is not None
        return Genesis(int(row["seed"]), row["preset"], row["genesis"], int(row["slot"]))

    async def new_genesis(self, seed: int, preset: str, genesis: str) -> Genesis:
        """Start the market afresh (another seed or preset): its journal goes, its ledger stays."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM chain_actions")
            await conn.execute(
                "UPDATE chain_state SET seed = $1, preset = $2, genesis = $3, slot = 0,"
                " created_at = now(), updated_at = now() WHERE id = 1",
                seed,
                preset,
                genesis,
            )
        return Genesis(seed, preset, genesis, 0)

    async def actions(self) -> list[Action]:
        rows = await self._pool.fetch(
            "SELECT id, slot, at, kind, data FROM chain_actions ORDER BY id"
        )
        return [
            Action(int(r["id"]), int(r["slot"]), float(r["at"]), r["kind"], json.loads(r["data"]))
            for r in rows
        ]

    async def pending(self) -> list[ChainTx]:
        rows = await self._pool.fetch(
            f"SELECT {_TX_COLUMNS} FROM chain_txs WHERE status = 'pending' ORDER BY received_at"
        )
        return [_tx(r) for r in rows]

    async def live(self) -> dict[UUID, str]:
        """Each order's live (pending or landed) transaction."""
        rows = await self._pool.fetch(
            "SELECT order_id, signature FROM chain_txs WHERE status IN ('pending', 'landed')"
        )
        return {r["order_id"]: r["signature"] for r in rows}

    async def dead(self) -> set[str]:
        """Signatures of transactions that failed (dropped, expired, reverted)."""
        rows = await self._pool.fetch(
            "SELECT signature FROM chain_txs WHERE status NOT IN ('pending', 'landed')"
        )
        return {r["signature"] for r in rows}

    async def txs(self, signatures: Sequence[str]) -> dict[str, ChainTx]:
        rows = await self._pool.fetch(
            f"SELECT {_TX_COLUMNS} FROM chain_txs WHERE signature = ANY($1::text[])",
            list(signatures),
        )
        return {r["signature"]: _tx(r) for r in rows}

    async def accounts(self) -> dict[tuple[str, str], int]:
        """Every account's balance: (owner, mint) -> base units (SOL: lamports)."""
        rows = await self._pool.fetch("SELECT owner, mint, amount FROM chain_accounts")
        return {(r["owner"], r["mint"]): int(r["amount"]) for r in rows}

    async def commit(
        self,
        actions: Sequence[Action],
        txs: Sequence[ChainTx],
        slot: int,
        accounts: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        """Save a batch in one transaction: actions in order, transactions' latest state,
        the balances they left."""
        async with self._pool.acquire() as conn, conn.transaction():
            if accounts:
                await conn.executemany(
                    "INSERT INTO chain_accounts (owner, mint, amount) VALUES ($1, $2, $3)"
                    " ON CONFLICT (owner, mint) DO UPDATE SET amount = EXCLUDED.amount,"
                    " updated_at = now()",
                    [(owner, mint, amount) for (owner, mint), amount in accounts.items()],
                )
            if actions:
                await conn.executemany(
                    "INSERT INTO chain_actions (id, slot, at, kind, data)"
                    " VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (id) DO NOTHING",
                    [(a.id, a.slot, a.at, a.kind, json.dumps(a.data)) for a in actions],
                )
            if txs:
                await conn.executemany(
                    f"INSERT INTO chain_txs ({_TX_COLUMNS}) VALUES"
                    " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,"
                    " $16, $17, $18, $19, $20, $21::jsonb)"
                    " ON CONFLICT (signature) DO UPDATE SET status = EXCLUDED.status,"
                    " slot = EXCLUDED.slot, reason = EXCLUDED.reason,"
                    " amount_out = EXCLUDED.amount_out, lands_at = EXCLUDED.lands_at,"
                    " fault = EXCLUDED.fault, meta = EXCLUDED.meta,"
                    " finalized_at ="
                    " CASE WHEN EXCLUDED.status = 'pending' THEN NULL ELSE now() END",
                    [
                        (
                            t.signature,
                            t.venue,
                            t.order_id,
                            t.attempt,
                            t.token_in,
                            t.token_out,
                            t.amount_in,
                            t.min_amount_out,
                            t.status,
                            t.received_slot,
                            t.lands_in_ms,
                            t.payload,
                            t.slot,
                            t.reason,
                            t.amount_out,
                            t.owner,
                            t.fee,
                            t.last_valid,
                            t.lands_at,
                            t.fault,
                            json.dumps(t.meta) if t.meta is not None else None,
                        )
                        for t in txs
                    ],
                )
            await conn.execute(
                "UPDATE chain_state SET slot = greatest(slot, $1), updated_at = now() WHERE id = 1",
                slot,
            )
