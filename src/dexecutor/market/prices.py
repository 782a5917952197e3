"""Seeded random walks: every token's USD reference, and each venue's deviation from it.

A token's reference takes a multiplicative step each tick: a Gaussian part plus, now
and then, a jump (a compound Poisson process, which gives the fat tails real returns
have); a pegged token also reverts toward its starting value. Each venue's price of a
token is the reference times (1 + deviation), where the deviation is a mean-reverting
walk of its own; pools are then pulled toward the ratio of their two tokens' venue
prices (see `simulation`), and knocked off it by other traders' flow and large
orders. Because a venue's prices of all tokens share the same deviations, a venue is
internally consistent: going A → SOL → B costs about what A → B costs.

Pure: time enters only as a number of ticks, randomness only through `random.Random`
instances seeded from the market seed and a per-walk name, so adding a token or a
pool never changes the numbers any other walk draws. A draw is an integer picking one
of 2^14 equally likely normal quantiles held as Decimals, so no float ever touches a
price, and a draw costs a fraction of `random.gauss`. How many jumps a step holds is
one 32-bit draw compared against the step's Poisson odds, precomputed as integers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal, localcontext
from functools import cache
from statistics import NormalDist

from dexecutor.domain.money import math_context
from dexecutor.market.params import MarketParams
from dexecutor.market.tokens import TOKENS
from dexecutor.market.types import VENUES

_CTX = math_context()
_ZERO = Decimal(0)
_ONE = Decimal(1)
_HOUR = Decimal(3600)
# A single step never more than halves a reference, and a venue never prices a token
# below a tenth or above ten times its reference, however wild the configuration:
# such moves could only come from a degenerate (huge) step.
_FLOOR_FACTOR = Decimal("0.5")
_MIN_DEVIATION = Decimal("-0.9")
_MAX_DEVIATION = Decimal(9)


def seconds(value: float) -> Decimal:
    """A duration as Decimal, via its shortest repr so 0.1 stays 0.1."""
    return Decimal(repr(value))


_QUANTILE_BITS = 14
_ODDS_BITS = 32
_ODDS_SCALE = 1 << _ODDS_BITS
# More jumps than this in one step are counted as this many (odds below 1e-12).
_MAX_EVENTS = 12


@cache
def normal_quantiles() -> tuple[Decimal, ...]:
    """The midpoints of 2^14 equal-probability slices of N(0, 1), 9 places each.

    Picking one uniformly is a standard normal draw with its tails cut at about ±4σ;
    the table is symmetric, so the draws have mean exactly 0. Built once per process.
    """
    levels = 1 << _QUANTILE_BITS
    normal = NormalDist()
    return tuple(Decimal(format(normal.inv_cdf((i + 0.5) / levels), ".9f")) for i in range(levels))


class Stream:
    """One independent, named source of standard normal draws."""

    __slots__ = ("_bits", "_table")

    def __init__(self, seed: int, name: str) -> None:
        # String seeds are hashed with SHA-512 by `random`, independent of PYTHONHASHSEED.
        self._bits = random.Random(f"dexecutor/{seed}/{name}").getrandbits
        self._table = normal_quantiles()

    def normal(self) -> Decimal:
        """A N(0, 1) draw as a Decimal with 9 places (plenty for a price step)."""
        return self._table[self._bits(_QUANTILE_BITS)]

    def count(self, odds: tuple[int, ...]) -> int:
        """How many events a step holds, given its cumulative Poisson `odds`."""
        draw = self._bits(_ODDS_BITS)
        events = 0
        while events < len(odds) and draw >= odds[events]:
            events += 1
        return events

    def jumps(self, odds: tuple[int, ...], size: Decimal) -> Decimal:
        """The summed fractional move of this step's jumps (0 when there are none)."""
        draw = self._bits(_ODDS_BITS)
        total = _ZERO
        events = 0
        while events < len(odds) and draw >= odds[events]:
            events += 1
            total += size * self._table[self._bits(_QUANTILE_BITS)]
        return total


def poisson_odds(events_per_hour: Decimal, span_seconds: Decimal) -> tuple[int, ...]:
    """Cumulative odds P(N ≤ k), k = 0, 1, …, as integers out of 2^32.

    `Stream.count` turns one 32-bit draw into a Poisson count with them. An empty
    tuple means no event can happen (rate 0).
    """
    if events_per_hour == 0:
        return ()
    with localcontext(_CTX):
        mean = events_per_hour * span_seconds / _HOUR
        term = (-mean).exp()
        total = term
        odds = []
        for k in range(_MAX_EVENTS):
            odds.append(int(total * _ODDS_SCALE))
            if odds[-1] >= _ODDS_SCALE - 1:
                break
            term = term * mean / (k + 1)
            total += term
        # The last count takes the whole tail, so every draw counts some events.
        odds[-1] = _ODDS_SCALE
        return tuple(odds)


class _Reference:
    __slots__ = ("hourly", "jump", "jumps", "peg", "start", "stream", "value")

    def __init__(
        self,
        start: Decimal,
        hourly: Decimal,
        jump: Decimal,
        peg: Decimal | None,
        stream: Stream,
        jumps: Stream,
    ) -> None:
        self.start = start
        self.value = start
        self.hourly = hourly
        self.jump = jump
        self.peg = peg
        self.stream = stream
        self.jumps = jumps


class _Flow:
    __slots__ = ("factor", "sigma", "stream", "whale", "whales")

    def __init__(self, sigma: Decimal, whale: Decimal, stream: Stream, whales: Stream) -> None:
        self.sigma = sigma
        self.whale = whale
        self.stream = stream
        self.whales = whales
        self.factor = _ONE


class _Deviation:
    __slots__ = ("sigma", "stream", "value")

    def __init__(self, sigma: Decimal, stream: Stream) -> None:
        self.sigma = sigma
        self.stream = stream
        with localcontext(_CTX):
            self.value = _clamp(sigma * stream.normal())


def _clamp(deviation: Decimal) -> Decimal:
    return max(_MIN_DEVIATION, min(_MAX_DEVIATION, deviation))


@dataclass(frozen=True, slots=True)
class StepRates:
    """Per-step constants for a step of `ticks` ticks, derived once and cached.

    `pull` is the fraction of the gap to target that arbitrage closes, `keep` the part
    of a deviation that survives and `spread` the matching noise factor
    (sqrt(1 − keep²), which keeps the deviation's spread stationary), `root_hours` and
    `root_seconds` the square root of the step's length in hours and in seconds,
    `jump_odds` and `whale_odds` the step's Poisson odds of reference jumps and of
    large orders hitting a pool.
    """

    pull: Decimal
    keep: Decimal
    spread: Decimal
    root_hours: Decimal
    root_seconds: Decimal
    peg_keep: dict[Decimal, Decimal]
    jump_odds: tuple[int, ...]
    whale_odds: tuple[int, ...]


class PriceWalks:
    """All the walks of one market, advanced together one step at a time."""

    def __init__(self, params: MarketParams, seed: int) -> None:
        self._params = params
        self._seed = seed
        self._tick = seconds(params.tick_seconds)
        self._rates: dict[int, StepRates] = {}
        self._references: dict[str, _Reference] = {}
        self._deviations: dict[tuple[str, str], _Deviation] = {}
        self._venue_prices: dict[tuple[str, str], Decimal] = {}
        self._flows: dict[tuple[str, str], _Flow] = {}
        with localcontext(_CTX):
            for token in TOKENS:
                tp = params.token(token.symbol)
                peg = None if tp.peg_seconds is None else seconds(tp.peg_seconds)
                self._references[token.symbol] = _Reference(
                    token.reference_usd,
                    params.volatility * tp.volatility_scale,
                    params.jump_size * tp.volatility_scale,
                    peg,
                    Stream(seed, f"reference/{token.symbol}"),
                    Stream(seed, f"jumps/{token.symbol}"),
                )
                for venue in VENUES:
                    self._deviations[(venue, token.symbol)] = _Deviation(
                        params.venue_deviation * tp.deviation_scale,
                        Stream(seed, f"deviation/{venue}/{token.symbol}"),
                    )
        self._refresh()

    # -- reading -----------------------------------------------------------------

    def reference(self, token: str) -> Decimal:
        """The token's USD reference price."""
        return self._references[token].value

    def venue_price(self, venue: str, token: str) -> Decimal:
        """The USD price this venue's arbitrageurs are pulling the token toward."""
        return self._venue_prices[(venue, token)]

    def venue_prices(self) -> dict[tuple[str, str], Decimal]:
        """Every (venue, token) → `venue_price`, for a caller that reads them all (read only)."""
        return self._venue_prices

    def pair_factor(self, venue: str, pair: str) -> Decimal:
        """1 + the pair's own extra deviation on this venue (1 when it has none)."""
        extra = self._deviations.get((venue, pair))
        return _ONE if extra is None else _ONE + extra.value

    def rates(self, ticks: int) -> StepRates:
        """The constants of a step of `ticks` ticks."""
        cached = self._rates.get(ticks)
        if cached is not None:
            return cached
        params = self._params
        with localcontext(_CTX):
            span = self._tick * ticks
            keep = (-span / seconds(params.deviation_seconds)).exp()
            pegs = {
                ref.peg: (-span / ref.peg).exp()
                for ref in self._references.values()
                if ref.peg is not None
            }
            rates = StepRates(
                pull=_ONE - (-span / seconds(params.arbitrage_seconds)).exp(),
                keep=keep,
                spread=(_ONE - keep * keep).sqrt(),
                root_hours=(span / _HOUR).sqrt(),
                root_seconds=span.sqrt(),
                peg_keep=pegs,
                jump_odds=poisson_odds(params.jump_rate, span),
                whale_odds=poisson_odds(params.whale_rate, span),
            )
        if len(self._rates) < 64:
            self._rates[ticks] = rates
        return rates

    # -- moving ------------------------------------------------------------------

    def add_pool(
        self, venue: str, pair: str, extra_deviation: Decimal, flow: Decimal, whale: Decimal
    ) -> None:
        """Register one venue pool of `pair` ("BASE/QUOTE") and its own randomness.

        `extra_deviation` gives the pool a wobble of its own on top of its tokens'
        deviations; `flow` (per-second standard deviation) is the random nudge other
        traders' orders give the pool each step and `whale` the standard deviation of
        the move a large order makes; arbitrage then pulls the pool back.
        """
        key = (venue, pair)
        if extra_deviation > 0 and key not in self._deviations:
            self._deviations[key] = _Deviation(
                extra_deviation, Stream(self._seed, f"deviation/{venue}/{pair}")
            )
        if (flow > 0 or whale > 0) and key not in self._flows:
            self._flows[key] = _Flow(
                flow,
                whale,
                Stream(self._seed, f"flow/{venue}/{pair}"),
                Stream(self._seed, f"whales/{venue}/{pair}"),
            )

    def flow(self, venue: str, pair: str) -> Decimal:
        """The factor other traders' flow moved this pool by in the last step."""
        flow = self._flows.get((venue, pair))
        return _ONE if flow is None else flow.factor

    def step(self, ticks: int) -> None:
        """Advance every walk by `ticks` ticks in one step."""
        rates = self.rates(ticks)
        root = rates.root_hours
        keep = rates.keep
        spread = rates.spread
        jump_odds = rates.jump_odds
        whale_odds = rates.whale_odds
        with localcontext(_CTX):
            for ref in self._references.values():
                noise = ref.hourly * root * ref.stream.normal()
                if jump_odds:
                    noise += ref.jumps.jumps(jump_odds, ref.jump)
                if ref.peg is None:
                    ref.value *= max(_ONE + noise, _FLOOR_FACTOR)
                else:
                    pulled = ref.start + rates.peg_keep[ref.peg] * (ref.value - ref.start)
                    ref.value = max(pulled + ref.value * noise, ref.start * _FLOOR_FACTOR)
            for dev in self._deviations.values():
                value = keep * dev.value + dev.sigma * spread * dev.stream.normal()
                if value < _MIN_DEVIATION:
                    value = _MIN_DEVIATION
                elif value > _MAX_DEVIATION:
                    value = _MAX_DEVIATION
                dev.value = value
            root_seconds = rates.root_seconds
            for flow in self._flows.values():
                nudge = flow.sigma * root_seconds * flow.stream.normal()
                if whale_odds:
                    nudge += flow.whales.jumps(whale_odds, flow.whale)
                flow.factor = max(_ONE + nudge, _FLOOR_FACTOR)
        self._refresh()

    def move(self, token: str, factor: Decimal) -> None:
        """Scale a token's reference at once (every venue's target moves with it)."""
        ref = self._references[token]
        with localcontext(_CTX):
            ref.value *= factor
        self._refresh()

    def _refresh(self) -> None:
        with localcontext(_CTX):
            for (venue, token), dev in self._deviations.items():
                ref = self._references.get(token)
                if ref is not None:
                    self._venue_prices[(venue, token)] = ref.value * (_ONE + dev.value)
