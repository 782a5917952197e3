"""The mock market: both venues' pools, their price walks, routing and fills.

`Market` is what the engine's venue adapters call. It is a pure state machine: the
caller passes the time (`now`, seconds since market start) and the seed; the market
reads no clock, sleeps never, does no I/O, reads no environment and draws randomness
only from its own seeded streams. The same seed and the same calls with the same `now`
values give identical results. Latency and injected faults are not modelled here;
they belong to the edge layer that wraps the market for the engine.

Time moves on a fixed grid of ticks (`MarketParams.tick_seconds`, Solana's 400 ms
slot): every tick the reference and venue walks step, arbitrage pulls each pool most of
the way toward its venue's target price, other traders' flow nudges it, and launch
fees fall. Quotes and fills see the state as of the last tick at or before `now`, so
how often someone quotes never changes the prices anyone else gets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_FLOOR, Context, Decimal, localcontext
from itertools import pairwise

from dexecutor.domain.money import decimal_places, math_context, price_of
from dexecutor.market.cpmm import CpmmPool
from dexecutor.market.dlmm import DlmmPool, FeeParams
from dexecutor.market.params import (
    LaunchParams,
    MarketParams,
    PairParams,
    ScheduledLaunch,
)
from dexecutor.market.pools import HopFill, Pool, fee_and_impact
from dexecutor.market.prices import PriceWalks, seconds
from dexecutor.market.split import Candidate, Hop, Leg, price_legs
from dexecutor.market.tokens import Token, find_token, route_name
from dexecutor.market.types import VENUES, MarketError, Quote

__all__ = [
    "LaunchParams",
    "Market",
    "MarketParams",
    "PairParams",
    "PlanLeg",
    "ScheduledLaunch",
]

_CTX = math_context()
_DISPLAY = Context(prec=18)
_ZERO = Decimal(0)
_ONE = Decimal(1)
_BPS = Decimal(10_000)
_IMPACT_QUANTUM = Decimal("1e-8")
# Tokens a route may pass through when a pair has no pool of its own on a venue.
HUBS: tuple[str, ...] = ("SOL", "USDC")

Path = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PlanLeg:
    """One leg of a route to execute: `amount_in` through the pools of `path` in turn.

    `venues[i]` is the venue of the hop from `path[i]` to `path[i + 1]`; every hop is a
    pool of its own (a split route's legs never go through one pool twice). Tokens are
    symbols (wSOL is read as SOL).
    """

    venues: tuple[str, ...]
    path: tuple[str, ...]
    amount_in: Decimal


def _tidy(value: Decimal) -> Decimal:
    """Drop trailing zeros (0.00200000 → 0.002) so rates read as they were meant."""
    return value.normalize() if value else _ZERO


class _Listing:
    """A pool as listed on one venue, with the name its extra wobble is keyed by.

    A launch pool also keeps when it opened and its own fee, for the launch fee
    scheduler (`launch_fee`).
    """

    __slots__ = ("base", "fee", "name", "opened", "pool", "quote", "venue", "wobbles")

    def __init__(
        self,
        venue: str,
        name: str,
        pool: Pool,
        wobbles: bool,
        opened: Decimal | None = None,
        fee: Decimal = _ZERO,
    ) -> None:
        self.venue = venue
        self.name = name
        self.pool = pool
        self.base = pool.base
        self.quote = pool.quote
        self.wobbles = wobbles
        self.opened = opened
        self.fee = fee


def launch_fee(launch: LaunchParams, own_fee: Decimal, age: Decimal) -> Decimal:
    """A launch pool's base fee `age` seconds after it opened (Meteora-style scheduler).

    The fee starts at `cliff_fee` and falls by `fee_reduction` of itself every
    `fee_period_seconds` (exponential time scheduler), never below the pool's own fee;
    after `fee_periods` periods the pool's own fee applies.
    """
    with localcontext(_CTX):
        periods = int((age / seconds(launch.fee_period_seconds)).to_integral_value(ROUND_FLOOR))
        if periods >= launch.fee_periods or launch.cliff_fee <= own_fee:
            return own_fee
        scheduled = launch.cliff_fee * (_ONE - launch.fee_reduction) ** max(periods, 0)
        return max(scheduled.quantize(_IMPACT_QUANTUM), own_fee)


class Market:
    """Raydium and Meteora, simulated; see the module docstring for the contract."""

    def __init__(self, params: MarketParams | None = None, seed: int = 0) -> None:
        self._params = params if params is not None else MarketParams()
        self._seed = seed
        self._tick_length = seconds(self._params.tick_seconds)
        self._walks = PriceWalks(self._params, seed)
        self._tick = 0
        self._now = 0.0
        self._listings: list[_Listing] = []
        self._pools: dict[str, dict[frozenset[str], Pool]] = {venue: {} for venue in VENUES}
        self._paths: dict[tuple[str, str, str], tuple[Path, ...]] = {}
        # Per token, the tick of the last scripted jump and the move it made there.
        self._jumped: dict[str, tuple[int, Decimal]] = {}
        for pair in self._params.pairs:
            for venue in pair.venues:
                self._list_pool(venue, pair)
        self._schedule = sorted(self._params.launches, key=lambda launch: launch.at)
        self._scheduled = 0
        self._launch_due(0.0)

    # -- properties ----------------------------------------------------------------

    @property
    def params(self) -> MarketParams:
        return self._params

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def now(self) -> float:
        """The latest time the market has been advanced to."""
        return self._now

    @property
    def slot(self) -> int:
        """How many slots (ticks of `tick_seconds`) the market has run since it started.

        Quotes and fills see the market as of this slot; a chain can report it as its
        slot height.
        """
        return self._tick

    def pairs(self, venue: str) -> tuple[tuple[str, str], ...]:
        """The (base, quote) pairs that have a pool on `venue`, in listing order."""
        self._venue(venue)
        return tuple(
            (item.pool.base, item.pool.quote) for item in self._listings if item.venue == venue
        )

    # -- time ------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Run the walks, arbitrage, fee decay and scheduled launches up to `now`.

        Going back in time is not an error but a no-op: callers on several tasks may
        pass slightly stale clocks, and the market simply stays where it is.
        """
        if not math.isfinite(now):
            raise ValueError(f"now must be a finite number of seconds, got {now!r}")
        if now <= self._now:
            return
        self._launch_due(now)
        self._run_to(self._tick_at(now))
        self._now = now

    def _tick_at(self, when: float) -> int:
        # Decimal floor of the printed values, so 0.3 s at 0.1 s ticks is tick 3.
        ticks = (seconds(when) / self._tick_length).to_integral_value(rounding=ROUND_FLOOR)
        return int(ticks)

    def _launch_due(self, now: float) -> None:
        while self._scheduled < len(self._schedule) and self._schedule[self._scheduled].at <= now:
            launch = self._schedule[self._scheduled]
            self._scheduled += 1
            self._run_to(self._tick_at(launch.at))
            self._launch(launch.token, launch.venue)

    def _run_to(self, target: int) -> None:
        pending = target - self._tick
        if pending <= 0:
            return
        size = -(-pending // self._params.max_catchup_steps)
        while self._tick < target:
            ticks = min(size, target - self._tick)
            self._step(ticks)
            self._tick += ticks

    def _step(self, ticks: int) -> None:
        walks = self._walks
        walks.step(ticks)
        pull = walks.rates(ticks).pull
        prices = walks.venue_prices()
        launch = self._params.launch
        with localcontext(_CTX):
            now = self._tick_length * (self._tick + ticks)
            for listing in self._listings:
                venue = listing.venue
                # Arbitrage pulls a pool toward its venue's token prices' ratio (inline:
                # this loop is the hot path of every tick).
                target = prices[(venue, listing.base)] / prices[(venue, listing.quote)]
                if listing.wobbles:
                    target *= walks.pair_factor(venue, listing.name)
                pool = listing.pool
                pool.relax(target, pull, now, walks.flow(venue, listing.name))
                if listing.opened is not None:
                    age = now - listing.opened
                    pool.set_base_fee(launch_fee(launch, listing.fee, age))
                    if age >= seconds(launch.fee_period_seconds) * launch.fee_periods:
                        listing.opened = None  # the schedule is over for good

    # -- pools -----------------------------------------------------------------------

    def _clock(self) -> Decimal:
        """The time of the last tick: when trades happen, as far as pools know."""
        with localcontext(_CTX):
            return self._tick_length * self._tick

    def _list_pool(self, venue: str, pair: PairParams, launched: bool = False) -> None:
        params = self._params
        name = f"{pair.base}/{pair.quote}"
        scale = max(
            params.token(pair.base).deviation_scale, params.token(pair.quote).deviation_scale
        )
        self._walks.add_pool(
            venue,
            name,
            pair.extra_deviation,
            params.flow_noise * scale,
            params.whale_size * scale,
        )
        now = self._clock()
        launch = params.launch
        with localcontext(_CTX):
            half_tvl = pair.liquidity_on(venue) * params.liquidity_scale / 2
            base_side = half_tvl / self._walks.reference(pair.base)
            quote_side = half_tvl / self._walks.reference(pair.quote)
            price = (
                self._walks.venue_price(venue, pair.base)
                / self._walks.venue_price(venue, pair.quote)
                * self._walks.pair_factor(venue, name)
            )
            pool: Pool
            if venue == "raydium":
                fee = params.raydium_fee if pair.raydium_fee is None else pair.raydium_fee
                pool = CpmmPool(pair.base, pair.quote, base_side, price, fee, params.cpmm_max_fill)
            else:
                dlmm = params.dlmm
                fee = pair.meteora_base_fee
                control = pair.meteora_fee_control
                fees = FeeParams(
                    base_fee=fee,
                    bin_step=Decimal(pair.bin_step_bps) / _BPS,
                    control=dlmm.variable_fee_control if control is None else control,
                    filter_seconds=seconds(dlmm.filter_seconds),
                    decay_seconds=seconds(dlmm.decay_seconds),
                    reduction=dlmm.reduction_factor,
                    max_accumulator=dlmm.max_volatility_accumulator,
                    max_fee=dlmm.max_fee,
                )
                pool = DlmmPool(
                    pair.base,
                    pair.quote,
                    price,
                    fees,
                    pair.meteora_width,
                    base_side,
                    quote_side,
                    now,
                )
        listing = _Listing(venue, name, pool, pair.extra_deviation > 0)
        if launched and launch.fee_periods > 0:
            listing.opened = now
            listing.fee = fee
            pool.set_base_fee(launch_fee(launch, fee, _ZERO))
        self._listings.append(listing)
        self._pools[venue][frozenset((pair.base, pair.quote))] = pool
        self._paths.clear()

    def _launch(self, token: str, venue: str) -> None:
        if frozenset((token, "SOL")) in self._pools[venue]:
            return
        launch = self._params.launch
        self._list_pool(
            venue,
            PairParams(
                token,
                "SOL",
                venues=(venue,),
                liquidity_usd=launch.liquidity_usd,
                raydium_fee=launch.raydium_fee,
                bin_step_bps=launch.bin_step_bps,
                meteora_base_fee=launch.meteora_base_fee,
                meteora_width=launch.meteora_width,
                meteora_fee_control=launch.meteora_fee_control,
            ),
            launched=True,
        )

    def launch(self, token: str, venue: str, now: float) -> None:
        """Open a TOKEN/SOL pool on `venue` at the venue's current price of the token.

        Launching a token that already has a SOL pool there is a no-op, so a retried
        request does not double the liquidity. Works for any token but SOL, launched
        or not (a launched token gains a pool on a venue that had none).
        """
        symbol = self._token(token).symbol
        self._venue(venue)
        if symbol == "SOL":
            raise ValueError("SOL is the quote side of every launch; pick another token")
        self.advance(now)
        self._launch(symbol, venue)

    def is_tradable(self, token: str, venue: str | None = None) -> bool:
        """Whether any pool holds `token`, on `venue` or (None) on any venue."""
        symbol = self._token(token).symbol
        venues = VENUES if venue is None else (self._venue(venue),)
        return any(symbol in key for v in venues for key in self._pools[v])

    def jump(self, venue: str, token: str, bps: int, now: float) -> None:
        """Move `venue`'s price of `token` by `bps` at once (positive: token dearer).

        A scripted move moves the market: every pool of the token on that venue moves by
        the factor immediately, the token's reference moves with it (the new price
        holds), and arbitrage carries the move to the other venues within a few slots.
        Moving one token on several venues in the same tick moves the reference once:
        only by as much as the new move goes beyond the moves already made there.
        """
        self._venue(venue)
        symbol = self._token(token).symbol
        if isinstance(bps, bool) or not isinstance(bps, int) or bps <= -10_000:
            raise ValueError(f"bps must be an integer above -10000, got {bps!r}")
        self.advance(now)
        with localcontext(_CTX):
            factor = _ONE + Decimal(bps) / _BPS
            inverse = _ONE / factor
            tick, done = self._jumped.get(symbol, (self._tick, _ONE))
            if tick != self._tick:
                done = _ONE
            if (factor - _ONE) * (done - _ONE) > 0:  # the same way as this tick's moves
                extra = factor / done if abs(factor - _ONE) > abs(done - _ONE) else _ONE
                moved = done * extra
            else:
                extra = factor
                moved = done * factor
        self._jumped[symbol] = (self._tick, moved)
        if extra != _ONE:
            self._walks.move(symbol, extra)
        for listing in self._listings:
            pool = listing.pool
            if listing.venue != venue:
                continue
            if pool.base == symbol:
                pool.shift(factor)
            elif pool.quote == symbol:
                pool.shift(inverse)

    # -- prices ----------------------------------------------------------------------

    def reference_price(self, token: str, now: float) -> Decimal:
        """The token's shared USD reference, to 18 significant digits."""
        symbol = self._token(token).symbol
        self.advance(now)
        return _DISPLAY.plus(self._walks.reference(symbol))

    def mid_price(self, venue: str, token_in: str, token_out: str, now: float) -> Decimal:
        """Spot price (token_out per token_in) on `venue`, before fee and impact.

        Uses the direct pool when there is one, otherwise the best two-hop path.
        """
        self._venue(venue)
        a, b = self._pair(token_in, token_out)
        self.advance(now)
        paths = self._routes(venue, a.symbol, b.symbol)
        if not paths:
            raise self._no_route(venue, a.symbol, b.symbol)
        pools = self._pools[venue]
        best: Decimal | None = None
        with localcontext(_CTX):
            for path in paths:
                mid = _ONE
                for hop_in, hop_out in pairwise(path):
                    mid *= pools[frozenset((hop_in, hop_out))].spot(hop_in)
                if len(path) == 2:
                    best = mid
                    break
                if best is None or mid > best:
                    best = mid
        assert best is not None
        return _DISPLAY.plus(best)

    # -- quoting and filling -----------------------------------------------------------

    def quote(
        self, venue: str, token_in: str, token_out: str, amount_in: Decimal, now: float
    ) -> Quote:
        """What `venue` gives for exactly `amount_in` now, on its best path.

        Pure with respect to the pools (only time advances). Raises MarketError
        `no_route` when the venue has no path and `insufficient_liquidity` when no path
        can fill the size.
        """
        self._venue(venue)
        a, b = self._pair(token_in, token_out)
        self._amount(a, amount_in)
        self.advance(now)
        path, fills = self._best(venue, a.symbol, b.symbol, amount_in)
        return self._as_quote(venue, path, fills, amount_in)

    def execute(
        self,
        venue: str,
        token_in: str,
        token_out: str,
        amount_in: Decimal,
        min_amount_out: Decimal,
        now: float,
    ) -> Quote:
        """Fill the swap at `now` and apply it to the pools; return the fill.

        The fill is priced afresh at `now` (the market has moved since the quote), on
        the venue's best path at that moment. Below `min_amount_out` it raises
        `slippage_exceeded` and leaves every pool as it was.
        """
        self._venue(venue)
        a, b = self._pair(token_in, token_out)
        self._amount(a, amount_in)
        if not isinstance(min_amount_out, Decimal) or not min_amount_out.is_finite():
            raise ValueError("min_amount_out must be a finite Decimal")
        if min_amount_out < 0:
            raise ValueError("min_amount_out must not be negative")
        self.advance(now)
        path, fills = self._best(venue, a.symbol, b.symbol, amount_in)
        quote = self._as_quote(venue, path, fills, amount_in)
        if quote.amount_out < min_amount_out:
            raise MarketError(
                "slippage_exceeded",
                f"{venue} would fill {quote.amount_out} {b.symbol}, "
                f"below the minimum of {min_amount_out}",
            )
        pools = self._pools[venue]
        for fill in fills:
            pools[frozenset((fill.token_in, fill.token_out))].commit(fill)
        return quote

    def execute_plan(
        self,
        legs: Sequence[PlanLeg],
        min_out: Decimal,
        now: float,
        *,
        exact_out: bool = False,
    ) -> tuple[Leg, ...]:
        """Fill a route's legs at `now` as one atomic swap; return the legs as filled.

        Every leg is repriced on its pools as they are at `now` (`split.price_legs`).
        When their total output is below `min_out` (or a leg cannot fill), it raises
        `slippage_exceeded` (or the leg's refusal) and no pool changes: the route fills
        entirely or not at all, as a transaction's instructions do.

        With `exact_out`, `min_out` is the exact output wanted and the legs' amounts
        are the most each may spend: the least input that still delivers `min_out`,
        the legs scaled in proportion, is spent, found by bisection in the input
        token's base units. It is never more than the legs' sum.
        """
        if not legs:
            raise ValueError("a route has at least one leg")
        if not isinstance(min_out, Decimal) or not min_out.is_finite() or min_out < 0:
            raise ValueError("min_out must be a finite Decimal >= 0")
        token_in = self._hop_token(legs[0].path[0])
        token_out = self._hop_token(legs[0].path[-1])
        for leg in legs:
            self._amount(self._hop_token(leg.path[0]), leg.amount_in)
            if len(leg.venues) != len(leg.path) - 1 or len(leg.venues) < 1:
                raise ValueError("a leg names one venue per hop")
            ends = (self._hop_token(leg.path[0]), self._hop_token(leg.path[-1]))
            if ends != (token_in, token_out):
                raise ValueError("every leg goes from the route's input to its output")
        self.advance(now)
        chosen = [self._candidate(leg) for leg in legs]
        amounts = [leg.amount_in for leg in legs]
        priced = price_legs(list(zip(chosen, amounts, strict=True)))
        total = sum((leg.amount_out for leg in priced), _ZERO)
        if total < min_out:
            raise MarketError(
                "slippage_exceeded",
                f"the route would fill {total} {token_out.symbol}, below the minimum of {min_out}",
            )
        if exact_out:
            priced = self._least(chosen, amounts, priced, min_out, token_in.quantum)
        for filled in priced:
            for hop, fill in zip(filled.candidate.hops, filled.fills, strict=True):
                hop.pool.commit(fill)
        return priced

    def _candidate(self, leg: PlanLeg) -> Candidate:
        symbols = [self._hop_token(symbol).symbol for symbol in leg.path]
        hops: list[Hop] = []
        for venue, (a, b) in zip(leg.venues, pairwise(symbols), strict=True):
            pool = self._pools[self._venue(venue)].get(frozenset((a, b)))
            if pool is None:
                raise MarketError("no_route", f"{venue} has no {a}/{b} pool")
            hops.append(Hop(venue, pool, a, b))
        return Candidate(tuple(hops))

    @staticmethod
    def _least(
        chosen: Sequence[Candidate],
        amounts: Sequence[Decimal],
        priced: tuple[Leg, ...],
        wanted: Decimal,
        quantum: Decimal,
    ) -> tuple[Leg, ...]:
        """The legs scaled down to the least input that still delivers `wanted`."""
        most = sum(amounts, _ZERO)
        low, high = 0, int(most / quantum)
        best = priced
        while high - low > 1:
            mid = (low + high) // 2
            with localcontext(_CTX):
                shares = [
                    (quantum * mid * a / most).quantize(quantum, rounding=ROUND_DOWN)
                    for a in amounts
                ]
                shares[0] += quantum * mid - sum(shares, _ZERO)
            allocation = [(c, a) for c, a in zip(chosen, shares, strict=True) if a > 0]
            try:
                trial = price_legs(allocation)
            except MarketError:
                low = mid
                continue
            if sum((leg.amount_out for leg in trial), _ZERO) >= wanted:
                high, best = mid, trial
            else:
                low = mid
        return best

    def _routes(self, venue: str, a: str, b: str) -> tuple[Path, ...]:
        """Direct first, then via each hub: the order ties are broken in."""
        key = (venue, a, b)
        cached = self._paths.get(key)
        if cached is not None:
            return cached
        pools = self._pools[venue]
        paths: list[Path] = []
        if frozenset((a, b)) in pools:
            paths.append((a, b))
        for hub in HUBS:
            if hub not in (a, b) and frozenset((a, hub)) in pools and frozenset((hub, b)) in pools:
                paths.append((a, hub, b))
        found = tuple(paths)
        self._paths[key] = found
        return found

    def _best(self, venue: str, a: str, b: str, amount_in: Decimal) -> tuple[Path, list[HopFill]]:
        paths = self._routes(venue, a, b)
        if not paths:
            raise self._no_route(venue, a, b)
        best: tuple[Path, list[HopFill]] | None = None
        refusal: MarketError | None = None
        for path in paths:
            try:
                fills = self._fill(venue, path, amount_in)
            except MarketError as error:
                refusal = error
                continue
            if best is None or fills[-1].amount_out > best[1][-1].amount_out:
                best = (path, fills)
        if best is None:
            assert refusal is not None
            raise refusal
        return best

    def _fill(self, venue: str, path: Path, amount_in: Decimal) -> list[HopFill]:
        pools = self._pools[venue]
        fills: list[HopFill] = []
        amount = amount_in
        for hop_in, hop_out in pairwise(path):
            out_token = find_token(hop_out)
            assert out_token is not None
            fill = pools[frozenset((hop_in, hop_out))].simulate(hop_in, amount, out_token.decimals)
            fills.append(fill)
            amount = fill.amount_out
        return fills

    def _as_quote(
        self, venue: str, path: Path, fills: Sequence[HopFill], amount_in: Decimal
    ) -> Quote:
        amount_out = fills[-1].amount_out
        fee, impact = fee_and_impact(fills, amount_in, amount_out)
        return Quote(
            venue=venue,
            token_in=path[0],
            token_out=path[-1],
            amount_in=amount_in,
            amount_out=amount_out,
            price=price_of(amount_out, amount_in),
            fee=_tidy(fee),
            price_impact=_tidy(impact),
            route=tuple(route_name(symbol) for symbol in path),
        )

    # -- validation ------------------------------------------------------------------

    @staticmethod
    def _venue(venue: str) -> str:
        if venue not in VENUES:
            raise ValueError(f"unknown venue {venue!r}; expected one of {VENUES}")
        return venue

    @staticmethod
    def _token(symbol: str) -> Token:
        token = find_token(symbol)
        if token is None:
            raise ValueError(f"unknown token {symbol!r}")
        return token

    @classmethod
    def _hop_token(cls, symbol: str) -> Token:
        """A token of a route's path, where native SOL is written wSOL."""
        return cls._token("SOL" if symbol == route_name("SOL") else symbol)

    def _pair(self, token_in: str, token_out: str) -> tuple[Token, Token]:
        a = self._token(token_in)
        b = self._token(token_out)
        if a.symbol == b.symbol:
            raise ValueError(f"cannot swap {a.symbol} for itself")
        return a, b

    @staticmethod
    def _amount(token: Token, amount: Decimal) -> None:
        if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
            raise ValueError(f"amount_in must be a positive, finite Decimal, got {amount!r}")
        if decimal_places(amount) > token.decimals:
            raise ValueError(f"{token.symbol} has {token.decimals} decimals; got {amount}")

    @staticmethod
    def _no_route(venue: str, a: str, b: str) -> MarketError:
        return MarketError("no_route", f"{venue} has no pool path from {a} to {b}")

    # -- pools for split routing ---------------------------------------------------------

    def venue_pools(self) -> tuple[tuple[str, Pool], ...]:
        """Every listed pool with its venue, as of the last `advance`.

        For the split router (`market.split`), which reads pools across venues. The
        pools are the market's own: callers may `simulate` on them but never `commit`
        outside `Market`, or the market's books would no longer add up.
        """
        return tuple((item.venue, item.pool) for item in self._listings)
