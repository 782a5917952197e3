"""Pools, amounts and strategies the market's unit tests share.

Amounts are drawn as dollar values and converted at the registry's prices, so one
strategy means the same size for every token: $1 to $20,000 fills every pair of
launched tokens on both venues in the default market, and even $1 pays out over a
million base units of any token. A refusal of such a trade is a failure, not a skip.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

from dexecutor.domain.money import quantize_down
from dexecutor.market.cpmm import CpmmPool
from dexecutor.market.dlmm import DlmmPool, FeeParams
from dexecutor.market.tokens import TOKENS, find_token

CPMM_FEE = Decimal("0.0025")
DLMM_STEP = Decimal("0.001")
DLMM_BASE_FEE = Decimal("0.002")
LAUNCHED = [t.symbol for t in TOKENS if t.launched]

usd_values = st.decimals(min_value=Decimal(1), max_value=Decimal(20_000), places=2)
distinct_pairs = st.lists(st.sampled_from(LAUNCHED), min_size=2, max_size=2, unique=True)


def quantum(symbol: str) -> Decimal:
    """One base unit of `symbol`."""
    token = find_token(symbol)
    assert token is not None
    return token.quantum


def at_precision(symbol: str, amount: Decimal) -> Decimal:
    """`amount` rounded down to `symbol`'s base unit."""
    token = find_token(symbol)
    assert token is not None
    return quantize_down(amount, token.decimals)


def worth(symbol: str, usd: Decimal) -> Decimal:
    """`usd` dollars of `symbol` at its registry price, at the token's precision."""
    token = find_token(symbol)
    assert token is not None
    return at_precision(symbol, usd / token.reference_usd)


def cpmm_pool() -> CpmmPool:
    """A SOL/USDC constant-product pool: 10,000 SOL at 98.5, fills up to half a side."""
    return CpmmPool("SOL", "USDC", Decimal(10_000), Decimal("98.5"), CPMM_FEE, Decimal("0.5"))


# Control 10,000 makes the variable fee exactly (v_a × bin step)².
DLMM_FEES = FeeParams(
    base_fee=DLMM_BASE_FEE,
    bin_step=DLMM_STEP,
    control=10_000,
    filter_seconds=Decimal(10),
    decay_seconds=Decimal(120),
    reduction=Decimal("0.5"),
    max_accumulator=Decimal(50),
    max_fee=Decimal("0.05"),
)


def dlmm_pool() -> DlmmPool:
    """A SOL/USDC bin pool at 100: 1,000 SOL and 100,000 USDC a side, 0.1 % bins."""
    return DlmmPool(
        "SOL",
        "USDC",
        price=Decimal(100),
        fees=DLMM_FEES,
        width=Decimal("0.05"),
        base_per_side=Decimal(1000),
        quote_per_side=Decimal(100_000),
    )
