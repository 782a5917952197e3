"""Prometheus metrics of this process: what the engine did, how long stages took,
what is executing, how deep the queue is, who is watching."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from dexecutor.domain.order import EXECUTING, Order, OrderEvent

ORDER_EVENTS = Counter(
    "dexecutor_order_events", "Order status changes committed, by status", ["status"]
)
ORDERS_ACCEPTED = Counter(
    "dexecutor_orders_accepted", "Orders accepted (stored) over HTTP or WebSocket"
)
STAGE_SECONDS = Histogram(
    "dexecutor_stage_seconds",
    "Time an order spent in a status before leaving it",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60),
)
EXECUTING_NOW = Gauge(
    "dexecutor_orders_executing", "Orders in routing, building or submitted in this process"
)
QUEUE_DEPTH = Gauge("dexecutor_queue_depth", "Jobs in the order queue, by state", ["state"])
WEBSOCKETS = Gauge("dexecutor_websocket_connections", "Open WebSocket connections", ["kind"])
VENUE_ERRORS = Counter("dexecutor_venue_errors", "Failed attempts by venue-side reason", ["reason"])
INTERNAL_ERRORS = Counter(
    "dexecutor_internal_errors",
    "Deterministic exceptions while executing an order (bugs, unprocessable rows);"
    " PostgreSQL or Redis being unreachable is not counted",
)


class EngineMetrics:
    """The engine's observer: turns each committed event into metric updates."""

    def event(self, before: Order, event: OrderEvent) -> None:
        STAGE_SECONDS.labels(before.status.value).observe(
            max(0.0, (event.at - before.updated_at).total_seconds())
        )
        was, now = before.status in EXECUTING, event.status in EXECUTING
        if now and not was:
            EXECUTING_NOW.inc()
        elif was and not now:
            EXECUTING_NOW.dec()
        reason = event.data.get("reason")
        if reason is not None and event.status.value in ("retrying", "failed"):
            VENUE_ERRORS.labels(str(reason)).inc()

    def internal_error(self) -> None:
        INTERNAL_ERRORS.inc()
