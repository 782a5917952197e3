"""The venues as the engine sees them: a protocol, its value types and its errors.

The engine quotes, builds, sends and confirms through `Venue` and never learns what
is behind it: today the chain service's client (`chain/client.py`); a real Jupiter
and RPC adapter would be another implementation. Pure types, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol
from uuid import UUID

from dexecutor.market.types import MarketError, Quote


class VenueError(MarketError):
    """A venue-side failure (unavailable, timeout, dropped or expired transaction)."""


class SubmitRefused(Exception):
    """The swap may not be sent by this sender: it no longer owns the order.

    Either the order moved on since the sender read it (another worker took it over
    after the sender's job lock lapsed), or the order already has a live transaction
    of another attempt. Not a `MarketError`: the order did not fail, its sender is
    stale, and a stale sender must leave the order alone.
    """


@dataclass(frozen=True, slots=True)
class Fault:
    """A scripted fault taken from the fault board: `kind` and, for price moves, bps."""

    kind: str
    bps: int = 0
    slots: int = 0  # `late`: how many slots after it came the transaction lands


QUOTE_FAULTS = ("timeout", "error")
SWAP_FAULTS = ("drop", "expire", "late", "price")
FAULT_KINDS = QUOTE_FAULTS + SWAP_FAULTS


@dataclass(frozen=True, slots=True)
class SignedTx:
    """A swap transaction ready to send: its signature is known before it leaves."""

    signature: str
    venue: str
    payload: str  # the encoded transaction, sent as is (and again, as is, after a crash)


@dataclass(frozen=True, slots=True)
class Fill:
    """A swap that landed."""

    tx_hash: str
    venue: str
    amount_out: Decimal
    executed_price: Decimal
    slot: int


class Venue(Protocol):
    name: str

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        """The venue's quote now; VenueError or MarketError when it has none."""
        ...

    async def build(
        self,
        order_id: UUID,
        attempt: int,
        token_in: str,
        token_out: str,
        amount_in: Decimal,
        min_amount_out: Decimal,
    ) -> SignedTx:
        """The swap transaction for this attempt (not sent)."""
        ...

    async def send(self, tx: SignedTx) -> None:
        """Send it; sending the same transaction again is harmless (same signature)."""
        ...

    async def confirm(self, tx_hash: str) -> Fill:
        """Wait for its outcome: the fill, or VenueError/MarketError with the reason."""
        ...


@dataclass(frozen=True, slots=True)
class MarketSnapshot:
    """What a trigger book needs of the market at one moment, read in one call."""

    slot: int
    mids: dict[tuple[str, str], dict[str, Decimal | None]]
    prices: dict[tuple[str, str, Decimal], Decimal | None]
    tradable: dict[str, bool]
    reference: dict[tuple[str, str], Decimal]

    def best_mid(self, token_in: str, token_out: str) -> Decimal | None:
        found = [m for m in self.mids.get((token_in, token_out), {}).values() if m is not None]
        return max(found) if found else None


class MarketView(Protocol):
    async def snapshot(
        self,
        pairs: list[tuple[str, str]],
        quotes: list[tuple[str, str, Decimal]],
        tokens: list[str],
        reference: bool = False,
    ) -> MarketSnapshot:
        """Mids per venue, best prices for sizes, tradability; no latency, no faults."""
        ...
