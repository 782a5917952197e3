"""Meteora-style DLMM pools: liquidity in discrete price bins, with a dynamic fee.

Bin i trades at the fixed price origin · (1 + bin_step)^i (quote per base). Bins above
the active bin hold only base, bins below only quote, the active bin a mix; inside a bin
the price does not move, so a trade empties the active bin and then walks to the next
bin in order. The fee is the pair's base fee plus a variable fee that grows with the
square of a volatility accumulator, kept as Meteora's DLMM program keeps it: a
reference bin, a volatility reference, and filter and decay windows measured from the
last swap (`Volatility`, `refresh_references`, `accumulator_at`, `dynamic_fee`).
Trades and the swaps arbitrage makes when it moves the active bin are swaps.

Liquidity providers are modelled by a curve: a bin that nobody has traded against
holds an amount that falls off exponentially with its distance from the pool's centre
(the active bin as of the last arbitrage step). Bins a trade has touched keep their
actual contents until arbitrage moves the price back across them.

No clock and no randomness here: the simulation calls `relax` once per tick with the
tick's time, which trades until the next tick then use as their time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal, localcontext

from dexecutor.domain.money import math_context, quantize_down
from dexecutor.market.pools import HopFill
from dexecutor.market.types import MarketError

_CTX = math_context()
_ZERO = Decimal(0)
_ONE = Decimal(1)
_HALF = Decimal("0.5")
_FEE_QUANTUM = Decimal("1e-8")
_CONTROL_SCALE = Decimal(10_000)
# The liquidity curve is cut where it has fallen to e^-4 (under 2 %) of its peak.
_CURVE_REACH = 4


@dataclass(frozen=True, slots=True)
class FeeParams:
    """One DLMM pool's static fee parameters (Meteora's, in fractions and seconds).

    `control` is Meteora's integer variable fee control; `max_accumulator` caps the
    volatility accumulator, in bins; `reduction` is the share of the accumulator the
    volatility reference keeps between the filter and decay windows.
    """

    base_fee: Decimal
    bin_step: Decimal
    control: int
    filter_seconds: Decimal
    decay_seconds: Decimal
    reduction: Decimal
    max_accumulator: Decimal
    max_fee: Decimal


@dataclass(frozen=True, slots=True)
class Volatility:
    """A DLMM pool's variable fee state: v_a, v_r, i_r and the last swap's time.

    `accumulator` (v_a) and `reference` (v_r) count bins; `index_reference` (i_r) is a
    bin index; `last_swap` is None before the first swap.
    """

    accumulator: Decimal = _ZERO
    reference: Decimal = _ZERO
    index_reference: int = 0
    last_swap: Decimal | None = None


def refresh_references(state: Volatility, fees: FeeParams, active: int, now: Decimal) -> Volatility:
    """The state a swap at `now` starts from (Meteora's reference update).

    Within `filter_seconds` of the last swap nothing changes, so a burst of small swaps
    is measured from one reference bin and cannot be split to dodge the fee. After it,
    the reference bin moves to the active bin and the volatility reference keeps
    `reduction` of the accumulator; after `decay_seconds` it resets to zero.
    """
    if state.last_swap is None:
        return replace(state, index_reference=active)
    elapsed = now - state.last_swap
    if elapsed < fees.filter_seconds:
        return state
    with localcontext(_CTX):
        reference = state.accumulator * fees.reduction if elapsed < fees.decay_seconds else _ZERO
    return replace(state, reference=reference, index_reference=active)


def accumulator_at(state: Volatility, fees: FeeParams, index: int) -> Decimal:
    """v_a while a swap trades in bin `index`: v_r + |i_r − index|, capped."""
    with localcontext(_CTX):
        return min(state.reference + abs(state.index_reference - index), fees.max_accumulator)


def swapped(state: Volatility, fees: FeeParams, start: int, end: int, now: Decimal) -> Volatility:
    """The state after a swap at `now` that moved the active bin from `start` to `end`."""
    refreshed = refresh_references(state, fees, start, now)
    return replace(refreshed, accumulator=accumulator_at(refreshed, fees, end), last_swap=now)


def dynamic_fee(
    base_fee: Decimal,
    variable_fee_control: int,
    volatility_bins: Decimal,
    bin_step: Decimal,
    max_fee: Decimal,
) -> Decimal:
    """base + control × (v_a × bin_step)² / 10⁴, capped at `max_fee`.

    This is Meteora's variable fee with v_a in bins and the bin step as a fraction
    (on chain: v_a ×10⁴, bin step in bps, divided by 10¹¹ into a numerator over 10⁹).
    Squaring makes the fee barely move in a quiet pool and climb fast in a violent one;
    the cap keeps a runaway accumulator from pricing every trader out. The variable part
    is rounded down to 1e-8 so that quoted rates stay short, exact decimals.
    """
    with localcontext(_CTX):
        movement = volatility_bins * bin_step
        variable = variable_fee_control * movement * movement / _CONTROL_SCALE
        variable = min(variable, max(max_fee - base_fee, _ZERO))
        variable = variable.quantize(_FEE_QUANTUM, rounding=ROUND_DOWN)
        return base_fee if variable == 0 else base_fee + variable


def liquidity_curve(bin_step: Decimal, width: Decimal) -> tuple[Decimal, ...]:
    """Weights of the bins at distance 0, 1, 2, … from the centre, per side.

    The weight falls by e^-1 every `width` of relative price. The active bin (distance
    0) holds half its weight on each side; the weights are normalised so that one side
    sums to 1 (half the centre bin plus the bins on that side).
    """
    with localcontext(_CTX):
        reach = int((width * _CURVE_REACH / bin_step).to_integral_value(rounding=ROUND_CEILING))
        ratio = (-bin_step / width).exp()
        weights = [_ONE]
        for _ in range(reach):
            weights.append(weights[-1] * ratio)
        total = weights[0] * _HALF + sum(weights[1:], _ZERO)
        return tuple(w / total for w in weights)


@dataclass(frozen=True, slots=True)
class _BinsAfter:
    bins: dict[int, tuple[Decimal, Decimal]]
    active: int


class DlmmPool:
    """One DLMM pool: its bins, active bin, price and fee volatility.

    `price` is the arbitrage-tracked price; the active bin is always the bin nearest
    it, except right after a trade, which moves the active bin (and the price with it).
    `now` is the time trades happen at: the last tick's, set by `relax`.
    """

    def __init__(
        self,
        base: str,
        quote: str,
        price: Decimal,
        fees: FeeParams,
        width: Decimal,
        base_per_side: Decimal,
        quote_per_side: Decimal,
        now: Decimal = _ZERO,
    ) -> None:
        self.base = base
        self.quote = quote
        self.fees = fees
        self.bin_step = fees.bin_step
        self.volatility = Volatility()
        self.now = now
        bin_step = fees.bin_step
        weights = liquidity_curve(bin_step, width)
        self.reach = len(weights) - 1
        with localcontext(_CTX):
            self._base_curve = tuple(base_per_side * w for w in weights)
            self._quote_curve = tuple(quote_per_side * w for w in weights)
            self._centre_bin = (
                base_per_side * weights[0] * _HALF,
                quote_per_side * weights[0] * _HALF,
            )
            self._growth = _ONE + bin_step
        self._origin = price
        self._prices: dict[int, Decimal] = {0: price}
        self._bins: dict[int, tuple[Decimal, Decimal]] = {}
        self._price = price
        self.active = 0
        self.centre = 0

    # -- reading ---------------------------------------------------------------------

    @property
    def price(self) -> Decimal:
        return self._price

    def bin_price(self, index: int) -> Decimal:
        """The fixed price of bin `index`, quote per base."""
        cached = self._prices.get(index)
        if cached is None:
            if len(self._prices) > 50_000:
                self._prices.clear()
            with localcontext(_CTX):
                cached = self._origin * self._growth**index
            self._prices[index] = cached
        return cached

    def bin(self, index: int) -> tuple[Decimal, Decimal]:
        """(base, quote) held by bin `index` now."""
        stored = self._bins.get(index)
        if stored is not None:
            return stored
        distance = index - self.centre
        if distance == 0:
            return self._centre_bin
        if 0 < distance <= self.reach:
            return (self._base_curve[distance], _ZERO)
        if -self.reach <= distance < 0:
            return (_ZERO, self._quote_curve[-distance])
        return (_ZERO, _ZERO)

    @property
    def base_fee(self) -> Decimal:
        return self.fees.base_fee

    def set_base_fee(self, fee: Decimal) -> None:
        if fee != self.fees.base_fee:
            self.fees = replace(self.fees, base_fee=fee)

    def _fee_at(self, state: Volatility, index: int) -> Decimal:
        fees = self.fees
        return dynamic_fee(
            fees.base_fee,
            fees.control,
            accumulator_at(state, fees, index),
            fees.bin_step,
            fees.max_fee,
        )

    def fee_rate(self) -> Decimal:
        """The fee a small trade would pay now, in the active bin."""
        return self.bin_fees([self.active])[0]

    def bin_fees(self, indices: Sequence[int]) -> list[Decimal]:
        """The fee a swap starting now pays in each of these bins, as `simulate` charges.

        The dynamic fee grows with the bins a swap crosses from the active one, so a
        router that models the bins itself (see `split`) needs each bin's rate.
        """
        state = refresh_references(self.volatility, self.fees, self.active, self.now)
        return [self._fee_at(state, index) for index in indices]

    def spot(self, token_in: str) -> Decimal:
        price = self.bin_price(self.active)
        if token_in == self.base:
            return price
        with localcontext(_CTX):
            return _ONE / price

    # -- trading ---------------------------------------------------------------------

    def _last_liquid_bin(self, direction: int) -> int:
        """The furthest bin in `direction` that can hold liquidity."""
        edge = self.centre + direction * self.reach
        stored = [i for i in self._bins if (i - edge) * direction > 0]
        if not stored:
            return edge
        return max(stored) if direction > 0 else min(stored)

    def simulate(self, token_in: str, amount_in: Decimal, out_decimals: int) -> HopFill:
        selling_base = token_in == self.base
        direction = -1 if selling_base else 1
        updates: dict[int, tuple[Decimal, Decimal]] = {}
        index = self.active
        last_bin: int | None = None
        rates: set[Decimal] = set()
        state = refresh_references(self.volatility, self.fees, self.active, self.now)
        with localcontext(_CTX):
            remaining = amount_in
            out = _ZERO
            fee = _ZERO
            while True:
                if (index - self.centre) * direction > self.reach:
                    if last_bin is None:
                        last_bin = self._last_liquid_bin(direction)
                    if (index - last_bin) * direction > 0:
                        raise MarketError(
                            "insufficient_liquidity",
                            f"the {self.base}/{self.quote} bins cannot fill {amount_in} {token_in}",
                        )
                base_amt, quote_amt = self.bin(index)
                available = quote_amt if selling_base else base_amt
                if available > 0:
                    rate = self._fee_at(state, index)
                    rates.add(rate)
                    price = self.bin_price(index)
                    net_cap = available / price if selling_base else available * price
                    gross_cap = net_cap / (_ONE - rate)
                    if remaining <= gross_cap:
                        net = remaining * (_ONE - rate)
                        got = min(net * price if selling_base else net / price, available)
                        out += got
                        fee += remaining - net
                        updates[index] = (
                            (base_amt + net, quote_amt - got)
                            if selling_base
                            else (base_amt - got, quote_amt + net)
                        )
                        break
                    out += available
                    fee += gross_cap - net_cap
                    updates[index] = (
                        (base_amt + net_cap, _ZERO)
                        if selling_base
                        else (_ZERO, quote_amt + net_cap)
                    )
                    remaining -= gross_cap
                index += direction
            amount_out = quantize_down(out, out_decimals)
            if amount_out <= 0:
                raise MarketError("insufficient_liquidity", "the trade is too small to fill")
            # What rounding keeps back stays in the bin the trade ended in.
            base_amt, quote_amt = updates[index]
            dust = out - amount_out
            updates[index] = (
                (base_amt, quote_amt + dust) if selling_base else (base_amt + dust, quote_amt)
            )
            if len(rates) == 1:
                fee_rate = next(iter(rates))
            else:
                fee_rate = (fee / amount_in).quantize(_FEE_QUANTUM)
            spot = self.spot(token_in)
        return HopFill(
            token_in=token_in,
            token_out=self.quote if selling_base else self.base,
            amount_in=amount_in,
            amount_out=amount_out,
            fee_amount=fee,
            fee_rate=fee_rate,
            spot=spot,
            after=_BinsAfter(updates, index),
        )

    def commit(self, fill: HopFill) -> None:
        after = fill.after
        if not isinstance(after, _BinsAfter):
            raise TypeError("this fill was not produced by a DLMM pool")
        self._bins.update(after.bins)
        self.volatility = swapped(self.volatility, self.fees, self.active, after.active, self.now)
        if after.active != self.active:
            self.active = after.active
            self._price = self.bin_price(after.active)

    # -- time and arbitrage -------------------------------------------------------------

    def relax(self, target: Decimal, pull: Decimal, now: Decimal, flow: Decimal) -> None:
        self.now = now
        with localcontext(_CTX):
            old = self._price
            self._price = (old + pull * (target - old)) * flow
        self._follow_price()

    def shift(self, factor: Decimal) -> None:
        with localcontext(_CTX):
            self._price *= factor
        self._follow_price()

    def _follow_price(self) -> None:
        """Make the bin nearest the price active, as arbitrageurs would.

        Bins the price crosses are reset to the liquidity curve: arbitrage converts
        them and the liquidity providers re-spread around the new price. The pool's
        centre follows the active bin, so untouched liquidity is always shaped around
        where the price is now.
        """
        index = self.active
        price = self._price
        while price >= self.bin_price(index + 1):
            index += 1
        while price < self.bin_price(index):
            index -= 1
        # Arbitrage stops at the bin nearest the price: past it, the next bin costs more
        # than it gains. So the active bin's price is within half a bin of the market.
        if self.bin_price(index + 1) - price < price - self.bin_price(index):
            index += 1
        if index != self.active:
            # Arbitrage moved the active bin: a swap, as far as the fee is concerned.
            self.volatility = swapped(self.volatility, self.fees, self.active, index, self.now)
            low, high = sorted((self.active, index))
            for crossed in range(low, high + 1):
                if crossed != index:
                    self._bins.pop(crossed, None)
            self.active = index
        self.centre = self.active
        if len(self._bins) > 4 * self.reach + 16:
            reach = self.reach
            self._bins = {
                i: held for i, held in self._bins.items() if abs(i - self.centre) <= reach
            }
