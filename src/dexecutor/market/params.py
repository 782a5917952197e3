"""Every knob of the mock market, with defaults that give a realistic session.

`MarketParams` is plain, frozen, validated data: the simulation reads it, nothing
writes it. It must not read environment variables or files; the edge layer (config)
decides which params to build and hands them in. Named presets ("calm", "normal",
"violent") are built here so a user can pick a market mood by name.

Units: fractions are Decimals (0.04 is 4 %), durations are float seconds of simulated
time, liquidity is USD of total value locked (both sides) per venue pool.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal

from dexecutor.market.tokens import find_token
from dexecutor.market.types import VENUES


@dataclass(frozen=True, slots=True)
class TokenParams:
    """How one token's price behaves, relative to the market-wide levels.

    Scales multiply `MarketParams.volatility` and `.venue_deviation`, so a preset can
    change the mood of the whole market while stablecoins stay stable and memecoins stay
    wild. `peg_seconds` makes the reference mean-revert to its starting value (a peg);
    None lets it wander freely.
    """

    symbol: str
    volatility_scale: Decimal = Decimal(1)
    deviation_scale: Decimal = Decimal(1)
    peg_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class PairParams:
    """One trading pair and the pools both venues (or one of them) list for it.

    Price is quoted as `quote` per `base`. `liquidity_usd` is each venue pool's total
    value locked at creation. `extra_deviation` adds a pair-specific wobble (stationary
    standard deviation, a fraction) on top of the two tokens' own venue deviations, for
    a pair that should be noisier than its tokens. The `meteora_*` fields shape the DLMM
    pool: bin width, base fee, and how far from the price its liquidity reaches
    (e-folding distance of the liquidity curve, as a price fraction).
    """

    base: str
    quote: str
    venues: tuple[str, ...] = VENUES
    liquidity_usd: Decimal = Decimal(2_000_000)
    extra_deviation: Decimal = Decimal(0)
    bin_step_bps: int = 10
    meteora_base_fee: Decimal = Decimal("0.002")
    meteora_width: Decimal = Decimal("0.25")


@dataclass(frozen=True, slots=True)
class DlmmParams:
    """Meteora's dynamic fee: base fee (per pair) plus a variable part.

    variable fee = `variable_fee_control` × (volatility accumulator × bin step)², capped
    so that base + variable ≤ `max_fee`. The accumulator (counted in bins) grows with
    every bin a trade crosses and with the price movement the arbitrage makes, and
    decays with time constant `volatility_seconds`.
    """

    variable_fee_control: Decimal = Decimal("0.7")
    volatility_seconds: float = 30.0
    max_fee: Decimal = Decimal("0.05")


@dataclass(frozen=True, slots=True)
class LaunchParams:
    """The pools a token launch creates: TOKEN/SOL on the chosen venue."""

    liquidity_usd: Decimal = Decimal(200_000)
    bin_step_bps: int = 100
    meteora_base_fee: Decimal = Decimal("0.005")
    meteora_width: Decimal = Decimal("0.5")


@dataclass(frozen=True, slots=True)
class ScheduledLaunch:
    """A launch that `Market.advance` applies when simulated time reaches `at`."""

    token: str
    venue: str
    at: float


DEFAULT_TOKENS: tuple[TokenParams, ...] = (
    TokenParams("USDC", Decimal("0.02"), Decimal("0.02"), peg_seconds=3600.0),
    TokenParams("USDT", Decimal("0.02"), Decimal("0.02"), peg_seconds=3600.0),
    TokenParams("BONK", Decimal(3), Decimal("1.25")),
    TokenParams("JUP", Decimal(2)),
    TokenParams("RAY", Decimal(2)),
    TokenParams("NOVA", Decimal(4), Decimal("1.5")),
    TokenParams("WARP", Decimal(4), Decimal("1.5")),
    TokenParams("FLUX", Decimal(4), Decimal("1.5")),
)

# BONK/USDC (and every BONK, JUP, RAY pair with USDT) has no pool: multi-hop only.
# JUP/USDC is listed on Meteora only, RAY/USDC on Raydium only.
DEFAULT_PAIRS: tuple[PairParams, ...] = (
    PairParams("SOL", "USDC", liquidity_usd=Decimal(5_000_000)),
    PairParams("SOL", "USDT", liquidity_usd=Decimal(2_000_000)),
    PairParams(
        "USDC",
        "USDT",
        liquidity_usd=Decimal(3_000_000),
        bin_step_bps=1,
        meteora_base_fee=Decimal("0.0001"),
        meteora_width=Decimal("0.005"),
    ),
    PairParams(
        "BONK",
        "SOL",
        liquidity_usd=Decimal(1_500_000),
        bin_step_bps=80,
        meteora_base_fee=Decimal("0.004"),
        meteora_width=Decimal("0.4"),
    ),
    PairParams(
        "JUP",
        "SOL",
        liquidity_usd=Decimal(1_000_000),
        bin_step_bps=25,
        meteora_base_fee=Decimal("0.003"),
        meteora_width=Decimal("0.3"),
    ),
    PairParams(
        "RAY",
        "SOL",
        liquidity_usd=Decimal(1_000_000),
        bin_step_bps=25,
        meteora_base_fee=Decimal("0.003"),
        meteora_width=Decimal("0.3"),
    ),
    PairParams(
        "JUP",
        "USDC",
        venues=("meteora",),
        liquidity_usd=Decimal(1_000_000),
        bin_step_bps=20,
        meteora_width=Decimal("0.3"),
    ),
    PairParams("RAY", "USDC", venues=("raydium",), liquidity_usd=Decimal(1_500_000)),
)

PRESETS: tuple[str, ...] = ("calm", "normal", "violent")


def _positive_seconds(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


def _known_token(symbol: str, where: str) -> None:
    token = find_token(symbol)
    if token is None or token.symbol != symbol:
        raise ValueError(f"{where}: unknown token {symbol!r} (use the registry's symbol)")


def _known_venue(venue: str, where: str) -> None:
    if venue not in VENUES:
        raise ValueError(f"{where}: unknown venue {venue!r}; expected one of {VENUES}")


def _check_fee(value: Decimal, where: str) -> None:
    if not (Decimal(0) <= value < Decimal("0.5")):
        raise ValueError(f"{where} must be in [0, 0.5), got {value}")


def _check_pair(pair: PairParams) -> None:
    where = f"pair {pair.base}/{pair.quote}"
    _known_token(pair.base, where)
    _known_token(pair.quote, where)
    for symbol in (pair.base, pair.quote):
        token = find_token(symbol)
        if token is not None and not token.launched:
            raise ValueError(f"{where}: {symbol} is not launched; schedule a launch instead")
    if pair.base == pair.quote:
        raise ValueError(f"{where}: a pair needs two different tokens")
    if not pair.venues or len(set(pair.venues)) != len(pair.venues):
        raise ValueError(f"{where}: venues must be a non-empty list without repeats")
    for venue in pair.venues:
        _known_venue(venue, where)
    if pair.liquidity_usd <= 0:
        raise ValueError(f"{where}: liquidity_usd must be positive")
    if not (Decimal(0) <= pair.extra_deviation < Decimal("0.5")):
        raise ValueError(f"{where}: extra_deviation must be in [0, 0.5)")
    _check_bins(pair.bin_step_bps, pair.meteora_width, where)
    _check_fee(pair.meteora_base_fee, f"{where}: meteora_base_fee")


def _check_bins(bin_step_bps: int, width: Decimal, where: str) -> None:
    if not (1 <= bin_step_bps <= 1000):
        raise ValueError(f"{where}: bin_step_bps must be in 1..1000, got {bin_step_bps}")
    if not (Decimal(0) < width <= Decimal(2)):
        raise ValueError(f"{where}: meteora_width must be in (0, 2], got {width}")
    if width * 4 / (Decimal(bin_step_bps) / 10_000) > 20_000:
        raise ValueError(f"{where}: meteora_width is too wide for the bin step (over 20k bins)")


@dataclass(frozen=True)
class MarketParams:
    """The whole market's configuration; every field has a sensible default.

    - `tick_seconds`: the price walks step on a fixed grid of this length.
    - `volatility`: hourly standard deviation of a token's USD reference (× the token's
      `volatility_scale`).
    - `venue_deviation`: stationary standard deviation of a venue's price of a token
      around the reference (× the token's `deviation_scale`); two venues then differ by
      about 1.4× this, i.e. typically 2-5 % at the default.
    - `deviation_seconds`: how fast a venue's deviation reverts (and is redrawn).
    - `arbitrage_seconds`: how fast arbitrage pulls each pool toward its venue's target
      price (also how fast a big fill's price impact fades).
    - `flow_noise`: per-second standard deviation of the nudge other traders' orders
      give each pool (× the larger `deviation_scale` of its two tokens); arbitrage
      pulls it back. It is what makes a fill seconds after its quote come out different.
    - `liquidity_scale`: multiplies every pool's liquidity.
    - `raydium_fee`: the constant-product fee, taken from the input.
    - `cpmm_max_fill`: the largest fraction of its output reserve a constant-product
      pool gives in one swap; beyond it the trade is `insufficient_liquidity`.
    - `max_catchup_steps`: an advance over more ticks than this walks in coarser steps,
      so waking up after a long idle gap stays cheap.
    """

    tick_seconds: float = 1.0
    volatility: Decimal = Decimal("0.02")
    venue_deviation: Decimal = Decimal("0.025")
    deviation_seconds: float = 60.0
    arbitrage_seconds: float = 30.0
    flow_noise: Decimal = Decimal("0.0012")
    liquidity_scale: Decimal = Decimal(1)
    raydium_fee: Decimal = Decimal("0.0025")
    cpmm_max_fill: Decimal = Decimal("0.5")
    dlmm: DlmmParams = field(default_factory=DlmmParams)
    tokens: tuple[TokenParams, ...] = DEFAULT_TOKENS
    pairs: tuple[PairParams, ...] = DEFAULT_PAIRS
    launch: LaunchParams = field(default_factory=LaunchParams)
    launches: tuple[ScheduledLaunch, ...] = ()
    max_catchup_steps: int = 3600

    def __post_init__(self) -> None:
        _positive_seconds("tick_seconds", self.tick_seconds)
        _positive_seconds("deviation_seconds", self.deviation_seconds)
        _positive_seconds("arbitrage_seconds", self.arbitrage_seconds)
        _positive_seconds("dlmm.volatility_seconds", self.dlmm.volatility_seconds)
        if not (Decimal(0) <= self.volatility <= Decimal(1)):
            raise ValueError("volatility must be in [0, 1] (hourly fraction)")
        if not (Decimal(0) <= self.venue_deviation < Decimal("0.3")):
            raise ValueError("venue_deviation must be in [0, 0.3)")
        if not (Decimal(0) <= self.flow_noise < Decimal("0.05")):
            raise ValueError("flow_noise must be in [0, 0.05) (per-second fraction)")
        if self.liquidity_scale <= 0:
            raise ValueError("liquidity_scale must be positive")
        _check_fee(self.raydium_fee, "raydium_fee")
        _check_fee(self.dlmm.max_fee, "dlmm.max_fee")
        if self.dlmm.variable_fee_control < 0:
            raise ValueError("dlmm.variable_fee_control must be >= 0")
        if not (Decimal(0) < self.cpmm_max_fill < Decimal(1)):
            raise ValueError("cpmm_max_fill must be in (0, 1)")
        if self.max_catchup_steps < 1:
            raise ValueError("max_catchup_steps must be >= 1")
        seen_tokens: set[str] = set()
        for token in self.tokens:
            _known_token(token.symbol, "tokens")
            if token.symbol in seen_tokens:
                raise ValueError(f"tokens: {token.symbol} appears twice")
            seen_tokens.add(token.symbol)
            if token.volatility_scale < 0 or token.deviation_scale < 0:
                raise ValueError(f"tokens: {token.symbol} scales must be >= 0")
            if token.peg_seconds is not None:
                _positive_seconds(f"tokens: {token.symbol} peg_seconds", token.peg_seconds)
        seen_pairs: set[frozenset[str]] = set()
        for pair in self.pairs:
            _check_pair(pair)
            key = frozenset((pair.base, pair.quote))
            if key in seen_pairs:
                raise ValueError(f"pair {pair.base}/{pair.quote} is configured twice")
            seen_pairs.add(key)
        if self.launch.liquidity_usd <= 0:
            raise ValueError("launch.liquidity_usd must be positive")
        _check_bins(self.launch.bin_step_bps, self.launch.meteora_width, "launch")
        _check_fee(self.launch.meteora_base_fee, "launch.meteora_base_fee")
        for scheduled in self.launches:
            _known_token(scheduled.token, "launches")
            _known_venue(scheduled.venue, "launches")
            if scheduled.token == "SOL":
                raise ValueError("launches: SOL is the quote side of launches, not a launch")
            if not (math.isfinite(scheduled.at) and scheduled.at >= 0):
                raise ValueError(f"launches: {scheduled.token} time must be >= 0")

    def token(self, symbol: str) -> TokenParams:
        """The token's behaviour, falling back to the market-wide levels."""
        for token in self.tokens:
            if token.symbol == symbol:
                return token
        return TokenParams(symbol)

    @classmethod
    def preset(cls, name: str) -> MarketParams:
        """A named market mood: "calm", "normal" (the defaults) or "violent"."""
        if name == "normal":
            return cls()
        if name == "calm":
            return cls(
                volatility=Decimal("0.008"),
                venue_deviation=Decimal("0.015"),
                deviation_seconds=120.0,
                liquidity_scale=Decimal(3),
                dlmm=DlmmParams(variable_fee_control=Decimal("0.4")),
            )
        if name == "violent":
            return cls(
                volatility=Decimal("0.08"),
                venue_deviation=Decimal("0.07"),
                deviation_seconds=30.0,
                arbitrage_seconds=15.0,
                liquidity_scale=Decimal("0.25"),
                dlmm=DlmmParams(variable_fee_control=Decimal(2), max_fee=Decimal("0.08")),
            )
        raise ValueError(f"unknown market preset {name!r}; expected one of {PRESETS}")

    def with_pair(self, pair: PairParams) -> MarketParams:
        """These params with `pair` added, or replacing the same pair's settings."""
        key = frozenset((pair.base, pair.quote))
        kept = tuple(p for p in self.pairs if frozenset((p.base, p.quote)) != key)
        return replace(self, pairs=(*kept, pair))
