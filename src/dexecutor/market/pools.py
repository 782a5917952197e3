"""What every simulated pool offers the market: a price, a trial swap, and a commit.

Both venue models (constant product in `cpmm`, bins in `dlmm`) implement `Pool`, so the
routing in `simulation` treats them alike. A trial swap (`simulate`) never changes the
pool; it returns a `HopFill` carrying the pool's would-be new state, and only
`commit(fill)` applies it. That split is what lets a quote be pure and a failed
slippage check leave the market untouched. Nothing here knows about time or prices
walking; the simulation moves pools with `relax` and `shift`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Protocol

from dexecutor.domain.money import math_context


@dataclass(frozen=True, slots=True)
class HopFill:
    """One hop of a route as the pool would fill it.

    `spot` is the pool's marginal price (token_out per token_in) before the swap,
    `fee_rate` the fee actually charged as a fraction of `amount_in`, and `after` an
    opaque record of the pool's state after the swap, read back only by `commit`.
    """

    token_in: str
    token_out: str
    amount_in: Decimal
    amount_out: Decimal
    fee_amount: Decimal
    fee_rate: Decimal
    spot: Decimal
    after: object


class Pool(Protocol):
    """A two-token pool on one venue, priced as `quote` per `base`."""

    base: str
    quote: str

    @property
    def price(self) -> Decimal:
        """The pool's current marginal price, quote per base."""
        ...

    def spot(self, token_in: str) -> Decimal:
        """Marginal price of a trade from `token_in`: token_out per token_in."""
        ...

    def simulate(self, token_in: str, amount_in: Decimal, out_decimals: int) -> HopFill:
        """The fill of an exact-input swap, without changing the pool."""
        ...

    def commit(self, fill: HopFill) -> None:
        """Apply a fill produced by this pool's `simulate` on its current state."""
        ...

    def relax(self, target: Decimal, pull: Decimal, now: Decimal, flow: Decimal) -> None:
        """One step of time, ending at `now` (seconds): arbitrage, then other traders' flow.

        The price moves a fraction `pull` of the way to `target`, then is multiplied by
        `flow`. Trades until the next step happen at `now` (pools whose fee depends on
        time, like the DLMM's, read it); pools without such a fee ignore it.
        """
        ...

    def set_base_fee(self, fee: Decimal) -> None:
        """Change the pool's base fee (a launch pool's fee scheduler moves it)."""
        ...

    def shift(self, factor: Decimal) -> None:
        """Multiply the price by `factor` at once (a scripted jump)."""
        ...


def other_token(pool: Pool, token: str) -> str:
    """The pool's other side; the caller has checked that `token` is in the pool."""
    return pool.quote if token == pool.base else pool.base


_IMPACT_QUANTUM = Decimal("1e-8")


def fee_and_impact(
    fills: Sequence[HopFill], amount_in: Decimal, amount_out: Decimal
) -> tuple[Decimal, Decimal]:
    """A route's total fee rate and price impact, from its hops' fills.

    The fee is what the hops' fees take together (1 − Π(1 − fee)); the impact is how
    far `amount_out` falls short of the same route at its spot prices with those fees.
    Quotes and split legs report both, so one definition serves them.
    """
    with localcontext(math_context()):
        kept = Decimal(1)
        spot = Decimal(1)
        for fill in fills:
            kept *= 1 - fill.fee_rate
            spot *= fill.spot
        ideal = amount_in * kept * spot
        impact = max(1 - amount_out / ideal, Decimal(0)).quantize(_IMPACT_QUANTUM)
        return 1 - kept, impact
