"""Raydium-style constant-product pools: x · y = k, with the fee taken from the input.

`swap_exact_in` is the whole trading rule as a pure function; `CpmmPool` wraps it with
the state the simulation keeps. No clock and no randomness here: the simulation moves
the price between trades through `relax` (arbitrage) and `shift` (a scripted jump),
both of which keep k, i.e. the pool's depth.

The fee stays in the pool, so k grows with every swap, and the output is rounded down
to the output token's base unit, so rounding also only ever favours the pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext

from dexecutor.domain.money import math_context, quantize_down
from dexecutor.market.pools import HopFill
from dexecutor.market.types import MarketError

_CTX = math_context()
_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class CpmmSwap:
    """The result of one swap: what the trader gets and the reserves it leaves."""

    amount_out: Decimal
    fee_amount: Decimal
    reserve_in: Decimal
    reserve_out: Decimal


def swap_exact_in(
    reserve_in: Decimal,
    reserve_out: Decimal,
    amount_in: Decimal,
    fee_rate: Decimal,
    out_decimals: int,
    max_fill: Decimal = _ONE,
) -> CpmmSwap:
    """Swap `amount_in` into the pool.

    The output solves (x + a·(1−f)) · (y − out) = x · y, rounded down to the output
    token's precision. A real pool would fill any size at an ever worse price; here a
    swap that would take more than `max_fill` of the output reserve, or that rounds to
    nothing, is refused as `insufficient_liquidity` so that the engine sees the same
    answer a venue's router gives for a trade it cannot fill sensibly.
    """
    with localcontext(_CTX):
        net_in = amount_in * (_ONE - fee_rate)
        exact_out = reserve_out * net_in / (reserve_in + net_in)
        if exact_out > reserve_out * max_fill:
            raise MarketError(
                "insufficient_liquidity",
                f"the pool cannot fill this size: it would pay out more than {max_fill:%} "
                f"of its {reserve_out:,.2f} reserve",
            )
        amount_out = quantize_down(exact_out, out_decimals)
        if amount_out <= 0:
            raise MarketError("insufficient_liquidity", "the trade is too small to fill")
        return CpmmSwap(
            amount_out=amount_out,
            fee_amount=amount_in * fee_rate,
            reserve_in=reserve_in + amount_in,
            reserve_out=reserve_out - amount_out,
        )


@dataclass(frozen=True, slots=True)
class _Reserves:
    base: Decimal
    quote: Decimal


class CpmmPool:
    """One constant-product pool, kept as its invariant k and its price.

    Keeping (k, price) rather than reserves makes arbitrage a single assignment per
    tick; the reserves are derived (two square roots) only when someone trades, and
    cached until the price moves again.
    """

    def __init__(
        self,
        base: str,
        quote: str,
        base_reserve: Decimal,
        price: Decimal,
        fee_rate: Decimal,
        max_fill: Decimal,
    ) -> None:
        with localcontext(_CTX):
            quote_reserve = base_reserve * price
            self.base = base
            self.quote = quote
            self.fee_rate = fee_rate
            self.max_fill = max_fill
            self._k = base_reserve * quote_reserve
            self._price = quote_reserve / base_reserve
            self._cache: _Reserves | None = _Reserves(base_reserve, quote_reserve)

    @property
    def price(self) -> Decimal:
        return self._price

    @property
    def k(self) -> Decimal:
        """The invariant; it only grows, by the fees swaps leave behind."""
        return self._k

    def reserves(self) -> tuple[Decimal, Decimal]:
        """(base, quote) reserves at the current price."""
        cache = self._cache
        if cache is None:
            with localcontext(_CTX):
                base = (self._k / self._price).sqrt()
                cache = _Reserves(base, self._k / base)
            self._cache = cache
        return cache.base, cache.quote

    def spot(self, token_in: str) -> Decimal:
        with localcontext(_CTX):
            return self._price if token_in == self.base else _ONE / self._price

    def simulate(self, token_in: str, amount_in: Decimal, out_decimals: int) -> HopFill:
        base, quote = self.reserves()
        selling_base = token_in == self.base
        reserve_in, reserve_out = (base, quote) if selling_base else (quote, base)
        swap = swap_exact_in(
            reserve_in, reserve_out, amount_in, self.fee_rate, out_decimals, self.max_fill
        )
        with localcontext(_CTX):
            spot = reserve_out / reserve_in
        after = (
            _Reserves(swap.reserve_in, swap.reserve_out)
            if selling_base
            else _Reserves(swap.reserve_out, swap.reserve_in)
        )
        return HopFill(
            token_in=token_in,
            token_out=self.quote if selling_base else self.base,
            amount_in=amount_in,
            amount_out=swap.amount_out,
            fee_amount=swap.fee_amount,
            fee_rate=self.fee_rate,
            spot=spot,
            after=after,
        )

    def commit(self, fill: HopFill) -> None:
        after = fill.after
        if not isinstance(after, _Reserves):
            raise TypeError("this fill was not produced by a constant-product pool")
        with localcontext(_CTX):
            self._k = after.base * after.quote
            self._price = after.quote / after.base
        self._cache = after

    def relax(self, target: Decimal, pull: Decimal, now: Decimal, flow: Decimal) -> None:
        with localcontext(_CTX):
            self._price = (self._price + pull * (target - self._price)) * flow
        self._cache = None

    def set_base_fee(self, fee: Decimal) -> None:
        self.fee_rate = fee

    def shift(self, factor: Decimal) -> None:
        with localcontext(_CTX):
            self._price *= factor
        self._cache = None
