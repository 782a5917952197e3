"""Exact decimal arithmetic for amounts and prices.

Every amount is a `Decimal`; floats never touch money. Amounts that leave the engine
(quotes, fills, minimums) are rounded *down* to the token's precision, so the engine
never promises a user a fraction of a base unit it cannot deliver.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_UP, Context, Decimal, localcontext

# Enough digits for reserves of 10^12 tokens at 9 decimals multiplied together.
PRECISION = 50
BPS = Decimal(10_000)


def math_context() -> Context:
    """A fresh context for internal computations, independent of the caller's."""
    return Context(prec=PRECISION)


def quantize_down(amount: Decimal, decimals: int) -> Decimal:
    """Round toward zero to `decimals` places (a token's base unit)."""
    with localcontext(math_context()):
        return amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_DOWN)


def decimal_places(amount: Decimal) -> int:
    """How many digits an amount carries after the decimal point (0 for integers)."""
    exponent = amount.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def less_bps(amount: Decimal, bps: int) -> Decimal:
    """`amount × (1 − bps/10000)`, exactly: the floor a slippage tolerance allows."""
    with localcontext(math_context()):
        return amount * (BPS - bps) / BPS


def more_bps(amount: Decimal, bps: int) -> Decimal:
    """`amount × (1 + bps/10000)`, exactly: the ceiling a slippage tolerance allows."""
    with localcontext(math_context()):
        return amount * (BPS + bps) / BPS


def price_of(amount_out: Decimal, amount_in: Decimal, places: int = 12) -> Decimal:
    """tokenOut per tokenIn, rounded down to `places` digits for display and storage."""
    with localcontext(math_context()):
        return (amount_out / amount_in).quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)


def quantize_up(amount: Decimal, decimals: int) -> Decimal:
    """Round away from zero to `decimals` places: a floor that must be honoured in full."""
    with localcontext(math_context()):
        return amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_UP)


def limit_floor(limit_price: Decimal, amount_in: Decimal, decimals_out: int) -> Decimal:
    """The least output a limit order accepts: limitPrice × amountIn, rounded up."""
    with localcontext(math_context()):
        return quantize_up(limit_price * amount_in, decimals_out)
