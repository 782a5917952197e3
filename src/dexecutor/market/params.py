"""Every knob of the mock market, with defaults calibrated on public Solana figures.

`MarketParams` is plain, frozen, validated data: the simulation reads it, nothing
writes it. It must not read environment variables or files; the edge layer (config)
decides which params to build and hands them in. Named presets ("normal", "calm",
"violent", "wide") are built here so a user can pick a market mood by name; the
figures behind the defaults and their sources are in docs/market.md.

Units: fractions are Decimals (0.04 is 4 %), durations are float seconds of simulated
time, liquidity is USD of total value locked (both sides) per venue pool, rates of
random events are per hour.
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

    Scales multiply `MarketParams.volatility` (and the size of its jumps) and
    `.venue_deviation`, so a preset can change the mood of the whole market while
    stablecoins stay stable and memecoins stay wild. `peg_seconds` makes the reference
    mean-revert to its starting value (a peg); None lets it wander freely.
    """

    symbol: str
    volatility_scale: Decimal = Decimal(1)
    deviation_scale: Decimal = Decimal(1)
    peg_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class PairParams:
    """One trading pair and the pools both venues (or one of them) list for it.

    Price is quoted as `quote` per `base`. `liquidity_usd` is a venue pool's total
    value locked at creation, unless `venue_liquidity_usd` names that venue: real pools
    of one pair differ in depth from venue to venue. `raydium_fee` is the constant-
    product pool's fee tier (None: `MarketParams.raydium_fee`). `extra_deviation` adds a
    pair-specific wobble (stationary standard deviation, a fraction) on top of the two
    tokens' own venue deviations. The `meteora_*` fields shape the DLMM pool: bin width,
    base fee, how far from the price its liquidity reaches (e-folding distance of the
    liquidity curve, as a price fraction) and its variable fee control (None: the
    market's `DlmmParams.variable_fee_control`).
    """

    base: str
    quote: str
    venues: tuple[str, ...] = VENUES
    liquidity_usd: Decimal = Decimal(2_000_000)
    venue_liquidity_usd: tuple[tuple[str, Decimal], ...] = ()
    raydium_fee: Decimal | None = None
    extra_deviation: Decimal = Decimal(0)
    bin_step_bps: int = 10
    meteora_base_fee: Decimal = Decimal("0.001")
    meteora_width: Decimal = Decimal("0.25")
    meteora_fee_control: int | None = None

    def liquidity_on(self, venue: str) -> Decimal:
        """The pool's TVL on `venue`: its own figure if it has one, else `liquidity_usd`."""
        for name, usd in self.venue_liquidity_usd:
            if name == venue:
                return usd
        return self.liquidity_usd


@dataclass(frozen=True, slots=True)
class DlmmParams:
    """Meteora's dynamic fee, as its DLMM program defines it.

    fee = base fee + variable fee, capped at `max_fee`, where the variable fee is
    `variable_fee_control` × (v_a × bin step)² / 10⁴, with v_a the volatility
    accumulator counted in bins (Meteora's integer units: control as on chain, v_a
    ×10⁴, bin step in bps, numerator over 10⁹ and divided by 10¹¹). For each bin a swap
    reaches, v_a = min(v_r + |i_r − bin|, `max_volatility_accumulator`). Before a swap,
    if at least `filter_seconds` passed since the last one, the index reference i_r
    moves to the active bin and the volatility reference v_r becomes
    `reduction_factor` × v_a (or 0 once `decay_seconds` passed). Per-pair control:
    `PairParams.meteora_fee_control`.
    """

    variable_fee_control: int = 20_000
    filter_seconds: float = 10.0
    decay_seconds: float = 120.0
    reduction_factor: Decimal = Decimal("0.5")
    max_volatility_accumulator: Decimal = Decimal(35)
    max_fee: Decimal = Decimal("0.1")


@dataclass(frozen=True, slots=True)
class LaunchParams:
    """The pools a token launch creates: TOKEN/SOL on the chosen venue.

    New pools charge more: the Raydium pool takes the `raydium_fee` tier, the DLMM pool
    wide bins and a high base fee. On top of that a launch fee scheduler (as Meteora's
    launch pools have) starts at `cliff_fee` and falls by `fee_reduction` (a fraction
    of the fee) every `fee_period_seconds`, for `fee_periods` periods, never below the
    pool's own fee; after that the pool's own fee applies.
    """

    liquidity_usd: Decimal = Decimal(200_000)
    raydium_fee: Decimal = Decimal("0.01")
    bin_step_bps: int = 100
    meteora_base_fee: Decimal = Decimal("0.01")
    meteora_width: Decimal = Decimal("0.5")
    meteora_fee_control: int = 1_000
    cliff_fee: Decimal = Decimal("0.05")
    fee_reduction: Decimal = Decimal("0.25")
    fee_period_seconds: float = 30.0
    fee_periods: int = 10


@dataclass(frozen=True, slots=True)
class ScheduledLaunch:
    """A launch that `Market.advance` applies when simulated time reaches `at`."""

    token: str
    venue: str
    at: float


# SOL's reference: about 70 % a year (hourly diffusion 0.65 % plus jumps, see
# MarketParams). BONK and launches several times that, JUP/RAY in between.
DEFAULT_TOKENS: tuple[TokenParams, ...] = (
    TokenParams("USDC", Decimal("0.02"), Decimal("0.02"), peg_seconds=3600.0),
    TokenParams("USDT", Decimal("0.02"), Decimal("0.02"), peg_seconds=3600.0),
    TokenParams("BONK", Decimal("2.2"), Decimal("1.25")),
    TokenParams("JUP", Decimal("1.4")),
    TokenParams("RAY", Decimal("1.5")),
    TokenParams("NOVA", Decimal(5), Decimal("1.5")),
    TokenParams("WARP", Decimal(5), Decimal("1.5")),
    TokenParams("FLUX", Decimal(5), Decimal("1.5")),
)


def _usd(raydium: int, meteora: int) -> tuple[tuple[str, Decimal], ...]:
    return (("raydium", Decimal(raydium)), ("meteora", Decimal(meteora)))


# BONK/USDC (and every BONK, JUP, RAY pair with USDT) has no pool: multi-hop only.
# JUP/USDC is listed on Meteora only, RAY/USDC on Raydium only. Stable pairs pay
# 0.01 %, majors 0.25 % on Raydium and 0.1-0.2 % base on Meteora, memes more.
DEFAULT_PAIRS: tuple[PairParams, ...] = (
    PairParams("SOL", "USDC", venue_liquidity_usd=_usd(8_000_000, 4_000_000)),
    PairParams("SOL", "USDT", venue_liquidity_usd=_usd(1_500_000, 800_000)),
    PairParams(
        "USDC",
        "USDT",
        venue_liquidity_usd=_usd(2_000_000, 3_000_000),
        raydium_fee=Decimal("0.0001"),
        bin_step_bps=1,
        meteora_base_fee=Decimal("0.0001"),
        meteora_width=Decimal("0.005"),
    ),
    PairParams(
        "BONK",
        "SOL",
        venue_liquidity_usd=_usd(3_000_000, 1_000_000),
        bin_step_bps=80,
        meteora_base_fee=Decimal("0.004"),
        meteora_width=Decimal("0.4"),
        meteora_fee_control=500,
    ),
    PairParams(
        "JUP",
        "SOL",
        venue_liquidity_usd=_usd(1_200_000, 600_000),
        bin_step_bps=20,
        meteora_base_fee=Decimal("0.002"),
        meteora_width=Decimal("0.3"),
        meteora_fee_control=5_000,
    ),
    PairParams(
        "RAY",
        "SOL",
        venue_liquidity_usd=_usd(2_000_000, 400_000),
        bin_step_bps=20,
        meteora_base_fee=Decimal("0.002"),
        meteora_width=Decimal("0.3"),
        meteora_fee_control=5_000,
    ),
    PairParams(
        "JUP",
        "USDC",
        venues=("meteora",),
        liquidity_usd=Decimal(1_500_000),
        bin_step_bps=10,
        meteora_width=Decimal("0.3"),
    ),
    PairParams("RAY", "USDC", venues=("raydium",), liquidity_usd=Decimal(1_500_000)),
)

PRESETS: tuple[str, ...] = ("normal", "calm", "violent", "wide")


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


def _check_control(value: int, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000_000:
        raise ValueError(f"{where} must be an integer in 0..10000000, got {value!r}")


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
    for venue, usd in pair.venue_liquidity_usd:
        _known_venue(venue, f"{where}: venue_liquidity_usd")
        if usd <= 0:
            raise ValueError(f"{where}: venue_liquidity_usd must be positive")
    if pair.raydium_fee is not None:
        _check_fee(pair.raydium_fee, f"{where}: raydium_fee")
    if not (Decimal(0) <= pair.extra_deviation < Decimal("0.5")):
        raise ValueError(f"{where}: extra_deviation must be in [0, 0.5)")
    _check_bins(pair.bin_step_bps, pair.meteora_width, where)
    _check_fee(pair.meteora_base_fee, f"{where}: meteora_base_fee")
    if pair.meteora_fee_control is not None:
        _check_control(pair.meteora_fee_control, f"{where}: meteora_fee_control")


def _check_bins(bin_step_bps: int, width: Decimal, where: str) -> None:
    if not (1 <= bin_step_bps <= 1000):
        raise ValueError(f"{where}: bin_step_bps must be in 1..1000, got {bin_step_bps}")
    if not (Decimal(0) < width <= Decimal(2)):
        raise ValueError(f"{where}: meteora_width must be in (0, 2], got {width}")
    if width * 4 / (Decimal(bin_step_bps) / 10_000) > 20_000:
        raise ValueError(f"{where}: meteora_width is too wide for the bin step (over 20k bins)")


def _check_dlmm(dlmm: DlmmParams) -> None:
    _positive_seconds("dlmm.filter_seconds", dlmm.filter_seconds)
    _positive_seconds("dlmm.decay_seconds", dlmm.decay_seconds)
    if dlmm.filter_seconds >= dlmm.decay_seconds:
        raise ValueError("dlmm.filter_seconds must be shorter than dlmm.decay_seconds")
    if not (Decimal(0) <= dlmm.reduction_factor <= Decimal(1)):
        raise ValueError("dlmm.reduction_factor must be in [0, 1]")
    if dlmm.max_volatility_accumulator < 0:
        raise ValueError("dlmm.max_volatility_accumulator must be >= 0 (bins)")
    _check_control(dlmm.variable_fee_control, "dlmm.variable_fee_control")
    _check_fee(dlmm.max_fee, "dlmm.max_fee")


def _check_launch(launch: LaunchParams) -> None:
    if launch.liquidity_usd <= 0:
        raise ValueError("launch.liquidity_usd must be positive")
    _check_bins(launch.bin_step_bps, launch.meteora_width, "launch")
    _check_fee(launch.raydium_fee, "launch.raydium_fee")
    _check_fee(launch.meteora_base_fee, "launch.meteora_base_fee")
    _check_fee(launch.cliff_fee, "launch.cliff_fee")
    _check_control(launch.meteora_fee_control, "launch.meteora_fee_control")
    if not (Decimal(0) <= launch.fee_reduction < Decimal(1)):
        raise ValueError("launch.fee_reduction must be in [0, 1)")
    _positive_seconds("launch.fee_period_seconds", launch.fee_period_seconds)
    if launch.fee_periods < 0:
        raise ValueError("launch.fee_periods must be >= 0")


@dataclass(frozen=True)
class MarketParams:
    """The whole market's configuration; every field has a sensible default.

    - `tick_seconds`: the walks step on a fixed grid of this length: Solana's slot
      time (400 ms), so "within a slot or two" has a meaning.
    - `volatility`: hourly standard deviation of the Gaussian part of a token's USD
      reference (× the token's `volatility_scale`).
    - `jump_rate`, `jump_size`: fat tails. Jumps arrive as a Poisson process
      (`jump_rate` per hour per token) and each moves the reference by a Gaussian
      fraction of standard deviation `jump_size` (× `volatility_scale`).
    - `venue_deviation`: stationary standard deviation of where a venue's
      arbitrageurs hold a token, relative to the reference (× the token's
      `deviation_scale`); two venues then differ by about 1.4× this.
    - `deviation_seconds`: how fast a venue's deviation reverts (and is redrawn).
    - `arbitrage_seconds`: how fast arbitrage pulls each pool toward its venue's target
      price; the same pull fades a fill's price impact.
    - `flow_noise`: per-second standard deviation of the nudge other traders' orders
      give each pool (× the larger `deviation_scale` of its two tokens).
    - `whale_rate`, `whale_size`: large orders from other traders, per pool: a Poisson
      number per hour, each moving the pool by a Gaussian fraction of standard
      deviation `whale_size` (× the same scale); arbitrage then pulls the pool back.
    - `liquidity_scale`: multiplies every pool's liquidity.
    - `raydium_fee`: the constant-product fee tier of pairs that name none.
    - `cpmm_max_fill`: the largest fraction of its output reserve a constant-product
      pool gives in one swap; beyond it the trade is `insufficient_liquidity`.
    - `max_catchup_steps`: an advance over more ticks than this walks in coarser steps,
      so waking up after a long idle gap stays cheap.
    """

    tick_seconds: float = 0.4
    volatility: Decimal = Decimal("0.0065")
    jump_rate: Decimal = Decimal("0.5")
    jump_size: Decimal = Decimal("0.0055")
    venue_deviation: Decimal = Decimal("0.0002")
    deviation_seconds: float = 5.0
    arbitrage_seconds: float = 0.25
    flow_noise: Decimal = Decimal("0.0002")
    whale_rate: Decimal = Decimal(20)
    whale_size: Decimal = Decimal("0.0015")
    liquidity_scale: Decimal = Decimal(1)
    raydium_fee: Decimal = Decimal("0.0025")
    cpmm_max_fill: Decimal = Decimal("0.5")
    dlmm: DlmmParams = field(default_factory=DlmmParams)
    tokens: tuple[TokenParams, ...] = DEFAULT_TOKENS
    pairs: tuple[PairParams, ...] = DEFAULT_PAIRS
    launch: LaunchParams = field(default_factory=LaunchParams)
    launches: tuple[ScheduledLaunch, ...] = ()
    max_catchup_steps: int = 9000

    def __post_init__(self) -> None:
        _positive_seconds("tick_seconds", self.tick_seconds)
        _positive_seconds("deviation_seconds", self.deviation_seconds)
        _positive_seconds("arbitrage_seconds", self.arbitrage_seconds)
        if not (Decimal(0) <= self.volatility <= Decimal(1)):
            raise ValueError("volatility must be in [0, 1] (hourly fraction)")
        if not (Decimal(0) <= self.jump_rate <= Decimal(3600)):
            raise ValueError("jump_rate must be in [0, 3600] (per hour)")
        if not (Decimal(0) <= self.jump_size < Decimal("0.3")):
            raise ValueError("jump_size must be in [0, 0.3)")
        if not (Decimal(0) <= self.venue_deviation < Decimal("0.3")):
            raise ValueError("venue_deviation must be in [0, 0.3)")
        if not (Decimal(0) <= self.flow_noise < Decimal("0.05")):
            raise ValueError("flow_noise must be in [0, 0.05) (per-second fraction)")
        if not (Decimal(0) <= self.whale_rate <= Decimal(36_000)):
            raise ValueError("whale_rate must be in [0, 36000] (per hour)")
        if not (Decimal(0) <= self.whale_size < Decimal("0.1")):
            raise ValueError("whale_size must be in [0, 0.1)")
        if self.liquidity_scale <= 0:
            raise ValueError("liquidity_scale must be positive")
        _check_fee(self.raydium_fee, "raydium_fee")
        _check_dlmm(self.dlmm)
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
        _check_launch(self.launch)
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
        """A named market mood; "normal" is the default (see docs/market.md).

        - "normal": venues a few bps apart, arbitraged within a slot or two.
        - "calm": a quieter, deeper market.
        - "violent": a volatile, thin market with bursts; gaps up to about 1 %.
        - "wide": venues 2-5 % apart for minutes, for demos where routing flips.
        """
        if name == "normal":
            return cls()
        if name == "calm":
            return cls(
                volatility=Decimal("0.004"),
                jump_rate=Decimal("0.2"),
                venue_deviation=Decimal("0.0001"),
                flow_noise=Decimal("0.0001"),
                whale_rate=Decimal(5),
                whale_size=Decimal("0.001"),
                liquidity_scale=Decimal(2),
            )
        if name == "violent":
            return cls(
                volatility=Decimal("0.02"),
                jump_rate=Decimal(4),
                jump_size=Decimal("0.012"),
                venue_deviation=Decimal("0.0008"),
                deviation_seconds=10.0,
                arbitrage_seconds=0.5,
                flow_noise=Decimal("0.0006"),
                whale_rate=Decimal(90),
                whale_size=Decimal("0.003"),
                liquidity_scale=Decimal("0.4"),
            )
        if name == "wide":
            return cls(
                venue_deviation=Decimal("0.025"),
                deviation_seconds=60.0,
                arbitrage_seconds=30.0,
                flow_noise=Decimal("0.0012"),
                whale_rate=Decimal(0),
            )
        raise ValueError(f"unknown market preset {name!r}; expected one of {PRESETS}")

    def with_pair(self, pair: PairParams) -> MarketParams:
        """These params with `pair` added, or replacing the same pair's settings."""
        key = frozenset((pair.base, pair.quote))
        kept = tuple(p for p in self.pairs if frozenset((p.base, p.quote)) != key)
        return replace(self, pairs=(*kept, pair))
