"""The order state machine: allowed transitions apply, everything else raises."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest

from dexecutor.domain.order import (
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    Order,
    OrderStatus,
    OrderType,
    first_event,
    transition_table,
)

S = OrderStatus
NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def new_order() -> Order:
    return Order(
        id=uuid4(),
        user_id="u",
        type=OrderType.MARKET,
        token_in="SOL",
        token_out="USDC",
        amount_in=Decimal("2"),
        slippage_bps=50,
        created_at=NOW,
        updated_at=NOW,
        seq=1,
    )


def advance(order: Order, status: OrderStatus, **data: object) -> Order:
    return order.apply(order.event(status, NOW, **data))


BUILDING = {
    "dex": "meteora",
    "quotes": {},
    "expectedAmountOut": Decimal(197),
    "minAmountOut": Decimal(196),
}


def test_happy_path_reaches_confirmed_with_fill_fields() -> None:
    o = advance(new_order(), S.ROUTING)
    assert (o.status, o.attempts, o.seq) == (S.ROUTING, 1, 2)
    o = advance(o, S.BUILDING, **BUILDING)
    assert o.dex_used == "meteora" and o.min_amount_out == Decimal(196)
    o = advance(o, S.SUBMITTED, dex="meteora", txHash="tx1")
    o = advance(
        o,
        S.CONFIRMED,
        dex="meteora",
        txHash="tx1",
        executedPrice=Decimal("98.7"),
        amountOut=Decimal("197.4"),
    )
    assert (o.status, o.seq, o.amount_out, o.is_terminal) == (
        S.CONFIRMED,
        5,
        Decimal("197.4"),
        True,
    )


def test_retry_starts_a_new_attempt_and_forgets_the_old_transaction() -> None:
    o = advance(new_order(), S.ROUTING)
    o = advance(o, S.BUILDING, **BUILDING)
    o = advance(o, S.SUBMITTED, dex="meteora", txHash="tx1")
    o = advance(
        o,
        S.RETRYING,
        reason="failed_to_land",
        message="m",
        retryable=True,
        nextAttempt=2,
        delayMs=100,
    )
    assert o.attempts == 1
    o = advance(o, S.ROUTING)
    assert (o.attempts, o.tx_hash) == (2, None)


ALL_PAIRS = [(a, b) for a in S for b in S]


@pytest.mark.parametrize(
    ("current", "wanted"), [p for p in ALL_PAIRS if p[1] not in TRANSITIONS[p[0]]]
)
def test_every_transition_outside_the_table_raises(
    current: OrderStatus, wanted: OrderStatus
) -> None:
    from dataclasses import replace

    order = replace(new_order(), status=current)
    with pytest.raises(IllegalTransition):
        order.apply(
            order.event(
                wanted,
                NOW,
                reason="x",
                **BUILDING,
                txHash="t",
                executedPrice=Decimal(1),
                amountOut=Decimal(1),
            )
        )


def test_terminal_statuses_are_exactly_the_four_of_the_spec() -> None:
    assert {s.value for s in TERMINAL} == {"confirmed", "failed", "cancelled", "expired"}


def test_events_must_be_applied_in_sequence() -> None:
    o = new_order()
    skipped = o.event(S.ROUTING, NOW)
    from dataclasses import replace

    with pytest.raises(ValueError, match="seq"):
        o.apply(replace(skipped, seq=5))


def test_first_event_is_pending_seq_1_with_order_fields() -> None:
    o = new_order()
    e = first_event(o)
    assert (e.seq, e.status, e.data["tokenIn"], e.data["amountIn"]) == (
        1,
        S.PENDING,
        "SOL",
        Decimal(2),
    )


def test_transition_table_matches_the_spec() -> None:
    assert transition_table() == {
        "pending": ["cancelled", "routing", "waiting"],
        "waiting": ["cancelled", "expired", "routing"],
        "routing": ["building", "failed", "retrying"],
        "building": ["failed", "retrying", "submitted"],
        "submitted": ["confirmed", "failed", "retrying"],
        "retrying": ["failed", "routing"],
        "confirmed": [],
        "failed": [],
        "cancelled": [],
        "expired": [],
    }


@pytest.mark.parametrize("kind", [OrderType.LIMIT, OrderType.SNIPER])
def test_a_limit_or_sniper_order_never_routes_straight_from_pending(kind: OrderType) -> None:
    """Only its trigger may start one: `pending -> routing` would run it as a market order."""
    o = replace(new_order(), type=kind, limit_price=Decimal(1) if kind is OrderType.LIMIT else None)
    with pytest.raises(IllegalTransition):
        advance(o, S.ROUTING)
    waiting = advance(o, S.WAITING, trigger={})
    assert advance(waiting, S.ROUTING).status is S.ROUTING


def test_a_market_order_routes_straight_from_pending() -> None:
    assert advance(new_order(), S.ROUTING).status is S.ROUTING
