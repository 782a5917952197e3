"""What the chain remembers: its transactions and the actions that changed its market."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

PENDING = "pending"
LANDED = "landed"
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
    status: str  # pending | landed | dropped | expired | reverted
    received_slot: int
    lands_in_ms: int
    payload: str
    slot: int | None = None
    reason: str | None = None
    amount_out: Decimal | None = None

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
