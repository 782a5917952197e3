"""The venues as the engine sees them: a protocol, its value types and its errors.

The engine quotes, builds, sends and confirms through `Venue` and never learns what
is behind it: today the chain service's client (`chain/client.py`); a real Jupiter
and RPC adapter would be another implementation. Pure types, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from dexecutor.market.types import MarketError, Quote

if TYPE_CHECKING:
    from dexecutor.chain.transaction import Leg


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
    # The last block height at which its blockhash is valid: past it, the transaction
    # can never land, and only then may the order sign another one. None for a record
    # written before the engine knew it (it is then confirmed by waiting alone).
    last_valid_block_height: int | None = None


@dataclass(frozen=True, slots=True)
class NetworkFee:
    """What a transaction cost its fee payer in lamports, as the chain charged it.

    `base` is the signatures' fee, `priority` the compute-budget bid, `rent` the
    deposit of an output token account the swap had to open (kept by that account,
    but gone from the wallet's SOL all the same).
    """

    base: int
    priority: int
    rent: int = 0

    @property
    def lamports(self) -> int:
        return self.base + self.priority + self.rent


@dataclass(frozen=True, slots=True)
class Fill:
    """A swap that landed, with what it cost."""

    tx_hash: str
    venue: str
    amount_out: Decimal
    executed_price: Decimal
    slot: int
    network_fee: NetworkFee = NetworkFee(0, 0)
    commitment: str = "confirmed"
    finalized_at_slot: int | None = None  # by when it is final (an estimate while confirmed)
    # What one SOL was worth in the output token when it filled: values the network
    # fee of a swap where SOL is neither side (None where SOL is a side or unknown).
    sol_price: Decimal | None = None
    # The input the swap spent, read from the wallet's balances (an exact-out swap spends
    # at most what it was sent with); None where it was not read.
    amount_in: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """A transaction handed to the chain: the slot it went out at and its priority bid."""

    slot: int
    compute_unit_price: int  # micro-lamports per compute unit
    compute_unit_limit: int


class Reverted(VenueError):
    """The transaction landed and failed: it is on chain, and its fee is paid."""

    def __init__(
        self, reason: str, message: str, tx_hash: str, slot: int, network_fee: NetworkFee
    ) -> None:
        super().__init__(reason, message)
        self.tx_hash = tx_hash
        self.slot = slot
        self.network_fee = network_fee


class Venue(Protocol):
    name: str

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        """The venue's quote now; VenueError or MarketError when it has none."""
        ...

    async def build(
        self,
        order_id: UUID,
        attempt: int,
        user_id: str,
        token_in: str,
        token_out: str,
        amount_in: Decimal,
        min_amount_out: Decimal,
        legs: tuple[Leg, ...] | None = None,
        exact_out: bool = False,
    ) -> SignedTx:
        """The swap transaction for this attempt, signed by the user's wallet (not sent).

        Without `legs`, the whole order on this venue; with them, the route's legs in one
        transaction (the minimum on the total; for `exact_out`, `amount_in` is the most
        it may spend and `min_amount_out` the exact output).
        """
        ...

    async def send(self, tx: SignedTx) -> Sent:
        """Send it; sending the same transaction again is harmless (same signature)."""
        ...

    async def confirm(self, tx: SignedTx) -> Fill:
        """Wait for its outcome, rebroadcasting the same bytes until it is confirmed or
        its blockhash has expired: the fill, or VenueError/MarketError with the reason
        (`Reverted` when it landed and failed)."""
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
