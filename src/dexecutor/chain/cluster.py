"""The simulated cluster: one market, its accounts, its slot clock, its ledger, its faults.

Everything that changes the market happens here, in one process, so every API and
worker process sees the same prices and balances. The market is the pure core; this
class gives it a clock (slots of CHAIN_SLOT_MS, 400 ms by default: market time is the
current slot's start),
accepts signed transactions the way an RPC node's preflight does, lands them at the
slot the landing model (or, in latency mode, the configured latency) says, runs them
there against the market and the accounts as they are then (minimum output, balances,
fees), lets them expire with their blockhash, and journals every change so a restart
finds it again (see `restore`).
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import random
import time
from collections import deque
from dataclasses import dataclass, replace
from decimal import Decimal
from itertools import islice
from typing import Any
from uuid import UUID

import structlog
from solders.signature import Signature

from dexecutor.background import cancel_and_wait
from dexecutor.chain import protocol as p
from dexecutor.chain import transaction
from dexecutor.chain.accounts import NATIVE, Accounts
from dexecutor.chain.execution import PLAN, Swapped, apply_swap_action, swap_action
from dexecutor.chain.faults import FaultBoard
from dexecutor.chain.journal import Journal
from dexecutor.chain.landing import Congestion
from dexecutor.chain.records import (
    DROPPED,
    EXPIRED,
    LANDED,
    LIVE,
    PENDING,
    REVERTED,
    Action,
    ChainTx,
)
from dexecutor.chain.store import ChainStore
from dexecutor.chain.transaction import SwapTx
from dexecutor.domain.failures import FailureReason
from dexecutor.market.simulation import Market, MarketParams
from dexecutor.market.types import VENUES, MarketError, Quote
from dexecutor.market.venue import QUOTE_FAULTS, VenueError

log = structlog.get_logger(__name__)

SLOT_S = p.SLOT_MS / 1000  # the default slot length (Solana's), in seconds
# Save the slot at least this often while idle, so a restart resumes near where it was.
SLOT_SAVE_S = 2.0
# Final transactions kept in memory for status reads; older ones are read from PostgreSQL.
KEEP_IN_MEMORY = 200_000
# How long a status read waits for the journal to save what came before it.
STATUS_WAIT_S = 5.0
# A `late` fault without `slots`: the transaction lands this many slots after it came.
LATE_SLOTS = 20
# The faucet's largest single grant, in base units (lamports for SOL): a u64.
MAX_AIRDROP = 2**63 - 1
# requestAirdrop signatures remembered for status reads (a faucet's receipts).
KEEP_AIRDROPS = 10_000
# Faults that decide how a transaction lands, taken at its first broadcast.
LANDING_FAULTS = ("drop", "expire", "late")


@dataclass(frozen=True, slots=True)
class Latencies:
    """How the chain answers and lands: latencies, losses, blockhash validity."""

    quote_ms: tuple[int, int]
    swap_ms: tuple[int, int]
    failure_rate: float
    landing: str = "latency"  # model: the landing model; latency: after swap_ms
    blockhash_slots: int = p.BLOCKHASH_VALID_SLOTS
    slot_s: float = SLOT_S  # a slot's length (CHAIN_SLOT_MS)


class TxRefused(Exception):
    """sendTransaction refused, as an RPC node's preflight refuses it.

    `code` is the JSON-RPC error code; `err` the TransactionError a -32002 carries
    (BlockhashNotFound, InsufficientFundsForFee, AlreadyProcessed), None otherwise.
    """

    def __init__(self, message: str, err: Any = None, code: int = p.RPC_TX_REFUSED) -> None:
        super().__init__(message)
        self.message = message
        self.err = err
        self.code = code


class ChainBehind(Exception):
    """The chain cannot answer truthfully now: its journal is not saving."""


class SlotClock:
    """Slots of `slot_s` seconds counted from `first`, the slot this run starts at.

    The slot is read from the monotonic clock, not counted by a ticker: a late tick
    skips slots rather than slowing the chain down, however short the slots are.
    """

    def __init__(self, first: int, slot_s: float = SLOT_S) -> None:
        self._first = first
        self._slot_s = slot_s
        self._t0 = time.monotonic()

    def slot(self) -> int:
        return self._first + int((time.monotonic() - self._t0) / self._slot_s)

    def until_next(self) -> float:
        elapsed = (time.monotonic() - self._t0) / self._slot_s
        return (int(elapsed) + 1 - elapsed) * self._slot_s


def market_time(slot: int, slot_s: float = SLOT_S, offset_s: float = 0.0) -> float:
    """The market time (seconds since genesis) at which a slot starts.

    `offset_s` is 0 unless the slot length changed between two runs of one chain: the
    slot numbers go on, and the offset keeps the market's time from going back.
    """
    return round(offset_s + slot * slot_s, 3)


def _swap(market: Market, swap: dict[str, Any], at: float) -> Quote:
    return market.execute(
        swap["venue"],
        swap["tokenIn"],
        swap["tokenOut"],
        Decimal(swap["amountIn"]),
        Decimal(swap["minAmountOut"]),
        at,
    )


def apply_action(market: Market, kind: str, data: dict[str, Any], at: float) -> Quote | None:
    """Apply one journalled action to the market (live, and again on replay)."""
    if kind == "fill":
        return _swap(market, data, at)
    if kind == "route":  # a route's hops, in order (all or nothing was decided live)
        fill = None
        for hop in data["hops"]:
            fill = _swap(market, hop, at)
        return fill
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
        accounts: Accounts | None = None,
        time_offset_s: float = 0.0,
    ) -> None:
        self.market = market
        self._time_offset = time_offset_s  # see market_time
        self.genesis = genesis
        self.clock = SlotClock(first_slot, latencies.slot_s)
        self.faults = FaultBoard()
        self._store = store
        self._lat = latencies
        self._rng = random.Random(f"{market.seed}:faults")
        self._congestion = Congestion(market.seed) if latencies.landing == "model" else None
        self.accounts = accounts if accounts is not None else Accounts()
        self._blockhashes: dict[str, int] = {}  # valid blockhash -> its slot
        self._hash_order: deque[tuple[int, str]] = deque()
        self._hashed_to = -1
        self._swaps: dict[str, SwapTx] = {}  # pending transactions, decoded
        self._arrivals: list[tuple[int, str]] = []  # heap: (slot it lands at, signature)
        self._expiries: list[tuple[int, str]] = []  # heap: (last valid slot, signature)
        self._timers: set[str] = set()  # latency mode: landings scheduled
        self._airdrops: dict[str, int] = {}  # requestAirdrop signature -> its slot
        self._airdrop_count = 0
        self._txs: dict[str, ChainTx] = {}  # latest state of transactions this run saw
        self._public: dict[str, ChainTx] = {}  # their latest *saved* state: what clients see
        self._live: dict[UUID, str] = {}  # order id -> its live transaction
        # Failed transactions of earlier runs: with `_live` and `_txs`, every signature
        # the chain ever accepted, so a re-send is recognised without asking PostgreSQL.
        self._dead: set[str] = set()
        self._journal = Journal(store, next_action_id, self.clock.slot, self._saved)
        self.accounts.on_change = self._journal.account
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
        # A run with a shorter slot than the last would start behind the market's time.
        offset = max(0.0, market.now - market_time(first, latencies.slot_s))
        market.advance(market_time(first, latencies.slot_s, offset))
        next_id = (actions[-1].id + 1) if actions else 1
        accounts = Accounts(await store.accounts())
        cluster = cls(market, store, gen.genesis, first, next_id, latencies, accounts, offset)
        cluster._live = await store.live()
        cluster._dead = await store.dead()
        pending = await store.pending()
        log.info(
            "chain restored",
            slot=first, actions=len(actions), pending=len(pending), seed=gen.seed,
            preset=gen.preset, owners=accounts.owners(),
            ms=round((time.perf_counter() - started) * 1000),
        )  # fmt: skip
        for tx in pending:
            cluster._resume(tx)
        return cluster

    def _resume(self, tx: ChainTx) -> None:
        """A transaction an earlier run left pending: it lands or expires as it would have."""
        self._txs[tx.signature] = tx
        self._public[tx.signature] = tx
        try:
            swap = transaction.decode(tx.payload)[0]
        except ValueError:
            swap = None
        if swap is None or tx.last_valid is None:  # not a signed transaction: cannot run
            self._finish(replace(tx, status=EXPIRED))
            return
        self._swaps[tx.signature] = swap
        heapq.heappush(self._expiries, (tx.last_valid, tx.signature))
        if tx.lands_at is not None:
            heapq.heappush(self._arrivals, (tx.lands_at, tx.signature))
        elif tx.fault is None and self._congestion is None:
            self._land_later(tx.signature, 0.0)

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
        """Advance the market slot by slot, landing and expiring; save the slot now and then."""
        saved_at = time.monotonic()
        while True:
            await asyncio.sleep(self.clock.until_next())
            self.now()
            self._on_slot(self.slot())
            if time.monotonic() - saved_at >= SLOT_SAVE_S:
                self._journal.touch()
                saved_at = time.monotonic()

    # -- time ----------------------------------------------------------------------------

    def slot(self) -> int:
        return self.clock.slot()

    def now(self, slot: int | None = None) -> float:
        """The market time of `slot` (default: the current one), the market advanced to it."""
        slot = self.clock.slot() if slot is None else slot
        at = market_time(slot, self._lat.slot_s, self._time_offset)
        self.market.advance(at)
        return at

    def latest_blockhash(self) -> tuple[str, int]:
        """The current slot's blockhash and the last block height it is valid at."""
        slot = self.slot()
        self._hash_to(slot)
        return p.blockhash_of(self.genesis, slot), slot + self._lat.blockhash_slots

    def recent_fees(self, n: int = 150) -> list[tuple[int, int]]:
        """Each recent slot's lowest landed priority fee (µlamports/CU), oldest first."""
        slot = self.slot()
        if self._congestion is None:
            return [(s, 0) for s in range(max(slot - n + 1, 0), slot + 1)]
        return self._congestion.recent_fees(slot, n)

    async def airdrop(self, owner: str, mint: str, units: int) -> int:
        """The faucet: credit `units` of `mint` (SOL: lamports); the new balance, durable."""
        balance = self.accounts.airdrop(owner, mint, units)
        await self._journal.durable()
        return balance

    async def request_airdrop(self, owner: str, lamports: int) -> str:
        """requestAirdrop: SOL from the faucet, and a signature whose status reads landed."""
        await self.airdrop(owner, NATIVE, lamports)
        self._airdrop_count += 1
        seed = f"airdrop:{self.genesis}:{owner}:{self._airdrop_count}".encode()
        signature = str(Signature.from_bytes(hashlib.sha512(seed).digest()))
        self._airdrops[signature] = self.slot()
        while len(self._airdrops) > KEEP_AIRDROPS:
            del self._airdrops[next(iter(self._airdrops))]
        return signature

    def airdrop_status(self, signature: str, slot: int) -> dict[str, Any] | None:
        """The status of a faucet grant (landed at once), or None when it is not one."""
        landed = self._airdrops.get(signature)
        if landed is None:
            return None
        final = slot - landed >= 32
        return {
            "slot": landed,
            "confirmations": None if final else slot - landed,
            "err": None,
            "status": {"Ok": None},
            "confirmationStatus": "finalized" if final else "confirmed",
        }

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

    # -- blockhashes ----------------------------------------------------------------------

    def _hash_to(self, slot: int) -> None:
        """Remember the blockhashes of the slots still valid at `slot` (and forget older)."""
        valid = self._lat.blockhash_slots
        for s in range(max(self._hashed_to + 1, slot - valid, 0), slot + 1):
            blockhash = p.blockhash_of(self.genesis, s)
            self._blockhashes[blockhash] = s
            self._hash_order.append((s, blockhash))
        self._hashed_to = max(self._hashed_to, slot)
        while self._hash_order and self._hash_order[0][0] < slot - valid:
            _, old = self._hash_order.popleft()
            self._blockhashes.pop(old, None)

    def blockhash_slot(self, blockhash: str) -> int | None:
        """The slot a blockhash names while it is valid; None when unknown or expired."""
        slot = self.slot()
        self._hash_to(slot)
        made = self._blockhashes.get(blockhash)
        if made is None or made + self._lat.blockhash_slots < slot:
            return None
        return made

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
        """Accept a transaction (or a rebroadcast of one); its signature once durable.

        The checks a real RPC node's preflight makes: the bytes parse, the signature
        verifies, the blockhash is valid, the fee payer can pay the fee. The same
        signature again is the same transaction: never run twice, but each broadcast of
        a pending one is another chance to land. A different transaction for an order
        that already has a live one is refused.
        """
        try:
            swap, tx = transaction.decode(encoded)
        except ValueError as err:
            raise TxRefused(f"invalid transaction: {err}", code=p.RPC_INVALID_PARAMS) from None
        if not transaction.verify(tx):
            raise TxRefused(
                "Transaction signature verification failure", code=p.RPC_SIGNATURE_FAILURE
            )
        signature = transaction.signature(tx)
        live = self._live.get(swap.order_id)
        if signature not in self._txs and (signature == live or signature in self._dead):
            known = (await self._store.txs([signature])).get(signature)  # an earlier run's
            if known is not None:
                self._txs[signature] = known
        known = self._txs.get(signature)
        if known is not None:
            self._broadcast(known)
        else:
            self._accept(swap, signature, encoded, live)
        await self._journal.durable()
        return signature

    def _accept(self, swap: SwapTx, signature: str, encoded: str, live: str | None) -> None:
        if live is not None:
            raise TxRefused(
                f"order {swap.order_id} already has a live transaction {live}",
                err=p.ALREADY_PROCESSED,
            )
        made = self.blockhash_slot(swap.recent_blockhash)
        if made is None:
            raise TxRefused("Blockhash not found", err=p.BLOCKHASH_NOT_FOUND)
        fee = swap.base_fee_lamports + swap.priority_fee_lamports
        if self.accounts.lamports(swap.owner) < fee:
            raise TxRefused("Insufficient funds for fee", err=p.INSUFFICIENT_FUNDS_FOR_FEE)
        slot = self.slot()
        fault = self.faults.take(swap.venue, LANDING_FAULTS)
        kind = None if fault is None else ("drop" if fault.kind == "expire" else fault.kind)
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
            received_slot=slot,
            lands_in_ms=0,
            payload=encoded,
            owner=swap.owner,
            fee=fee,
            last_valid=made + self._lat.blockhash_slots,
            fault=kind,
            lands_at=slot + (fault.slots or LATE_SLOTS) if fault and kind == "late" else None,
        )
        self._txs[signature] = tx
        self._swaps[signature] = swap
        self._live[swap.order_id] = signature
        self._journal.tx(tx)
        assert tx.last_valid is not None
        heapq.heappush(self._expiries, (tx.last_valid, signature))
        if tx.lands_at is not None:
            heapq.heappush(self._arrivals, (tx.lands_at, signature))
        self._broadcast(tx)

    def _broadcast(self, tx: ChainTx) -> None:
        """One broadcast of a pending transaction: lost, or it lands (sooner, perhaps)."""
        if tx.status != PENDING or tx.fault is not None or tx.last_valid is None:
            return  # final, or a scripted fault decides (drop: never; late: when it says)
        slot = self.slot()
        if slot > tx.last_valid or self._roll():
            return  # expired (it never lands now), or this broadcast was lost
        if self._congestion is None:  # latency mode: the configured latency, no model
            if tx.signature not in self._timers:
                self._land_later(tx.signature, self._delay(self._lat.swap_ms))
            return
        swap = self._swaps[tx.signature]
        slots = self._congestion.broadcast(slot, swap.compute_unit_price, self._rng)
        if slots is None:
            return  # lost on the way to the leader
        at = slot + slots
        if tx.lands_at is None or at < tx.lands_at:
            sooner = replace(tx, lands_at=at)
            self._txs[tx.signature] = sooner
            self._journal.tx(sooner)
            heapq.heappush(self._arrivals, (at, tx.signature))

    def _land_later(self, signature: str, delay: float) -> None:
        async def later() -> None:
            try:
                if delay:
                    await asyncio.sleep(delay)
            finally:
                self._timers.discard(signature)
            self._land(signature)

        self._timers.add(signature)
        task = asyncio.create_task(later())
        self._landing.add(task)
        task.add_done_callback(self._landing.discard)

    def _on_slot(self, slot: int) -> None:
        """Each slot: land what arrives in it, expire what can no longer land."""
        self._hash_to(slot)
        while self._arrivals and self._arrivals[0][0] <= slot:
            at, signature = heapq.heappop(self._arrivals)
            tx = self._txs.get(signature)
            if tx is not None and tx.status == PENDING and tx.lands_at == at:
                self._land(signature)
        while self._expiries and self._expiries[0][0] < slot:
            _, signature = heapq.heappop(self._expiries)
            tx = self._txs.get(signature)
            if tx is not None and tx.status == PENDING:
                self._finish(replace(tx, status=DROPPED if tx.fault == "drop" else EXPIRED))

    def _finish(self, done: ChainTx) -> None:
        if done.status not in LIVE and self._live.get(done.order_id) == done.signature:
            del self._live[done.order_id]
        if done.final:
            self._swaps.pop(done.signature, None)
        self._txs[done.signature] = done
        self._journal.tx(done)

    def _land(self, signature: str) -> None:
        """The transaction reaches its slot: run it against the market as it is now.

        The fee is charged first (a payer that cannot pay it is not included: the
        transaction waits for a rebroadcast or its expiry); then the swap runs, and a
        swap that fails reverts everything but the fee, as on chain.
        """
        tx = self._txs[signature]
        if tx.status != PENDING:
            return
        slot = self.slot()
        assert tx.last_valid is not None and tx.owner is not None
        if slot > tx.last_valid:
            self._finish(replace(tx, status=DROPPED if tx.fault == "drop" else EXPIRED))
            return
        swap = self._swaps[signature]
        owner = swap.owner
        mint_in, mint_out = p.mint_of(swap.token_in), p.mint_of(swap.token_out)
        mints = list(dict.fromkeys((NATIVE, mint_in, mint_out)))
        before = {m: self.accounts.token(owner, m) for m in mints}
        if not self.accounts.charge(owner, tx.fee):
            self._finish(replace(tx, lands_at=None))  # not included; may land if resent
            return
        at = self.now()
        fault = self.faults.take(tx.venue, ("price",))
        if fault is not None:
            self._act(slot, at, "jump", {"venue": tx.venue, "token": tx.token_in, "bps": fault.bps})
        # An exact-out swap must hold its maximum (the program may spend up to it) and
        # is debited only what it spent.
        units_in = p.to_base_units(swap.amount_in, p.token_of(swap.token_in))
        err: Any = None
        reason: str | None = None
        amount_out: Decimal | None = None
        rent = 0
        if not self.accounts.can_swap(owner, mint_in, units_in, mint_out):
            reason = FailureReason.INSUFFICIENT_FUNDS
        else:
            try:
                swapped = self._execute(swap, signature, slot, at)
            except MarketError as refusal:
                reason = refusal.reason
            except ValueError:  # amounts the pools refuse
                reason = FailureReason.TX_FAILED
            else:
                amount_out = swapped.amount_out
                spent = p.to_base_units(swapped.amount_in, p.token_of(swap.token_in))
                units_out = p.to_base_units(amount_out, p.token_of(swap.token_out))
                rent = self.accounts.swap(owner, mint_in, spent, mint_out, units_out).rent
        if reason is not None:
            err = p.error_of(reason)
        after = {m: self.accounts.token(owner, m) for m in mints}
        budget = transaction.compute_units_for(swap.legs)
        meta = {
            "err": err,
            "blockTime": int(time.time()),
            "rent": rent,
            "pre": before,
            "post": after,
            "units": min(swap.compute_unit_limit, budget * (3 if err is None else 1) // 4),
            "out": None
            if amount_out is None
            else p.to_base_units(amount_out, p.token_of(swap.token_out)),
        }
        self._finish(
            replace(
                tx,
                status=LANDED if err is None else REVERTED,
                reason=reason,
                slot=slot,
                lands_at=slot,
                amount_out=amount_out,
                meta=meta,
            )
        )

    def _execute(self, swap: SwapTx, signature: str, slot: int, at: float) -> Swapped:
        """Run the swap (or the whole route) on the market; MarketError when it fails.

        A single-venue exact-in swap is the venue's own swap; a split, a two-hop leg or an
        exact-out swap is the router's instruction (`chain/execution.py`): every leg on its
        named pools, repriced now, the minimum on the total, all or nothing, and for
        exact-out the least input that delivers the output (never more than was sent).
        """
        kind, data = swap_action(swap)
        swapped = apply_swap_action(self.market, kind, data, at)
        self._journal.action(slot, at, kind, {**data, "signature": signature})
        return swapped

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
        """Each transaction's latest saved state (None: unknown).

        Every change made before the call is saved first, so a transaction that landed
        in an earlier slot is never reported unknown: a client that saw the block height
        pass a transaction's last valid one and then reads it unknown may rely on it
        never landing. ChainBehind when the journal cannot save (PostgreSQL away).
        """
        if not self._journal.saved_all:
            try:  # (a timeout scope, not wait_for: no task for each reader)
                async with asyncio.timeout(STATUS_WAIT_S):
                    await self._journal.durable()
            except TimeoutError:
                raise ChainBehind("the chain cannot save its ledger: statuses unknown") from None
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


__all__ = [
    "Action",
    "ChainBehind",
    "Cluster",
    "Latencies",
    "TxRefused",
    "apply_action",
    "params_of",
]
