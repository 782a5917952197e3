"""The default market against the figures it is calibrated on (docs/market.md).

An hour of simulated time, checked slot by slot: the venues stay a few basis points
apart, arbitrage closes any round trip that pays beyond its fees within a slot or two,
a fill's price impact is gone a few slots later, SOL's realised volatility is about
70 % a year with fat tails, and fees follow their tiers and schedules.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dexecutor.market.params import MarketParams
from dexecutor.market.prices import PriceWalks
from dexecutor.market.simulation import Market
from dexecutor.market.types import VENUES, MarketError

SLOT = 0.4
HOUR_SLOTS = 9000
ROUND_TRIP_USDC = Decimal(1000)


@dataclass(frozen=True)
class Hour:
    """SOL/USDC every slot for an hour: the venue gap and the best round trip's profit."""

    gaps: list[Decimal]
    profits: list[Decimal]


def _round_trip(market: Market, now: float) -> Decimal:
    """USDC gained by buying SOL on one venue and selling it on the other (best way)."""
    best: Decimal | None = None
    for buy, sell in ((VENUES[0], VENUES[1]), (VENUES[1], VENUES[0])):
        sol = market.quote(buy, "USDC", "SOL", ROUND_TRIP_USDC, now).amount_out
        back = market.quote(sell, "SOL", "USDC", sol, now).amount_out
        profit = back - ROUND_TRIP_USDC
        best = profit if best is None else max(best, profit)
    assert best is not None
    return best


def _hour(preset: str, seed: int, slots: int = HOUR_SLOTS) -> Hour:
    market = Market(MarketParams.preset(preset), seed=seed)
    gaps: list[Decimal] = []
    profits: list[Decimal] = []
    for slot in range(1, slots + 1):
        now = slot * SLOT
        ray = market.mid_price("raydium", "SOL", "USDC", now)
        met = market.mid_price("meteora", "SOL", "USDC", now)
        gaps.append(abs(ray / met - 1))
        profits.append(_round_trip(market, now))
    return Hour(gaps, profits)


def _longest_profitable_run(profits: list[Decimal]) -> int:
    longest = run = 0
    for profit in profits:
        run = run + 1 if profit > 0 else 0
        longest = max(longest, run)
    return longest


@pytest.fixture(scope="module")
def default_hour() -> Hour:
    return _hour("normal", seed=0)


def test_over_an_hour_the_venues_stay_a_few_basis_points_apart(default_hour: Hour) -> None:
    gaps = sorted(default_hour.gaps)
    assert statistics.median(gaps) <= Decimal("0.003")  # the bound
    assert statistics.median(gaps) <= Decimal("0.001")  # and in fact a few bps
    assert gaps[int(0.99 * len(gaps))] < Decimal("0.005")


def test_a_round_trip_across_the_venues_never_pays_for_more_than_a_slot_or_two(
    default_hour: Hour,
) -> None:
    assert _longest_profitable_run(default_hour.profits) <= 2
    # And it is rare: a large order elsewhere has just hit one venue.
    profitable = sum(1 for p in default_hour.profits if p > 0)
    assert profitable <= len(default_hour.profits) // 100


@settings(max_examples=4, deadline=None)
@given(st.integers(min_value=1, max_value=10_000))
def test_any_seed_keeps_the_default_venues_together(seed: int) -> None:
    ten_minutes = _hour("normal", seed=seed, slots=1500)
    assert statistics.median(ten_minutes.gaps) <= Decimal("0.001")
    assert _longest_profitable_run(ten_minutes.profits) <= 2


@settings(max_examples=4, deadline=None)
@given(st.integers(min_value=1, max_value=10_000))
def test_in_violent_bursts_the_gap_stays_within_about_one_percent(seed: int) -> None:
    hour = _hour("violent", seed=seed, slots=750)  # five minutes
    assert max(hour.gaps) < Decimal("0.015")
    assert _longest_profitable_run(hour.profits) <= 3


def test_in_the_wide_preset_a_round_trip_pays_for_minutes() -> None:
    hour = _hour("wide", seed=0, slots=750)
    assert statistics.median(hour.gaps) > Decimal("0.01")
    assert _longest_profitable_run(hour.profits) > 100


@pytest.mark.parametrize("venue", VENUES)
def test_a_fills_price_impact_is_gone_within_a_few_slots(venue: str) -> None:
    market, twin = Market(seed=21), Market(seed=21)
    at = 30.0
    market.execute(venue, "SOL", "USDC", Decimal(1000), Decimal(0), at)
    deviations = []
    for slots in range(0, 6):
        now = at + slots * SLOT
        moved = market.mid_price(venue, "SOL", "USDC", now)
        unmoved = twin.mid_price(venue, "SOL", "USDC", now)
        deviations.append(abs(moved / unmoved - 1))
    assert deviations[0] > Decimal("0.01")  # the fill moved the pool by more than 1 %
    assert deviations[2] < Decimal("0.002")  # two slots later: less than a round trip's fees
    assert deviations[4] < Decimal("0.0011")  # four slots later: within a DLMM bin


def _realised(walks: PriceWalks, token: str, steps: int, step_seconds: float) -> list[float]:
    """Log returns of the token's reference, one per step (floats: statistics only)."""
    returns: list[float] = []
    last = walks.reference(token)
    for _ in range(steps):
        walks.step(1)
        now = walks.reference(token)
        returns.append(math.log(now / last))
        last = now
    return returns


def _annualised(returns: list[float], step_seconds: float) -> float:
    per_year = 365 * 24 * 3600 / step_seconds
    return math.sqrt(sum(r * r for r in returns) / len(returns) * per_year)


def _excess_kurtosis(returns: list[float]) -> float:
    mean = statistics.fmean(returns)
    var = statistics.fmean([(r - mean) ** 2 for r in returns])
    return statistics.fmean([(r - mean) ** 4 for r in returns]) / (var * var) - 3


def test_sols_realised_volatility_is_about_seventy_percent_a_year_with_fat_tails() -> None:
    step = 300.0  # 30 days of five-minute returns
    params = replace(MarketParams(), tick_seconds=step)
    returns = _realised(PriceWalks(params, seed=5), "SOL", 30 * 288, step)
    assert 0.60 < _annualised(returns, step) < 0.82
    assert _excess_kurtosis(returns) > 1.5  # jumps: fatter tails than a Gaussian walk
    bonk = _annualised(_realised(PriceWalks(params, seed=5), "BONK", 30 * 288, step), step)
    assert 1.3 < bonk < 1.9  # a memecoin: over twice SOL's
    gaussian = replace(params, jump_rate=Decimal(0))
    plain = _realised(PriceWalks(gaussian, seed=5), "SOL", 30 * 288, step)
    assert _excess_kurtosis(plain) < 0.5


def test_stables_stay_pegged_over_a_day() -> None:
    params = replace(MarketParams(), tick_seconds=60.0)
    walks = PriceWalks(params, seed=6)
    for _ in range(24 * 60):
        walks.step(1)
        assert abs(walks.reference("USDC") - 1) < Decimal("0.002")


def test_fee_tiers_differ_per_pool() -> None:
    market = Market(seed=2)
    stable = market.quote("raydium", "USDC", "USDT", Decimal(1000), 0.0)
    major = market.quote("raydium", "SOL", "USDC", Decimal(1), 0.0)
    assert stable.fee == Decimal("0.0001")
    assert major.fee == Decimal("0.0025")
    stable_bins = market.quote("meteora", "USDC", "USDT", Decimal(1000), 0.0)
    major_bins = market.quote("meteora", "SOL", "USDC", Decimal(1), 0.0)
    assert stable_bins.fee < major_bins.fee


def test_depth_differs_per_venue_and_pair() -> None:
    market = Market(seed=3)

    def impact(venue: str, token: str, amount: Decimal) -> Decimal:
        return market.quote(venue, token, "SOL", amount, 0.0).price_impact

    # $100k of USDC into SOL pools, and of BONK/JUP into theirs.
    usdc = Decimal(100_000)
    assert impact("raydium", "USDC", usdc) < impact("raydium", "JUP", Decimal(110_000))
    assert impact("raydium", "JUP", Decimal(110_000)) < impact("raydium", "RAY", Decimal(250_000))
    sol_usdc = MarketParams().pairs[0]
    assert sol_usdc.liquidity_on("raydium") != sol_usdc.liquidity_on("meteora")


@pytest.mark.parametrize("venue", VENUES)
def test_a_launch_pool_starts_dear_and_its_fee_decays_to_the_pools_own(venue: str) -> None:
    market = Market(seed=4)
    market.launch("NOVA", venue, 10.0)
    launch = market.params.launch
    fees = []
    for now in (10.0, 45.0, 100.0, 400.0):
        fees.append(market.quote(venue, "SOL", "NOVA", Decimal("0.1"), now).fee)
    assert fees[0] >= launch.cliff_fee
    assert fees[0] > fees[1] > fees[2]
    own = launch.raydium_fee if venue == "raydium" else launch.meteora_base_fee
    assert own <= fees[3] < own + Decimal("0.002")
    assert fees[3] > Decimal("0.0025")  # still dearer than a major pair


# -- determinism: what the chain relies on to persist the market by replaying calls ------


calls = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=40),  # slots since the previous call
        st.sampled_from(["quote", "mid", "fill", "jump", "launch", "advance"]),
        st.sampled_from(VENUES),
        st.integers(min_value=1, max_value=500),
    ),
    min_size=1,
    max_size=25,
)


def _apply(
    market: Market, script: list[tuple[int, str, str, int]], reads: bool
) -> tuple[list[object], list[object]]:
    """Run `script`: (fill outcomes and final quotes, reads). With `reads` False,
    skip every call that only reads the market."""
    changes: list[object] = []
    seen: list[object] = []
    now = 0.0
    for gap, kind, venue, size in script:
        now += gap * SLOT + 0.1
        if kind == "fill":
            try:
                changes.append(
                    market.execute(venue, "USDC", "SOL", Decimal(size * 10), Decimal(0), now)
                )
            except MarketError as refused:
                changes.append(refused.reason)
        elif kind == "jump":
            market.jump(venue, "SOL", size - 250, now)
        elif kind == "launch":
            market.launch("WARP", venue, now)
        elif reads and kind == "quote":
            seen.append(market.quote(venue, "SOL", "USDC", Decimal(size), now))
        elif reads and kind == "mid":
            seen.append(market.mid_price(venue, "BONK", "USDC", now))
        elif reads:
            market.advance(now)
    final = now + 1.0
    changes.extend(
        market.quote(v, "WARP", "USDC", Decimal(30), final)
        for v in VENUES
        if market.is_tradable("WARP", v)
    )
    changes.extend(market.quote(v, "SOL", "USDC", Decimal(3), final) for v in VENUES)
    return changes, seen


@settings(max_examples=30, deadline=None)
@given(calls, st.integers(min_value=0, max_value=2**31 - 1))
def test_same_seed_and_calls_give_the_same_quotes_and_reads_change_nothing(
    script: list[tuple[int, str, str, int]], seed: int
) -> None:
    first = _apply(Market(seed=seed), script, reads=True)
    assert first == _apply(Market(seed=seed), script, reads=True)
    # Replaying only the state-changing calls (fills, jumps, launches, each at its
    # `now`) ends in the same market: quotes and reads leave no trace.
    changes, _ = _apply(Market(seed=seed), script, reads=False)
    assert changes == first[0]
