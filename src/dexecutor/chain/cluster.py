"""The simulated cluster: one market, its slot clock, its ledger, its faults.

Everything that changes the market happens here, in one process, so every API and
worker process sees the same prices. The market is the pure core; this class gives
it a clock (400 ms slots: market time is the current slot's start), lands
transactions after their latency at the slot where they land, enforces the minimum
output there, and journals every change so a restart replays it (see `restore`).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, replace
from decimal import Decimal
from itertools import islice
from typing import Any
from uuid import UUID

import structlog

from dexecutor.background import cancel_and_wait
from dexecutor.chain import protocol as p
from dexecutor.chain.execution import PLAN, apply_swap_action
from dexecutor.chain.faults import FaultBoard
from dexecutor.chain.journal import Journal
from dexecutor.chain.records import LANDED, LIVE, PENDING, Action, ChainTx
from dexecutor.chain.store import ChainStore
from dexecutor.domain.failures import FailureReason
from dexecutor.market.simulation import Market, MarketParams
from dexecutor.market.types import VENUES, MarketError, Quote
from dexecutor.market.venue import QUOTE_FAULTS, SWAP_FAULTS, VenueError

log = structlog.get_logger(__name__)

SLOT_S = p.SLOT_MS / 1000
# Save the slot at least this often while idle, so a restart resumes near where it was.
SLOT_SAVE_S = 2.0
# Final transactions kept in memory for status reads; older ones are read from PostgreSQL.
KEEP_IN_MEMORY = 200_000


@dataclass(frozen=True, slots=True)
class Latencies:
    quote_ms: tuple[int, int]
    swap_ms: tuple[int, int]
    failure_rate: float


class TxRefused(Exception):
    """sendTransaction refused: malformed, or its order already has another live swap."""


class SlotClock:
    """Slots of 400 ms counted from `first`, the slot this run of the chain starts at."""

    def __init__(self, first: int) -> None:
        self._first = first
        self._t0 = time.monotonic()

    def slot(self) -> int:
        return self._first + int((time.monotonic() - self._t0) / SLOT_S)

    def until_next(self) -> float:
        elapsed = (time.monotonic() - self._t0) / SLOT_S
        return (int(elapsed) + 1 - elapsed) * SLOT_S


def market_time(slot: int) -> float:
    """The market time (seconds since genesis) at which a slot starts."""
    return round(slot * SLOT_S, 3)


def apply_action(market: Market, kind: str, data: dict[str, Any], at: float) -> Quote | None:
    """Apply one journalled action to the market (live, and again on replay)."""
    if kind == "fill":
        return market.execute(
            data["venue"],
            data["tokenIn"],
            data["tokenOut"],
            Decimal(data["amountIn"]),
            Decimal(data["minAmountOut"]),
            at,
        )
    if kind == PLAN:  # a split or exact-out route's legs (chain/execution.py)
        apply_swap_action(market, kind, data, at)
        return None
    if kind == "launch":
        market.launch(data["token"], data["venue"], at)
    elif kind == "jump":
        market.jump(data["venue"], data["token"], int(data["bps"]), at)
    else:
        raise ValueError(f"unknown chain action {kind!r}")
    return None


class Cluster:
    def __init__(
        self,
        market: Market,
        store: ChainStore,
        genesis: str,
        first_slot: int,
        next_action_id: int,
        latencies: Latencies,
    ) -> None:
        self.market = market
        self.genesis = genesis
        self.clock = SlotClock(first_slot)
        self.faults = FaultBoard()
        self._store = store
        self._lat = latencies
        self._rng = random.Random(f"{market.seed}:faults")
        self._txs: dict[str, ChainTx] = {}  # latest state of transactions this run saw
        self._public: dict[str, ChainTx] = {}  # their latest *saved* state: what clients see
        self._live: dict[UUID, str] = {}  # order id -> its live transaction
        # Failed transactions of earlier runs: with `_live` and `_txs`, every signature
        # the chain ever accepted, so a re-send is recognised without asking PostgreSQL.
        self._dead: set[str] = set()
        self._journal = Journal(store, next_action_id, self.clock.slot, self._saved)
        self._landing: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None

    # -- life ----------------------------------------------------------------------------

    @classmethod
    async def restore(
        cls,
        store: ChainStore,
        params_of: Any,
        seed: int | None,
        preset: str,
        latencies: Latencies,
    ) -> Cluster:
        """Open the chain: its stored genesis, the market rebuilt by replaying its actions.

        `params_of(preset)` builds the market params of a preset name. A chain started
        before goes on where it was, with its own seed (when `seed` is None) and preset.
        Asking for another preset or seed starts a new genesis: a fresh market (its
        journal goes), the same ledger.
        """
        started = time.perf_counter()
        first_seed = seed if seed is not None else random.randrange(2**31)
        gen = await store.genesis(first_seed, preset, _genesis_hash(first_seed))
        if gen.preset != preset or (seed is not None and gen.seed != seed):
            log.warning(
                "new genesis: the market starts afresh",
                stored_seed=gen.seed, stored_preset=gen.preset, seed=first_seed, preset=preset,
            )  # fmt: skip
            gen = await store.new_genesis(first_seed, preset, _genesis_hash(first_seed))
        market = Market(params_of(gen.preset), seed=gen.seed)
        actions = await store.actions()
        for action in actions:
            try:
                apply_action(market, action.kind, action.data, action.at)
            except (MarketError, ValueError) as err:  # a fill that reverted cannot be logged
                log.error("replayed action refused", action_id=action.id, error=str(err))
        first = gen.slot + 1
        market.advance(market_time(first))
        cluster = cls(
            market, store, gen.genesis, first, (actions[-1].id + 1) if actions else 1, latencies
        )
        cluster._live = await store.live()
        cluster._dead = await store.dead()
        pending = await store.pending()
        log.info(
            "chain restored",
            slot=first, actions=len(actions), pending=len(pending), seed=gen.seed,
            preset=gen.preset, ms=round((time.perf_counter() - started) * 1000),
        )  # fmt: skip
        for tx in pending:
            cluster._txs[tx.signature] = tx
            cluster._public[tx.signature] = tx
            cluster._land_later(tx, 0.0)
        return cluster

    async def start(self) -> None:
        self._journal.start()
        self._journal.touch()
        self._ticker = asyncio.create_task(self._tick(), name="chain-slots")

    async def stop(self) -> None:
        await cancel_and_wait(self._ticker)
        for task in list(self._landing):
            await cancel_and_wait(task)
        await self._journal.stop()

    async def _tick(self) -> None:
        """Advance the market slot by slot; save the slot now and then."""
        saved_at = time.monotonic()
        while True:
            await asyncio.sleep(self.clock.until_next())
            self.now()
            if time.monotonic() - saved_at >= SLOT_SAVE_S:
                self._journal.touch()
                saved_at = time.monotonic()

    # -- time ----------------------------------------------------------------------------

    def slot(self) -> int:
        return self.clock.slot()

    def now(self, slot: int | None = None) -> float:
        """The market time of `slot` (default: the current one), the market advanced to it."""
        at = market_time(self.clock.slot() if slot is None else slot)
        self.market.advance(at)
        return at

    def latest_blockhash(self) -> tuple[str, int]:
        slot = self.slot()
        return p.blockhash_of(self.genesis, slot), slot + p.BLOCKHASH_VALID_SLOTS

    @property
    def healthy(self) -> bool:
        return not self._journal.failing

    # -- quotes --------------------------------------------------------------------------

    def _delay(self, bounds: tuple[int, int]) -> float:
        low, high = bounds
        return (low if low == high else self._rng.uniform(low, high)) / 1000

    def _roll(self) -> bool:
        rate = self._lat.failure_rate
        return rate > 0 and self._rng.random() < rate

    async def quote(self, venue: str, token_in: str, token_out: str, amount: Decimal) -> Quote:
        """A venue's quote after the quote latency; VenueError for faults, MarketError."""
        fault = self.faults.take(venue, QUOTE_FAULTS)
        if fault is not None and fault.kind == "timeout":
            await asyncio.sleep(3600)  # the client's timeout ends this
        delay = self._delay(self._lat.quote_ms)
        if delay:
            await asyncio.sleep(delay)
        if (fault is not None and fault.kind == "error") or self._roll():
            raise VenueError(
                FailureReason.VENUE_UNAVAILABLE, f"{venue} answered 503 to the quote request"
            )
        return self.market.quote(venue, token_in, token_out, amount, self.now())

    async def venue_answers(self, venues: list[str]) -> dict[str, VenueError | None]:
        """Which venues answer a routing request now: None, or why not (one quote latency).

        A venue with a scripted timeout alone in the request hangs it (the client's
        timeout ends it, as for one venue's quote); among others it is left out as timed
        out, the way an aggregator routes around a venue that does not answer.
        """
        faults = {v: self.faults.take(v, QUOTE_FAULTS) for v in venues}
        if len(venues) == 1 and (fault := faults[venues[0]]) and fault.kind == "timeout":
            await asyncio.sleep(3600)
        delay = self._delay(self._lat.quote_ms)
        if delay:
            await asyncio.sleep(delay)
        answers: dict[str, VenueError | None] = {}
        for venue in venues:
            fault = faults[venue]
            if fault is not None and fault.kind == "timeout":
                answers[venue] = VenueError(
                    FailureReason.VENUE_TIMEOUT, f"{venue} did not answer the quote request"
                )
            elif (fault is not None and fault.kind == "error") or self._roll():
                answers[venue] = VenueError(
                    FailureReason.VENUE_UNAVAILABLE, f"{venue} answered 503 to the quote request"
                )
            else:
                answers[venue] = None
        return answers

    # -- transactions ----------------------------------------------------------------------

    async def send(self, encoded: str) -> str:
        """Accept a transaction; its signature once it is durably in the ledger.

        The same signature again is the same transaction: accepted once, run once. A
        different transaction for an order that already has a live one is refused.
        """
        try:
            swap = p.SwapTx.decode(encoded)
        except ValueError as err:
            raise TxRefused(str(err)) from None
        signature = p.signature_of(encoded)
        live = self._live.get(swap.order_id)
        if signature not in self._txs and (signature == live or signature in self._dead):
            known = (await self._store.txs([signature])).get(signature)  # an earlier run's
            if known is not None:
                self._txs[signature] = known
        if signature not in self._txs:
            if live is not None and live != signature:
                raise TxRefused(f"order {swap.order_id} already has a live transaction {live}")
            delay = self._delay(self._lat.swap_ms)
            tx = ChainTx(
                signature=signature,
                venue=swap.venue,
                order_id=swap.order_id,
                attempt=swap.attempt,
                token_in=swap.token_in,
                token_out=swap.token_out,
                amount_in=swap.amount_in,
                min_amount_out=swap.min_amount_out,
                status=PENDING,
                received_slot=self.slot(),
                lands_in_ms=int(delay * 1000),
                payload=encoded,
            )
            self._txs[signature] = tx
            self._live[swap.order_id] = signature
            self._journal.tx(tx)
            if delay:
                self._land_later(tx, delay)
            else:
                self._land(signature)
        await self._journal.durable()
        return signature

    def _land_later(self, tx: ChainTx, delay: float) -> None:
        async def later() -> None:
            await asyncio.sleep(delay)
            self._land(tx.signature)

        task = asyncio.create_task(later())
        self._landing.add(task)
        task.add_done_callback(self._landing.discard)

    def _land(self, signature: str) -> None:
        """The transaction reaches its slot: run it against the market as it is now."""
        tx = self._txs[signature]
        if tx.status != PENDING:
            return
        fault = self.faults.take(tx.venue, SWAP_FAULTS)
        kind = fault.kind if fault else None
        slot = self.slot()
        at = self.now()
        if kind == "drop" or (kind is None and self._roll()):
            done = replace(tx, status="dropped", reason=FailureReason.FAILED_TO_LAND, slot=slot)
        elif kind == "expire":
            done = replace(tx, status="expired", reason=FailureReason.TX_EXPIRED, slot=slot)
        else:
            if kind == "price" and fault is not None:
                self._act(
                    slot, at, "jump", {"venue": tx.venue, "token": tx.token_in, "bps": fault.bps}
                )
            data = {
                "venue": tx.venue,
                "tokenIn": tx.token_in,
                "tokenOut": tx.token_out,
                "amountIn": str(tx.amount_in),
                "minAmountOut": str(tx.min_amount_out),
            }
            try:
                fill = apply_action(self.market, "fill", data, at)
            except MarketError as err:
                done = replace(tx, status="reverted", reason=err.reason, slot=slot)
            else:
                assert fill is not None
                self._journal.action(slot, at, "fill", {**data, "signature": tx.signature})
                done = replace(tx, status=LANDED, amount_out=fill.amount_out, slot=slot)
        if done.status not in LIVE and self._live.get(tx.order_id) == signature:
            del self._live[tx.order_id]
        self._txs[signature] = done
        self._journal.tx(done)

    def _saved(self, txs: list[ChainTx]) -> None:
        for tx in txs:
            self._public.pop(tx.signature, None)  # newest last: pruning drops the oldest
            self._public[tx.signature] = tx
        excess = len(self._public) - KEEP_IN_MEMORY
        if excess > 0:
            for signature in list(islice(self._public, excess + KEEP_IN_MEMORY // 10)):
                tx = self._public[signature]
                if tx.final:
                    del self._public[signature]
                    self._txs.pop(signature, None)
                    if tx.status != LANDED:
                        self._dead.add(signature)

    async def statuses(self, signatures: list[str]) -> list[ChainTx | None]:
        """Each transaction's latest saved state (None: unknown, or not saved yet)."""
        missing = [s for s in signatures if s not in self._public]
        found = await self._store.txs(missing) if missing else {}
        return [self._public.get(s) or found.get(s) for s in signatures]

    # -- market controls -------------------------------------------------------------------

    def _act(self, slot: int, at: float, kind: str, data: dict[str, Any]) -> None:
        apply_action(self.market, kind, data, at)
        self._journal.action(slot, at, kind, data)

    async def launch(self, token: str, venue: str) -> bool:
        """Open TOKEN/SOL on `venue`; True when it was open already (nothing changes)."""
        if self.market.is_tradable(token, venue):
            return True
        self._act(self.slot(), self.now(), "launch", {"token": token, "venue": venue})
        await self._journal.durable()
        return False

    async def jump(self, venue: str, token: str, bps: int) -> None:
        self._act(self.slot(), self.now(), "jump", {"venue": venue, "token": token, "bps": bps})
        await self._journal.durable()

    # -- reads -------------------------------------------------------------------------------

    def mids(self, token_in: str, token_out: str, at: float) -> dict[str, Decimal | None]:
        out: dict[str, Decimal | None] = {}
        for venue in VENUES:
            try:
                out[venue] = self.market.mid_price(venue, token_in, token_out, at)
            except MarketError:
                out[venue] = None
        return out

    def reference(self, token_in: str, token_out: str, at: float) -> Decimal:
        return self.market.reference_price(token_in, at) / self.market.reference_price(
            token_out, at
        )

    def best_price(
        self, token_in: str, token_out: str, amount: Decimal, at: float
    ) -> Decimal | None:
        """The best price any venue quotes for this size at `at` (no latency, no faults)."""
        best: Decimal | None = None
        for venue in VENUES:
            try:
                q = self.market.quote(venue, token_in, token_out, amount, at)
            except MarketError:
                continue
            best = q.price if best is None else max(best, q.price)
        return best


def _genesis_hash(seed: int) -> str:
    return p.blockhash_of(f"genesis:{seed}:{time.time_ns()}", 0)


def params_of(preset: str) -> MarketParams:
    return MarketParams.preset(preset)


__all__ = ["Action", "Cluster", "Latencies", "TxRefused", "apply_action", "params_of"]
