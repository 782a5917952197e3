"""Orders, their statuses, the transition table and the events that move them.

This module is the one place that decides whether a status change is allowed:
`Order.apply` refuses any transition not in `TRANSITIONS` (SPEC §2's table), and the
few that the table allows but an order's type does not (`TYPE_REFUSALS`): a limit or
sniper order never goes `pending -> routing`, because only its trigger may start it
(intake stores it already `waiting`). It is pure: no I/O, the clock comes in as an
argument, and persistence is someone else's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    SNIPER = "sniper"


class OrderStatus(StrEnum):
    PENDING = "pending"
    WAITING = "waiting"
    ROUTING = "routing"
    BUILDING = "building"
    SUBMITTED = "submitted"
    RETRYING = "retrying"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


S = OrderStatus
TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING: frozenset({S.ROUTING, S.WAITING, S.CANCELLED}),
    S.WAITING: frozenset({S.ROUTING, S.CANCELLED, S.EXPIRED}),
    S.ROUTING: frozenset({S.BUILDING, S.RETRYING, S.FAILED}),
    S.BUILDING: frozenset({S.SUBMITTED, S.RETRYING, S.FAILED}),
    S.SUBMITTED: frozenset({S.CONFIRMED, S.RETRYING, S.FAILED}),
    S.RETRYING: frozenset({S.ROUTING, S.FAILED}),
    S.CONFIRMED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}
# Edges of the table an order type may not take. Routing a limit or sniper order
# straight from `pending` would run it at once as a market order, whatever its trigger.
_WAITS_FIRST: Mapping[OrderStatus, frozenset[OrderStatus]] = {S.PENDING: frozenset({S.ROUTING})}
TYPE_REFUSALS: Mapping[OrderType, Mapping[OrderStatus, frozenset[OrderStatus]]] = {
    OrderType.MARKET: {},
    OrderType.LIMIT: _WAITS_FIRST,
    OrderType.SNIPER: _WAITS_FIRST,
}


def allowed_next(kind: OrderType, status: OrderStatus) -> frozenset[OrderStatus]:
    """Where an order of this type may go from `status`: the table less its type's refusals."""
    return TRANSITIONS[status] - TYPE_REFUSALS[kind].get(status, frozenset())


TERMINAL: frozenset[OrderStatus] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
# The statuses that start or end a wait: all a trigger book needs to hear about.
WAIT_BOUNDARY: frozenset[OrderStatus] = TRANSITIONS[OrderStatus.WAITING] | {OrderStatus.WAITING}
# Statuses in which an order holds an execution slot (the global concurrency cap).
EXECUTING: frozenset[OrderStatus] = frozenset({S.ROUTING, S.BUILDING, S.SUBMITTED})
CANCELLABLE: frozenset[OrderStatus] = frozenset({S.PENDING, S.WAITING})


# The building event's fields that describe the route (SPEC §10), kept on the order.
ROUTE_FIELDS = (
    "swapMode",
    "amountIn",
    "amountOut",
    "maxAmountIn",
    "routePlan",
    "bestSingle",
    "splitGainBps",
    "arrivalMid",
)


class IllegalTransition(Exception):
    """A status change the transition table does not allow: always a bug."""

    def __init__(self, order_id: UUID, current: OrderStatus, wanted: OrderStatus) -> None:
        super().__init__(f"order {order_id}: {current} -> {wanted} is not allowed")
        self.current = current
        self.wanted = wanted


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One stored status change. `data` holds the status-specific fields of the stream."""

    order_id: UUID
    seq: int
    status: OrderStatus
    attempt: int
    at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Order:
    """An order and everything the engine has learnt about it so far.

    Immutable: `apply` returns the next version, so a failed write never leaves a
    half-updated order in memory.
    """

    id: UUID
    user_id: str
    type: OrderType
    token_in: str
    token_out: str
    amount_in: Decimal
    slippage_bps: int
    created_at: datetime
    updated_at: datetime
    status: OrderStatus = OrderStatus.PENDING
    seq: int = 0
    attempts: int = 0
    limit_price: Decimal | None = None
    expires_at: datetime | None = None
    quote_id: str | None = None
    quote_min_amount_out: Decimal | None = None
    quote_expires_at: datetime | None = None
    # The Idempotency-Key the order was placed with, echoed as `clientOrderId`.
    client_order_id: str | None = None
    # How the order asked to be routed (SPEC §10: swapMode, amountOut, maxAmountIn,
    # dexes, excludeDexes, onlyDirectRoutes); None for the defaults. For an ExactOut
    # order `amount_in` is the most it may spend (its maxAmountIn).
    routing: Mapping[str, Any] | None = None
    dex_used: str | None = None
    quotes: Mapping[str, Any] | None = None
    expected_amount_out: Decimal | None = None
    min_amount_out: Decimal | None = None
    tx_hash: str | None = None
    executed_price: Decimal | None = None
    amount_out: Decimal | None = None
    fail_reason: str | None = None
    # Where the attempt's swap landed and what it cost (FILL_FIELDS of its event).
    fill: Mapping[str, Any] | None = None
    # The route of the latest attempt, as its building event gave it (`ROUTE_FIELDS`).
    route: Mapping[str, Any] | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def quote_expires_at_passed(self, now: datetime) -> bool:
        """Whether the quote this order must honour has run out."""
        return self.quote_expires_at is not None and now > self.quote_expires_at

    def event(self, status: OrderStatus, at: datetime, **data: Any) -> OrderEvent:
        """The next event of this order, numbered, without applying it."""
        attempt = self.attempts + 1 if status is OrderStatus.ROUTING else self.attempts
        return OrderEvent(self.id, self.seq + 1, status, attempt, at, data)

    def apply(self, event: OrderEvent) -> Order:
        """Return the order after `event`; raise if the transition is not allowed."""
        if event.order_id != self.id:
            raise ValueError(f"event of order {event.order_id} applied to {self.id}")
        if event.seq != self.seq + 1:
            raise ValueError(f"order {self.id}: event seq {event.seq} after {self.seq}")
        if event.status not in allowed_next(self.type, self.status):
            raise IllegalTransition(self.id, self.status, event.status)
        d = event.data
        changes: dict[str, Any] = {
            "status": event.status,
            "seq": event.seq,
            "attempts": event.attempt,
            "updated_at": event.at,
        }
        if event.status is OrderStatus.BUILDING:
            changes.update(
                dex_used=d["dex"],
                quotes=d["quotes"],
                expected_amount_out=d["expectedAmountOut"],
                min_amount_out=d["minAmountOut"],
                route={k: d[k] for k in ROUTE_FIELDS if k in d} or None,
            )
        elif event.status is OrderStatus.SUBMITTED:
            changes.update(tx_hash=d["txHash"])
        elif event.status is OrderStatus.CONFIRMED:
            changes.update(
                executed_price=d["executedPrice"], amount_out=d["amountOut"], fill=_fill(d)
            )
        elif event.status in (OrderStatus.FAILED, OrderStatus.CANCELLED, OrderStatus.EXPIRED):
            changes.update(fail_reason=d["reason"])
        elif event.status is OrderStatus.ROUTING:
            # A new attempt starts from scratch: the previous attempt's tx is history.
            changes.update(tx_hash=None, fill=None)
        if event.status in (OrderStatus.FAILED, OrderStatus.RETRYING) and "networkFee" in d:
            changes.update(fill=_fill(d))  # it landed and reverted: its fee is paid
        return replace(self, **changes)


# The fill fields of a confirmed event (and, of them, those a reverted swap has) that
# the order record keeps.
FILL_FIELDS = (
    "slot",
    "commitment",
    "finalizedAtSlot",
    "venueFee",
    "networkFee",
    "networkFeeDetail",
    "priceImpact",
    "effectivePrice",
)


def _fill(data: Mapping[str, Any]) -> dict[str, Any]:
    """The fill fields, and the input the swap really spent (`amountIn` of a confirmed
    event: an exact-out swap spends at most its maximum, the order's amountIn)."""
    fill = {k: data[k] for k in FILL_FIELDS if k in data}
    if data.get("amountIn") is not None:
        fill["amountIn"] = data["amountIn"]
    return fill


def first_event(order: Order) -> OrderEvent:
    """The `pending` event every order is born with (seq 1)."""
    return OrderEvent(
        order.id,
        1,
        OrderStatus.PENDING,
        0,
        order.created_at,
        {
            "type": order.type.value,
            "tokenIn": order.token_in,
            "tokenOut": order.token_out,
            "amountIn": order.amount_in,
        }
        | ({"clientOrderId": order.client_order_id} if order.client_order_id else {})
        | ({"routing": dict(order.routing)} if order.routing else {}),
    )


def transition_table() -> dict[str, list[str]]:
    """The table as plain data, for clients (`GET /api/state-machine`)."""
    return {s.value: sorted(n.value for n in nxt) for s, nxt in TRANSITIONS.items()}


def type_refusals() -> dict[str, dict[str, list[str]]]:
    """The edges each order type may not take, as plain data (`GET /api/state-machine`)."""
    return {
        kind.value: {s.value: sorted(n.value for n in refused) for s, refused in rules.items()}
        for kind, rules in TYPE_REFUSALS.items()
        if rules
    }
