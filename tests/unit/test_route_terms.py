"""From an order's route plan to its swap transaction and back through the chain's run.

Pure: a seeded market, the split router, `swap_terms` (the engine's side) and
`run_swap` (the chain's side) meet on the transaction's terms.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from dexecutor.chain.execution import run_swap
from dexecutor.chain.transaction import SwapTx
from dexecutor.domain.order import Order, OrderType
from dexecutor.engine.routing import swap_terms
from dexecutor.market.simulation import Market, MarketParams, PairParams
from dexecutor.market.split import candidates, route, route_exact_out
from dexecutor.market.types import MarketError

NOW = 30.0
OWNER = "11111111111111111111111111111111"


def _market() -> Market:
    market = Market(MarketParams(pairs=(PairParams("SOL", "USDT"),)), seed=3)
    market.advance(NOW)
    return market


def _order(plan: dict[str, Any], amount_in: Decimal, min_out: Decimal) -> Order:
    at = datetime(2026, 11, 29, tzinfo=UTC)
    return Order(
        id=uuid4(), user_id="u", type=OrderType.MARKET, token_in="SOL", token_out="USDT",
        amount_in=amount_in, slippage_bps=50, created_at=at, updated_at=at,
        min_amount_out=min_out,
        route={"swapMode": plan["swapMode"], "routePlan": plan["routePlan"]},
    )  # fmt: skip


def _tx(order: Order) -> SwapTx:
    terms = swap_terms(order)
    return SwapTx(
        owner=OWNER, token_in=order.token_in, token_out=order.token_out,
        amount_in=terms.amount_in, min_amount_out=terms.min_amount_out, legs=terms.legs,
        order_id=order.id, attempt=1, recent_blockhash=OWNER, exact_out=terms.exact_out,
    )  # fmt: skip


def test_an_exact_in_split_becomes_a_route_that_fills_as_planned() -> None:
    market = _market()
    plan = route(candidates(market.venue_pools(), "SOL", "USDT"), Decimal(10_000))
    assert len(plan.legs) >= 2
    order = _order(plan.as_fields(), Decimal(10_000), plan.amount_out)
    tx = _tx(order)
    assert tx.is_split and not tx.exact_out and tx.amount_in == Decimal(10_000)
    swapped = run_swap(market, tx, NOW)
    assert swapped.amount_out == plan.amount_out


def test_a_split_that_misses_its_minimum_fills_no_leg() -> None:
    market = _market()
    plan = route(candidates(market.venue_pools(), "SOL", "USDT"), Decimal(10_000))
    order = _order(plan.as_fields(), Decimal(10_000), plan.amount_out + 1)
    spots = [pool.spot(pool.base) for _, pool in market.venue_pools()]
    with pytest.raises(MarketError, match="below the minimum"):
        run_swap(market, _tx(order), NOW)
    assert [pool.spot(pool.base) for _, pool in market.venue_pools()] == spots


def test_exact_out_spends_the_least_input_within_its_maximum() -> None:
    market = _market()
    wanted = Decimal(500_000)
    plan = route_exact_out(candidates(market.venue_pools(), "SOL", "USDT"), wanted)
    maximum = (plan.amount_in * Decimal("1.01")).quantize(Decimal("1e-9"))
    order = _order(plan.as_fields(), maximum, wanted)
    tx = _tx(order)
    assert tx.exact_out and tx.amount_in == maximum and tx.min_amount_out == wanted
    assert len(tx.legs) == len(plan.legs)
    swapped = run_swap(market, tx, NOW)
    assert swapped.amount_out >= wanted
    assert swapped.amount_in <= plan.amount_in + Decimal("1e-9") * len(plan.legs) < maximum


def test_exact_out_beyond_its_maximum_reverts() -> None:
    market = _market()
    wanted = Decimal(500_000)
    plan = route_exact_out(candidates(market.venue_pools(), "SOL", "USDT"), wanted)
    order = _order(plan.as_fields(), plan.amount_in, wanted)
    market.jump("raydium", "SOL", -300, NOW)  # SOL cheaper: the input no longer suffices
    market.jump("meteora", "SOL", -300, NOW)
    with pytest.raises(MarketError) as refused:
        run_swap(market, _tx(order), NOW)
    assert refused.value.reason == "slippage_exceeded"


def test_an_order_without_a_route_has_no_terms() -> None:
    plan = {"swapMode": "ExactIn", "routePlan": []}
    with pytest.raises(ValueError, match="no route"):
        swap_terms(replace(_order(plan, Decimal(1), Decimal(1)), route=None))


def test_a_route_replays_from_its_journal_action_to_the_same_market() -> None:
    from dexecutor.chain.execution import PLAN, apply_swap_action, swap_action

    live, replayed = _market(), _market()
    plan = route(candidates(live.venue_pools(), "SOL", "USDT"), Decimal(10_000))
    kind, data = swap_action(_tx(_order(plan.as_fields(), Decimal(10_000), Decimal(0))))
    assert kind == PLAN
    first = apply_swap_action(live, kind, data, NOW)
    again = apply_swap_action(replayed, kind, data, NOW)
    assert first.amount_out == again.amount_out == plan.amount_out
    assert [pool.spot(pool.base) for _, pool in live.venue_pools()] == [
        pool.spot(pool.base) for _, pool in replayed.venue_pools()
    ]
