"""Running a landed swap transaction against the market: one venue, or a split route.

The chain calls `run_swap` when a transaction reaches its slot. What the transaction
says decides how it runs:

- one leg of one hop, exact-in: the venue's swap (`Market.execute`), which takes the
  venue's best path (it may go through SOL), as the venue's own program would;
- anything else (several legs, a leg of two hops, or exact-out): the router's
  instruction, `Market.execute_plan`, every leg repriced at landing and all of them
  filled or none: the minimum applies to the total.

The market changes only through journalled actions, so a restarted chain replays
them: `swap_action` is the action a swap becomes (`fill` or `plan`) and
`apply_swap_action` runs it (live and on replay). Independent of `Cluster`: pure, given the market.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from dexecutor.chain import transaction
from dexecutor.market.simulation import Market, PlanLeg
from dexecutor.market.split import Leg

FILL = "fill"
# A route's legs as planned, run by `Market.execute_plan` (a kind of its own: the chain
# may journal other route shapes under other names).
PLAN = "plan"
SWAP_ACTIONS = (FILL, PLAN)


@dataclass(frozen=True, slots=True)
class Swapped:
    """What a swap that landed moved: input spent (less than sent for an exact-out
    swap), output received, and per leg (a route) the fills."""

    amount_in: Decimal
    amount_out: Decimal
    legs: tuple[Leg, ...] = ()


def swap_action(swap: transaction.SwapTx) -> tuple[str, dict[str, Any]]:
    """The journal action (kind, data) that running `swap` is."""
    if not swap.is_split and not swap.exact_out:
        hop = swap.legs[0].hops[0]
        return FILL, {
            "venue": hop.venue,
            "tokenIn": swap.token_in,
            "tokenOut": swap.token_out,
            "amountIn": str(swap.amount_in),
            "minAmountOut": str(swap.min_amount_out),
        }
    return PLAN, {
        "tokenIn": swap.token_in,
        "tokenOut": swap.token_out,
        "legs": [
            {
                "venues": [hop.venue for hop in leg.hops],
                "path": [leg.hops[0].token_in, *(hop.token_out for hop in leg.hops)],
                "amountIn": str(leg.amount_in),
            }
            for leg in swap.legs
        ],
        "minAmountOut": str(swap.min_amount_out),
        "exactOut": swap.exact_out,
    }


def apply_swap_action(market: Market, kind: str, data: dict[str, Any], at: float) -> Swapped:
    """Run a swap action at market time `at`: what it moved.

    MarketError (slippage_exceeded, no_route, insufficient_liquidity) when it reverts,
    and then nothing has changed.
    """
    if kind == FILL:
        fill = market.execute(
            data["venue"],
            data["tokenIn"],
            data["tokenOut"],
            Decimal(data["amountIn"]),
            Decimal(data["minAmountOut"]),
            at,
        )
        return Swapped(fill.amount_in, fill.amount_out)
    if kind == PLAN:
        plan = [
            PlanLeg(tuple(leg["venues"]), tuple(leg["path"]), Decimal(leg["amountIn"]))
            for leg in data["legs"]
        ]
        legs = market.execute_plan(
            plan, Decimal(data["minAmountOut"]), at, exact_out=bool(data.get("exactOut"))
        )
        return Swapped(
            sum((leg.amount_in for leg in legs), Decimal(0)),
            sum((leg.amount_out for leg in legs), Decimal(0)),
            legs,
        )
    raise ValueError(f"not a swap action: {kind!r}")


def run_swap(market: Market, swap: transaction.SwapTx, at: float) -> Swapped:
    """Run `swap` at market time `at`: what it moved, or MarketError and no change."""
    kind, data = swap_action(swap)
    return apply_swap_action(market, kind, data, at)


__all__ = [
    "FILL",
    "PLAN",
    "SWAP_ACTIONS",
    "Swapped",
    "apply_swap_action",
    "run_swap",
    "swap_action",
]
