"""The Market as the engine sees it: quotes, fills, routes, launches, jumps, time."""

from __future__ import annotations

import statistics
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dexecutor.domain.money import decimal_places, less_bps, price_of
from dexecutor.market.params import ScheduledLaunch
from dexecutor.market.router import best_quote
from dexecutor.market.simulation import Market, MarketParams
from dexecutor.market.tokens import find_token
from dexecutor.market.types import VENUES, MarketError, Quote
from tests.timing import budget, cpu_seconds
from tests.unit.market_cases import distinct_pairs, quantum, usd_values, worth

QUIET = MarketParams(volatility=Decimal(0), venue_deviation=Decimal(0), flow_noise=Decimal(0))
TWO = Decimal(2)
# Quotes are pure, so one market at time 0 serves every property example.
SHARED = Market(seed=11)


def _refusal(call: object, *args: object) -> str:
    with pytest.raises(MarketError) as refused:
        call(*args)  # type: ignore[operator]
    return refused.value.reason


# -- quotes ----------------------------------------------------------------------------


@pytest.mark.parametrize("venue", VENUES)
def test_a_quote_carries_price_fee_impact_and_route(venue: str) -> None:
    quote = Market(seed=1).quote(venue, "SOL", "USDC", TWO, 0.0)
    assert (quote.venue, quote.token_in, quote.token_out) == (venue, "SOL", "USDC")
    assert quote.amount_in == TWO
    assert quote.route == ("wSOL", "USDC")
    assert quote.price == price_of(quote.amount_out, TWO)
    assert Decimal(80) < quote.price < Decimal(120)
    assert decimal_places(quote.amount_out) <= 6
    assert Decimal(0) <= quote.price_impact < Decimal("0.001")
    if venue == "raydium":
        assert quote.fee == Decimal("0.0025")
    else:
        assert Decimal("0.001") <= quote.fee < Decimal("0.01")


@pytest.mark.parametrize("venue", VENUES)
def test_a_big_order_has_a_large_price_impact(venue: str) -> None:
    market = Market(seed=1)
    small = market.quote(venue, "SOL", "USDC", TWO, 0.0)
    big = market.quote(venue, "SOL", "USDC", Decimal(10_000), 0.0)
    assert small.price_impact < Decimal("0.001")
    assert big.price_impact > Decimal("0.03")
    assert big.price < small.price


def test_pairs_without_a_pool_route_through_sol_and_the_fee_compounds() -> None:
    market = Market(QUIET)
    for venue in VENUES:
        quote = market.quote(venue, "BONK", "USDC", Decimal(1_000_000), 0.0)
        assert quote.route == ("BONK", "wSOL", "USDC")
        fair = Decimal(1_000_000) * Decimal("0.0000185")
        assert abs(quote.amount_out / fair - 1) < Decimal("0.02")
    raydium = market.quote("raydium", "BONK", "USDC", Decimal(1_000_000), 0.0)
    assert raydium.fee == Decimal("0.00499375")  # 1 - 0.9975²


def test_each_venue_picks_its_own_best_path() -> None:
    market = Market(QUIET)
    # JUP/USDC is listed on Meteora only; Raydium goes through SOL.
    assert market.quote("meteora", "JUP", "USDC", Decimal(100), 0.0).route == ("JUP", "USDC")
    assert market.quote("raydium", "JUP", "USDC", Decimal(100), 0.0).route == (
        "JUP",
        "wSOL",
        "USDC",
    )
    assert market.quote("raydium", "USDC", "SOL", Decimal(100), 0.0).route == ("USDC", "wSOL")


def test_a_quote_changes_nothing() -> None:
    market = Market(seed=2)
    first = market.quote("raydium", "SOL", "USDC", Decimal(5000), 0.0)
    mid = market.mid_price("raydium", "SOL", "USDC", 0.0)
    assert market.quote("raydium", "SOL", "USDC", Decimal(5000), 0.0) == first
    assert market.mid_price("raydium", "SOL", "USDC", 0.0) == mid


@pytest.mark.parametrize("venue", VENUES)
def test_a_token_without_a_pool_has_no_route(venue: str) -> None:
    market = Market()
    assert _refusal(market.quote, venue, "SOL", "NOVA", TWO, 0.0) == "no_route"
    assert _refusal(market.mid_price, venue, "NOVA", "USDC", 0.0) == "no_route"
    assert _refusal(market.execute, venue, "SOL", "NOVA", TWO, Decimal(0), 0.0) == "no_route"


@pytest.mark.parametrize("venue", VENUES)
def test_a_trade_bigger_than_the_pool_is_insufficient_liquidity(venue: str) -> None:
    market = Market()
    reason = _refusal(market.quote, venue, "SOL", "USDC", Decimal(1_000_000), 0.0)
    assert reason == "insufficient_liquidity"


@pytest.mark.parametrize(
    ("venue", "token_in", "token_out", "amount"),
    [
        ("orca", "SOL", "USDC", TWO),
        ("raydium", "DOGE", "USDC", TWO),
        ("raydium", "SOL", "SOL", TWO),
        ("raydium", "SOL", "USDC", Decimal(0)),
        ("raydium", "SOL", "USDC", Decimal("-1")),
        ("raydium", "SOL", "USDC", Decimal("0.0000000001")),  # 10 places; SOL has 9
        ("raydium", "USDC", "SOL", Decimal("1.0000001")),
        ("raydium", "SOL", "USDC", 2.0),
        ("raydium", "SOL", "USDC", Decimal("NaN")),
    ],
)
def test_bad_arguments_are_value_errors(
    venue: str, token_in: str, token_out: str, amount: Decimal
) -> None:
    with pytest.raises(ValueError, match=r"venue|token|itself|amount_in|decimals"):
        Market().quote(venue, token_in, token_out, amount, 0.0)


@settings(max_examples=150, deadline=None)
@given(distinct_pairs, usd_values, st.sampled_from(VENUES))
def test_amounts_are_exact_decimals_at_the_token_precision(
    pair: list[str], usd: Decimal, venue: str
) -> None:
    token_in, token_out = pair
    amount = worth(token_in, usd)
    quote = SHARED.quote(venue, token_in, token_out, amount, 0.0)
    out_token = find_token(token_out)
    assert out_token is not None
    assert isinstance(quote.amount_out, Decimal)
    assert decimal_places(quote.amount_out) <= out_token.decimals
    assert quote.amount_out > 0
    assert quote.price == price_of(quote.amount_out, amount)
    assert Decimal(0) <= quote.price_impact < 1
    assert Decimal(0) < quote.fee < Decimal("0.2")


@pytest.mark.parametrize("venue", VENUES)
@pytest.mark.parametrize(
    ("token_in", "token_out", "amount"),
    [
        ("SOL", "USDC", Decimal("0.000000001")),  # ~$1e-7: under one USDC base unit
        ("BONK", "SOL", Decimal("0.00001")),  # ~$2e-10: under one lamport
        ("USDC", "USDT", Decimal("0.000001")),  # one unit in, the fee leaves under one out
    ],
)
def test_a_trade_worth_less_than_one_base_unit_out_is_insufficient_liquidity(
    venue: str, token_in: str, token_out: str, amount: Decimal
) -> None:
    assert _refusal(SHARED.quote, venue, token_in, token_out, amount, 0.0) == (
        "insufficient_liquidity"
    )


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from([("SOL", "USDC"), ("USDC", "SOL"), ("BONK", "USDC"), ("JUP", "RAY")]),
    usd_values,
    usd_values,
    st.sampled_from(VENUES),
)
def test_a_larger_trade_never_gets_a_better_unit_price(
    pair: tuple[str, str], a: Decimal, b: Decimal, venue: str
) -> None:
    small, large = sorted((worth(pair[0], a), worth(pair[0], b)))
    out_small = SHARED.quote(venue, pair[0], pair[1], small, 0.0).amount_out
    out_large = SHARED.quote(venue, pair[0], pair[1], large, 0.0).amount_out
    # Each hop rounds down; two hops may cost the small trade a unit per hop.
    assert out_large * small <= (out_small + 2 * quantum(pair[1])) * large


# -- fills -------------------------------------------------------------------------------


@pytest.mark.parametrize("venue", VENUES)
def test_a_fill_moves_the_price_for_the_next_order(venue: str) -> None:
    market = Market(seed=3)
    before = market.quote(venue, "SOL", "USDC", Decimal(100), 5.0)
    mid = market.mid_price(venue, "SOL", "USDC", 5.0)
    fill = market.execute(venue, "SOL", "USDC", Decimal(3000), Decimal(0), 5.0)
    assert fill.amount_out > 0
    assert market.mid_price(venue, "SOL", "USDC", 5.0) < mid
    after = market.quote(venue, "SOL", "USDC", Decimal(100), 5.0)
    assert after.amount_out < before.amount_out


def test_a_fill_equals_the_quote_at_the_same_moment() -> None:
    market = Market(seed=4)
    for venue in VENUES:
        quote = market.quote(venue, "BONK", "USDT", Decimal(5_000_000), 9.0)
        fill = market.execute(venue, "BONK", "USDT", Decimal(5_000_000), quote.amount_out, 9.0)
        assert fill == quote


@pytest.mark.parametrize("venue", VENUES)
def test_slippage_exceeded_leaves_the_market_unchanged(venue: str) -> None:
    market, twin = Market(seed=5), Market(seed=5)
    quote = market.quote(venue, "SOL", "USDC", Decimal(500), 10.0)
    twin.quote(venue, "SOL", "USDC", Decimal(500), 10.0)
    too_much = quote.amount_out + Decimal("0.000001")
    assert _refusal(market.execute, venue, "SOL", "USDC", Decimal(500), too_much, 10.0) == (
        "slippage_exceeded"
    )
    for now in (10.0, 11.0, 75.0):
        for v in VENUES:
            assert market.quote(v, "SOL", "USDC", Decimal(500), now) == twin.quote(
                v, "SOL", "USDC", Decimal(500), now
            )


@pytest.mark.parametrize("venue", VENUES)
def test_a_price_drop_between_quote_and_fill_is_slippage(venue: str) -> None:
    market = Market(seed=6)
    quote = market.quote(venue, "SOL", "USDC", TWO, 20.0)
    market.jump(venue, "SOL", -200, 21.0)
    floor = less_bps(quote.amount_out, 50)
    assert _refusal(market.execute, venue, "SOL", "USDC", TWO, floor, 22.5) == "slippage_exceeded"
    # A rise instead fills, above the quote.
    market.jump(venue, "SOL", 500, 23.0)
    assert market.execute(venue, "SOL", "USDC", TWO, floor, 23.0).amount_out > quote.amount_out


# -- launches and jumps ------------------------------------------------------------------


def test_launch_makes_a_token_tradable_on_that_venue() -> None:
    market = Market(seed=7)
    assert not market.is_tradable("NOVA")
    market.launch("NOVA", "raydium", 30.0)
    assert market.is_tradable("NOVA")
    assert market.is_tradable("NOVA", "raydium")
    assert not market.is_tradable("NOVA", "meteora")
    quote = market.quote("raydium", "SOL", "NOVA", TWO, 30.0)
    assert quote.route == ("wSOL", "NOVA")
    assert market.quote("raydium", "NOVA", "USDC", Decimal(10_000), 30.0).route == (
        "NOVA",
        "wSOL",
        "USDC",
    )
    assert _refusal(market.quote, "meteora", "SOL", "NOVA", TWO, 30.0) == "no_route"
    # Priced near the token's reference.
    usd = market.mid_price("raydium", "NOVA", "SOL", 30.0) * market.reference_price("SOL", 30.0)
    assert abs(usd / market.reference_price("NOVA", 30.0) - 1) < Decimal("0.3")
    # Launching again is a no-op, not a second pool.
    market.launch("NOVA", "raydium", 30.0)
    assert market.quote("raydium", "SOL", "NOVA", TWO, 30.0) == quote
    market.launch("NOVA", "meteora", 31.0)
    assert market.is_tradable("NOVA", "meteora")


def test_launch_refuses_sol_and_unknown_names() -> None:
    market = Market()
    with pytest.raises(ValueError, match="SOL is the quote side"):
        market.launch("SOL", "raydium", 1.0)
    with pytest.raises(ValueError, match="unknown venue"):
        market.launch("NOVA", "orca", 1.0)
    with pytest.raises(ValueError, match="unknown token"):
        market.launch("DOGE", "raydium", 1.0)


def test_scheduled_launches_happen_when_time_reaches_them() -> None:
    params = MarketParams(
        launches=(ScheduledLaunch("WARP", "meteora", 120.0), ScheduledLaunch("FLUX", "raydium", 0))
    )
    market = Market(params, seed=8)
    assert market.is_tradable("FLUX", "raydium")
    market.advance(119.0)
    assert not market.is_tradable("WARP")
    market.quote("raydium", "SOL", "USDC", TWO, 120.5)
    assert market.is_tradable("WARP", "meteora")


@pytest.mark.parametrize("bps", [300, -500, 50])
def test_a_jump_moves_the_venue_price_by_its_bps(bps: int) -> None:
    market = Market(seed=9)
    factor = 1 + Decimal(bps) / 10_000
    before = {v: market.mid_price(v, "SOL", "USDC", 40.0) for v in VENUES}
    market.jump("raydium", "SOL", bps, 40.0)
    ray = market.mid_price("raydium", "SOL", "USDC", 40.0) / before["raydium"]
    assert abs(ray - factor) < Decimal("1e-15")
    assert market.mid_price("meteora", "SOL", "USDC", 40.0) == before["meteora"]
    market.jump("meteora", "SOL", bps, 40.0)
    met = market.mid_price("meteora", "SOL", "USDC", 40.0) / before["meteora"]
    assert abs(met - factor) < Decimal("0.0011")  # one bin of 10 bps


def test_a_jump_of_the_quote_token_moves_the_pair_the_other_way() -> None:
    market = Market(seed=9)
    before = market.mid_price("raydium", "SOL", "USDC", 1.0)
    market.jump("raydium", "USDC", 100, 1.0)
    ratio = market.mid_price("raydium", "SOL", "USDC", 1.0) / before
    assert abs(ratio - 1 / Decimal("1.01")) < Decimal("1e-15")


def test_a_jump_moves_the_market_and_arbitrage_carries_it_to_the_other_venue() -> None:
    market = Market(QUIET)
    base = {v: market.mid_price(v, "SOL", "USDC", 0.0) for v in VENUES}
    market.jump("raydium", "SOL", 1000, 0.0)
    assert market.mid_price("meteora", "SOL", "USDC", 0.0) == base["meteora"]
    # Three slots later the other venue has followed, and the new price holds.
    for now in (1.2, 600.0):
        for venue in VENUES:
            moved = market.mid_price(venue, "SOL", "USDC", now) / base[venue]
            assert abs(moved - Decimal("1.1")) < Decimal("0.002"), (venue, now, moved)


def test_moving_a_token_on_every_venue_at_once_moves_the_market_once() -> None:
    market = Market(QUIET)
    base = market.reference_price("RAY", 0.0)
    for venue in VENUES:
        market.jump(venue, "RAY", 3000, 0.0)
    assert market.reference_price("RAY", 0.0) / base == Decimal("1.3")
    market.jump("raydium", "RAY", 500, 1.0)  # a later tick: a move of its own
    assert market.reference_price("RAY", 1.0) / base == Decimal("1.365")


def test_jump_refuses_bad_bps() -> None:
    with pytest.raises(ValueError, match="bps"):
        Market().jump("raydium", "SOL", -10_000, 1.0)


# -- time and determinism ------------------------------------------------------------------


def _script(market: Market) -> list[object]:
    seen: list[object] = []
    for second in range(0, 240, 7):
        now = float(second)
        for venue in VENUES:
            seen.append(market.quote(venue, "SOL", "USDC", Decimal("2.5"), now))
            seen.append(market.mid_price(venue, "BONK", "USDC", now))
        if second % 21 == 0:
            quotes = [market.quote(v, "USDC", "SOL", Decimal(900), now) for v in VENUES]
            best: Quote = best_quote(quotes)
            seen.append(market.execute(best.venue, "USDC", "SOL", Decimal(900), Decimal(0), now))
        if second == 70:
            market.jump("meteora", "JUP", 250, now)
            market.launch("NOVA", "meteora", now)
    seen.append(market.reference_price("SOL", 240.0))
    return seen


def test_same_seed_and_calls_give_identical_results() -> None:
    assert _script(Market(seed=42)) == _script(Market(seed=42))


def test_different_seeds_give_different_markets() -> None:
    assert _script(Market(seed=42)) != _script(Market(seed=43))


def test_how_often_someone_quotes_does_not_change_the_prices() -> None:
    busy, idle = Market(seed=12), Market(seed=12)
    for second in range(300):
        busy.quote("meteora", "SOL", "USDC", TWO, second + 0.5)
    for venue in VENUES:
        assert busy.quote(venue, "SOL", "USDC", TWO, 300.0) == idle.quote(
            venue, "SOL", "USDC", TWO, 300.0
        )


def test_the_slot_counts_400_ms_ticks_reached() -> None:
    market = Market(seed=13)
    assert market.slot == 0
    market.advance(1.0)
    assert market.slot == 2  # 0.8 s is the last slot boundary at or before 1.0 s
    market.quote("raydium", "SOL", "USDC", TWO, 3600.0)
    assert market.slot == 9000


def test_time_never_runs_backwards() -> None:
    market = Market(seed=13)
    later = market.quote("raydium", "SOL", "USDC", TWO, 100.0)
    assert market.quote("raydium", "SOL", "USDC", TWO, 50.0) == later
    assert market.now == 100.0
    with pytest.raises(ValueError, match="finite"):
        market.advance(float("nan"))


def test_references_start_at_the_registry_and_stables_stay_pegged() -> None:
    market = Market(seed=14)
    assert market.reference_price("SOL", 0.0) == Decimal("98.50")
    assert abs(market.reference_price("USDC", 3600.0) - 1) < Decimal("0.005")
    with pytest.raises(ValueError, match="unknown token"):
        market.reference_price("DOGE", 1.0)


def test_listed_pairs_and_tradability() -> None:
    market = Market()
    assert ("JUP", "USDC") in market.pairs("meteora")
    assert ("JUP", "USDC") not in market.pairs("raydium")
    assert ("RAY", "USDC") in market.pairs("raydium")
    assert all({"BONK", "USDC"} != set(pair) for v in VENUES for pair in market.pairs(v))
    assert market.is_tradable("RAY", "meteora")
    assert not market.is_tradable("FLUX")


# -- the market as a whole -------------------------------------------------------------------


def _hour(market: Market) -> tuple[list[Decimal], dict[str, int]]:
    gaps: list[Decimal] = []
    wins = dict.fromkeys(VENUES, 0)
    for second in range(0, 3600, 5):
        now = float(second)
        ray = market.mid_price("raydium", "SOL", "USDC", now)
        met = market.mid_price("meteora", "SOL", "USDC", now)
        gaps.append(abs(ray / met - 1))
        best = best_quote([market.quote(v, "SOL", "USDC", TWO, now) for v in VENUES])
        wins[best.venue] += 1
    return gaps, wins


def test_in_the_wide_preset_the_venues_differ_by_a_few_percent_and_both_win() -> None:
    gaps, wins = _hour(Market(MarketParams.preset("wide"), seed=0))
    assert Decimal("0.01") < statistics.median(gaps) < Decimal("0.06")
    total = sum(wins.values())
    for venue in VENUES:
        assert wins[venue] / total >= 0.15, wins


def test_a_violent_market_spreads_the_venues_wider_than_a_calm_one() -> None:
    calm, _ = _hour(Market(MarketParams.preset("calm"), seed=1))
    violent, _ = _hour(Market(MarketParams.preset("violent"), seed=1))
    assert statistics.median(calm) < statistics.median(violent)


def test_an_hour_of_market_time_is_cheap_to_simulate() -> None:
    market = Market(seed=15)
    started = cpu_seconds()
    market.advance(3600.0)  # 9,000 slots
    assert cpu_seconds() - started < budget(8.0)  # about 1-2.5 s on a busy 2-core machine


def test_a_week_idle_catches_up_quickly_and_stays_sane() -> None:
    market = Market(seed=16)
    started = cpu_seconds()
    quote = market.quote("raydium", "SOL", "USDC", TWO, 7 * 24 * 3600.0)
    assert cpu_seconds() - started < budget(10.0)  # about 2-3 s on a busy 2-core machine
    assert quote.amount_out > 0
    assert Decimal(10) < market.reference_price("SOL", 7 * 24 * 3600.0) < Decimal(1000)


def test_quotes_are_fast() -> None:
    market = Market(seed=17)
    market.quote("raydium", "SOL", "USDC", TWO, 1.0)
    started = cpu_seconds()
    for _ in range(500):
        for venue in VENUES:
            market.quote(venue, "SOL", "USDC", TWO, 1.0)
    per_quote = (cpu_seconds() - started) / 1000
    assert per_quote < budget(0.0005)  # about 50 µs on a busy 2-core machine


def test_a_quote_that_steps_the_market_one_slot_stays_well_under_a_millisecond() -> None:
    market = Market(seed=18)
    started = cpu_seconds()
    for slot in range(1, 501):
        market.quote("meteora", "SOL", "USDC", TWO, slot * 0.4)
    per_quote = (cpu_seconds() - started) / 500
    assert per_quote < budget(0.001)  # about 0.25 ms on a busy 2-core machine
