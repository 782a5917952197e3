"""What a fill cost: the venue fee, the network fee, and the price after all of them.

Pure arithmetic on Decimals, the definitions written down in docs/chain.md:

- the venue fee is the pool's fee on the input: `amountIn × fee rate`, in tokenIn
  (rounded up to the token's precision). The pool keeps it out of what it swaps, so
  `amountOut` is already net of it;
- the network fee is what the wallet paid in SOL: 5,000 lamports a signature, the
  priority fee, and the rent of an output token account the swap opened;
- the effective price is tokenOut received per tokenIn given, with every fee counted:
  the network fee is added to what was given when SOL is the input, taken from what
  was received when SOL is the output, and otherwise taken from what was received at
  the fill's SOL price in tokenOut (left out when that price is unknown).
"""

from __future__ import annotations

from decimal import Decimal

from dexecutor.domain.money import price_of, quantize_up
from dexecutor.market.tokens import find_token
from dexecutor.market.venue import NetworkFee

SOL = "SOL"
LAMPORTS_PER_SOL = 1_000_000_000


def lamports_to_sol(lamports: int) -> Decimal:
    return Decimal(lamports).scaleb(-9)


def venue_fee(token_in: str, amount_in: Decimal, rate: Decimal) -> Decimal:
    """The venue's fee on the input, in tokenIn, rounded up to the token's precision."""
    token = find_token(token_in)
    decimals = token.decimals if token is not None else 9
    return quantize_up(amount_in * rate, decimals)


def effective_price(
    token_in: str,
    token_out: str,
    amount_in: Decimal,
    amount_out: Decimal,
    network_fee: NetworkFee,
    sol_price: Decimal | None = None,
) -> Decimal:
    """tokenOut received per tokenIn given, after the venue fee and the network fee."""
    fee = lamports_to_sol(network_fee.lamports)
    if token_in == SOL:
        return price_of(amount_out, amount_in + fee)
    if token_out == SOL:
        return price_of(amount_out - fee, amount_in)
    if sol_price is not None:
        return price_of(amount_out - fee * sol_price, amount_in)
    return price_of(amount_out, amount_in)


def fee_detail(network_fee: NetworkFee) -> dict[str, Decimal]:
    """The network fee's parts in SOL, as events and records show them."""
    return {
        "base": lamports_to_sol(network_fee.base),
        "priority": lamports_to_sol(network_fee.priority),
        "rent": lamports_to_sol(network_fee.rent),
    }
