"""DLMM bins: walking order, exact fees, the dynamic fee and liquidity limits."""

from __future__ import annotations

from decimal import Decimal, localcontext
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dexecutor.domain.money import decimal_places, math_context, quantize_down
from dexecutor.market.dlmm import dynamic_fee, liquidity_curve
from dexecutor.market.types import MarketError
from tests.unit.market_cases import DLMM_BASE_FEE as BASE_FEE
from tests.unit.market_cases import DLMM_STEP as STEP
from tests.unit.market_cases import dlmm_pool as _pool


def test_the_liquidity_curve_is_normalised_and_falls_away_from_the_centre() -> None:
    weights = liquidity_curve(STEP, Decimal("0.05"))
    assert len(weights) == 201  # reaches 4 widths: 0.2 / 0.001 bins
    with localcontext(math_context()):
        assert abs(weights[0] / 2 + sum(weights[1:]) - 1) < Decimal("1e-40")
    assert all(a > b for a, b in pairwise(weights))


def test_dynamic_fee_is_the_base_fee_when_quiet_and_grows_with_volatility() -> None:
    control = Decimal(1)
    assert dynamic_fee(BASE_FEE, control, Decimal(0), STEP, Decimal("0.05")) == BASE_FEE
    # 10 bins of 0.1 %: (0.01)² = 0.0001 on top of the base fee.
    assert dynamic_fee(BASE_FEE, control, Decimal(10), STEP, Decimal("0.05")) == Decimal("0.0021")
    fees = [dynamic_fee(BASE_FEE, control, Decimal(v), STEP, Decimal("0.05")) for v in range(60)]
    assert fees == sorted(fees)
    assert dynamic_fee(BASE_FEE, control, Decimal(10**6), STEP, Decimal("0.05")) == Decimal("0.05")


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
    assert pool.fee_rate() > before
    # Time with no price movement lets the volatility decay back to the base fee.
    pool.relax(pool.price, Decimal(0), Decimal("0.0001"), Decimal(1))
    assert pool.fee_rate() == BASE_FEE


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
    pool.relax(Decimal(100), Decimal(1), Decimal(1), Decimal(1))
    assert pool.active == 0
    assert pool.centre == 0
    # The bins the sell emptied and the price crossed back are on the curve again;
    # the bin the price landed in keeps what the sell left in it.
    fresh = _pool()
    for index in range(low, 0):
        assert pool.bin(index) == fresh.bin(index)
    # And the move counted as volatility.
    assert pool.fee_rate() > BASE_FEE


def test_a_shift_moves_the_price_and_the_active_bin() -> None:
    pool = _pool()
    pool.shift(Decimal("1.03"))
    assert pool.price == Decimal(103)
    assert pool.bin_price(pool.active) <= Decimal(103) < pool.bin_price(pool.active + 1)
    assert pool.spot("SOL") == pool.bin_price(pool.active)
