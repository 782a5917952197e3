"""DLMM bins: walking order, exact fees, the dynamic fee, its windows and liquidity limits."""

from __future__ import annotations

from decimal import Decimal, localcontext
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dexecutor.domain.money import decimal_places, math_context, quantize_down
from dexecutor.market.dlmm import (
    Volatility,
    accumulator_at,
    dynamic_fee,
    liquidity_curve,
    refresh_references,
    swapped,
)
from dexecutor.market.types import MarketError
from tests.unit.market_cases import DLMM_BASE_FEE as BASE_FEE
from tests.unit.market_cases import DLMM_FEES as FEES
from tests.unit.market_cases import DLMM_STEP as STEP
from tests.unit.market_cases import dlmm_pool as _pool


def test_the_liquidity_curve_is_normalised_and_falls_away_from_the_centre() -> None:
    weights = liquidity_curve(STEP, Decimal("0.05"))
    assert len(weights) == 201  # reaches 4 widths: 0.2 / 0.001 bins
    with localcontext(math_context()):
        assert abs(weights[0] / 2 + sum(weights[1:]) - 1) < Decimal("1e-40")
    assert all(a > b for a, b in pairwise(weights))


def test_dynamic_fee_is_the_base_fee_when_quiet_and_grows_with_volatility() -> None:
    control = 10_000
    assert dynamic_fee(BASE_FEE, control, Decimal(0), STEP, Decimal("0.05")) == BASE_FEE
    # 10 bins of 0.1 %: (0.01)² = 0.0001 on top of the base fee.
    assert dynamic_fee(BASE_FEE, control, Decimal(10), STEP, Decimal("0.05")) == Decimal("0.0021")
    fees = [dynamic_fee(BASE_FEE, control, Decimal(v), STEP, Decimal("0.05")) for v in range(60)]
    assert fees == sorted(fees)
    assert dynamic_fee(BASE_FEE, control, Decimal(10**6), STEP, Decimal("0.05")) == Decimal("0.05")
    # Meteora's integer units: control 7,500 and 10 bins of 10 bps give 0.0075 %.
    assert dynamic_fee(Decimal(0), 7_500, Decimal(10), STEP, Decimal("0.1")) == Decimal("0.000075")


def test_swaps_within_the_filter_period_are_measured_from_one_reference_bin() -> None:
    first = swapped(Volatility(), FEES, 0, 3, Decimal(0))
    assert (first.index_reference, first.reference, first.accumulator) == (0, 0, 3)
    # 4 s later (inside the 10 s filter): still measured from bin 0, not from bin 3.
    second = swapped(first, FEES, 3, 8, Decimal(4))
    assert (second.index_reference, second.accumulator) == (0, 8)
    # Coming back part of the way lowers v_a: it is a distance, not a count of bins.
    third = swapped(second, FEES, 8, 6, Decimal("4.5"))
    assert (third.index_reference, third.accumulator, third.last_swap) == (0, 6, Decimal("4.5"))


def test_between_filter_and_decay_the_reference_keeps_a_share_of_the_accumulator() -> None:
    state = Volatility(accumulator=Decimal(6), index_reference=0, last_swap=Decimal("4.5"))
    # 9.9 s after the last swap: nothing moves yet.
    assert refresh_references(state, FEES, 6, Decimal("14.4")) == state
    later = refresh_references(state, FEES, 6, Decimal("14.5"))
    assert (later.index_reference, later.reference) == (6, 3)  # reduction 0.5 × v_a 6
    assert accumulator_at(later, FEES, 6) == 3
    assert accumulator_at(later, FEES, 2) == 7
    # After the decay period the volatility reference is forgotten.
    idle = refresh_references(state, FEES, 9, Decimal("124.5"))
    assert (idle.index_reference, idle.reference) == (9, 0)


def test_the_accumulator_is_capped() -> None:
    state = Volatility(reference=Decimal(30), index_reference=0, last_swap=Decimal(0))
    assert accumulator_at(state, FEES, 10) == 40
    assert accumulator_at(state, FEES, -400) == FEES.max_accumulator
    capped = dynamic_fee(BASE_FEE, FEES.control, FEES.max_accumulator, STEP, Decimal("0.05"))
    assert capped == BASE_FEE + Decimal("0.0025")  # (50 × 0.001)²


def test_a_trade_inside_the_active_bin_pays_the_exact_fee_at_the_bin_price() -> None:
    pool = _pool()
    fill = pool.simulate("SOL", Decimal("0.5"), 6)
    assert fill.fee_rate == BASE_FEE
    assert fill.fee_amount == Decimal("0.5") * BASE_FEE
    assert fill.amount_out == quantize_down(Decimal("0.5") * (1 - BASE_FEE) * 100, 6)
    assert fill.spot == Decimal(100)
    buy = pool.simulate("USDC", Decimal(50), 9)
    assert buy.amount_out == quantize_down(Decimal(50) * (1 - BASE_FEE) / 100, 9)


def test_a_sell_walks_down_the_bins_in_order_emptying_each_one() -> None:
    pool = _pool()
    touched = {i: pool.bin(i) for i in range(-200, 1)}
    fill = pool.simulate("SOL", Decimal(300), 6)
    assert pool.active == 0  # simulate changes nothing
    pool.commit(fill)
    end = pool.active
    assert end < -5
    for index in range(end + 1, 1):
        base, quote = pool.bin(index)
        assert quote == 0
        assert base > touched[index][0]
        assert pool.bin_price(index - 1) < pool.bin_price(index)
    # Bins past the end are untouched.
    assert pool.bin(end - 1) == touched[end - 1]
    with localcontext(math_context()):
        quote_paid = sum((touched[i][1] - pool.bin(i)[1] for i in range(end, 1)), Decimal(0))
        base_taken = sum((pool.bin(i)[0] - touched[i][0] for i in range(end, 1)), Decimal(0))
        net_in = Decimal(300) - fill.fee_amount
    assert abs(quote_paid - fill.amount_out) < Decimal("1e-40")
    assert abs(base_taken - net_in) < Decimal("1e-40")
    assert pool.price == pool.bin_price(end)


def test_a_buy_walks_up_the_bins() -> None:
    pool = _pool()
    pool.commit(pool.simulate("USDC", Decimal(30_000), 9))
    assert pool.active > 5
    for index in range(0, pool.active):
        assert pool.bin(index)[0] == 0


def test_crossing_bins_raises_the_fee_within_a_trade_and_after_it() -> None:
    pool = _pool()
    fill = pool.simulate("SOL", Decimal(300), 6)
    assert fill.fee_rate > BASE_FEE
    before = pool.fee_rate()
    pool.commit(fill)
    after = pool.fee_rate()
    assert after > before
    # Inside the filter period nothing decays ...
    pool.relax(pool.price, Decimal(0), Decimal(5), Decimal(1))
    assert pool.fee_rate() == after
    # ... between filter and decay half the accumulator remains ...
    pool.relax(pool.price, Decimal(0), Decimal(60), Decimal(1))
    assert BASE_FEE < pool.fee_rate() < after
    # ... and after the decay period the fee is back to its base.
    pool.relax(pool.price, Decimal(0), Decimal(1000), Decimal(1))
    assert pool.fee_rate() == BASE_FEE


def test_splitting_a_trade_in_a_burst_does_not_dodge_the_variable_fee() -> None:
    whole = _pool().simulate("SOL", Decimal(200), 6)
    split = _pool()
    first = split.simulate("SOL", Decimal(100), 6)
    split.commit(first)
    second = split.simulate("SOL", Decimal(100), 6)
    # The second half pays the fee of the bins it reaches, measured from the same
    # reference bin as the first: the halves together pay what the whole pays.
    assert abs((first.fee_amount + second.fee_amount) / whole.fee_amount - 1) < Decimal("0.01")
    assert second.fee_rate > first.fee_rate


def test_a_trade_beyond_the_bins_is_insufficient_liquidity() -> None:
    pool = _pool()
    with pytest.raises(MarketError) as refused:
        pool.simulate("SOL", Decimal(5000), 6)
    assert refused.value.reason == "insufficient_liquidity"
    with pytest.raises(MarketError):
        pool.simulate("USDC", Decimal(10**6), 9)


amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(900), places=6)


@settings(deadline=None)
@given(amounts, amounts)
def test_a_larger_trade_never_gets_a_better_unit_price(a: Decimal, b: Decimal) -> None:
    pool = _pool()
    small, large = sorted((a, b))
    out_small = pool.simulate("SOL", small, 6).amount_out
    out_large = pool.simulate("SOL", large, 6).amount_out
    assert out_large * small <= (out_small + Decimal("0.000001")) * large


@settings(deadline=None)
@given(amounts)
def test_outputs_are_decimals_at_the_token_precision(amount: Decimal) -> None:
    pool = _pool()
    out = pool.simulate("SOL", amount, 6).amount_out
    assert isinstance(out, Decimal)
    assert decimal_places(out) <= 6
    out = pool.simulate("USDC", amount, 9).amount_out
    assert decimal_places(out) <= 9


def test_two_trades_in_a_row_cost_the_same_as_one_of_their_total() -> None:
    # Within one tick the bins are not refilled, so splitting an order buys nothing.
    split = _pool()
    first = split.simulate("SOL", Decimal(100), 6)
    split.commit(first)
    second = split.simulate("SOL", Decimal(100), 6)
    whole = _pool()
    one = whole.simulate("SOL", Decimal(200), 6)
    # Fees differ slightly (the accumulator counts the first trade's bins); the price
    # walk is the same, so the totals agree to well under a basis point.
    total = first.amount_out + second.amount_out
    assert abs(total / one.amount_out - 1) < Decimal("0.0001")


def test_arbitrage_moves_the_active_bin_and_resets_crossed_bins() -> None:
    pool = _pool()
    pool.commit(pool.simulate("SOL", Decimal(300), 6))
    low = pool.active
    swapped_fee = pool.fee_rate()
    pool.relax(Decimal(100), Decimal(1), Decimal(1), Decimal(1))
    assert pool.active == 0
    assert pool.centre == 0
    # The bins the sell emptied and the price crossed back are on the curve again;
    # the bin the price landed in keeps what the sell left in it.
    fresh = _pool()
    for index in range(low, 0):
        assert pool.bin(index) == fresh.bin(index)
    # The arbitrage back was a swap too: within the filter period v_a is measured from
    # the reference bin the sell started in, which the price is back at.
    assert swapped_fee > BASE_FEE
    assert pool.volatility.last_swap == 1
    assert pool.fee_rate() == BASE_FEE


def test_a_shift_moves_the_price_and_the_active_bin() -> None:
    pool = _pool()
    pool.shift(Decimal("1.03"))
    assert pool.price == Decimal(103)
    # The nearest bin: within half a bin of the new price.
    assert abs(pool.bin_price(pool.active) / Decimal(103) - 1) <= STEP / 2
    assert pool.spot("SOL") == pool.bin_price(pool.active)
