"""The mock venues as the engine sees them: the pure market plus latency, faults and a chain.

`Market` (pure) decides prices and fills. This edge adds what makes a venue feel
real to client code: quotes and swaps take time, venues fail and time out,
transactions get dropped, and every transaction is recorded on a shared ledger (the
simulated chain) keyed by order, so asking twice never swaps twice.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol
from uuid import UUID

from dexecutor.domain.failures import FailureReason
from dexecutor.domain.money import price_of
from dexecutor.market.simulation import Market
from dexecutor.market.types import MarketError, Quote

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class VenueError(MarketError):
    """A venue-side failure (unavailable, timeout, dropped or expired transaction)."""


class SubmitRefused(Exception):
    """The chain would not take this swap from this sender: it no longer owns the order.

    Either the order moved on since the sender read it (another worker took it over
    after the sender's job lock lapsed), or the order's live transaction belongs to
    another attempt or venue. Not a `MarketError`: the order did not fail, its sender
    is stale, and a stale sender must leave the order alone.
    """


@dataclass(frozen=True, slots=True)
class Fault:
    """A scripted fault taken from the fault board: `kind` and, for price moves, bps."""

    kind: str
    bps: int = 0


QUOTE_FAULTS = ("timeout", "error")
SWAP_FAULTS = ("drop", "expire", "price")
FAULT_KINDS = QUOTE_FAULTS + SWAP_FAULTS


class FaultBoard(Protocol):
    """Where scripted faults wait to be consumed (shared by every process)."""

    async def take(self, venue: str, kinds: tuple[str, ...]) -> Fault | None: ...


@dataclass(frozen=True, slots=True)
class TxRecord:
    """One transaction on the simulated chain."""

    tx_hash: str
    venue: str
    order_id: UUID
    attempt: int
    token_in: str
    token_out: str
    amount_in: Decimal
    min_amount_out: Decimal
    status: str  # pending | landed | dropped | expired | reverted
    submitted_at: datetime
    lands_at: datetime
    reason: str | None = None
    amount_out: Decimal | None = None
    executed_price: Decimal | None = None


class Ledger(Protocol):
    """The simulated chain's record of transactions (durable, shared by all workers)."""

    async def submit(self, tx: TxRecord, seq: int) -> TxRecord:
        """Record `tx` if its order is still building this attempt for this venue at `seq`.

        When the order already has a live transaction of this very attempt and venue (a
        worker died after sending it), that one is returned instead. Raises
        SubmitRefused when the sender's copy of the order is stale or the live
        transaction belongs to another attempt or venue.
        """
        ...

    async def get(self, tx_hash: str) -> TxRecord | None: ...

    async def finalize(self, tx: TxRecord) -> TxRecord:
        """Store the outcome if still pending; return whatever outcome won."""
        ...


class MarketClock:
    """Seconds since this process's market started: the `now` the pure core wants."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self._t0


def tx_signature(rng: random.Random) -> str:
    """A base58 string shaped like a Solana transaction signature (88 chars)."""
    return "".join(rng.choice(_B58) for _ in range(88))


_MAX_SENT = 100_000


class MockVenue:
    """One simulated venue (Raydium or Meteora) over the shared market of this process."""

    def __init__(
        self,
        name: str,
        market: Market,
        clock: MarketClock,
        ledger: Ledger,
        faults: FaultBoard,
        *,
        seed: int | None,
        quote_latency_ms: tuple[int, int],
        swap_latency_ms: tuple[int, int],
        failure_rate: float,
    ) -> None:
        self.name = name
        self._market = market
        self._clock = clock
        self._ledger = ledger
        self._faults = faults
        self._rng = random.Random(f"{seed}:{name}") if seed is not None else random.Random()
        # Signatures must be unique across processes even with a fixed seed.
        self._tx_rng = random.Random(secrets.randbits(64))
        self._quote_latency = quote_latency_ms
        self._swap_latency = swap_latency_ms
        self._failure_rate = failure_rate
        # Transactions this process sent and has not confirmed yet: confirming them
        # needs no ledger read. A stale copy is harmless, finalizing is guarded.
        self._sent: dict[str, TxRecord] = {}

    def _latency(self, bounds: tuple[int, int]) -> float:
        low, high = bounds
        return (low if low == high else self._rng.uniform(low, high)) / 1000

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        """The venue's quote after its latency; raises VenueError or MarketError."""
        fault = await self._faults.take(self.name, QUOTE_FAULTS)
        delay = self._latency(self._quote_latency)
        if fault is not None and fault.kind == "timeout":
            await asyncio.sleep(3600)  # the caller's timeout ends this
        if delay:
            await asyncio.sleep(delay)
        if (fault is not None and fault.kind == "error") or self._roll():
            raise VenueError(
                FailureReason.VENUE_UNAVAILABLE, f"{self.name} answered 503 to the quote request"
            )
        return self._market.quote(self.name, token_in, token_out, amount_in, self._clock())

    def _roll(self) -> bool:
        return self._failure_rate > 0 and self._rng.random() < self._failure_rate

    async def submit(
        self,
        order_id: UUID,
        attempt: int,
        seq: int,
        token_in: str,
        token_out: str,
        amount_in: Decimal,
        min_amount_out: Decimal,
    ) -> TxRecord:
        """Send the swap transaction; returns at once with its signature (idempotent per order).

        `seq` is the sequence number of the order's `building` event as the sender read
        it: the fencing token that stops a sender who lost the order (SubmitRefused).
        """
        now = datetime.now(UTC)
        tx = TxRecord(
            tx_hash=tx_signature(self._tx_rng),
            venue=self.name,
            order_id=order_id,
            attempt=attempt,
            token_in=token_in,
            token_out=token_out,
            amount_in=amount_in,
            min_amount_out=min_amount_out,
            status="pending",
            submitted_at=now,
            lands_at=now + timedelta(seconds=self._latency(self._swap_latency)),
        )
        sent = await self._ledger.submit(tx, seq)
        if len(self._sent) >= _MAX_SENT:  # orders that never came back to confirm
            self._sent.clear()
        self._sent[sent.tx_hash] = sent
        return sent

    async def confirm(self, tx_hash: str) -> TxRecord:
        """Wait for the transaction's outcome; the landed record, or VenueError/MarketError."""
        tx = self._sent.pop(tx_hash, None) or await self._ledger.get(tx_hash)
        if tx is None:
            raise VenueError(FailureReason.FAILED_TO_LAND, f"transaction {tx_hash} is unknown")
        if tx.status == "pending":
            wait = (tx.lands_at - datetime.now(UTC)).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
            tx = await self._ledger.finalize(await self._execute(tx))
        return _outcome(tx)

    async def _execute(self, tx: TxRecord) -> TxRecord:
        """Decide the transaction's fate at landing time, against the market as it is now."""
        fault = await self._faults.take(self.name, SWAP_FAULTS)
        kind = fault.kind if fault else None
        if kind == "drop" or (kind is None and self._roll()):
            return replace(tx, status="dropped", reason=FailureReason.FAILED_TO_LAND)
        if kind == "expire":
            return replace(tx, status="expired", reason=FailureReason.TX_EXPIRED)
        now = self._clock()
        if kind == "price" and fault is not None:
            self._market.jump(self.name, tx.token_in, fault.bps, now)
        try:
            fill = self._market.execute(
                self.name, tx.token_in, tx.token_out, tx.amount_in, tx.min_amount_out, now
            )
        except MarketError as err:
            return replace(tx, status="reverted", reason=err.reason)
        return replace(
            tx,
            status="landed",
            amount_out=fill.amount_out,
            executed_price=price_of(fill.amount_out, fill.amount_in),
        )


def _outcome(tx: TxRecord) -> TxRecord:
    if tx.status == "landed":
        return tx
    reason = tx.reason or FailureReason.FAILED_TO_LAND
    words = {
        "dropped": "the transaction was dropped before it landed",
        "expired": "the transaction's blockhash expired before it landed",
        "reverted": "the swap reverted on chain",
    }.get(tx.status, "the transaction did not land")
    raise VenueError(reason, f"{tx.venue}: {words} ({reason})")
