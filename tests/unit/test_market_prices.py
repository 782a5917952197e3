"""Seeded price walks: reproducible, seed-dependent, pegs hold, shifts apply."""

from __future__ import annotations

from decimal import Decimal

from dexecutor.market.params import MarketParams
from dexecutor.market.prices import PriceWalks, Stream, normal_quantiles, poisson_odds
from dexecutor.market.tokens import TOKENS


def _walk(seed: int, steps: int, params: MarketParams | None = None) -> PriceWalks:
    walks = PriceWalks(params or MarketParams(), seed)
    for _ in range(steps):
        walks.step(1)
    return walks


def _snapshot(walks: PriceWalks) -> list[Decimal]:
    return [walks.reference(t.symbol) for t in TOKENS] + [
        walks.venue_price(v, t.symbol) for v in ("raydium", "meteora") for t in TOKENS
    ]


def test_the_normal_table_is_a_standard_normal() -> None:
    table = normal_quantiles()
    assert len(table) == 1 << 14
    assert sum(table, Decimal(0)) == 0
    variance = sum((x * x for x in table), Decimal(0)) / len(table)
    assert abs(variance - 1) < Decimal("0.001")
    assert table == tuple(sorted(table))


def test_streams_are_reproducible_and_independent_by_name() -> None:
    draws = Stream(7, "x")
    again = Stream(7, "x")
    first = [draws.normal() for _ in range(50)]
    assert first == [again.normal() for _ in range(50)]
    other = Stream(7, "y")
    assert first != [other.normal() for _ in range(50)]


def test_same_seed_same_walk_and_different_seeds_differ() -> None:
    assert _snapshot(_walk(3, 300)) == _snapshot(_walk(3, 300))
    assert _snapshot(_walk(3, 300)) != _snapshot(_walk(4, 300))


def test_a_pegged_stablecoin_stays_near_its_peg_while_sol_wanders() -> None:
    walks = _walk(1, 24 * 3600 // 60, MarketParams(tick_seconds=60.0))
    assert abs(walks.reference("USDC") - 1) < Decimal("0.005")
    assert walks.reference("SOL") != Decimal("98.50")


def test_venue_prices_stay_within_a_few_deviations_of_the_reference() -> None:
    walks = _walk(2, 600)
    for venue in ("raydium", "meteora"):
        ratio = walks.venue_price(venue, "SOL") / walks.reference("SOL")
        assert abs(ratio - 1) < Decimal("0.2")


def test_a_move_scales_the_reference_and_every_venue_price_of_the_token() -> None:
    walks = _walk(5, 10)
    before = {v: walks.venue_price(v, "SOL") for v in ("raydium", "meteora")}
    usdc = walks.venue_price("raydium", "USDC")
    walks.move("SOL", Decimal("1.02"))
    for venue, price in before.items():
        assert abs(walks.venue_price(venue, "SOL") / price - Decimal("1.02")) < Decimal("1e-20")
    assert walks.venue_price("raydium", "USDC") == usdc


def test_poisson_odds_are_cumulative_and_count_events_at_their_rate() -> None:
    assert poisson_odds(Decimal(0), Decimal(1)) == ()
    odds = poisson_odds(Decimal(3600), Decimal("0.5"))  # a mean of 0.5 per step
    assert list(odds) == sorted(odds)
    assert odds[-1] == 1 << 32
    assert abs(odds[0] / Decimal(1 << 32) - Decimal("0.6065306597")) < Decimal("1e-9")
    stream = Stream(3, "events")
    counts = [stream.count(odds) for _ in range(20_000)]
    assert abs(Decimal(sum(counts)) / len(counts) - Decimal("0.5")) < Decimal("0.02")


def test_zero_volatility_and_deviation_freeze_the_market() -> None:
    params = MarketParams(volatility=Decimal(0), venue_deviation=Decimal(0))
    walks = _walk(9, 100, params)
    assert walks.reference("SOL") == Decimal("98.50")
    assert walks.venue_price("meteora", "SOL") == Decimal("98.50")
