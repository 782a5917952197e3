"""What the chain remembers: its transactions and the actions that changed its market."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

PENDING = "pending"
LANDED = "landed"
REVERTED = "reverted"  # landed, failed, paid its fee
EXPIRED = "expired"  # never landed while its blockhash was valid
DROPPED = "dropped"  # expired after a scripted `drop` lost every broadcast
LIVE = (PENDING, LANDED)  # at most one per order: an order never swaps twice


@dataclass(frozen=True, slots=True)
class ChainTx:
    """One transaction in the ledger, as of its latest known state."""

    signature: str
    venue: str
    order_id: UUID
    attempt: int
    token_in: str
    token_out: str
    amount_in: Decimal
    min_amount_out: Decimal
    status: str  # pending | landed | reverted | expired | dropped (expired by a drop fault)
    received_slot: int
    lands_in_ms: int
    payload: str
    slot: int | None = None
    reason: str | None = None
    amount_out: Decimal | None = None
    owner: str | None = None  # the fee payer (None: a transaction of an older chain)
    fee: int = 0  # lamports: 5,000 a signature plus the priority fee
    last_valid: int | None = None  # the last block height it may land at
    lands_at: int | None = None  # the slot it lands at (model); None: lost so far
    fault: str | None = None  # a scripted landing fault: drop | late
    meta: dict[str, Any] | None = None  # once final: what getTransaction shows

    @property
    def final(self) -> bool:
        return self.status != PENDING


@dataclass(frozen=True, slots=True)
class Action:
    """A change to the market (fill, launch, jump) at market time `at`, replayable."""

    id: int
    slot: int
    at: float
    kind: str
    data: dict[str, Any]
