"""Constant-product pool math: the invariant, the fee, rounding and size refusal."""

from __future__ import annotations

from decimal import Decimal, localcontext
from itertools import pairwise

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from dexecutor.domain.money import decimal_places, math_context, quantize_down
from dexecutor.market.cpmm import swap_exact_in
from dexecutor.market.types import MarketError
from tests.unit.market_cases import CPMM_FEE as FEE
from tests.unit.market_cases import cpmm_pool as _pool

reserves = st.decimals(min_value=Decimal(10), max_value=Decimal(10**9), places=6)
amounts = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(10**6), places=6)
fees = st.sampled_from([Decimal(0), FEE, Decimal("0.01")])
caps = st.sampled_from([Decimal("0.5"), Decimal(1)])
# A trade of at least a millionth of the input reserve pays out at least about a
# millionth of the output reserve (≥ 10 µ-units here), so with no size cap it always
# fills: a pool that refused such a trade would fail these properties, not skip them.
fractions = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(10), places=6)


@settings(deadline=None)
@given(reserves, reserves, fractions, fees)
def test_k_never_decreases_and_grows_with_a_fee(
    x: Decimal, y: Decimal, fraction: Decimal, fee: Decimal
) -> None:
    swap = swap_exact_in(x, y, x * fraction, fee, 6)
    before = x * y
    after = swap.reserve_in * swap.reserve_out
    assert after >= before
    if fee > 0:
        assert after > before


@settings(deadline=None)
@given(reserves, reserves, amounts, caps)
def test_output_is_the_exact_formula_rounded_down_and_refused_only_when_it_must_be(
    x: Decimal, y: Decimal, amount: Decimal, cap: Decimal
) -> None:
    with localcontext(math_context()):  # the pool's own precision, so edges agree
        net = amount * (1 - FEE)
        exact = y * net / (x + net)
    expected = quantize_down(exact, 6)
    if exact > y * cap or expected == 0:
        event("refused")
        with pytest.raises(MarketError) as refused:
            swap_exact_in(x, y, amount, FEE, 6, cap)
        assert refused.value.reason == "insufficient_liquidity"
        return
    event("filled")
    swap = swap_exact_in(x, y, amount, FEE, 6, cap)
    assert swap.amount_out == expected
    assert swap.fee_amount == amount * FEE
    assert isinstance(swap.amount_out, Decimal)
    assert decimal_places(swap.amount_out) <= 6
    assert swap.reserve_in == x + amount
    assert swap.reserve_out == y - swap.amount_out


@settings(deadline=None)
@given(reserves, reserves, fractions, fractions)
def test_a_larger_trade_never_gets_a_better_unit_price(
    x: Decimal, y: Decimal, a: Decimal, b: Decimal
) -> None:
    small, large = sorted((x * a, x * b))
    out_small = swap_exact_in(x, y, small, FEE, 6).amount_out
    out_large = swap_exact_in(x, y, large, FEE, 6).amount_out
    # Rounding down can cost the small trade at most one base unit.
    assert out_large * small <= (out_small + Decimal("0.000001")) * large


def test_fee_is_exactly_a_quarter_percent_of_the_input() -> None:
    swap = swap_exact_in(Decimal(1000), Decimal(98500), Decimal(10), FEE, 6)
    assert swap.fee_amount == Decimal("0.025")
    # 9.975 goes in net: 98500 × 9.975 / 1009.975 = 972.833485977…, rounded down.
    assert swap.amount_out == Decimal("972.833485")


def test_a_swap_taking_more_than_the_cap_is_refused() -> None:
    with pytest.raises(MarketError) as refused:
        swap_exact_in(Decimal(100), Decimal(100), Decimal(150), FEE, 6, max_fill=Decimal("0.5"))
    assert refused.value.reason == "insufficient_liquidity"
    # Just under the cap still fills.
    assert swap_exact_in(Decimal(100), Decimal(100), Decimal(90), FEE, 6, Decimal("0.5"))


def test_a_trade_that_rounds_to_nothing_is_refused() -> None:
    with pytest.raises(MarketError) as refused:
        swap_exact_in(Decimal(10**9), Decimal(1), Decimal("0.001"), FEE, 6)
    assert refused.value.reason == "insufficient_liquidity"


def test_simulate_leaves_the_pool_alone_and_commit_applies_it() -> None:
    pool = _pool()
    before = pool.reserves()
    fill = pool.simulate("SOL", Decimal(100), 6)
    assert pool.reserves() == before
    pool.commit(fill)
    base, quote = pool.reserves()
    assert base == before[0] + 100
    assert quote == before[1] - fill.amount_out
    assert pool.price < Decimal("98.5")


def test_k_grows_over_a_sequence_of_committed_swaps_in_both_directions() -> None:
    pool = _pool()
    ks = [pool.k]
    for token, amount in [("SOL", "5"), ("USDC", "20000"), ("SOL", "123.456789"), ("USDC", "1")]:
        pool.commit(pool.simulate(token, Decimal(amount), 6 if token == "SOL" else 9))
        ks.append(pool.k)
    assert all(later > earlier for earlier, later in pairwise(ks))


def test_arbitrage_moves_the_price_but_keeps_the_depth() -> None:
    pool = _pool()
    k = pool.k
    pool.relax(Decimal(100), Decimal("0.5"), Decimal(1), Decimal(1))
    assert pool.price == Decimal("99.25")
    base, quote = pool.reserves()
    assert abs(base * quote / k - 1) < Decimal("1e-30")
    assert abs(quote / base / Decimal("99.25") - 1) < Decimal("1e-30")


def test_spot_is_quoted_in_the_direction_of_the_trade() -> None:
    pool = _pool()
    assert pool.spot("SOL") == Decimal("98.5")
    assert abs(pool.spot("USDC") * Decimal("98.5") - 1) < Decimal("1e-40")
