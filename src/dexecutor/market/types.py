"""Value types shared by the market simulation and its users (router, engine, API).

Pure data: no I/O. Amounts are `Decimal` at the token's precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

VENUES: tuple[str, ...] = ("raydium", "meteora")


@dataclass(frozen=True, slots=True)
class Quote:
    """What a venue offers for an exact input amount, after fees.

    `route` is the token path as traded on chain (native SOL shown as wSOL), e.g.
    ("BONK", "wSOL", "USDC") for a two-hop route.
    """

    venue: str
    token_in: str
    token_out: str
    amount_in: Decimal
    amount_out: Decimal
    price: Decimal
    fee: Decimal
    price_impact: Decimal
    route: tuple[str, ...]


class MarketError(Exception):
    """A refusal by the market, carrying one of the failure reason codes of the API.

    `reason` is one of: no_route, insufficient_liquidity, slippage_exceeded.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def quote_fields(result: Quote | MarketError) -> dict[str, Any]:
    """One venue's answer as clients see it in a quotes table: its quote, or its refusal."""
    if isinstance(result, MarketError):
        return {"error": result.reason, "message": result.message}
    return {
        "price": result.price,
        "amountOut": result.amount_out,
        "fee": result.fee,
        "priceImpact": result.price_impact,
        "route": list(result.route),
    }
